"""Several Migrations at once, deletion, and re-applying: who proceeds, who waits, what stays."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from tests.e2e.evacuations import busiest
from tests.e2e.lab import (
    TERMINAL_PHASES,
    Counter,
    Lab,
    OperatorProcess,
    migration_body,
    started,
    unique,
    wait_for,
)

LIMIT = 2  # the lab hosts' maxConcurrentMigrations


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


@dataclass
class Line:
    """Two Migrations node1 -> node2 holding both hosts' slots (paused at the start of Preparing),
    and more behind them, applied at once, queued in the order of their names."""

    holders: list[str]
    queued: list[str]
    counters: list[Counter]  # the holders' and the queued ones'

    @property
    def names(self) -> list[str]:
        return self.holders + self.queued


def line_up(lab: Lab, count: int, hold_seconds: int) -> Line:
    with ThreadPoolExecutor(4) as pool:
        counters = list(pool.map(lambda _: Counter(lab, "counter-line"), range(LIMIT + count)))
    prefix = unique("mig-line")
    line = Line(
        [f"{prefix}-holder{n}" for n in range(LIMIT)], [f"{prefix}-{n:02}" for n in range(count)], counters
    )
    for name, counter in zip(line.holders, counters, strict=False):
        lab.migration(name, counter.name, target="node2", pauses=f"Preparing={hold_seconds}")
    for name in line.holders:
        lab.wait_for_phase(name, "Preparing")
    lab.apply(
        *(
            migration_body(name, counter.name, target="node2")
            for name, counter in zip(line.queued, counters[LIMIT:], strict=True)
        )
    )
    wait_for(
        lambda: all("in line" in m["status"].get("message", "") for m in listed(lab, line.queued)),
        hold_seconds,
        "the Migrations to queue",
        0.5,
    )
    assert [m["status"]["phase"] for m in listed(lab, line.holders)] == ["Preparing"] * LIMIT, (
        "the holders went on before the line had queued"
    )
    return line


def listed(lab: Lab, names: list[str]) -> list[dict[str, Any]]:
    """The Migrations `names`, in that order, from one LIST (each with a status)."""
    items = json.loads(lab.kubectl("get", "migrations", "-o", "json").stdout)["items"]
    found = {item["metadata"]["name"]: {"status": {}, **item} for item in items}
    return [found[name] for name in names]


def all_ended(lab: Lab, names: list[str], timeout: float) -> list[dict[str, Any]]:
    def ended() -> list[dict[str, Any]] | None:
        found = listed(lab, names)
        return found if all(m["status"].get("phase") in TERMINAL_PHASES for m in found) else None

    found: list[dict[str, Any]] = wait_for(ended, timeout, "the Migrations to end", 1.0)
    return found


def test_twenty_queued_migrations_start_oldest_first_and_never_above_the_hosts_limit(
    lab: Lab, operator: OperatorProcess
) -> None:
    line = line_up(lab, 20, hold_seconds=12)

    ended = all_ended(lab, line.names, timeout=240)

    assert [m["status"]["phase"] for m in ended] == ["Succeeded"] * len(ended), [m["status"] for m in ended]
    # Slots freed together go to the first in line together, whichever asks first; but none
    # started ahead of one LIMIT places older: that one had a slot before it.
    starts = [started(m) for m in ended[LIMIT:]]
    overtaking = [n for n in range(len(starts) - LIMIT) if starts[n + LIMIT] < starts[n]]
    assert not overtaking, f"started before Migrations {LIMIT} places older: {overtaking}"
    assert (busiest(ended, "node1"), busiest(ended, "node2")) == (LIMIT, LIMIT)
    for counter in line.counters:
        assert counter.assert_runs_once_and_continuous() == "node2"


def test_a_migration_whose_hosts_have_a_slot_starts_at_once_while_older_ones_wait(
    lab: Lab, operator: OperatorProcess, three_hosts: None
) -> None:
    """node1 is allowed a third migration while two hold node2 and three more wait for it: a move
    node1 -> node3 fits, and starts ahead of them (backfill)."""
    line = line_up(lab, 3, hold_seconds=10)
    counter, name = Counter(lab), unique("mig-backfill")
    lab.patch_host("node1", {"maxConcurrentMigrations": LIMIT + 1})
    try:
        applied = time.time()
        lab.migration(name, counter.name, target="node3")
        lab.wait_for_phase(name, "Preparing", timeout=10)
        took = started(lab.get_migration(name)) - applied
        waiting = [m["status"]["phase"] for m in listed(lab, line.queued)]
        ended = all_ended(lab, [*line.names, name], timeout=180)
    finally:
        lab.patch_host("node1", {"maxConcurrentMigrations": LIMIT})
    assert took < 3, f"{name} started {took:.1f} s after it was applied"
    assert waiting == ["Pending"] * len(line.queued)
    assert [m["status"]["phase"] for m in ended] == ["Succeeded"] * len(ended)
    assert counter.assert_runs_once_and_continuous() == "node3"


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
