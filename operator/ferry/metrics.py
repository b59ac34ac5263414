"""Prometheus metrics of the migrations this operator ran."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ferry.migration.state import MigrationState

SECONDS_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60, 300)

MIGRATIONS_FINISHED = Counter(
    "ferry_migrations_total", "Migrations that ended, by final phase and reason", ["phase", "reason"]
)
MIGRATIONS_RUNNING = Gauge("ferry_migrations_running", "Migrations this operator is driving now")
DOWNTIME = Histogram(
    "ferry_migration_downtime_seconds",
    "From the freeze to the workload running again",
    buckets=SECONDS_BUCKETS,
)
STEP_DURATION = Histogram(
    "ferry_migration_step_seconds",
    "Time spent in each step of a migration",
    ["step"],
    buckets=SECONDS_BUCKETS,
)
BYTES_MOVED = Counter("ferry_migration_bytes_total", "Bytes moved between hosts, by kind", ["kind"])


# The fields of Metrics that are not a step's duration: the freeze window, the whole run, and
# post-copy's pull of the memory after the restore (within Verifying's step).
NOT_STEPS = ("downtime_ms", "total_ms", "post_copy_ms")


def record_finished(state: MigrationState) -> None:
    """Observes what the migration's status.metrics measured: each `<step>_ms` is the duration of a
    step and each `<kind>_bytes` bytes moved, labelled with the field's first word (`image_transfer_ms`
    is the step `image`), so that a field added to Metrics is exported without a change here."""
    MIGRATIONS_FINISHED.labels(phase=state.phase.value, reason=state.reason).inc()
    if state.metrics.downtime_ms is not None:
        DOWNTIME.observe(state.metrics.downtime_ms / 1000)
    for name, value in state.metrics:
        label = name.split("_")[0]
        if name.endswith("_ms") and name not in NOT_STEPS and value is not None:
            STEP_DURATION.labels(step=label).observe(value / 1000)
        elif name.endswith("_bytes") and value:
            BYTES_MOVED.labels(kind=label).inc(value)


class HostReadiness(Collector):
    """ferry_host_ready: 1 for each DockerHost whose last probe found it Ready, 0 for one that is not
    (a host never probed is left out). Read at each scrape from what the operator's watch holds, so
    that a deleted host leaves the metric."""

    def __init__(self, readiness: Callable[[], Mapping[str, bool]]) -> None:
        self._readiness = readiness

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            "ferry_host_ready",
            "Whether the DockerHost's last probe found it Ready (1) or not (0)",
            labels=["host"],
        )
        for host, ready in sorted(self._readiness().items()):
            gauge.add_metric([host], 1.0 if ready else 0.0)
        yield gauge


def export_host_readiness(readiness: Callable[[], Mapping[str, bool]]) -> None:
    REGISTRY.register(HostReadiness(readiness))
