"""Status writes are fenced: each is conditional on the resourceVersion this driver last saw."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from typing import Any, cast

import pytest
from kubernetes.client import CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from ferry.cluster import Cluster, ClusterError, Conflict
from ferry.events import Events
from ferry.migration.errors import LostCharge
from ferry.migration.phases import Phase
from ferry.migration.state import MigrationState
from ferry.reconcile import ResourceStatus
from tests.unit.fakes import FakeEventPoster


class FakeStore:
    """One Migration, with the API server's optimistic concurrency and merge-patch of the status."""

    def __init__(self) -> None:
        self.version = 7
        self.resource: dict[str, Any] | None = {
            "metadata": {"namespace": "team-a", "name": "move-web", "uid": "uid-1", "resourceVersion": "7"},
            "status": {"phase": "Preparing"},
        }
        self.written_with: list[str] = []
        self.before_each_write: Callable[[], None] = lambda: None
        self.deleted = False

    def get_migration(self, namespace: str, name: str) -> dict[str, Any] | None:
        return None if self.deleted else copy.deepcopy(self.resource)

    def patch_migration_status(
        self, namespace: str, name: str, status: dict[str, Any], resource_version: str
    ) -> dict[str, Any]:
        assert self.resource is not None
        self.before_each_write()
        self.written_with.append(resource_version)
        if resource_version != self.resource["metadata"]["resourceVersion"]:
            raise Conflict(f"{name} changed since {resource_version}")
        merged = {**self.resource["status"], **status}
        self.resource["status"] = {
            key: value for key, value in merged.items() if value is not None
        }  # null: gone
        self._bump()
        return copy.deepcopy(self.resource)

    def annotate(self) -> None:
        """kopf (or anyone) changes the metadata only."""
        self._bump()

    def write_status(self, **status: Any) -> None:
        """Another driver (or a tenant) writes the status."""
        assert self.resource is not None
        self.resource["status"] = {**self.resource["status"], **status}
        self._bump()

    def _bump(self) -> None:
        assert self.resource is not None
        self.version += 1
        self.resource["metadata"]["resourceVersion"] = str(self.version)


def sink_for(store: FakeStore, *, held: bool = True) -> ResourceStatus:
    assert store.resource is not None
    return ResourceStatus(
        store, copy.deepcopy(store.resource), still_held=lambda: held, events=Events(FakeEventPoster(), "me")
    )


def state_in(phase: Phase) -> MigrationState:
    return MigrationState(phase=phase, workload="container/web", source_host="node1", target_host="node2")


def test_a_write_is_conditional_on_the_resource_version_last_read() -> None:
    store = FakeStore()

    sink_for(store).save(state_in(Phase.CHECKPOINTING), 1)

    assert store.written_with == ["7"]
    assert store.resource is not None and store.resource["status"]["phase"] == "Checkpointing"


def test_the_next_write_is_conditional_on_the_version_our_last_write_made() -> None:
    store = FakeStore()
    sink = sink_for(store)

    sink.save(state_in(Phase.CHECKPOINTING), 1)
    sink.save(state_in(Phase.TRANSFERRING), 1)

    assert store.written_with == ["7", "8"]


def test_a_change_of_metadata_only_is_written_over_with_the_new_version() -> None:
    store = FakeStore()
    sink = sink_for(store)
    store.annotate()

    sink.save(state_in(Phase.CHECKPOINTING), 1)

    assert store.written_with == ["7", "8"]
    assert store.resource is not None and store.resource["status"]["phase"] == "Checkpointing"


def test_a_status_written_by_another_driver_stops_a_driver_that_lost_its_lease() -> None:
    store = FakeStore()
    sink = sink_for(store, held=False)
    store.write_status(phase="Restoring")

    with pytest.raises(LostCharge):
        sink.save(state_in(Phase.CHECKPOINTING), 1)

    assert store.resource is not None and store.resource["status"]["phase"] == "Restoring"


