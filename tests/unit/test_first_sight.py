"""What the operator writes when it takes up a Migration: Pending first, and its own version."""

from __future__ import annotations

import copy
from typing import Any, cast

from ferry import __version__
from ferry.cluster import Cluster
from ferry.reconcile import DockerHostCatalog, HostPool, Operator, reconcile_migration
from tests.unit.fakes import FakeEventPoster
from tests.unit.test_lease import FakeCoordinationApi


class FakeCluster:
    """One Migration and the DockerHosts node1 and node2, with the status writes kept in order."""

    def __init__(self, spec: dict[str, Any], status: dict[str, Any] | None = None) -> None:
        self.coordination = FakeCoordinationApi()
        self.resource: dict[str, Any] = {
            "metadata": {
                "namespace": "team-a",
                "name": "move-web",
                "uid": "uid-1",
                "resourceVersion": "1",
                "creationTimestamp": "2024-05-01T12:00:00Z",
            },
            "spec": spec,
        }
        if status is not None:
            self.resource["status"] = status
        self.written: list[dict[str, Any]] = []
        self.events = FakeEventPoster()

    def docker_hosts(self) -> dict[str, dict[str, Any]]:
        return {"node1": {}, "node2": {}}

    def get_migration(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.resource)

    def patch_migration_status(
        self, namespace: str, name: str, status: dict[str, Any], resource_version: str
    ) -> dict[str, Any]:
        self.written.append(copy.deepcopy(status))
        self.resource["status"] = {**self.resource.get("status", {}), **status}
        self.resource["metadata"]["resourceVersion"] = str(int(resource_version) + 1)
        return copy.deepcopy(self.resource)

    def create_event(self, namespace: str, body: dict[str, Any]) -> None:
        self.events.create_event(namespace, body)


# A target no DockerHost answers to: the run ends Failed without reaching for any host.
TO_NOWHERE = {"workload": {"container": "web"}, "targetHost": "nowhere"}


def reconcile(cluster: FakeCluster) -> None:
    catalog = DockerHostCatalog({name: [{}] for name in cluster.docker_hosts()})
    operator = Operator(cast(Cluster, cluster), HostPool(cast(Cluster, cluster), catalog), "me")
    reconcile_migration(operator, namespace="team-a", name="move-web", uid="uid-1")
    operator.events.flush()


def test_the_first_status_write_of_a_new_migration_is_pending_with_a_message() -> None:
    cluster = FakeCluster(TO_NOWHERE)

    reconcile(cluster)

    first = cluster.written[0]
    assert first["phase"] == "Pending"
    assert first["message"].startswith("seen by the operator")
    assert [entry["phase"] for entry in first["phaseTransitions"]] == ["Pending"]
    assert [status["phase"] for status in cluster.written] == ["Pending", "Failed"]


def test_a_new_migration_with_an_invalid_spec_is_pending_before_it_fails() -> None:
    cluster = FakeCluster({"workload": {}, "targetHost": "node2"})

    reconcile(cluster)

    assert [status["phase"] for status in cluster.written] == ["Pending", "Failed"]
    assert cluster.written[-1]["conditions"][0]["reason"] == "InvalidSpec"


def test_a_migration_resumed_in_pending_keeps_its_start_and_writes_no_second_pending() -> None:
    status = {"phase": "Pending", "message": "queued", "startTime": "2024-05-01T12:00:00.000Z"}
    cluster = FakeCluster(TO_NOWHERE, status)

    reconcile(cluster)

    assert [status["phase"] for status in cluster.written] == ["Failed"]
    assert cluster.written[0]["startTime"] == "2024-05-01T12:00:00.000Z"


def test_every_status_write_carries_the_operator_version() -> None:
    cluster = FakeCluster(TO_NOWHERE)

    reconcile(cluster)

    assert [status["operatorVersion"] for status in cluster.written] == [__version__, __version__]


def test_the_operator_that_resumes_a_migration_writes_its_own_version() -> None:
    cluster = FakeCluster(TO_NOWHERE, {"phase": "Pending", "operatorVersion": "0.0.1"})

    reconcile(cluster)

    assert cluster.resource["status"]["operatorVersion"] == __version__
