"""Volumes carry exactly what the source had, on the real lab: what changed, went or was renamed
between the bulk copy and the freeze arrives as it is on the source (compared byte for byte, modes,
owners, times and links), anonymous volumes keep their data, a volume already on the target is never
merged into, and a failed or rolled-back migration leaves no volume behind on the target.

Each lab host keeps its Docker data under .lab/hosts/HOST, where the tests read both copies of a volume."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.lab import Lab, OperatorProcess, unique, wait_for
from tests.e2e.test_fast_path import assert_nothing_left
from tests.e2e.test_faults import fake_criu
from tests.unit.test_volume_mirror import snapshot

IDLE = "while true; do sleep 1; done"  # a workload that never touches its volumes
SEED = (
    "mkdir -p /data/dir/sub /data/dir-gone/deep /data/becomes-file && cd /data && "
    "echo kept > keep && echo gone > gone && echo renamed > old-name && echo a > dir/a && "
    "echo b > dir/sub/b && echo x > dir-gone/deep/x && echo file > becomes-dir && "
    "echo inside > becomes-file/inside && ln -s keep link && ln keep keep-hard && "
    "head -c 3000000 /dev/urandom > random"
)
# Everything a workload may do between the bulk copy and the freeze.
CHANGES = (
    "cd /data && rm gone && mv old-name new-name && mv dir dir-renamed && rm -r dir-gone becomes-file && "
    "echo now a file > becomes-file && rm becomes-dir && mkdir becomes-dir && echo now > becomes-dir/now && "
    "echo KEPT > keep && touch -d '2001-01-01 00:00' keep && ln -sf new-name link && "
    "ln new-name new-hard && chmod 600 random && mkdir -p new/nested && echo n > new/nested/n"
)
# Appends to /data/growing all through the bulk copy, until /data/stop appears.
WRITER = (
    "while [ ! -f /data/stop ]; do head -c 65536 /dev/urandom >> /data/growing; sleep 0.01; done; "
    "touch /data/stopped; " + IDLE
)
# CRIU on the source fails every dump (runc talks to it through `criu swrk`): the freeze fails and
# the workload goes on, so the migration fails with its twin and volumes already made on the target.
FAILING_DUMP = """#!/bin/sh
if [ "$1" = swrk ]; then echo "criu: injected dump failure" >&2; exit 1; fi
exec /usr/local/sbin/criu "$@"
"""


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == kind)


def phases(status: dict[str, Any]) -> list[str]:
    return [entry["phase"] for entry in status["phaseTransitions"]]


def exec_in(lab: Lab, host: str, container: str, script: str) -> None:
    lab.docker(host, "exec", container, "sh", "-c", script)


def held_at_the_freeze(lab: Lab, container: str, **spec: Any) -> str:
    """Starts a migration of `container` and returns its name once the bulk copy is done and the
    freeze is held back for a few seconds."""
    name = unique("mig-volume")
    lab.migration(name, container, target="node2", pauses="Checkpointing=8", **spec)
    lab.wait_for_phase(name, "Checkpointing")
    return name


def assert_same_volume(lab: Lab, volume: str, target_volume: str | None = None) -> None:
    """The target's copy holds exactly what the source's does (the source's, kept on node1 after
    its container went, is the content at the freeze)."""
    source = snapshot(lab.volume_path("node1", volume))
    assert len(source) > 1, "the source volume is empty: nothing was compared"
    assert snapshot(lab.volume_path("node2", target_volume or volume)) == source


@pytest.mark.parametrize("strategy", ["Live", "Cold"])
def test_what_changed_went_or_was_renamed_before_the_freeze_arrives_exactly(
    lab: Lab, operator: OperatorProcess, strategy: str
) -> None:
    container, volume = unique("vol-changes"), unique("data")
    lab.run_container("node1", container, IDLE, "-v", f"{volume}:/data")
    exec_in(lab, "node1", container, SEED)

    name = held_at_the_freeze(lab, container, strategy=strategy)
    exec_in(lab, "node1", container, CHANGES)
    resource = lab.wait_until(name)
    status = resource["status"]

    assert status["phase"] == "Succeeded", status
    assert_same_volume(lab, volume)
    target = lab.volume_path("node2", volume)
    assert not (target / "gone").exists() and not (target / "old-name").exists()
    assert not (target / "dir").exists() and not (target / "dir-gone").exists()
    assert (target / "new-name").read_text() == "renamed\n"
    assert (target / "dir-renamed" / "sub" / "b").read_text() == "b\n"
    assert (target / "keep").read_text() == "KEPT\n"
    assert status["metrics"]["volumeBytes"] > 3000000
    assert_nothing_left(resource["metadata"]["uid"], status["targetContainerID"])


def test_a_file_written_all_through_the_bulk_copy_does_not_fail_the_migration(
    lab: Lab, operator: OperatorProcess
) -> None:
    container, volume = unique("vol-writer"), unique("data")
    lab.run_container("node1", container, WRITER, "-v", f"{volume}:/data")
    written = lab.volume_path("node1", volume)
    wait_for(
        lambda: (written / "growing").exists() and (written / "growing").stat().st_size > 4 << 20,
        30,
        "4 MiB written",
    )

    name = held_at_the_freeze(lab, container)
    exec_in(lab, "node1", container, "touch /data/stop")
    wait_for(lambda: (written / "stopped").exists(), 10, "the writer to stop before the freeze")
    status = lab.wait_until(name)["status"]

    assert status["phase"] == "Succeeded", status
    assert_same_volume(lab, volume)


@pytest.mark.parametrize("strategy", ["Live", "Cold"])
def test_an_anonymous_volume_keeps_its_data(lab: Lab, operator: OperatorProcess, strategy: str) -> None:
    container, name = unique("vol-anonymous"), unique("mig-anonymous")
    lab.run_container("node1", container, IDLE, "-v", "/data")
    exec_in(lab, "node1", container, SEED)
    volume = lab.volume_at("node1", container, "/data")

    lab.migration(name, container, target="node2", strategy=strategy)
    status = lab.wait_until(name)["status"]

    assert status["phase"] == "Succeeded", status
    twins = lab.volume_at("node2", container, "/data")
    assert twins != volume  # Docker gave the twin a new anonymous volume
    assert_same_volume(lab, volume, twins)
    assert lab.docker("node2", "exec", container, "cat", "/data/dir/sub/b").stdout == "b\n"


def test_a_volume_of_that_name_on_the_target_is_refused_naming_it_and_nothing_is_touched(
    lab: Lab, operator: OperatorProcess
) -> None:
    container, volume, name = unique("vol-taken"), unique("data"), unique("mig-taken")
    lab.docker("node2", "volume", "create", volume)
    (lab.volume_path("node2", volume) / "theirs").write_text("node2's own data")
    lab.run_container("node1", container, IDLE, "-v", f"{volume}:/data")
    exec_in(lab, "node1", container, SEED)
    before = {
        "source": snapshot(lab.volume_path("node1", volume)),
        "target": snapshot(lab.volume_path("node2", volume)),
        "volumes": lab.volume_names("node2"),
    }

    lab.migration(name, container, target="node2")
    status = lab.wait_until(name)["status"]

    assert status["phase"] == "Failed", status
    assert condition(status, "Failed")["reason"] == "VolumeExists"
    assert status["message"].startswith(f"volume {volume} already exists on node2")
    assert "Checkpointing" not in phases(status)
    checks = {check["name"]: check["passed"] for check in status["preflight"]["checks"]}
    assert checks["Volumes"] is False
    assert lab.running("node1", container) and container not in lab.container_names("node2")
    assert {
        "source": snapshot(lab.volume_path("node1", volume)),
        "target": snapshot(lab.volume_path("node2", volume)),
        "volumes": lab.volume_names("node2"),
    } == before


@contextlib.contextmanager
def volumes_of_both_kinds(lab: Lab) -> Iterator[tuple[str, str]]:
    """A container on node1 with a seeded named volume at /data and an anonymous one at /cache:
    (container, named volume); fails the test if node2 gains a volume meanwhile."""
    container, volume = unique("vol-cleanup"), unique("data")
    lab.run_container("node1", container, IDLE, "-v", f"{volume}:/data", "-v", "/cache")
    exec_in(lab, "node1", container, f"{SEED} && cp -a /data/. /cache/")
    target_volumes = lab.volume_names("node2")
    source = snapshot(lab.volume_path("node1", volume))
    yield container, volume
    assert lab.volume_names("node2") == target_volumes, "a volume is left on node2"
    assert container not in lab.container_names("node2")
    assert lab.running("node1", container)
    assert snapshot(lab.volume_path("node1", volume)) == source


def test_a_migration_that_fails_at_the_freeze_leaves_no_volume_on_the_target(
    lab: Lab, operator: OperatorProcess
) -> None:
    with volumes_of_both_kinds(lab) as (container, _), fake_criu(lab, "node1", FAILING_DUMP):
        name = unique("mig-dump-fails")
        lab.migration(name, container, target="node2")
        status = lab.wait_until(name)["status"]

        assert status["phase"] == "Failed", status
        assert condition(status, "Failed")["reason"] == "CheckpointFailed"
        assert status["metrics"]["volumeBytes"] > 0  # the volumes were copied before the freeze


def test_a_rolled_back_migration_leaves_no_volume_on_the_target(lab: Lab, operator: OperatorProcess) -> None:
    with volumes_of_both_kinds(lab) as (container, _):
        name = unique("mig-volume-rollback")
        lab.migration(name, container, target="node2", pauses="Restoring=12", timeoutSeconds=10)
        status = lab.wait_until(name)["status"]

        assert status["phase"] == "RolledBack", status
        assert condition(status, "Succeeded")["reason"] == "Timeout"
        assert "Transferring" in phases(status)  # the copies had reached the target


def test_an_operator_killed_before_the_freeze_still_leaves_the_volume_exact(
    lab: Lab, operator: OperatorProcess
) -> None:
    """Resumed, the operator no longer knows what the bulk copy sent: the freeze sends everything,
    into the target's copy emptied first."""
    container, volume = unique("vol-restart"), unique("data")
    lab.run_container("node1", container, IDLE, "-v", f"{volume}:/data")
    exec_in(lab, "node1", container, SEED)

    name = held_at_the_freeze(lab, container)
    exec_in(lab, "node1", container, CHANGES)
    operator.kill()
    operator.start()
    status = lab.wait_until(name, timeout=180)["status"]

    assert status["phase"] == "Succeeded", status
    assert_same_volume(lab, volume)
