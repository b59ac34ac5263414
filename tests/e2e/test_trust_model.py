"""The trust model (issue 8): nothing in a Migration's status grants access, and one driver at a time."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import yaml

from tests.e2e.lab import (
    HOST_CALL_LINE,
    REPO,
    TEST_OPERATOR_OPTIONS,
    Counter,
    Lab,
    OperatorProcess,
    unique,
    wait_for,
)

LAB = REPO / ".lab"
RECOVERED = ("Succeeded", "RolledBack")


def host_key(host: str) -> str:
    return " ".join((LAB / "hosts" / host / "ssh_host_ed25519_key.pub").read_text().split()[:2])


@pytest.fixture
def forbidden_host(lab: Lab) -> Iterator[str]:
    """A DockerHost that namespace default may not use. Its address answers nothing: had the operator
    tried to reach it, the Migration would fail with an SSH error, not NamespaceNotAllowed."""
    name = unique("forbidden")
    body = {
        "apiVersion": "ferry.dev/v1alpha1",
        "kind": "DockerHost",
        "metadata": {"name": name},
        "spec": {
            "address": "10.231.0.99",  # assumed unused in the lab's 10.231.0.0/24
            "hostKey": host_key("node2"),
            "sshKeySecretRef": {"name": "ferry-ssh", "namespace": "ferry-system", "key": "id_ed25519"},
            "allowedNamespaces": ["team-elsewhere"],
        },
    }
    lab.kubectl("apply", "-f", "-", input=yaml.safe_dump(body))
    yield name
    lab.kubectl("delete", "dockerhost", name, "--ignore-not-found")


def patch_status(lab: Lab, name: str, status: dict[str, Any]) -> None:
    """What a tenant allowed to patch migrations/status can do."""
    patch = json.dumps({"status": status})
    lab.kubectl("patch", "migration", name, "--subresource=status", "--type=merge", "-p", patch)


def created_with_status(
    lab: Lab, operator: OperatorProcess, name: str, counter: Counter, *, target: str = "node2", **status: Any
) -> None:
    """Creates the Migration and patches its status while no operator runs, so that the first run
    already reads the forged status (otherwise the operator's own first write could race it)."""
    operator.kill()
    try:
        lab.migration(name, counter.name, target=target, source=None)
        patch_status(lab, name, status)
    finally:
        operator.start()


def reason(status: dict[str, Any]) -> str:
    return str(next(c for c in status["conditions"] if c["type"] == "Succeeded")["reason"])


def test_a_status_naming_a_source_host_the_namespace_may_not_use_fails_without_touching_any_host(
    lab: Lab, operator: OperatorProcess, forbidden_host: str
) -> None:
    counter, name = Counter(lab), unique("mig-forged-source")
    before = {host: lab.container_names(host) for host in lab.hosts}
    created_with_status(
        lab,
        operator,
        name,
        counter,
        phase="Restoring",
        sourceHost=forbidden_host,
        targetHost="node2",
        sourceContainerID="0" * 64,
        targetContainerID="1" * 64,
        checkpointName="ferry-forged",
    )
    status = lab.wait_until(name)["status"]
    assert status["phase"] == "Failed", status
    assert reason(status) == "NamespaceNotAllowed"
    assert (
        f"DockerHost '{forbidden_host}' does not allow Migrations from namespace 'default'"
        in status["message"]
    )
    assert "without touching any host" in status["message"]
    assert counter.assert_runs_once_and_continuous() == "node1"
    assert {host: lab.container_names(host) for host in lab.hosts} == before


@pytest.mark.parametrize(
    "forged",
    [
        {"phase": "Restoring"},  # no hosts in the status: it cannot have got there
        {"phase": "Restoring", "sourceHost": "node1", "targetHost": "node1"},  # not spec.targetHost
    ],
    ids=["phase-only", "other-target"],
)
def test_a_status_patched_to_restoring_fails_without_touching_any_host(
    lab: Lab, operator: OperatorProcess, forged: dict[str, Any]
) -> None:
    counter, name = Counter(lab), unique("mig-forged-phase")
    before = {host: lab.container_names(host) for host in lab.hosts}
    created_with_status(lab, operator, name, counter, **forged)
    status = lab.wait_until(name)["status"]
    assert status["phase"] == "Failed", status
    assert reason(status) == "StatusTampered"
    assert counter.assert_runs_once_and_continuous() == "node1"
    assert {host: lab.container_names(host) for host in lab.hosts} == before


def test_a_status_naming_a_bystander_as_the_twin_never_gets_it_removed(
    lab: Lab, operator: OperatorProcess
) -> None:
    """Without the check, Preparing fails (no such container on node1) and its cleanup removes
    whatever status.targetContainerID names on node2: here somebody else's running container."""
    bystander = unique("bystander")
    bystander_id = lab.run_container("node2", bystander, "sleep 3600")
    name = unique("mig-forged-twin")
    try:
        operator.kill()
        try:
            lab.migration(name, unique("no-such-container"), target="node2")
            patch_status(
                lab,
                name,
                {
                    "phase": "Preparing",
                    "sourceHost": "node1",
                    "targetHost": "node2",
                    "targetContainerID": bystander_id,
                },
            )
        finally:
            operator.start()
        status = lab.wait_until(name)["status"]
        assert status["phase"] == "Failed", status
        assert reason(status) == "StatusTampered"
        assert f"status.targetContainerID names container {bystander} on node2" in status["message"]
        assert lab.running("node2", bystander)
    finally:
        lab.docker("node2", "rm", "-f", bystander, check=False)


def test_a_status_forged_while_the_operator_drives_is_overwritten_by_the_lease_holder(
    lab: Lab, operator: OperatorProcess
) -> None:
    """The driver holds the lease, so its own state wins over a status patched under it (and it logs
    that someone else changed the status). Assumes the patch lands within the 6 s pause."""
    counter, name = Counter(lab), unique("mig-forged-live")
    lab.migration(name, counter.name, target="node2", pauses="Checkpointing=6")
    lab.wait_for_phase(name, "Checkpointing")
    patch_status(lab, name, {"phase": "Verifying"})
    status = lab.wait_until(name)["status"]
    assert status["phase"] == "Succeeded", status
    assert f"the status of default/{name} was changed by someone else" in operator.log()
    assert counter.assert_runs_once_and_continuous() == "node2"


def test_a_migrations_lease_lives_in_the_operator_namespace(lab: Lab, operator: OperatorProcess) -> None:
    counter, name = Counter(lab), unique("mig-lease-ns")
    lab.migration(name, counter.name, target="node2", pauses="Transferring=4")
    lab.wait_for_phase(name, "Transferring")
    lease = f"ferry-migration-{lab.get_migration(name)['metadata']['uid']}"
    assert lab.kubectl("get", "lease", lease, "-n", "ferry-system", check=False).returncode == 0
    assert lab.kubectl("get", "lease", lease, "-n", "default", check=False).returncode != 0
    assert lab.wait_until(name)["status"]["phase"] == "Succeeded"
    counter.assert_runs_once_and_continuous()


def test_a_replica_that_cannot_renew_its_lease_stops_and_the_standby_finishes(
    lab: Lab, operator: OperatorProcess
) -> None:
    """The active replica is frozen (SIGSTOP) mid-transfer, which stands in for an API server it
    cannot reach: it renews nothing while the standby takes the expired Lease and drives on. Thawed,
    it must notice that its renew deadline passed and stop before its next step, and write nothing.
    (The next test cuts a running replica's API access instead.)"""
    standby = OperatorProcess(REPO / ".lab" / "logs" / "operator-e2e-standby-deadline.log", priority=1)
    standby.start()
    try:
        wait_for(lambda: 1 in lab.peering_priorities(), 60, "the standby to join the peering")
        counter, name = Counter(lab), unique("mig-deadline")
        lab.migration(name, counter.name, target="node2", pauses="Transferring=8")
        lab.wait_for_phase(name, "Transferring")
        assert operator.process is not None
        operator.process.send_signal(signal.SIGSTOP)
        try:
            wait_for(lambda: f"default/{name}: Transferring" in standby.log(), 90, "the standby to take over")
        finally:
            operator.process.send_signal(signal.SIGCONT)
        status = lab.wait_until(name, timeout=180)["status"]
        assert status["phase"] in RECOVERED, status
        assert f"default/{name} is not ours to drive any more" in operator.log()
        phases = [entry["phase"] for entry in status["phaseTransitions"]]
        assert len(phases) == len(set(phases)), f"two drivers wrote the status: {phases}"
        counter.assert_runs_once_and_continuous()
    finally:
        standby.stop()


def test_a_replica_cut_off_from_the_api_server_stops_acting_and_the_standby_finishes(
    lab: Lab, operator: OperatorProcess
) -> None:
    """The active replica runs in a network namespace of its own. Mid-transfer its packets to the API
    server are dropped while it still reaches every host: it keeps running but cannot renew the
    Migration's Lease, so it must stop acting on hosts before the Lease can be taken. The standby
    takes it over and finishes; once the API server is back, the cut replica writes nothing more."""
    operator.stop()
    network = lab.lab("operator-net", "up").stdout.strip()
    logs = REPO / ".lab" / "logs"
    # Each host call logged (the process never exits for it), and the hosts probed only as it starts,
    # so that every call it logs once the Migration exists is the Migration's.
    options = (
        *TEST_OPERATOR_OPTIONS,
        "--test-crash-after-host-calls",
        str(10**9),
        "--host-probe-seconds",
        "3600",
    )
    active = OperatorProcess(logs / "operator-e2e-cut.log", priority=100, options=options, network=network)
    standby = OperatorProcess(logs / "operator-e2e-standby-cut.log", priority=1)
    for replica in (active, standby):
        replica.log_path.unlink(missing_ok=True)
    try:
        # Replicas in their steady state: the active one serves (it has probed the hosts), the standby
        # has paused in its favour.
        active.start()
        wait_for(lambda: "Timer 'probe_host' succeeded" in active.log(), 60, "the active replica to serve")
        standby.start()
        wait_for(lambda: 1 in lab.peering_priorities(), 60, "the standby to join the peering")
        counter, name = Counter(lab), unique("mig-api-cut")
        lab.migration(name, counter.name, target="node2", pauses="Transferring=8")
        lab.wait_for_phase(name, "Transferring")
        lab.lab("operator-net", "api", "down")
        try:
            took_over = wait_for(
                lambda: logged_at(standby.log(), f"default/{name}: Transferring"),
                90,
                "the standby to take over",
            )
            assert active.alive, "the cut replica died instead of stopping"
        finally:
            lab.lab("operator-net", "api", "up")
        status = lab.wait_until(name, timeout=180)["status"]
        assert status["phase"] in RECOVERED, status
        assert f"default/{name} is not ours to drive any more" in active.log()
        late = [line for line in host_call_lines(active.log()) if line_time(line) >= took_over]
        assert not late, f"the cut replica acted on hosts after the standby took over: {late}"
        phases = [entry["phase"] for entry in status["phaseTransitions"]]
        assert len(phases) == len(set(phases)), f"two drivers wrote the status: {phases}"
        counter.assert_runs_once_and_continuous()
    finally:
        active.stop()
        standby.stop()
        lab.lab("operator-net", "down")
        operator.keep_running()


def line_time(line: str) -> float:
    """The time of an operator log line (its LOG_FORMAT begins with logging's asctime)."""
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def logged_at(log: str, text: str) -> float | None:
    """When the operator first logged a line that holds `text`, if it did."""
    return next((line_time(line) for line in log.splitlines() if text in line), None)


def host_call_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if HOST_CALL_LINE.search(line)]
