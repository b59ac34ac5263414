"""Draining a host: one Evacuation moves every selected container off node1, onto node2 and node3,
a few at a time, each resuming where it stopped."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.evacuations import (
    busiest,
    delete_evacuation,
    evacuate,
    its_migrations,
    wait_until_ended,
)
from tests.e2e.lab import COUNTER, Counter, Lab, OperatorProcess, ferry, unique, wait_for

FROZEN = ("Checkpointing", "Transferring", "Restoring", "Verifying")


@pytest.fixture
def name(lab: Lab, operator: OperatorProcess, three_hosts: None) -> Iterator[str]:
    """The Evacuation's name (and its containers' label value); it is deleted after the test."""
    chosen = unique("drain")
    yield chosen
    delete_evacuation(lab, chosen)
    wait_for(lambda: not its_migrations(lab, chosen), 120, f"the Migrations of {chosen} to go")


def counters(lab: Lab, label: str, count: int) -> list[Counter]:
    return [Counter(lab, "evac", docker_args=("--label", f"drain={label}")) for _ in range(count)]


def test_ten_containers_drain_onto_two_hosts_within_the_limits_each_resuming_where_it_stopped(
    lab: Lab, name: str
) -> None:
    moving = counters(lab, name, 10)

    evacuate(
        lab, name, selector={"matchLabels": {"drain": name}}, targetHosts=["node2", "node3"], maxConcurrent=4
    )
    status = wait_until_ended(lab, name, timeout=360)

    assert status["phase"] == "Succeeded", status
    assert status["counts"] == {
        "total": 10,
        "pending": 0,
        "running": 0,
        "succeeded": 10,
        "failed": 0,
        "rolledBack": 0,
        "skipped": 0,
    }
    went = {record["name"]: record["target"] for record in status["containers"]}
    assert {counter.name: counter.assert_runs_once_and_continuous() for counter in moving} == went
    assert set(went.values()) == {"node2", "node3"}
    migrations = its_migrations(lab, name)
    assert len(migrations) == 10
    assert busiest(migrations, "node1") <= 2  # node1 allows 2 at a time, and every one starts there
    assert max(busiest(migrations, "node2"), busiest(migrations, "node3")) <= 2
    assert status["wallSeconds"] > 0


def test_a_container_started_while_the_drain_runs_is_moved_too(lab: Lab, name: str) -> None:
    first = counters(lab, name, 1)[0]
    evacuate(
        lab, name, selector={"matchLabels": {"drain": name}}, targetHosts=["node2"], pauses="Transferring=6"
    )
    wait_for(lambda: its_migrations(lab, name), 60, "the first Migration")

    late = counters(lab, name, 1)[0]
    status = wait_until_ended(lab, name, timeout=240)

    assert status["phase"] == "Succeeded", status
    assert status["counts"]["total"] == 2 and status["counts"]["succeeded"] == 2, status["counts"]
    assert {record["name"] for record in status["containers"]} == {first.name, late.name}
    assert first.assert_runs_once_and_continuous() == "node2"
    assert late.assert_runs_once_and_continuous() == "node2"


def test_ferry_drain_waits_for_the_end_and_kubectl_reads_it_as_a_drain(lab: Lab, name: str) -> None:
    moving = counters(lab, name, 1)[0]

    drained = ferry("drain", "node1", "--selector", f"drain={name}", "--name", name, "--wait")
    table = lab.kubectl("get", "evac", name).stdout.splitlines()
    about = ("get", "events", "-n", "default", "--field-selector", f"involvedObject.name={name}")
    reasons = lab.kubectl(*about, "-o", "jsonpath={.items[*].reason}").stdout.split()

    assert drained.returncode == 0, drained.stderr
    where = moving.assert_runs_once_and_continuous()
    assert drained.stdout.splitlines()[-2:] == [
        "1 of 1 moved",
        f"  {moving.name}: Succeeded on {where} (Live)",
    ]
    assert table[0].split() == ["NAME", "HOST", "TOTAL", "DONE", "FAILED", "PHASE", "AGE"]
    assert table[1].split()[1:6] == ["node1", "1", "1", "0", "Succeeded"]
    assert {"Started", "MigrationCreated", "Moved", "Succeeded"} <= set(reasons)


@pytest.mark.parametrize("on_live_failure", ["Skip", "Cold"])
def test_a_container_with_a_tty_follows_on_live_failure(lab: Lab, name: str, on_live_failure: str) -> None:
    plain = Counter(lab, "evac", docker_args=("--label", f"drain={name}"))
    terminal = unique("evac-tty")
    lab.run_container("node1", terminal, COUNTER, "-t", "--label", f"drain={name}")

    evacuate(lab, name, selector={"matchLabels": {"drain": name}}, onLiveFailure=on_live_failure)
    status = wait_until_ended(lab, name)

    assert status["phase"] == "Succeeded", status
    assert plain.assert_runs_once_and_continuous() in ("node2", "node3")
    record = next(r for r in status["containers"] if r["name"] == terminal)
    where = [host for host in ("node1", "node2", "node3") if lab.running(host, terminal)]
    if on_live_failure == "Skip":
        assert (record["outcome"], where) == ("Skipped", ["node1"])
        assert "TTY" in record["message"]
        assert status["counts"]["skipped"] == 1
    else:
        assert (record["outcome"], record["strategy"], where) == ("Succeeded", "Cold", [record["target"]])
        assert status["counts"]["succeeded"] == 2


def test_deleting_the_evacuation_midway_cancels_what_had_not_frozen_and_finishes_what_had(
    lab: Lab, name: str
) -> None:
    moving = counters(lab, name, 6)
    # Each Migration waits before its checkpoint and before its restore: a window on each side of the freeze.
    evacuate(
        lab,
        name,
        selector={"matchLabels": {"drain": name}},
        maxConcurrent=2,
        pauses="Checkpointing=3,Restoring=4",
    )
    frozen = wait_for(
        lambda: [m for m in its_migrations(lab, name) if m.get("status", {}).get("phase") in FROZEN],
        120,
        "one of its Migrations to freeze",
    )

    delete_evacuation(lab, name)
    wait_for(lambda: not its_migrations(lab, name), 120, "its Migrations to go")

    where = {counter.name: counter.assert_runs_once_and_continuous() for counter in moving}
    for migration in frozen:
        assert where[migration["spec"]["workload"]["container"]] == migration["spec"]["targetHost"]
    assert list(where.values()).count("node1") >= 3, where  # at most 2 at a time, and it stopped early


def test_an_evacuation_onto_its_own_source_is_refused_by_the_api_server(lab: Lab) -> None:
    body = (
        "apiVersion: ferry.dev/v1alpha1\nkind: Evacuation\nmetadata: {name: loop}\n"
        "spec: {sourceHost: node1, targetHosts: [node2, node1]}\n"
    )

    refused = lab.kubectl("apply", "--dry-run=server", "-f", "-", input=body, check=False)

    assert refused.returncode != 0
    assert "targetHosts must not name the sourceHost" in refused.stderr
