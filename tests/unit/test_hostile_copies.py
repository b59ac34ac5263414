"""The directory copies (bulk, then what changed) run with real tar on local directories against
content a hostile container controls: nothing may be written outside the target directory."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from ferry.hosts.tree_copy import Baseline, CopyCommands, bulk_commands, final_commands, listing_commands


def run(commands: CopyCommands) -> None:
    """The producer piped into the consumer, as a stream between two hosts does."""
    producer = subprocess.Popen(commands.producer, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    subprocess.run(commands.consumer, stdin=producer.stdout, check=True, capture_output=True)
    assert producer.wait() == 0


def listing_of(target: Path) -> Path:
    """Where the source keeps the list of what the target holds (beside the test's directories)."""
    return target.parent / "work" / "listing"


def copy(source: Path, target: Path, since: str | None = None) -> None:
    """The bulk round (and the target's listing), or with `since` the final round from it."""
    if since is None:
        run(bulk_commands(str(source), str(target)))
        run(listing_commands(str(target), str(listing_of(target))))
    else:
        run(final_commands(str(source), str(target), Baseline(since, str(listing_of(target)))))


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path, Path]:
    source, target, outside = tmp_path / "source", tmp_path / "target", tmp_path / "outside"
    for path in (source, target, outside):
        path.mkdir()
    return source, target, outside


def moment() -> str:
    time.sleep(0.05)
    return f"{time.time():.6f}"


def test_a_link_swapped_for_a_directory_after_the_bulk_copy_is_not_followed(
    dirs: tuple[Path, Path, Path],
) -> None:
    source, target, outside = dirs
    (source / "a").symlink_to(outside)
    copy(source, target)
    since = moment()
    (source / "a").unlink()
    (source / "a").mkdir()
    (source / "a" / "f").write_text("pwned")
    os.utime(source / "a", (1, 1))  # an old mtime: the directory itself looks unchanged
    copy(source, target, since)
    assert list(outside.iterdir()) == []
    assert (target / "a" / "f").read_text() == "pwned"
    assert not (target / "a").is_symlink()


def test_absolute_and_climbing_links_arrive_as_links_and_are_not_written_through(
    dirs: tuple[Path, Path, Path],
) -> None:
    source, target, outside = dirs
    (source / "up").symlink_to("../outside")
    (source / "abs").symlink_to(outside)
    copy(source, target)
    assert os.readlink(target / "up") == "../outside"
    assert os.readlink(target / "abs") == str(outside)
    assert list(outside.iterdir()) == []


def test_a_file_swapped_for_a_link_after_the_bulk_copy_replaces_the_file(
    dirs: tuple[Path, Path, Path],
) -> None:
    source, target, outside = dirs
    (source / "f").write_text("data")
    copy(source, target)
    since = moment()
    (source / "f").unlink()
    (source / "f").symlink_to(outside / "secret")
    copy(source, target, since)
    assert (target / "f").is_symlink()
    assert not (outside / "secret").exists()


def test_a_change_within_the_kernel_clock_tick_after_the_bulk_copy_is_not_missed(
    dirs: tuple[Path, Path, Path],
) -> None:
    source, target, _ = dirs
    (source / "f").write_text("old")
    copy(source, target)
    since = f"{time.time():.6f}"
    (source / "f").write_text("new")  # its mtime may read a few ms *before* `since`
    copy(source, target, since)
    assert (target / "f").read_text() == "new"


def test_a_huge_name_is_copied_without_escaping(dirs: tuple[Path, Path, Path]) -> None:
    source, target, outside = dirs
    deep = source
    for _ in range(15):
        deep = deep / ("d" * 200)
    deep.mkdir(parents=True)
    (deep / ("f" * 255)).write_text("x")
    copy(source, target)
    assert list(outside.iterdir()) == []
    assert sum(1 for _ in target.rglob("f" * 255)) == 1


def test_a_directory_swapped_for_a_link_after_the_bulk_copy_deletes_nothing_through_it(
    dirs: tuple[Path, Path, Path],
) -> None:
    source, target, outside = dirs
    (source / "d").mkdir()
    (source / "d" / "x").write_text("in the volume")
    (outside / "x").write_text("outside")
    copy(source, target)
    since = moment()
    (source / "d" / "x").unlink()
    (source / "d").rmdir()
    (source / "d").symlink_to(outside)  # ./d/x went: its deletion must not go through the link
    copy(source, target, since)
    assert (outside / "x").read_text() == "outside"
    assert os.readlink(target / "d") == str(outside)


def test_names_a_shell_would_misread_are_deleted_and_renamed_exactly(dirs: tuple[Path, Path, Path]) -> None:
    source, target, outside = dirs
    names = ["-rf", "a\nb", "back\\slash", "* glob ?", "quote'\"", "$(touch pwned)", " space "]
    for name in names:
        (source / name).write_text(name)
    (outside / "a").write_text("outside")
    copy(source, target)
    since = moment()
    for index, name in enumerate(names):
        if index % 2:
            (source / name).unlink()
        else:
            (source / name).rename(source / f"{name}\n-renamed")
    copy(source, target, since)
    assert sorted(path.name for path in target.iterdir()) == sorted(path.name for path in source.iterdir())
    assert all((target / path.name).read_text() == path.read_text() for path in source.iterdir())
    assert [path.name for path in outside.iterdir()] == ["a"]
    assert not any((directory / "pwned").exists() for directory in dirs)


def test_a_list_of_deletions_cut_short_deletes_nothing(dirs: tuple[Path, Path, Path]) -> None:
    source, target, _ = dirs
    (target / "a").write_text("kept")
    consumer = final_commands(str(source), str(target), Baseline("0", str(listing_of(target)))).consumer

    received = subprocess.run(consumer, input=b"10\n./a\0", capture_output=True)

    assert received.returncode != 0 and b"cut short" in received.stderr
    assert (target / "a").read_text() == "kept"
