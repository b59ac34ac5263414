"""The operator's Prometheus metrics on the real lab (`ferry run --metrics-port`): after one
migration that succeeds and one that fails, the results by phase and reason, the downtime
histogram, the step durations and the bytes moved have moved; a migration under way is in flight
while it runs and not after; every lab host is Ready."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.e2e.lab import Counter, Lab, OperatorProcess, Scrape, unique, wait_for

FREEZE_STEPS = ("checkpoint", "transfer", "restore")


@dataclass
class Scrapes:
    before: Scrape
    during: Scrape  # while the successful migration was held in Preparing
    after: Scrape


@pytest.fixture(scope="module")
def scrapes(lab: Lab, operator: OperatorProcess) -> Scrapes:
    """Scrapes before, during and after a counter moved node1 -> node2 and a migration of a container
    that does not exist."""
    before = operator.metrics()
    counter, moved, failed = (
        Counter(lab, "counter-metrics"),
        unique("mig-metrics"),
        unique("mig-metrics-fails"),
    )
    lab.migration(moved, counter.name, target="node2", pauses="Preparing=3")
    lab.wait_for_phase(moved, "Preparing")
    during = operator.metrics()
    assert lab.wait_until(moved)["status"]["phase"] == "Succeeded"
    lab.migration(failed, unique("no-such-container"), target="node2")
    assert lab.wait_until(failed)["status"]["phase"] == "Failed"
    after = wait_for(lambda: counted_both(before, operator.metrics()), 30, "both endings to be counted")
    return Scrapes(before, during, after)


def counted_both(before: Scrape, now: Scrape) -> Scrape | None:
    """`now`, once it counts one more migration ended in each way (they are counted after their
    last status write)."""
    return (
        now
        if added(before, now, "Succeeded", "Migrated") and added(before, now, "Failed", "ContainerNotFound")
        else None
    )


def added(before: Scrape, after: Scrape, phase: str, reason: str) -> float:
    name = "ferry_migrations_total"
    return after.value(name, phase=phase, reason=reason) - before.value(name, phase=phase, reason=reason)


def grew(scrapes: Scrapes, name: str, **labels: str) -> float:
    return scrapes.after.value(name, **labels) - scrapes.before.value(name, **labels)


def test_each_ending_is_counted_once_by_phase_and_reason(scrapes: Scrapes) -> None:
    assert added(scrapes.before, scrapes.after, "Succeeded", "Migrated") == 1
    assert added(scrapes.before, scrapes.after, "Failed", "ContainerNotFound") == 1


def test_the_downtime_of_the_move_is_observed_once_and_the_failure_has_none(scrapes: Scrapes) -> None:
    assert grew(scrapes, "ferry_migration_downtime_seconds_count") == 1
    assert 0 < grew(scrapes, "ferry_migration_downtime_seconds_sum") < 60


@pytest.mark.parametrize("step", ["prepare", "image", *FREEZE_STEPS, "verify"])
def test_each_step_of_the_move_is_timed(scrapes: Scrapes, step: str) -> None:
    assert grew(scrapes, "ferry_migration_step_seconds_count", step=step) == 1


def test_the_freeze_steps_take_no_longer_than_the_downtime(scrapes: Scrapes) -> None:
    freeze = sum(grew(scrapes, "ferry_migration_step_seconds_sum", step=step) for step in FREEZE_STEPS)

    assert 0 < freeze <= grew(scrapes, "ferry_migration_downtime_seconds_sum")


def test_the_checkpoint_and_the_writable_layer_are_counted_in_bytes(scrapes: Scrapes) -> None:
    assert grew(scrapes, "ferry_migration_bytes_total", kind="checkpoint") > 0
    assert grew(scrapes, "ferry_migration_bytes_total", kind="rootfs") > 0


def test_a_migration_is_in_flight_while_it_runs_and_not_after(scrapes: Scrapes) -> None:
    assert scrapes.during.value("ferry_migrations_running") == 1
    assert scrapes.after.value("ferry_migrations_running") == 0


def test_every_lab_host_is_ready(lab: Lab, scrapes: Scrapes) -> None:
    ready = {host: scrapes.after.value("ferry_host_ready", host=host) for host in lab.hosts}

    assert ready == dict.fromkeys(lab.hosts, 1)
