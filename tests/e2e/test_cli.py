"""The `ferry` command line against the real lab: `migrate --wait` and its exit codes, `get`,
`describe`, `hosts`, and the Events each phase leaves on the Migration."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass

import pytest

from tests.e2e.lab import Counter, Lab, OperatorProcess, ferry, unique

PHASES = ("Pending", "Preparing", "Checkpointing", "Transferring", "Restoring", "Verifying", "Succeeded")
# An Event's reason is the status reason: the end of a successful move says why it ended.
EVENT_REASONS = (*PHASES[:-1], "Migrated")


@dataclass
class Moved:
    counter: Counter
    name: str
    done: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def moved(lab: Lab, operator: OperatorProcess) -> Moved:
    """A counter moved node1 -> node2 with `ferry migrate --wait`."""
    counter, name = Counter(lab, "counter-cli"), unique("mig-cli")
    done = ferry("migrate", counter.name, "--to", "node2", "--name", name, "--wait", "--timeout", "240")
    return Moved(counter, name, done)


def test_migrate_wait_exits_0_and_the_counter_goes_on_on_node2(moved: Moved) -> None:
    assert moved.done.returncode == 0, moved.done.stdout + moved.done.stderr
    assert moved.counter.assert_runs_once_and_continuous() == "node2"


def test_migrate_wait_ends_with_the_downtime_and_its_parts(moved: Moved) -> None:
    last = moved.done.stdout.strip().splitlines()[-1]

    assert last.startswith("downtime ")
    assert all(part in last for part in ("checkpoint", "transfer", "restore"))


def test_migrate_wait_of_a_missing_container_exits_2(lab: Lab, operator: OperatorProcess) -> None:
    name = unique("mig-cli-missing")

    done = ferry(
        "migrate", "missing-container", "--to", "node2", "--name", name, "--wait", "--timeout", "120"
    )

    assert done.returncode == 2, done.stdout + done.stderr
    assert lab.get_migration(name)["status"]["phase"] == "Failed"


def test_get_json_lists_the_migration(moved: Moved) -> None:
    listed = ferry("get", "-o", "json")

    assert listed.returncode == 0, listed.stderr
    names = [item["metadata"]["name"] for item in json.loads(listed.stdout)["items"]]
    assert moved.name in names


def test_get_shows_the_migration_succeeded_with_its_downtime(moved: Moved) -> None:
    row = ferry("get", moved.name).stdout.splitlines()[1].split()

    assert row[0] == moved.name
    assert row[4] == "Succeeded"
    assert row[5].endswith("s")


def test_describe_shows_every_phase_it_went_through(moved: Moved) -> None:
    described = ferry("describe", moved.name)

    assert described.returncode == 0, described.stderr
    timeline = described.stdout.split("Timeline:\n")[1].split("Conditions:")[0]
    assert [line.split()[0] for line in timeline.splitlines()[1:]] == list(PHASES)


def test_describe_of_a_migration_that_does_not_exist_exits_1() -> None:
    described = ferry("describe", unique("no-such-migration"))

    assert described.returncode == 1
    assert "not found" in described.stderr


def test_hosts_lists_every_lab_host(lab: Lab, operator: OperatorProcess) -> None:
    listed = ferry("hosts")

    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line.split()[1] for line in listed.stdout.splitlines()[1:]}
    assert {host: rows.get(host) for host in lab.hosts} == {host: lab.address(host) for host in lab.hosts}


def test_every_phase_is_an_event_on_the_migration(lab: Lab, moved: Moved) -> None:
    found = lab.kubectl(
        "get",
        "events",
        "-n",
        "default",
        "--field-selector",
        f"involvedObject.name={moved.name}",
        "-o",
        "json",
    )

    ours = [
        event for event in json.loads(found.stdout)["items"] if event.get("reportingComponent") == "ferry"
    ]
    assert [event["reason"] for event in sorted(ours, key=lambda e: e["metadata"]["name"])] == list(
        EVENT_REASONS
    )
    assert {event["type"] for event in ours} == {"Normal"}
