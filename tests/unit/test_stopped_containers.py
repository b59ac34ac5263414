"""A stopped container moves with strategy: Cold and stays stopped; Live refuses it, pointing at Cold."""

from __future__ import annotations

from typing import Any

import pytest

from ferry.api import Strategy
from ferry.migration.container import ContainerMigration
from ferry.migration.phases import Phase
from ferry.migration.runner import run_migration, run_phase
from ferry.migration.state import MigrationState
from tests.unit.fakes import FakeHost, FakeHosts, FakeSink, container_spec, context, frozen_state, host_spec


def hosts_with_web(status: str) -> FakeHosts:
    """node1 has the container `web` in `status` (running, exited, created, paused)."""
    hosts = FakeHosts(host_spec("node1"), host_spec("node2"))
    web = hosts.hosts["node1"].engine.add("web", running=status in ("running", "paused"))
    web["State"]["Status"] = status
    hosts.hosts["node1"].engine.add_image()
    return hosts


def migrate(hosts: FakeHosts, **spec: Any) -> tuple[MigrationState, FakeSink]:
    state = MigrationState()
    ctx, sink = context(container_spec(**spec), state, hosts)
    run_migration(ctx)
    return state, sink


def moved_stopped(phase: Phase, *, source: str, target: str) -> tuple[ContainerMigration, FakeHost, FakeHost]:
    """A Cold move of a stopped container in `phase`; either container "stopped" or "gone"."""
    hosts = FakeHosts(host_spec("node1"), host_spec("node2"))
    node1, node2 = hosts.hosts["node1"], hosts.hosts["node2"]
    if source != "gone":
        node1.engine.add_source(running=False)
    if target != "gone":
        node2.engine.add_twin(running=False)
    state = frozen_state(
        phase, source_was_running=False, fingerprint_pid=None, fingerprint_stack=None, restore_requested=False
    )
    ctx, _ = context(container_spec(strategy=Strategy.COLD), state, hosts)
    return ContainerMigration(ctx), node1, node2


def test_live_refuses_a_stopped_container_pointing_at_cold() -> None:
    state, _ = migrate(hosts_with_web("exited"))

    assert (state.phase, state.reason) == (Phase.FAILED, "ContainerNotRunning")
    assert state.message == (
        "container 'web' on node1 is exited, not running; "
        "start it, or use strategy: Cold to move it as it is, stopped"
    )


@pytest.mark.parametrize("status", ["exited", "created"])
def test_cold_accepts_a_stopped_container_and_records_that_it_was_stopped(status: str) -> None:
    state, sink = migrate(hosts_with_web(status), strategy=Strategy.COLD, dry_run=True)

    assert (state.phase, state.reason) == (Phase.SUCCEEDED, "DryRunPassed")
    assert sink.saved[-1]["sourceWasRunning"] is False


def test_a_paused_container_is_refused_even_cold() -> None:
    state, _ = migrate(hosts_with_web("paused"), strategy=Strategy.COLD)

    assert state.reason == "ContainerNotRunning"
    assert state.message.endswith(
        "only a running container, or with strategy: Cold a stopped one, can be moved"
    )


def test_the_twin_of_a_stopped_container_is_not_started() -> None:
    steps, _, node2 = moved_stopped(Phase.RESTORING, source="stopped", target="stopped")

    run_phase(steps.ctx, steps)

    assert steps.state.phase is Phase.VERIFYING
    assert not node2.engine.running("c-tgt")
    assert "node2:start:c-tgt" not in node2.calls


def test_verify_accepts_a_stopped_twin_and_says_it_stays_stopped() -> None:
    steps, node1, node2 = moved_stopped(Phase.VERIFYING, source="stopped", target="stopped")

    run_phase(steps.ctx, steps)

    assert steps.state.phase is Phase.SUCCEEDED
    assert steps.state.message == "container/web is on node2, stopped as it was on node1"
    assert "c-src" not in node1.engine.containers and "c-tgt" in node2.engine.containers


def test_a_rollback_leaves_a_stopped_source_stopped() -> None:
    steps, node1, node2 = moved_stopped(Phase.ROLLING_BACK, source="stopped", target="stopped")

    run_phase(steps.ctx, steps)

    assert steps.state.phase is Phase.ROLLED_BACK
    assert not node1.engine.running("c-src") and "c-tgt" not in node2.engine.containers


def test_a_rollback_without_the_source_keeps_the_stopped_twin() -> None:
    steps, _, node2 = moved_stopped(Phase.ROLLING_BACK, source="gone", target="stopped")

    run_phase(steps.ctx, steps)

    assert (steps.state.phase, steps.state.reason) == (Phase.SUCCEEDED, "TargetKept")
    assert "c-tgt" in node2.engine.containers
