"""Prometheus metrics of the migrations this operator ran."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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


def record_finished(state: MigrationState) -> None:
    MIGRATIONS_FINISHED.labels(phase=state.phase.value, reason=state.reason).inc()
    metrics = state.metrics
    if metrics.downtime_ms is not None:
        DOWNTIME.observe(metrics.downtime_ms / 1000)
    for step, value in (
        ("prepare", metrics.prepare_ms),
        ("image", metrics.image_transfer_ms),
        ("checkpoint", metrics.checkpoint_ms),
        ("transfer", metrics.transfer_ms),
        ("restore", metrics.restore_ms),
        ("verify", metrics.verify_ms),
    ):
        if value is not None:
            STEP_DURATION.labels(step=step).observe(value / 1000)
    for kind, amount in (
        ("checkpoint", metrics.checkpoint_bytes),
        ("rootfs", metrics.rootfs_bytes),
        ("image", metrics.image_bytes),
    ):
        if amount:
            BYTES_MOVED.labels(kind=kind).inc(amount)
