"""A queued Migration whose turn has not come waits again with no API call, judged from the
operator's index of Migrations; the decision to start is still made on the cluster."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from ferry.cluster import Cluster
from ferry.migration.admission import QUEUED
from ferry.migration.phases import Phase
from ferry.migration.state import MigrationState
from ferry.reconcile import HostPool, MigrationLine, Operator, TryAgain, active_migration, reconcile_migration
from tests.unit.fakes import FakeHosts, host_spec

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def resource(
    name: str, phase: Phase = Phase.PENDING, *, second: int = 0, reason: str = QUEUED, **meta: str
) -> dict[str, Any]:
    """Migration default/`name` (its uid too) node1 -> node2, created `second` seconds after T0."""
    state = MigrationState(phase=phase, source_host="node1", target_host="node2", reason=reason)
    created = (T0 + timedelta(seconds=second)).isoformat().replace("+00:00", "Z")
    metadata = {"namespace": "default", "name": name, "uid": name, "creationTimestamp": created, **meta}
    return {"metadata": metadata, "status": state.to_status(1)}


def running(count: int) -> list[dict[str, Any]]:
    return [resource(f"run{n}", Phase.TRANSFERRING, reason="") for n in range(count)]


class NoApiServer:
    """Any API call fails the test."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"an API call: {name}")


class GoneMigration:
    """An API server on which the Migration is gone: reconcile asks once, and stops."""

    def __init__(self) -> None:
        self.asked = 0

    def get_migration(self, namespace: str, name: str) -> None:
        self.asked += 1


def indexed(*seen: dict[str, Any]) -> MigrationLine:
    """The line, as kopf's index saw the Migrations `seen`."""
    return MigrationLine({None: [active_migration(item) for item in seen]})


def reconcile(cluster: object, seen: list[dict[str, Any]] | MigrationLine, uid: str) -> None:
    line = seen if isinstance(seen, MigrationLine) else indexed(*seen)
    hosts = FakeHosts(host_spec("node1"), host_spec("node2"))
    operator = Operator(cast(Cluster, cluster), cast(HostPool, hosts), "me", line=line)
    reconcile_migration(operator, namespace="default", name=uid, uid=uid)


def test_a_queued_migration_whose_turn_has_not_come_waits_with_no_api_call() -> None:
    with pytest.raises(TryAgain) as waiting:
        reconcile(NoApiServer(), [*running(2), resource("me")], "me")

    assert str(waiting.value) == "queued: node1 runs 2 of 2 migrations; node2 runs 2 of 2 migrations " + (
        "(maxConcurrentMigrations); 1st in line"
    )
    assert waiting.value.delay == 1.0


def test_the_further_back_in_line_the_longer_it_waits() -> None:
    ahead = [resource(f"m{n:02}", second=n) for n in range(29)]

    with pytest.raises(TryAgain) as waiting:
        reconcile(NoApiServer(), [*running(2), *ahead, resource("me", second=30)], "me")

    assert "30th in line" in str(waiting.value)
    assert waiting.value.delay == 10.0


def test_a_queued_migration_whose_turn_has_come_asks_the_cluster() -> None:
    cluster = GoneMigration()

    reconcile(cluster, [*running(1), resource("me")], "me")

    assert cluster.asked == 1


def test_a_migration_the_index_has_not_seen_queued_asks_the_cluster() -> None:
    cluster = GoneMigration()

    reconcile(cluster, running(2), "me")

    assert cluster.asked == 1


def test_a_queued_migration_being_deleted_is_not_held_in_line() -> None:
    cluster = GoneMigration()
    deleting = resource("me", deletionTimestamp="2024-05-01T12:01:00Z")

    reconcile(cluster, [*running(2), deleting], "me")

    assert cluster.asked == 1


def test_a_migration_is_queued_when_its_status_says_pending_for_the_reason_queued() -> None:
    assert active_migration(resource("me")).queued
    assert not active_migration(resource("just-seen", reason="")).queued
    assert not active_migration(resource("moving", Phase.PREPARING, reason="")).queued


def test_a_migration_under_way_here_counts_as_its_run_last_wrote_it_not_as_the_index_saw_it() -> None:
    """kopf indexes a Migration's events only between the runs of its handler: the two under way
    still look Pending to the index, but their runs wrote Preparing."""
    line = indexed(resource("run0", reason=""), resource("run1", reason=""), resource("me"))
    for run in running(2):
        line.written(run)

    with pytest.raises(TryAgain):
        reconcile(NoApiServer(), line, "me")


def test_once_its_run_ends_the_index_speaks_for_a_migration_again() -> None:
    line = indexed(*running(2), resource("me"))
    line.written(resource("run0", Phase.SUCCEEDED, reason=""))
    line.run_ended("run0")

    with pytest.raises(TryAgain):
        reconcile(NoApiServer(), line, "me")
