"""Several Migrations at once, deletion, and re-applying: who proceeds, who waits, what stays."""

from __future__ import annotations

import json
import time
from typing import Any

from tests.e2e.lab import Counter, Lab, OperatorProcess, unique, wait_for


def test_two_migrations_of_one_container_let_exactly_one_proceed(lab: Lab, operator: OperatorProcess) -> None:
    counter = Counter(lab)
    first, second = unique("mig-twin-a"), unique("mig-twin-b")
    lab.migration(first, counter.name, target="node2", pauses="Preparing=3")
    lab.migration(second, counter.name, target="node2", pauses="Preparing=3")
    statuses = [lab.wait_until(name)["status"] for name in (first, second)]
    assert sorted(status["phase"] for status in statuses) == ["Failed", "Succeeded"], statuses
    failed = next(status for status in statuses if status["phase"] == "Failed")
    assert "busy" in failed["message"]
    assert counter.assert_runs_once_and_continuous() == "node2"


def test_migrations_beyond_a_hosts_limit_queue_instead_of_failing(
    lab: Lab, operator: OperatorProcess
) -> None:
    lab.patch_host("node2", {"maxConcurrentMigrations": 1})
    try:
        counters = [Counter(lab) for _ in range(3)]
        names = [unique("mig-queued") for _ in counters]
        for counter, name in zip(counters, names, strict=True):
            lab.migration(name, counter.name, target="node2", pauses="Preparing=2")
        queued = wait_for(
            lambda: [
                n for n in names if "queued" in lab.get_migration(n).get("status", {}).get("message", "")
            ],
            60,
            "a Migration to be queued",
        )
        assert queued
        statuses = [lab.wait_until(name, timeout=240)["status"] for name in names]
    finally:
        lab.patch_host("node2", {"maxConcurrentMigrations": 2})
    assert [status["phase"] for status in statuses] == ["Succeeded"] * 3, statuses
    for counter in counters:
        assert counter.assert_runs_once_and_continuous() == "node2"


def test_deleting_before_the_freeze_cancels_and_leaves_the_source(
    lab: Lab, operator: OperatorProcess
) -> None:
    counter, name = Counter(lab), unique("mig-cancel")
    lab.migration(name, counter.name, target="node2", pauses="Preparing=5")
    lab.wait_for_phase(name, "Preparing")
    lab.kubectl("delete", "migration", name, "--wait=false")
    wait_for(lambda: lab.kubectl("get", "migration", name, check=False).returncode != 0, 120, f"{name} to go")
    assert counter.assert_runs_once_and_continuous() == "node1"
    assert counter.name not in lab.container_names("node2")


def test_deleting_after_the_freeze_finishes_the_migration_first(lab: Lab, operator: OperatorProcess) -> None:
    counter, name = Counter(lab), unique("mig-delete-late")
    lab.migration(name, counter.name, target="node2", pauses="Transferring=3")
    lab.wait_for_phase(name, "Transferring")
    lab.kubectl("delete", "migration", name, "--wait=false")
    wait_for(lambda: lab.kubectl("get", "migration", name, check=False).returncode != 0, 120, f"{name} to go")
    assert counter.assert_runs_once_and_continuous() == "node2"


def settled(lab: Lab, name: str) -> dict[str, Any]:
    """The Migration once its resourceVersion stays the same for two seconds."""
    current = lab.get_migration(name)
    for _ in range(15):
        time.sleep(2)
        latest = lab.get_migration(name)
        if latest["metadata"]["resourceVersion"] == current["metadata"]["resourceVersion"]:
            return latest
        current = latest
    raise AssertionError(f"Migration {name} keeps changing")


def test_reapplying_a_finished_migration_changes_nothing(lab: Lab, operator: OperatorProcess) -> None:
    counter, name = Counter(lab), unique("mig-reapply")
    lab.migration(name, counter.name, target="node2")
    assert lab.wait_until(name)["status"]["phase"] == "Succeeded"
    finished = settled(lab, name)  # kopf records the handled state just after the status says Succeeded

    lab.migration(name, counter.name, target="node2")

    time.sleep(3)  # time for an operator to (wrongly) react
    again = lab.get_migration(name)
    assert again["metadata"]["resourceVersion"] == finished["metadata"]["resourceVersion"]
    assert json.dumps(again["status"], sort_keys=True) == json.dumps(finished["status"], sort_keys=True)
    assert counter.assert_runs_once_and_continuous() == "node2"
