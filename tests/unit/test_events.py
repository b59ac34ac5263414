"""Events: one per phase a Migration enters (written where its status is written), one when a
DockerHost's readiness changes; a failed post never breaks the work."""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from kubernetes.client import CoreV1Api
from kubernetes.client.exceptions import ApiException

from ferry.cluster import Cluster
from ferry.events import Events
from ferry.hosts.criu import CriuCheck
from ferry.hosts.ssh import CommandResult, SSHError
from ferry.migration.phases import Phase
from ferry.migration.state import MigrationState
from ferry.reconcile import HostPool, Operator, ResourceStatus, probe_and_report
from tests.unit.fakes import FakeEventPoster
from tests.unit.test_fenced_status import FakeStore
from tests.unit.test_first_sight import TO_NOWHERE, FakeCluster, reconcile

RBAC = Path(__file__).resolve().parents[2] / "manifests" / "rbac.yaml"


def posted_after(*states: MigrationState, poster: FakeEventPoster | None = None) -> list[dict[str, Any]]:
    """The Events posted while the status of team-a/move-web, now Preparing, is written in each state."""
    poster = poster or FakeEventPoster()
    store, events = FakeStore(), Events(poster, "me")
    assert store.resource is not None
    writer = ResourceStatus(store, copy.deepcopy(store.resource), still_held=lambda: True, events=events)
    for state in states:
        writer.save(state, 1)
    events.flush()
    return poster.posted


def entered(phase: Phase, message: str = "", reason: str = "") -> MigrationState:
    return MigrationState(
        phase=phase, message=message, reason=reason or phase.value, workload="container/web"
    )


def test_a_status_write_that_changes_the_phase_posts_an_event_about_the_migration() -> None:
    [event] = posted_after(entered(Phase.CHECKPOINTING, "CRIU dumps it"))

    assert event["involvedObject"] == {
        "apiVersion": "ferry.dev/v1alpha1",
        "kind": "Migration",
        "name": "move-web",
        "namespace": "team-a",
        "uid": "uid-1",
    }
    assert event["metadata"]["namespace"] == "team-a"
    assert (event["type"], event["reason"], event["message"]) == ("Normal", "Checkpointing", "CRIU dumps it")
    assert event["reportingComponent"] == "ferry"


def test_a_status_write_in_the_same_phase_posts_no_event() -> None:
    assert posted_after(entered(Phase.PREPARING, "copying the image")) == []


def test_a_failure_is_a_warning_event_with_its_reason_and_the_phase_in_the_message() -> None:
    [event] = posted_after(entered(Phase.FAILED, "no container web on node1", "ContainerNotFound"))

    assert (event["type"], event["reason"]) == ("Warning", "ContainerNotFound")
    assert event["message"] == "Failed: no container web on node1"


def test_a_cancellation_is_a_warning_event_named_cancelled() -> None:
    posted = posted_after(entered(Phase.FAILED, "deleted before the freeze", "Cancelled"))

    assert [(e["type"], e["reason"]) for e in posted] == [("Warning", "Cancelled")]


def test_a_rollback_posts_a_warning_event_for_rolling_back_and_for_rolled_back() -> None:
    posted = posted_after(
        entered(Phase.ROLLING_BACK, "restore failed", "HostError"),
        entered(Phase.ROLLED_BACK, "the source runs"),
    )

    assert [(e["type"], e["reason"]) for e in posted] == [("Warning", "HostError"), ("Warning", "RolledBack")]


def test_events_are_posted_in_the_order_of_the_phases() -> None:
    phases = (Phase.CHECKPOINTING, Phase.TRANSFERRING, Phase.RESTORING, Phase.VERIFYING, Phase.SUCCEEDED)

    assert [e["reason"] for e in posted_after(*map(entered, phases))] == [p.value for p in phases]


def test_a_failed_event_post_is_logged_and_the_status_writes_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    poster = FakeEventPoster()
    poster.failing = ApiException(status=403, reason="Forbidden")

    with caplog.at_level(logging.WARNING):
        posted_after(entered(Phase.CHECKPOINTING), entered(Phase.TRANSFERRING), poster=poster)

    assert "could not post the Checkpointing Event about Migration move-web" in caplog.text
    assert "could not post the Transferring Event" in caplog.text