def test_a_status_changed_by_someone_else_is_overwritten_while_we_hold_the_lease(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FakeStore()
    sink = sink_for(store, held=True)
    store.write_status(phase="Restoring")

    with caplog.at_level(logging.WARNING):
        sink.save(state_in(Phase.CHECKPOINTING), 1)

    assert store.resource is not None and store.resource["status"]["phase"] == "Checkpointing"
    assert "changed by someone else" in caplog.text


def test_the_lease_is_only_asked_about_when_the_status_changed() -> None:
    store = FakeStore()
    asked: list[str] = []

    def still_held() -> bool:
        asked.append("asked")
        return True

    assert store.resource is not None
    sink = ResourceStatus(
        store, copy.deepcopy(store.resource), still_held=still_held, events=Events(FakeEventPoster(), "me")
    )
    store.annotate()

    sink.save(state_in(Phase.CHECKPOINTING), 1)

    assert asked == []


def test_a_migration_deleted_since_our_last_write_stops_the_driver() -> None:
    store = FakeStore()
    sink = sink_for(store)
    store.annotate()
    store.deleted = True

    with pytest.raises(LostCharge):
        sink.save(state_in(Phase.CHECKPOINTING), 1)


def test_a_migration_that_changes_on_every_write_gives_up_after_a_few_conflicts() -> None:
    store = FakeStore()
    sink = sink_for(store)
    store.before_each_write = store.annotate

    with pytest.raises(ClusterError, match="kept changing"):
        sink.save(state_in(Phase.CHECKPOINTING), 1)


class FakeCustomObjectsApi:
    def __init__(self, error: ApiException | None = None) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.error = error

    def patch_namespaced_custom_object_status(self, *args: Any) -> dict[str, Any]:
        body: dict[str, Any] = args[-1]
        self.bodies.append(body)
        if self.error is not None:
            raise self.error
        return {"metadata": {"resourceVersion": "9"}, "status": body["status"]}


def test_the_cluster_sends_the_resource_version_with_the_status_patch() -> None:
    cluster, custom = Cluster(), FakeCustomObjectsApi()
    cluster.custom = cast(CustomObjectsApi, custom)

    written = cluster.patch_migration_status("team-a", "move-web", {"phase": "Preparing"}, "7")

    assert custom.bodies == [{"metadata": {"resourceVersion": "7"}, "status": {"phase": "Preparing"}}]
    assert written["metadata"]["resourceVersion"] == "9"


def test_the_cluster_turns_a_409_into_a_conflict() -> None:
    cluster = Cluster()
    cluster.custom = cast(CustomObjectsApi, FakeCustomObjectsApi(ApiException(status=409, reason="Conflict")))

    with pytest.raises(Conflict):
        cluster.patch_migration_status("team-a", "move-web", {"phase": "Preparing"}, "7")


def test_a_field_the_state_no_longer_has_is_removed_from_the_status() -> None:
    store = FakeStore()
    sink = sink_for(store)
    redirected = state_in(Phase.VERIFYING)
    redirected.redirect = "node1:80/tcp -> 10.0.0.2"
    sink.save(redirected, 1)

    redirected.redirect = None  # taken back by a rollback
    sink.save(redirected, 1)

    assert store.resource is not None and "redirect" not in store.resource["status"]


def test_each_write_that_went_through_is_told_to_whoever_asked() -> None:
    """The operator's MigrationLine learns what a run writes before kopf's index does."""
    store = FakeStore()
    told: list[dict[str, Any]] = []
    assert store.resource is not None
    sink = ResourceStatus(
        store,
        copy.deepcopy(store.resource),
        still_held=lambda: True,
        events=Events(FakeEventPoster(), "me"),
        on_written=told.append,
    )

    sink.save(state_in(Phase.PREPARING), 1)

    assert [resource["status"]["phase"] for resource in told] == ["Preparing"]
