"""A volume mirrored in two rounds (bulk while it changes, final once it does not) ends up on the
target exactly as the source holds it: what changed, what went and what was renamed between the
rounds included. Real tar, find and coreutils on local directories, as the hosts run them."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from ferry.hosts.tree_copy import bulk_commands, final_commands, listing_commands
from tests.unit.test_hostile_copies import copy, listing_of, run

Entry = tuple[object, ...]


def snapshot(root: Path) -> dict[str, Entry]:
    """Every path under `root` ("." for itself): kind, mode, owner, modification time (in seconds,
    as tar keeps it; not for links), content or link target, and the first name of its inode among
    the paths when it has several (hard links)."""
    paths = [root]
    for directory, dirs, files in os.walk(root):
        paths += [Path(directory, name) for name in dirs + files]
    entries: dict[str, Entry] = {}
    first_name: dict[int, str] = {}
    for path in sorted(paths):
        info = path.lstat()
        name = "." if path == root else f"./{path.relative_to(root)}"
        if stat.S_ISLNK(info.st_mode):
            entries[name] = ("link", os.readlink(path))
            continue
        payload = path.read_bytes() if stat.S_ISREG(info.st_mode) else b""
        linked = first_name.setdefault(info.st_ino, name) if info.st_nlink > 1 and not path.is_dir() else ""
        entries[name] = (stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid)
        entries[name] += (int(info.st_mtime), payload, linked)
    return entries


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A volume with files, directories, a link, a hard link, a FIFO and unusual modes."""
    root = tmp_path / "source"
    (root / "dir" / "sub").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "keep").write_text("kept")
    (root / "gone").write_text("to be deleted")
    (root / "old-name").write_text("renamed file")
    (root / "dir" / "a").write_text("a")
    (root / "dir" / "sub" / "b").write_text("b")
    (root / "dir-gone" / "deep").mkdir(parents=True)
    (root / "dir-gone" / "deep" / "x").write_text("x")
    (root / "becomes-dir").write_text("a file first")
    (root / "becomes-file").mkdir()
    (root / "becomes-file" / "inside").write_text("inside")
    (root / "link").symlink_to("keep")
    os.link(root / "keep", root / "keep-hard")
    os.mkfifo(root / "fifo")
    (root / "private").write_text("secret")
    (root / "private").chmod(0o600)
    (root / "dir").chmod(0o750)
    return root


def change_everything(root: Path) -> None:
    """What a workload may do between the rounds."""
    (root / "gone").unlink()
    (root / "old-name").rename(root / "new-name")
    (root / "dir").rename(root / "dir-renamed")
    subprocess.run(["rm", "-r", str(root / "dir-gone")], check=True)
    (root / "becomes-dir").unlink()
    (root / "becomes-dir").mkdir()
    (root / "becomes-dir" / "now").write_text("a directory now")
    subprocess.run(["rm", "-r", str(root / "becomes-file")], check=True)
    (root / "becomes-file").write_text("a file now")
    (root / "keep").write_text("KEPT")
    os.utime(root / "keep", (1, 1))  # an old mtime: the file looks unchanged
    (root / "link").unlink()
    (root / "link").symlink_to("new-name")
    os.link(root / "new-name", root / "new-hard")
    (root / "private").chmod(0o400)
    (root / "new-dir" / "nested").mkdir(parents=True)
    (root / "new-dir" / "nested" / "n").write_text("new")


def test_after_the_final_round_the_target_holds_exactly_what_the_source_does(
    source: Path, tmp_path: Path
) -> None:
    target = tmp_path / "target"
    target.mkdir()
    since = f"{time.time():.9f}"  # as the bulk round begins
    copy(source, target)
    change_everything(source)

    copy(source, target, since)

    assert snapshot(target) == snapshot(source)
    assert not (target / "gone").exists() and not (target / "dir-gone").exists()
    assert (target / "new-name").read_text() == "renamed file" and not (target / "old-name").exists()


def test_a_renamed_directory_arrives_whole_though_nothing_in_it_changed(source: Path, tmp_path: Path) -> None:
    """Renaming changes the directory only: its content is sent because the target lacks it."""
    target = tmp_path / "target"
    target.mkdir()
    copy(source, target)
    (source / "dir").rename(source / "dir-renamed")
    later = f"{time.time() + 60:.9f}"  # no change time is newer: only what the target lacks is sent

    copy(source, target, later)

    assert snapshot(target) == snapshot(source)
    assert (target / "dir-renamed" / "sub" / "b").read_text() == "b"


def test_without_a_baseline_the_final_round_replaces_whatever_the_target_held(
    source: Path, tmp_path: Path
) -> None:
    """After an operator restart the bulk round is not known: everything is sent again."""
    target = tmp_path / "target"
    (target / "stale-dir").mkdir(parents=True)
    (target / "stale-dir" / "f").write_text("stale")
    (target / "keep").write_text("stale")

    run(final_commands(str(source), str(target), None))

    assert snapshot(target) == snapshot(source)


@pytest.mark.parametrize("change", ["shrinks", "grows"])
def test_a_file_that_changes_while_the_bulk_round_reads_it_does_not_fail_the_copy(
    change: str, tmp_path: Path
) -> None:
    source, target = tmp_path / "source", tmp_path / "target"
    source.mkdir()
    target.mkdir()
    big = source / "big"
    big.write_bytes(os.urandom(8 << 20))
    since = f"{time.time():.9f}"
    commands = bulk_commands(str(source), str(target))
    producer = subprocess.Popen(commands.producer, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert producer.stdout is not None and producer.stderr is not None
    head = producer.stdout.read(1 << 16)  # tar is now stuck writing, in the middle of the file
    if change == "shrinks":
        os.truncate(big, 1000)
    else:
        with big.open("ab") as grown:
            grown.write(os.urandom(1 << 20))
    archive = head + producer.stdout.read()

    received = subprocess.run(commands.consumer, input=archive, capture_output=True)

    assert producer.wait() == 0, producer.stderr.read()
    assert received.returncode == 0, received.stderr
    run(listing_commands(str(target), str(listing_of(target))))
    copy(source, target, since)  # the final round sends the file again
    assert snapshot(target) == snapshot(source)
