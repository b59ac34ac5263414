"""Real faults during a migration: each ends with the workload running on exactly one host, its
counter continuous, and a Migration that names the cause."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.lab import REPO, Counter, Lab, OperatorProcess, unique

FAILING_RESTORE = """#!/bin/sh
# runc talks to CRIU through `criu swrk`: on this host that is only ever a restore.
if [ "$1" = swrk ]; then echo "criu: injected restore failure" >&2; exit 1; fi
exec /usr/local/sbin/criu "$@"
"""
MISSING = """#!/bin/sh
echo "criu: not found" >&2
exit 127
"""


@contextlib.contextmanager
def fake_criu(lab: Lab, host: str, script: str) -> Iterator[None]:
    path = Path(lab.lab("bin", host).stdout.strip()) / "criu"
    path.write_text(script)
    path.chmod(0o755)
    try:
        yield
    finally:
        path.unlink()


def succeeded_condition(status: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == "Succeeded")


def phases(status: dict[str, Any]) -> list[str]:
    return [entry["phase"] for entry in status["phaseTransitions"]]


def assert_rolled_back(lab: Lab, counter: Counter, status: dict[str, Any], reason: str | None = None) -> None:
    assert status["phase"] == "RolledBack", status
    if reason is not None:
        assert succeeded_condition(status)["reason"] == reason, status
    assert succeeded_condition(status)["status"] == "False"
    assert status["metrics"]["downtimeMs"] > 0
    assert counter.assert_runs_once_and_continuous() == "node1"
    assert not lab.running("node2", counter.name)


def assert_untouched(lab: Lab, counter: Counter, status: dict[str, Any]) -> None:
    """Failed before the freeze: never checkpointed, nothing left on the target."""
    assert status["phase"] == "Failed", status
    assert "Checkpointing" not in phases(status)
    assert counter.assert_runs_once_and_continuous() == "node1"
    assert counter.name not in lab.container_names("node2")


def test_restore_failing_on_target_rolls_back_onto_source(lab: Lab, operator: OperatorProcess) -> None:
    counter, name = Counter(lab), unique("mig-criu-fails")
    with fake_criu(lab, "node2", FAILING_RESTORE):
        lab.migration(name, counter.name, target="node2")
        status = lab.wait_until(name)["status"]
    assert_rolled_back(lab, counter, status, reason="RestoreFailed")
    assert "injected restore failure" in status["message"] or "criu" in status["message"].lower()
    assert counter.name not in lab.container_names("node2")


def failing_once(marker: str) -> str:
    """A criu whose first call from runc fails (a dump that met something passing, as a socket
    changing state at the freeze), and every later one works."""
    return f"""#!/bin/sh
if [ "$1" = swrk ] && [ ! -e {marker} ]; then
  : > {marker}; echo "criu: injected failure, once" >&2; exit 1
