"""The only running copy of a container is never destroyed: in Verifying and in a rollback."""

from __future__ import annotations

from typing import Any

import pytest

from ferry.api import Strategy
from ferry.hosts.docker_engine import DockerError
from ferry.migration.container import ContainerMigration
from ferry.migration.errors import Problem
from ferry.migration.phases import Phase
from ferry.migration.runner import run_phase
from ferry.migration.state import MigrationState
from tests.unit.fakes import FakeHost, FakeHosts, container_spec, context, frozen_state, host_spec

CHECKPOINT = "ferry-uid-1"


def migration(
    phase: Phase, *, source: str = "checkpointed", target: str = "running", **spec: Any
) -> tuple[ContainerMigration, FakeHost, FakeHost]:
    """A Live container migration in `phase`; the source container is "checkpointed" (stopped, with
    its checkpoint), "running", "stopped" (without checkpoint) or "gone"; the target "running",
    "created" or "gone"."""
    hosts = FakeHosts(host_spec("node1"), host_spec("node2"))
    node1, node2 = hosts.hosts["node1"], hosts.hosts["node2"]
    if source != "gone":
        checkpoints = (CHECKPOINT,) if source == "checkpointed" else ()
        node1.engine.add_source(running=source == "running", checkpoints=checkpoints)
    if target != "gone":
        node2.engine.add_twin(running=target == "running", checkpoints=(CHECKPOINT,))
    ctx, _ = context(container_spec(**spec), frozen_state(phase), hosts)
    return ContainerMigration(ctx), node1, node2


def state_of(steps: ContainerMigration) -> MigrationState:
    return steps.state


# -- Verifying


def test_verify_removes_the_source_after_everything_else_that_can_fail() -> None:
    steps, node1, _ = migration(Phase.VERIFYING, redirect=True)
    calls = node1.calls  # every host call, in order

    run_phase(steps.ctx, steps)

    mutations = [
        c for c in calls if c.split(":")[1] in {"forward_ports", "delete_checkpoint", "remove_container"}
    ]
    assert mutations == [
        "node1:forward_ports",
        "node2:delete_checkpoint:c-tgt",
        "node1:remove_container:c-src",
    ]
    assert state_of(steps).phase is Phase.SUCCEEDED


def test_a_failure_in_verify_before_the_source_is_removed_leaves_the_source_for_a_rollback() -> None:
    steps, node1, node2 = migration(Phase.VERIFYING)
    node2.engine.failing["delete_checkpoint"] = DockerError("deleting checkpoint on node2 failed")

    with pytest.raises(DockerError):
        steps.verify()

    assert "c-src" in node1.engine.containers


def test_verify_succeeds_and_says_so_when_the_source_cannot_be_removed() -> None:
    steps, node1, _ = migration(Phase.VERIFYING)
    node1.engine.failing["remove_container"] = DockerError("removing container c-src on node1 failed")

    run_phase(steps.ctx, steps)

    state = state_of(steps)
    assert state.phase is Phase.SUCCEEDED
    assert "not done: removing the source container c-src on node1" in state.message


def test_verify_resumed_after_the_source_was_removed_reports_cleanup_failures_instead_of_rolling_back() -> (
    None
):
    steps, _, node2 = migration(Phase.VERIFYING, source="gone")
    node2.engine.failing["delete_checkpoint"] = DockerError("deleting checkpoint on node2 failed")

    run_phase(steps.ctx, steps)

    state = state_of(steps)
    assert state.phase is Phase.SUCCEEDED
    assert f"not done: removing checkpoint {CHECKPOINT} on node2" in state.message
    assert node2.engine.running("c-tgt")


# -- RollingBack


def test_a_rollback_with_a_restorable_source_removes_the_target_and_restores_the_source() -> None:
    steps, node1, node2 = migration(Phase.ROLLING_BACK)

    run_phase(steps.ctx, steps)

    assert state_of(steps).phase is Phase.ROLLED_BACK
    assert node1.engine.running("c-src")
    assert "c-tgt" not in node2.engine.containers


def test_a_rollback_keeps_the_running_target_when_the_source_container_is_gone() -> None:
    steps, _, node2 = migration(Phase.ROLLING_BACK, source="gone")

    run_phase(steps.ctx, steps)

    state = state_of(steps)
    assert (state.phase, state.reason) == (Phase.SUCCEEDED, "TargetKept")
    assert "stays on node2" in state.message and "is gone from node1" in state.message
    assert node2.engine.running("c-tgt")


def test_a_rollback_keeps_the_running_target_when_the_checkpoint_is_gone_from_the_source() -> None:
    steps, node1, node2 = migration(Phase.ROLLING_BACK, source="stopped")

    run_phase(steps.ctx, steps)

    assert state_of(steps).reason == "TargetKept"
    assert node2.engine.running("c-tgt")
    assert not node1.engine.running("c-src")


def test_a_rollback_waits_rather_than_ending_when_the_workload_runs_nowhere() -> None:
    steps, _, node2 = migration(Phase.ROLLING_BACK, source="gone", target="created")

    with pytest.raises(Problem, match="runs nowhere"):
        steps.roll_back()

    assert state_of(steps).phase is Phase.ROLLING_BACK
    assert "c-tgt" in node2.engine.containers


def test_a_cold_rollback_needs_no_checkpoint_to_restore_the_source() -> None:
    steps, node1, node2 = migration(Phase.ROLLING_BACK, source="stopped", strategy=Strategy.COLD)
    state_of(steps).fingerprint_stack = None  # a cold move keeps no memory to recognise

    run_phase(steps.ctx, steps)

    assert state_of(steps).phase is Phase.ROLLED_BACK
    assert node1.engine.running("c-src") and "c-tgt" not in node2.engine.containers


def test_a_rollback_ends_even_when_the_source_checkpoint_cannot_be_deleted() -> None:
    steps, node1, _ = migration(Phase.ROLLING_BACK)
    node1.engine.failing["delete_checkpoint"] = DockerError("deleting checkpoint on node1 failed")

    run_phase(steps.ctx, steps)

    state = state_of(steps)
    assert state.phase is Phase.ROLLED_BACK
    assert f"not done: removing checkpoint {CHECKPOINT} on node1" in state.message


def test_a_rollback_resumed_after_the_source_was_restarted_finishes() -> None:
    steps, node1, _ = migration(Phase.ROLLING_BACK, source="running", target="gone")

    run_phase(steps.ctx, steps)

    assert state_of(steps).phase is Phase.ROLLED_BACK
    assert node1.engine.running("c-src")
