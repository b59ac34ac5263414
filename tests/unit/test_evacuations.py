"""An Evacuation's tick and its deletion (ferry.evacuations), over fakes of the cluster and the hosts."""

from __future__ import annotations

import copy
from typing import Any, cast

from ferry.cluster import Cluster
from ferry.evacuations import EVACUATION_LABEL, cancel_evacuation, reconcile_evacuation
from ferry.hosts.errors import HostError
from ferry.reconcile import HostPool, Operator
from ferry.settings import Settings
from tests.unit.fakes import FakeEventPoster, FakeHosts, host_spec

UID = "evac-uid"


class FakeCluster(FakeEventPoster):
    """Migrations kept by (namespace, name); a name taken refuses a create, as the API server does."""

    def __init__(self) -> None:
        super().__init__()
        self.migrations: dict[tuple[str, str], dict[str, Any]] = {}
        self.deleted: list[str] = []

    def list_migrations(self) -> list[dict[str, Any]]:
        return [copy.deepcopy(m) for m in self.migrations.values()]

    def create_migration(self, namespace: str, body: dict[str, Any]) -> bool:
        key = (namespace, body["metadata"]["name"])
        if key in self.migrations:
            return False
        created = copy.deepcopy(body)  # with what the API server adds
        created["metadata"].update(
            uid=f"uid-{len(self.migrations)}", creationTimestamp="2026-01-02T03:04:05Z"
        )
        self.migrations[key] = created
        return True

    def delete_migration(self, namespace: str, name: str) -> None:
        self.deleted.append(f"{namespace}/{name}")

    def finish(self, phase: str = "Succeeded", **status: str) -> None:
        for migration in self.migrations.values():
            migration["status"] = {"phase": phase, **status}


def lab(*containers: str) -> tuple[Operator, FakeCluster, FakeHosts]:
    cluster = FakeCluster()
    hosts = FakeHosts(*(host_spec(name) for name in ("node1", "node2", "node3")))
    hosts.readiness = {"node1": True, "node2": True, "node3": True}
    for name in containers:
        hosts.hosts["node1"].engine.add(name, running=True)
    operator = Operator(cast(Cluster, cluster), cast(HostPool, hosts), "test", Settings())
    return operator, cluster, hosts


def tick(operator: Operator, status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any] | None:
    return reconcile_evacuation(operator, "drain", UID, {"sourceHost": "node1", **spec}, status or {}, {})


def test_each_container_gets_an_owned_migration_on_a_target() -> None:
    operator, cluster, _ = lab("web", "db")

    status = tick(operator)

    assert status is not None
    assert sorted(name for _, name in cluster.migrations) == sorted(
        r["migration"] for r in status["containers"]
    )
    for migration in cluster.migrations.values():
        assert migration["metadata"]["labels"][EVACUATION_LABEL] == "drain"
        assert migration["metadata"]["ownerReferences"][0]["uid"] == UID
        assert migration["spec"]["sourceHost"] == "node1"
        assert migration["spec"]["targetHost"] in ("node2", "node3")
    assert {m["spec"]["targetHost"] for m in cluster.migrations.values()} == {"node2", "node3"}
    assert status["counts"] == {
        "total": 2,
        "pending": 2,
        "running": 0,
        "succeeded": 0,
        "failed": 0,
        "rolledBack": 0,
        "skipped": 0,
    }


def test_a_second_tick_creates_no_second_migration_for_a_container() -> None:
    operator, cluster, _ = lab("web")
    first = tick(operator)

    tick(operator, first)

    assert len(cluster.migrations) == 1


def test_it_ends_when_its_migrations_end_and_then_does_nothing() -> None:
    operator, cluster, hosts = lab("web")
    first = tick(operator)
    cluster.finish()
    del hosts.hosts["node1"].engine.containers["web"]  # moved

    ended = tick(operator, first)

    assert ended is not None and ended["phase"] == "Succeeded"
    assert ended["wallSeconds"] >= 0
    operator.events.flush()
    assert "Succeeded" in cluster.reasons
    assert tick(operator, ended) is None


def test_a_spec_naming_an_unknown_host_fails_and_touches_nothing() -> None:
    operator, cluster, hosts = lab("web")

    status = tick(operator, targetHosts=["node9"])

    assert status is not None and status["phase"] == "Failed"
    assert "node9" in status["message"]
    assert cluster.migrations == {} and hosts.connected == []


def test_an_unreachable_source_host_is_waited_for() -> None:
    operator, cluster, hosts = lab("web")

    def unreachable() -> list[dict[str, Any]]:
        raise HostError("no route to node1")

    hosts.hosts["node1"].engine.running_containers = unreachable  # type: ignore[method-assign]

    status = tick(operator)

    assert status is not None and status["phase"] == "Running"
    assert status["message"].startswith("waiting:")
    assert cluster.migrations == {}


def test_deleting_it_deletes_its_own_migrations_only() -> None:
    operator, cluster, _ = lab("web")
    tick(operator)
    cluster.create_migration("default", {"metadata": {"name": "someone-else", "labels": {}}, "spec": {}})

    cancel_evacuation(operator, "drain", UID)

    assert len(cluster.deleted) == 1 and "someone-else" not in cluster.deleted[0]