fi
exec /usr/local/sbin/criu "$@"
"""


def test_a_dump_that_fails_once_while_the_container_runs_on_is_tried_again(
    lab: Lab, operator: OperatorProcess
) -> None:
    counter, name = Counter(lab), unique("mig-dump-once")
    marker = Path(lab.lab("bin", "node1").stdout.strip()) / unique("dump-failed")  # where fake_criu is
    with fake_criu(lab, "node1", failing_once(str(marker))):
        lab.migration(name, counter.name, target="node2")
        status = lab.wait_until(name)["status"]

    assert status["phase"] == "Succeeded", status
    assert marker.exists()  # the first dump did fail
    marker.unlink()
    assert counter.assert_runs_once_and_continuous() == "node2"


def test_criu_missing_on_target_fails_before_the_freeze(lab: Lab, operator: OperatorProcess) -> None:
    counter, name = Counter(lab), unique("mig-no-criu")
    with fake_criu(lab, "node2", MISSING):
        lab.migration(name, counter.name, target="node2")
        status = lab.wait_until(name)["status"]
    assert succeeded_condition(status)["reason"] == "CRIUMissing"
    assert "node2" in status["message"]
    assert_untouched(lab, counter, status)


def migrate_through_fault(
    lab: Lab, counter: Counter, phase: str, fault: list[str], repair: list[str]
) -> dict[str, Any]:
    """Holds the migration at `phase`, breaks the lab with `hack/lab FAULT...`, and repairs it after."""
    name = unique("mig-fault")
    lab.migration(name, counter.name, target="node2", pauses=f"{phase}=4")
    lab.wait_for_phase(name, phase)
    lab.lab(*fault)
    try:
        status: dict[str, Any] = lab.wait_until(name, timeout=300)["status"]
    finally:
        lab.lab(*repair)
    return status


@pytest.mark.parametrize(
    ("phase", "fault", "repair"),
    [
        ("Restoring", ["stop", "node2", "dockerd"], ["start", "node2", "dockerd"]),
        ("Transferring", ["stop", "node2", "sshd"], ["start", "node2", "sshd"]),
        ("Transferring", ["link", "node2", "down"], ["link", "node2", "up"]),
    ],
    ids=[
        "target-dockerd-stopped-before-restore",
        "target-sshd-stopped-mid-transfer",
        "target-link-cut-mid-transfer",
    ],
)
def test_target_fault_after_the_freeze_rolls_back_onto_the_source(
    lab: Lab, operator: OperatorProcess, phase: str, fault: list[str], repair: list[str]
) -> None:
    counter = Counter(lab)
    status = migrate_through_fault(lab, counter, phase, fault, repair)
    assert_rolled_back(lab, counter, status)
    assert "node2" in status["message"]


def test_timeout_before_the_freeze_fails_and_leaves_the_source(lab: Lab, operator: OperatorProcess) -> None:
    counter, name = Counter(lab), unique("mig-slow-prepare")
    lab.migration(name, counter.name, target="node2", pauses="Preparing=12", timeoutSeconds=10)
    status = lab.wait_until(name)["status"]
    assert succeeded_condition(status)["reason"] == "Timeout"
    assert "timeoutSeconds" in status["message"]
    assert_untouched(lab, counter, status)


def test_timeout_after_the_freeze_rolls_back(lab: Lab, operator: OperatorProcess) -> None:
    counter, name = Counter(lab), unique("mig-slow-restore")
    lab.migration(name, counter.name, target="node2", pauses="Restoring=12", timeoutSeconds=10)
    status = lab.wait_until(name)["status"]
    assert_rolled_back(lab, counter, status, reason="Timeout")


def test_image_copy_failing_fails_before_the_freeze(lab: Lab, operator: OperatorProcess) -> None:
    image = f"ferry-e2e/{unique('unloadable')}"
    builder = unique("builder")
    lab.run_container("node1", builder, f"echo {image} > /built-by")
    lab.docker("node1", "wait", builder)
    lab.docker("node1", "commit", builder, image)
    lab.docker("node1", "rm", builder)
    counter, name = Counter(lab, image=image), unique("mig-image-fails")
    image_store = (
        REPO / ".lab" / "hosts" / "node2" / "docker" / "image" / "overlay2" / "imagedb" / "content" / "sha256"
    )
    subprocess.run(["chattr", "+i", str(image_store)], check=True)  # node2's dockerd cannot store images
    try:
        lab.migration(name, counter.name, target="node2")
        status = lab.wait_until(name)["status"]
    finally:
        subprocess.run(["chattr", "-i", str(image_store)], check=True)
    assert "image" in status["message"].lower()
    assert_untouched(lab, counter, status)


def test_unreachable_source_fails_at_the_start(lab: Lab, operator: OperatorProcess) -> None:
    counter, name = Counter(lab), unique("mig-no-source")
    lab.lab("link", "node1", "down")
    try:
        lab.migration(name, counter.name, target="node2")
        status = lab.wait_until(name, timeout=120)["status"]
    finally:
        lab.lab("link", "node1", "up")
    assert "node1" in status["message"]
    assert_untouched(lab, counter, status)