def test_a_new_migration_that_fails_posts_a_pending_then_a_failed_event() -> None:
    cluster = FakeCluster(TO_NOWHERE)

    reconcile(cluster)

    assert [event["type"] for event in cluster.events.posted] == ["Normal", "Warning"]
    assert cluster.events.reasons[0] == "Pending"


class FakeCoreApi:
    def __init__(self) -> None:
        self.created: list[tuple[str, dict[str, Any]]] = []

    def create_namespaced_event(self, namespace: str, body: dict[str, Any]) -> None:
        self.created.append((namespace, body))


def test_the_cluster_creates_the_event_in_the_namespace_given() -> None:
    cluster, core = Cluster(), FakeCoreApi()
    cluster.core = cast(CoreV1Api, core)

    cluster.create_event("team-a", {"reason": "Pending"})

    assert core.created == [("team-a", {"reason": "Pending"})]


class HealthyEngine:
    def version(self) -> dict[str, str]:
        return {"Version": "25.0.3"}

    def info(self) -> dict[str, bool]:
        return {"ExperimentalBuild": True}


class HealthyCriu:
    def version(self) -> str:
        return "4.2"

    def check(self) -> CriuCheck:
        return CriuCheck(0, "Looks good.")


class HealthySession:
    def run(self, argv: Sequence[str], *, timeout: float = 120.0) -> CommandResult:
        assert list(argv) == ["uname", "-r"]
        return CommandResult(0, b"6.1.0\n", b"")


class HealthyHost:
    engine = HealthyEngine()
    criu = HealthyCriu()
    ssh = HealthySession()
    runc = None


class OnePool:
    """A HostPool whose one host answers, or whose every connection fails when `host` is None."""

    def __init__(self, host: HealthyHost | None) -> None:
        self.host = host

    def connect(self, name: str) -> HealthyHost:
        if self.host is None:
            raise SSHError(f"cannot reach {name}: connection refused")
        return self.host


def probe(host: HealthyHost | None, previous: dict[str, Any]) -> FakeEventPoster:
    poster = FakeEventPoster()
    operator = Operator(cast(Cluster, poster), cast(HostPool, OnePool(host)), "me")
    probe_and_report(operator, "node1", "uid-h", previous)
    operator.events.flush()
    return poster


READY = {"conditions": [{"type": "Ready", "status": "True", "reason": "Reachable"}]}
UNREACHABLE = {"conditions": [{"type": "Ready", "status": "False", "reason": "Unreachable"}]}


def test_a_host_that_becomes_unreachable_gets_a_warning_event_in_the_default_namespace() -> None:
    [event] = probe(None, READY).posted

    assert (event["type"], event["reason"]) == ("Warning", "Unreachable")
    assert event["message"].startswith("Ready=False: cannot reach node1")
    assert event["metadata"]["namespace"] == "default"
    assert event["involvedObject"] == {
        "apiVersion": "ferry.dev/v1alpha1",
        "kind": "DockerHost",
        "name": "node1",
        "uid": "uid-h",
    }


def test_a_host_that_is_still_unreachable_gets_no_new_event() -> None:
    assert probe(None, UNREACHABLE).posted == []


def test_a_host_that_becomes_ready_again_gets_a_normal_event() -> None:
    assert [(e["type"], e["reason"]) for e in probe(HealthyHost(), UNREACHABLE).posted] == [
        ("Normal", "Reachable")
    ]


def test_the_first_probe_of_a_host_reports_its_readiness() -> None:
    assert probe(HealthyHost(), {}).reasons == ["Reachable"]


def test_the_operator_may_create_events_in_both_event_api_groups() -> None:
    role = next(doc for doc in yaml.safe_load_all(RBAC.read_text()) if doc["kind"] == "ClusterRole")
    groups = {
        group
        for rule in role["rules"]
        if "events" in rule["resources"] and "create" in rule["verbs"]
        for group in rule["apiGroups"]
    }

    assert groups >= {"", "events.k8s.io"}
