"""A container's content is hostile input: what it puts in its volumes, and when, must never make a
copy write outside the container's own directories on the target host."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.e2e.lab import Counter, Lab, OperatorProcess, host_path, unique


def test_a_volume_link_swapped_for_a_directory_before_the_freeze_writes_nothing_outside(
    lab: Lab, operator: OperatorProcess
) -> None:
    escape = Path("/tmp") / unique("ferry-escape")  # what the link points at, on the hosts themselves
    on_target = host_path("node2", escape)  # where a copy that followed it would write
    on_target.mkdir()
    volume = unique("vol")
    counter = Counter(lab, prefix="hostile", docker_args=["-v", f"{volume}:/data"])
    try:
        lab.docker("node1", "exec", counter.name, "ln", "-s", str(escape), "/data/a")
        name = unique("mig-hostile")
        lab.migration(name, counter.name, target="node2", pauses="Checkpointing=4")
        lab.wait_for_phase(name, "Checkpointing")  # the bulk copy is done; the freeze is held back
        swap = "rm /data/a && mkdir /data/a && echo pwned > /data/a/f && touch -d '1970-01-02 00:00' /data/a"
        lab.docker("node1", "exec", counter.name, "sh", "-c", swap)
        status = lab.wait_until(name)["status"]
        assert status["phase"] == "Succeeded", status
        assert list(on_target.iterdir()) == [], "the copy wrote through the link, outside the volume"
        assert lab.docker("node2", "exec", counter.name, "cat", "/data/a/f").stdout == "pwned\n"
        assert counter.assert_runs_once_and_continuous() == "node2"
    finally:
        shutil.rmtree(on_target, ignore_errors=True)
        for host in ("node1", "node2"):
            lab.docker(host, "rm", "-f", counter.name, check=False)
            lab.docker(host, "volume", "rm", "-f", volume, check=False)


def test_a_volume_directory_swapped_for_a_link_before_the_freeze_deletes_nothing_through_it(
    lab: Lab, operator: OperatorProcess
) -> None:
    """What went from the directory is deleted on the target before the link arrives there: the
    deletion never goes through the link to the host's own files."""
    escape = Path("/tmp") / unique("ferry-escape")
    on_target = host_path("node2", escape)  # what a deletion that followed the link would delete
    on_target.mkdir()
    (on_target / "x").write_text("the host's own file")
    volume = unique("vol")
    counter = Counter(lab, prefix="hostile", docker_args=["-v", f"{volume}:/data"])
    try:
        lab.docker("node1", "exec", counter.name, "sh", "-c", "mkdir /data/d && echo copied > /data/d/x")
        name = unique("mig-hostile")
        lab.migration(name, counter.name, target="node2", pauses="Checkpointing=4")
        lab.wait_for_phase(name, "Checkpointing")  # /data/d/x is on node2; its deletion waits for the freeze
        lab.docker("node1", "exec", counter.name, "sh", "-c", f"rm -r /data/d && ln -s {escape} /data/d")
        status = lab.wait_until(name)["status"]
        assert status["phase"] == "Succeeded", status
        assert [(path.name, path.read_text()) for path in on_target.iterdir()] == [
            ("x", "the host's own file")
        ]
        assert lab.docker("node2", "exec", counter.name, "readlink", "/data/d").stdout.strip() == str(escape)
        assert counter.assert_runs_once_and_continuous() == "node2"
    finally:
        shutil.rmtree(on_target, ignore_errors=True)
        for host in ("node1", "node2"):
            lab.docker(host, "rm", "-f", counter.name, check=False)
            lab.docker(host, "volume", "rm", "-f", volume, check=False)


def test_a_staging_directory_swapped_for_a_link_rolls_back_and_writes_nothing_through_it(
    lab: Lab, operator: OperatorProcess, tmp_path: Path
) -> None:
    """Whoever else may write to the shared directory swaps the migration's staging directory for a
    link to a private directory of theirs before the freeze: the source refuses to write there."""
    shared, elsewhere = tmp_path / "shared", tmp_path / "elsewhere"
    shared.mkdir()
    elsewhere.mkdir(mode=0o700)
    with lab.shared_directory(shared):
        counter, name = Counter(lab, prefix="staged"), unique("mig-staging")
        lab.migration(
            name, counter.name, target="node2", transfer="SharedDirectory", pauses="Checkpointing=4"
        )
        lab.wait_for_phase(name, "Checkpointing")
        staging = shared / f"ferry-{lab.get_migration(name)['metadata']['uid']}"
        staging.rmdir()
        staging.symlink_to(elsewhere)
        status = lab.wait_until(name)["status"]
    assert status["phase"] == "RolledBack", status
    assert "refusing the staging directory" in status["message"]
    assert list(elsewhere.iterdir()) == []
    assert counter.assert_runs_once_and_continuous() == "node1"


# Made in the container's volume and in its writable layer (Docker's default capabilities include
# MKNOD): a disk's and /dev/mem's device nodes, a FIFO nobody writes to (a copy that opened it
# would wait forever) and a hard link. The copies must carry each as what it is, never read it.
SPECIAL_FILES = (
    "mknod {d}/disk b 8 0 && mknod {d}/mem c 1 1 && mkfifo {d}/fifo && "
    "echo one > {d}/file && ln {d}/file {d}/link"
)
SPECIAL_KINDS = "stat -c '%n %F %t:%T %h' {d}/disk {d}/mem {d}/fifo {d}/file {d}/link"


def test_device_nodes_fifos_and_hard_links_arrive_as_they_are_and_are_never_read(
    lab: Lab, operator: OperatorProcess
) -> None:
    volume = unique("vol")
    counter = Counter(lab, prefix="special", docker_args=["-v", f"{volume}:/data"])
    try:
        for directory in ("/data", "/layer"):
            made = f"mkdir -p {directory} && " + SPECIAL_FILES.format(d=directory)
            lab.docker("node1", "exec", counter.name, "sh", "-c", made)
        kinds = {
            d: lab.docker("node1", "exec", counter.name, "sh", "-c", SPECIAL_KINDS.format(d=d)).stdout
            for d in ("/data", "/layer")
        }
        name = unique("mig-special")

        lab.migration(name, counter.name, target="node2")
        status = lab.wait_until(name)["status"]

        assert status["phase"] == "Succeeded", status
        assert counter.assert_runs_once_and_continuous() == "node2"
        for directory, before in kinds.items():
            after = lab.docker("node2", "exec", counter.name, "sh", "-c", SPECIAL_KINDS.format(d=directory))
            assert after.stdout == before  # same kinds, device numbers, and two names for the file
            assert "block special file 8:0" in after.stdout and " 2\n" in after.stdout
            inodes = f"stat -c %i {directory}/file {directory}/link"
            first, second = lab.docker("node2", "exec", counter.name, "sh", "-c", inodes).stdout.split()
            assert first == second, "the hard link arrived as a copy"
        # the node arrived, the device did not open up: the container still may not read the disk
        assert (
            lab.docker("node2", "exec", counter.name, "head", "-c1", "/data/disk", check=False).returncode
            != 0
        )
    finally:
        for host in ("node1", "node2"):
            lab.docker(host, "rm", "-f", counter.name, check=False)
            lab.docker(host, "volume", "rm", "-f", volume, check=False)
