"""A transfer through a shared directory (which others may write to), run with real sh and tar on
local directories: the source archives into a staging directory of its own, and the target unpacks
only what the source wrote. Nothing is followed out of the staging directory."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ferry.hosts.tree_copy import stage_commands, staging_commands, unstage_commands


class Dirs:
    def __init__(self, root: Path) -> None:
        self.source, self.shared, self.target, self.outside = (
            root / "source",
            root / "shared",
            root / "target" / "checkpoint",
            root / "outside",
        )
        for path in (self.source, self.shared, self.outside):
            path.mkdir()
        (self.source / "pages.img").write_bytes(b"memory" * 1000)
        (self.source / "sub").mkdir()
        (self.source / "sub" / "core.img").write_text("registers")
        self.staging = self.shared / "ferry-uid-1"

    def make_staging(self) -> None:
        subprocess.run(staging_commands(str(self.staging)), check=True)

    def stage(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            stage_commands(str(self.source), str(self.staging), "checkpoint"), capture_output=True, text=True
        )

    def unstage(self, sha256: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            unstage_commands(str(self.staging), "checkpoint", sha256, str(self.target), fresh=True),
            capture_output=True,
            text=True,
        )


@pytest.fixture
def dirs(tmp_path: Path) -> Dirs:
    return Dirs(tmp_path)


def test_what_the_source_stages_arrives_whole_on_the_target(dirs: Dirs) -> None:
    dirs.make_staging()
    staged = dirs.stage()
    assert staged.returncode == 0, staged.stderr
    sha256, size = staged.stdout.split()
    assert int(size) == (dirs.staging / "checkpoint.tar").stat().st_size

    unstaged = dirs.unstage(sha256)

    assert unstaged.returncode == 0, unstaged.stderr
    assert (dirs.target / "pages.img").read_bytes() == b"memory" * 1000
    assert (dirs.target / "sub" / "core.img").read_text() == "registers"


def test_a_link_planted_at_the_staging_path_is_removed_not_followed(dirs: Dirs) -> None:
    (dirs.outside / "keep").write_text("theirs")
    dirs.staging.symlink_to(dirs.outside)

    dirs.make_staging()
    assert dirs.stage().returncode == 0

    assert not dirs.staging.is_symlink()
    assert [path.name for path in dirs.outside.iterdir()] == ["keep"]


def test_a_staging_path_swapped_for_a_link_after_it_was_made_is_refused(dirs: Dirs) -> None:
    dirs.make_staging()
    dirs.staging.rmdir()
    dirs.staging.symlink_to(dirs.outside)
    dirs.outside.chmod(0o700)  # as private as ferry's own: still not at the staging path

    staged = dirs.stage()

    assert staged.returncode != 0
    assert "refusing the staging directory" in staged.stderr
    assert list(dirs.outside.iterdir()) == []


def test_a_staging_directory_others_may_write_to_is_refused(dirs: Dirs) -> None:
    dirs.make_staging()
    dirs.staging.chmod(0o777)

    staged = dirs.stage()

    assert staged.returncode != 0 and "is not private" in staged.stderr


def test_an_archive_changed_after_the_source_wrote_it_is_not_unpacked(dirs: Dirs) -> None:
    dirs.make_staging()
    sha256 = dirs.stage().stdout.split()[0]
    with (dirs.staging / "checkpoint.tar").open("r+b") as archive:
        archive.seek(600)
        archive.write(b"tampered")

    unstaged = dirs.unstage(sha256)

    assert unstaged.returncode != 0
    assert "checkpoint.tar is not what the source wrote" in unstaged.stderr
    assert not dirs.target.exists()


def test_an_archive_replaced_by_a_link_is_not_read(dirs: Dirs) -> None:
    dirs.make_staging()
    sha256 = dirs.stage().stdout.split()[0]
    (dirs.outside / "secret.tar").write_bytes((dirs.staging / "checkpoint.tar").read_bytes())
    (dirs.staging / "checkpoint.tar").unlink()
    (dirs.staging / "checkpoint.tar").symlink_to(dirs.outside / "secret.tar")

    unstaged = dirs.unstage(sha256)

    assert unstaged.returncode != 0 and "is not a plain file" in unstaged.stderr
    assert not dirs.target.exists()
