"""Where the fast path's target receives a checkpoint's images: in a tmpfs of their own when it has
room for them and for the restored workload, else on its disk; Docker's checkpoint directory when
Docker restores, or when the images are to be kept. The host scripts run with stand-in mounts."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from ferry.hosts.runc import (
    PREPARE_RECEIVE_SCRIPT,
    RECEIVE_MEMORY_RESERVE,
    RELEASE_RECEIVED_SCRIPT,
    memory_for_images,
)
from ferry.migration.container_files import ContainerFiles
from ferry.migration.phases import Phase
from tests.unit.fakes import FakeHosts, container_spec, context, frozen_state, host_spec

MiB = 1 << 20


def test_images_go_into_memory_when_they_and_the_restored_workload_fit_with_the_reserve() -> None:
    expected = 256 * MiB

    assert memory_for_images(expected, 2 * expected + RECEIVE_MEMORY_RESERVE) == expected * 3 // 2 + 64 * MiB
    assert memory_for_images(expected, 2 * expected + RECEIVE_MEMORY_RESERVE - 1) == 0


@pytest.mark.parametrize(
    ("mechanism", "keep", "apart"),
    [("runc", False, True), ("runc-postcopy", False, True), ("runc", True, False), ("docker", False, False)],
)
def test_the_fast_path_receives_the_images_apart_unless_they_are_to_be_kept(
    mechanism: str, keep: bool, apart: bool
) -> None:
    hosts = FakeHosts(host_spec("node1"), host_spec("node2"))
    ctx, _ = context(
        container_spec(keep_checkpoint=keep), frozen_state(Phase.TRANSFERRING, mechanism=mechanism), hosts
    )
    files = ContainerFiles(ctx, hosts.hosts["node1"], hosts.hosts["node2"], live=True)  # type: ignore[arg-type]

    assert files.images_apart is apart


# -- the host scripts, with stand-in mount, mountpoint and umount


@pytest.fixture
def stand_ins(tmp_path: Path) -> dict[str, str]:
    """mount records its arguments and marks the directory mounted ($MOUNTED), unless $REFUSE is
    set; mountpoint answers from the mark; umount records its arguments and removes the mark."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = {
        "mount": '[ -n "${REFUSE:-}" ] && exit 32; echo "mount $*" >> "$CALLS"; : > "$MOUNTED"',
        "mountpoint": '[ -e "$MOUNTED" ]',
        "umount": 'echo "umount $*" >> "$CALLS"; rm -f "$MOUNTED"',
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    return {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "CALLS": str(tmp_path / "calls"),
        "MOUNTED": str(tmp_path / "mounted"),
    }


def prepare(directory: Path, size: int, env: dict[str, str]) -> str:
    argv = ["sh", "-c", PREPARE_RECEIVE_SCRIPT, "x", str(directory), str(size)]
    return subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout.strip()


def received(tmp_path: Path, size: int, env: dict[str, str]) -> Path:
    """A receiving directory prepared with `size`, holding images."""
    directory = tmp_path / "received"
    prepare(directory, size, env)
    (directory / "images").mkdir()
    return directory


def release(directory: Path, env: dict[str, str]) -> None:
    subprocess.run(["sh", "-c", RELEASE_RECEIVED_SCRIPT, "x", str(directory)], env=env, check=True)


def calls(env: dict[str, str]) -> list[str]:
    path = Path(env["CALLS"])
    return path.read_text().splitlines() if path.exists() else []


def test_a_sized_receive_mounts_a_tmpfs_readable_by_root_only_where_nothing_runs(
    tmp_path: Path, stand_ins: dict[str, str]
) -> None:
    directory = tmp_path / "work" / "uid-1" / "received"

    assert prepare(directory, 1000, stand_ins) == "memory"

    assert calls(stand_ins) == [
        f"mount -t tmpfs -o size=1000,mode=0700,nosuid,nodev,noexec ferry-images {directory}"
    ]
    for made in (directory, directory.parent):
        assert stat.S_IMODE(made.stat().st_mode) == 0o700


def test_without_room_the_images_go_to_the_disk(tmp_path: Path, stand_ins: dict[str, str]) -> None:
    directory = tmp_path / "received"

    assert prepare(directory, 0, stand_ins) == "disk"

    assert calls(stand_ins) == [] and directory.is_dir()


def test_a_refused_mount_leaves_the_images_to_the_disk(tmp_path: Path, stand_ins: dict[str, str]) -> None:
    assert prepare(tmp_path / "received", 1000, {**stand_ins, "REFUSE": "1"}) == "disk"


def test_a_resumed_run_keeps_the_tmpfs_it_finds_and_what_it_holds(
    tmp_path: Path, stand_ins: dict[str, str]
) -> None:
    directory = received(tmp_path, 1000, stand_ins)

    assert prepare(directory, 0, stand_ins) == "memory"

    assert len(calls(stand_ins)) == 1 and (directory / "images").is_dir()


def test_releasing_unmounts_the_tmpfs_then_removes_the_directory(
    tmp_path: Path, stand_ins: dict[str, str]
) -> None:
    directory = received(tmp_path, 1000, stand_ins)

    release(directory, stand_ins)

    assert calls(stand_ins)[-1] == f"umount -- {directory}"
    assert not directory.exists()


def test_releasing_images_received_on_the_disk_removes_them(
    tmp_path: Path, stand_ins: dict[str, str]
) -> None:
    directory = received(tmp_path, 0, stand_ins)

    release(directory, stand_ins)

    assert calls(stand_ins) == [] and not directory.exists()
