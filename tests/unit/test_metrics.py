"""The Prometheus metrics a finished migration adds to (ferry.metrics), read from its status.metrics."""

from __future__ import annotations

from prometheus_client import REGISTRY

from ferry.metrics import HostReadiness, record_finished
from ferry.migration.phases import Phase
from ferry.migration.state import Metrics, MigrationState


def samples() -> dict[tuple[str, str], float]:
    """How many step durations were observed, and how many bytes were counted, by label."""
    found = {}
    for metric in REGISTRY.collect():
        for sample in metric.samples:
            if sample.name == "ferry_migration_step_seconds_count":
                found[("step", sample.labels["step"])] = sample.value
            elif sample.name == "ferry_migration_bytes_total":
                found[("kind", sample.labels["kind"])] = sample.value
    return found


def added_by(state: MigrationState) -> dict[tuple[str, str], float]:
    before = samples()
    record_finished(state)
    return {key: value - before.get(key, 0) for key, value in samples().items() if value != before.get(key)}


def test_each_step_and_each_kind_of_bytes_is_labelled_by_the_first_word_of_its_field() -> None:
    metrics = Metrics(**{name: 1000 for name in Metrics.model_fields})

    added = added_by(MigrationState(phase=Phase.SUCCEEDED, metrics=metrics))

    steps = ["prepare", "image", "checkpoint", "transfer", "restore", "verify"]
    kinds = ["checkpoint", "rootfs", "volume", "image"]
    assert added == {**{("step", step): 1 for step in steps}, **{("kind", kind): 1000 for kind in kinds}}


def test_a_step_that_took_no_time_is_observed_but_no_bytes_are_not_counted() -> None:
    metrics = Metrics(prepare_ms=0, checkpoint_bytes=0, downtime_ms=5, total_ms=9)

    added = added_by(MigrationState(phase=Phase.FAILED, metrics=metrics))

    assert added == {("step", "prepare"): 1}


def test_host_readiness_is_a_gauge_of_each_probed_host_read_at_each_scrape() -> None:
    readiness = {"node1": True, "node2": False}
    collector = HostReadiness(lambda: readiness)

    [family] = collector.collect()
    readiness.pop("node1")  # deleted: gone from the next scrape
    [later] = collector.collect()

    assert family.name == "ferry_host_ready"
    assert [(s.labels["host"], s.value) for s in family.samples] == [("node1", 1.0), ("node2", 0.0)]
    assert [s.labels["host"] for s in later.samples] == ["node2"]
