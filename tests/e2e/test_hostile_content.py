"""A container's content is hostile input: what it puts in its volumes, and when, must never make a
copy write outside the container's own directories on the target host."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.e2e.lab import Counter, Lab, OperatorProcess, unique


def test_a_volume_link_swapped_for_a_directory_before_the_freeze_writes_nothing_outside(
    lab: Lab, operator: OperatorProcess
) -> None:
    escape = Path("/tmp") / unique("ferry-escape")  # what the link points at, on the hosts themselves
    escape.mkdir()
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
        assert list(escape.iterdir()) == [], "the copy wrote through the link, outside the volume"
        assert lab.docker("node2", "exec", counter.name, "cat", "/data/a/f").stdout == "pwned\n"
        assert counter.assert_runs_once_and_continuous() == "node2"
    finally:
        shutil.rmtree(escape, ignore_errors=True)
        for host in ("node1", "node2"):
            lab.docker(host, "rm", "-f", counter.name, check=False)
            lab.docker(host, "volume", "rm", "-f", volume, check=False)


def test_a_volume_directory_swapped_for_a_link_before_the_freeze_deletes_nothing_through_it(
    lab: Lab, operator: OperatorProcess
) -> None:
    """What went from the directory is deleted on the target before the link arrives there: the
    deletion never goes through the link to the host's own files."""
    escape = Path("/tmp") / unique("ferry-escape")
    escape.mkdir()
    (escape / "x").write_text("the host's own file")
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
        assert [(path.name, path.read_text()) for path in escape.iterdir()] == [("x", "the host's own file")]
        assert lab.docker("node2", "exec", counter.name, "readlink", "/data/d").stdout.strip() == str(escape)
        assert counter.assert_runs_once_and_continuous() == "node2"
    finally:
        shutil.rmtree(escape, ignore_errors=True)
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
