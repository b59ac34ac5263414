"""Authorization is decided on every run from the spec and the DockerHosts, never from the status."""

from __future__ import annotations

from typing import Any, cast

import pytest

from ferry.cluster import Cluster
from ferry.migration.phases import Phase
from ferry.migration.runner import authorization_problem, run_migration
from ferry.migration.state import MigrationState
from ferry.reconcile import HostPool, Operator, release_redirect
from tests.unit.fakes import FakeHosts, container_spec, context, frozen_state, host_spec

# node1 and node2 let team-a in; vault is another team's host.
HOSTS = (host_spec("node1"), host_spec("node2"), host_spec("vault", allowed=("team-b",)))


def problem_for(state: MigrationState, namespace: str = "team-a", **spec: Any) -> tuple[str, str] | None:
    problem = authorization_problem(namespace, container_spec(**spec), state, FakeHosts(*HOSTS))
    return None if problem is None else (problem.reason, problem.message)


def test_hosts_that_allow_the_namespace_let_the_migration_run() -> None:
    assert problem_for(frozen_state(Phase.TRANSFERRING)) is None


def test_a_new_migration_between_allowed_hosts_may_run() -> None:
    assert problem_for(MigrationState()) is None


def test_a_target_host_that_does_not_allow_the_namespace_is_refused() -> None:
    found = problem_for(MigrationState(), target_host="vault")

    assert found is not None
    assert found[0] == "NamespaceNotAllowed"
    assert "DockerHost 'vault' does not allow Migrations from namespace 'team-a'" in found[1]


def test_a_spec_source_host_that_does_not_allow_the_namespace_is_refused() -> None:
    found = problem_for(MigrationState(), source_host="vault")

    assert found is not None and found[0] == "NamespaceNotAllowed"


def test_an_unknown_host_is_refused() -> None:
    found = problem_for(MigrationState(), target_host="nowhere")

    assert found == (
        "UnknownHost",
        "spec.targetHost names DockerHost 'nowhere', which does not exist; "
        "the DockerHosts are: node1, node2, vault",
    )


def test_a_status_source_host_patched_to_a_host_the_namespace_may_not_use_is_refused() -> None:
    state = frozen_state(Phase.RESTORING, source_host="vault")

    found = problem_for(state, source_host=None)  # the spec leaves the source to a search

    assert found is not None and found[0] == "NamespaceNotAllowed" and "'vault'" in found[1]


def test_a_status_source_host_found_by_search_is_accepted_when_the_spec_names_none() -> None:
    assert problem_for(frozen_state(Phase.RESTORING, source_host="node1"), source_host=None) is None


def test_a_status_target_host_other_than_the_spec_is_tampering() -> None:
    found = problem_for(frozen_state(Phase.RESTORING, target_host="node1"), source_host=None)

    assert found == ("StatusTampered", "status.targetHost 'node1' is not spec.targetHost 'node2'")


def test_a_status_source_host_other_than_the_spec_is_tampering() -> None:
    spec_hosts = (host_spec("node1"), host_spec("node2"), host_spec("node3"))
    state = frozen_state(Phase.RESTORING, source_host="node3")

    problem = authorization_problem("team-a", container_spec(), state, FakeHosts(*spec_hosts))

    assert problem is not None and problem.reason == "StatusTampered"


def test_a_queued_migrations_pending_status_with_the_source_it_found_is_no_tampering() -> None:
    queued = MigrationState(
        phase=Phase.PENDING, source_host="node1", target_host="node2", source_container_id="c1"
    )

    assert problem_for(queued) is None


def test_a_phase_past_pending_without_its_hosts_in_the_status_is_tampering() -> None:
    found = problem_for(MigrationState(phase=Phase.RESTORING))

    assert found is not None and found[0] == "StatusTampered"


@pytest.mark.parametrize("phase", [Phase.PENDING, Phase.RESTORING, Phase.ROLLING_BACK])
def test_a_tenant_who_patched_the_status_ends_failed_without_any_host_touched(phase: Phase) -> None:
    hosts = FakeHosts(*HOSTS)
    state = frozen_state(phase, source_host="vault")
    if phase is Phase.PENDING:  # a Pending status naming a twin is refused as tampered first
        state.target_container_id = None
    ctx, sink = context(container_spec(source_host=None), state, hosts)

    run_migration(ctx)

    assert state.phase is Phase.FAILED
    assert state.reason == "NamespaceNotAllowed"
    assert f"stopped in {phase} without touching any host" in state.message
    assert sink.phases == ["Failed"]
    assert hosts.connected == []


def test_a_pending_status_that_names_a_target_container_is_tampering() -> None:
    hosts = FakeHosts(*HOSTS)
    ctx, sink = context(container_spec(), frozen_state(Phase.PENDING), hosts)

    run_migration(ctx)

    assert sink.phases == ["Failed"]
    assert sink.saved[-1]["conditions"][0]["reason"] == "StatusTampered"
    assert "status.phase is Pending but the status names a target container" in ctx.state.message
    assert hosts.connected == []


def test_a_tenant_who_patched_the_phase_to_restoring_ends_failed_without_any_host_touched() -> None:
    hosts = FakeHosts(*HOSTS)
    ctx, sink = context(container_spec(), MigrationState(phase=Phase.RESTORING), hosts)

    run_migration(ctx)

    assert sink.phases == ["Failed"]
    assert sink.saved[-1]["conditions"][0]["reason"] == "StatusTampered"
    assert hosts.connected == []


def test_a_migration_refused_in_pending_says_what_it_would_have_moved() -> None:
    ctx, sink = context(container_spec(target_host="vault"), MigrationState(), FakeHosts(*HOSTS))

    run_migration(ctx)

    assert sink.saved[-1]["workload"] == "container/web"
    assert "startTime" in sink.saved[-1]


class FakeCluster:
    def __init__(self, resource: dict[str, Any]) -> None:
        self.resource = resource

    def get_migration(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.resource


def redirected(source_host: str, spec_source: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"workload": {"container": "web"}, "targetHost": "node2"}
    if spec_source is not None:
        spec["sourceHost"] = spec_source
    status = frozen_state(Phase.SUCCEEDED, source_host=source_host, redirect="node1:80/tcp").to_status()
    return {"metadata": {"namespace": "team-a", "name": "move-web"}, "spec": spec, "status": status}


def release(resource: dict[str, Any]) -> FakeHosts:
    hosts = FakeHosts(*HOSTS)
    operator = Operator(cast(Cluster, FakeCluster(resource)), cast(HostPool, hosts), "me")
    release_redirect(operator, namespace="team-a", name="move-web", uid="uid-1")
    return hosts


def test_deleting_a_migration_removes_its_forwarding_from_its_source_host() -> None:
    assert release(redirected("node1", spec_source="node1")).calls == ["node1:remove_forwards"]


def test_deleting_a_migration_whose_status_names_a_forbidden_source_touches_no_host() -> None:
    assert release(redirected("vault", spec_source=None)).connected == []
