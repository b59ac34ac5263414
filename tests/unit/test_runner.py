"""Specification of the runner: it walks the phase table, times each step once, and handles every
kind of failure in one place (fail before the freeze, roll back after, pass waits to the caller)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import cast

import pytest

from ferry.hosts import host_calls
from ferry.hosts.ssh import SSHError
from ferry.migration import runner
from ferry.migration.admission import ActiveMigration
from ferry.migration.context import MigrationContext
from ferry.migration.errors import ClusterUnavailable, LostCharge, Problem, Wait
from ferry.migration.phases import PHASES, TRANSITIONS, Outcome, Phase
from ferry.migration.runner import run_migration, run_phase
from ferry.migration.state import IllegalTransition, MigrationState, now
from ferry.migration.steps import MigrationSteps
from tests.unit.fakes import (
    FakeCoordination,
    FakeHosts,
    FakeSink,
    container_spec,
    context,
    frozen_state,
    host_spec,
)

HAPPY_PATH = ["Preparing", "Checkpointing", "Transferring", "Restoring", "Verifying", "Succeeded"]


class ScriptedSteps:
    """Steps that record their calls and raise or return what a test sets for a phase."""

    def __init__(self, ctx: MigrationContext) -> None:
        self.ctx = ctx
        self.state = ctx.state
        self.calls: list[str] = []
        self.raises: dict[str, Exception] = {}
        self.returns: dict[str, Outcome] = {}
        self.cleaned_target = False

    def _step(self, name: str) -> Outcome | None:
        self.calls.append(name)
        if name in self.raises:
            raise self.raises[name]
        return self.returns.get(name)

    def admit(self) -> None:
        self._step("admit")
        self.ctx.advance(Phase.PREPARING)  # the one step that enters its next phase itself

    def prepare(self) -> Outcome | None:
        return self._step("prepare")

    def checkpoint(self) -> Outcome | None:
        return self._step("checkpoint")

    def transfer(self) -> Outcome | None:
        return self._step("transfer")

    def restore(self) -> Outcome | None:
        return self._step("restore")

    def verify(self) -> Outcome | None:
        return self._step("verify")

    def roll_back(self) -> Outcome | None:
        return self._step("roll_back")

    def made_on_target(self) -> bool:
        return self.state.target_container_id is not None

    def target_cleanup(self) -> None:
        self.cleaned_target = True


def scripted(state: MigrationState) -> tuple[ScriptedSteps, FakeSink]:
    hosts = FakeHosts(host_spec("node1"), host_spec("node2"))
    ctx, sink = context(container_spec(), state, hosts)
    return ScriptedSteps(ctx), sink


def run_until_it_ends(steps: ScriptedSteps) -> None:
    while not steps.state.phase.is_terminal:
        run_phase(steps.ctx, cast(MigrationSteps, steps))


def test_the_runner_walks_the_table_from_pending_to_succeeded() -> None:
    steps, sink = scripted(MigrationState())

    run_until_it_ends(steps)

    assert steps.calls == ["admit", "prepare", "checkpoint", "transfer", "restore", "verify"]
    assert sink.phases == HAPPY_PATH


def test_a_step_may_choose_an_ending_the_table_allows_it() -> None:
    steps, sink = scripted(MigrationState())
    steps.returns["prepare"] = Outcome("dry run passed", "DryRunPassed", ending=Phase.SUCCEEDED)

    run_until_it_ends(steps)

    assert sink.phases == ["Preparing", "Succeeded"]
    assert steps.state.reason == "DryRunPassed"


def test_a_step_cannot_choose_an_ending_the_table_does_not_allow() -> None:
    steps, _ = scripted(frozen_state(Phase.TRANSFERRING))
    steps.returns["transfer"] = Outcome(ending=Phase.SUCCEEDED)

    with pytest.raises(IllegalTransition):
        run_phase(steps.ctx, cast(MigrationSteps, steps))


def test_each_step_is_timed_by_the_runner_into_its_metric() -> None:
    steps, _ = scripted(MigrationState())

    run_until_it_ends(steps)

    metrics = steps.state.metrics
    timed = [metrics.prepare_ms, metrics.checkpoint_ms, metrics.transfer_ms, metrics.restore_ms]
    assert all(ms is not None and ms >= 0 for ms in [*timed, metrics.verify_ms])


def test_a_step_timed_before_a_restart_keeps_its_first_time() -> None:
    steps, _ = scripted(frozen_state(Phase.TRANSFERRING))
    steps.state.metrics.transfer_ms = 4321

    run_phase(steps.ctx, cast(MigrationSteps, steps))

    assert steps.state.metrics.transfer_ms == 4321


def test_downtime_runs_from_the_freeze_to_the_end_of_the_restore() -> None:
    steps, _ = scripted(frozen_state(Phase.RESTORING))

    run_phase(steps.ctx, cast(MigrationSteps, steps))

    assert steps.state.metrics.downtime_ms is not None
    assert steps.state.phase is Phase.VERIFYING


def test_a_host_error_before_the_freeze_fails_the_migration_and_cleans_the_target() -> None:
    steps, sink = scripted(MigrationState(phase=Phase.PREPARING, target_container_id="c-tgt"))
    steps.raises["prepare"] = SSHError("cannot reach node2")

    run_phase(steps.ctx, cast(MigrationSteps, steps))

    assert sink.phases == ["Failed"]
    assert (steps.state.reason, steps.state.message) == ("HostError", "cannot reach node2")
    assert steps.cleaned_target


@pytest.mark.parametrize("phase", [Phase.CHECKPOINTING, Phase.TRANSFERRING, Phase.RESTORING, Phase.VERIFYING])
def test_a_failure_after_the_freeze_rolls_back(phase: Phase) -> None:
    steps, sink = scripted(frozen_state(phase))
    steps.raises[PHASES[phase].step or ""] = Problem("RestoreFailed", "criu said no")

    run_phase(steps.ctx, cast(MigrationSteps, steps))

    assert sink.phases == ["RollingBack"]
    assert steps.state.reason == "RestoreFailed"


def test_a_failed_dump_that_left_the_workload_running_fails_without_a_rollback() -> None:
    steps, sink = scripted(frozen_state(Phase.CHECKPOINTING))
    steps.raises["checkpoint"] = Problem("CheckpointFailed", "criu dump failed", frozen=False)

    run_phase(steps.ctx, cast(MigrationSteps, steps))

    assert sink.phases == ["Failed"]


def test_an_unexpected_error_is_reported_rather_than_retried_forever() -> None:
    steps, sink = scripted(MigrationState(phase=Phase.PREPARING))
    steps.raises["prepare"] = KeyError("State")

    run_phase(steps.ctx, cast(MigrationSteps, steps))

    assert sink.phases == ["Failed"]
    assert steps.state.reason == "InternalError"
    assert "KeyError" in steps.state.message


def test_an_unexpected_error_after_the_freeze_rolls_back() -> None:
    steps, sink = scripted(frozen_state(Phase.RESTORING))
    steps.raises["restore"] = AttributeError("no such thing")

    run_phase(steps.ctx, cast(MigrationSteps, steps))

    assert sink.phases == ["RollingBack"]
    assert steps.state.reason == "InternalError"


@pytest.mark.parametrize(
    "passed", [Wait("queued", 1.0), ClusterUnavailable("the API server is away")], ids=["wait", "cluster"]
)
def test_waits_and_an_unreachable_api_server_pass_to_the_caller_without_a_status_write(
    passed: Exception,
) -> None:
    steps, sink = scripted(MigrationState(phase=Phase.PREPARING))
    steps.raises["prepare"] = passed

    with pytest.raises(type(passed)):
        run_phase(steps.ctx, cast(MigrationSteps, steps))

    assert sink.phases == []
    assert steps.state.phase is Phase.PREPARING


def test_a_migration_without_a_free_slot_is_queued_and_waits_instead_of_sleeping() -> None:
    busy = ActiveMigration(
        "team-b/other", "uid-2", Phase.TRANSFERRING, "node1", "node3", frozenset({"c-other"}), now(), False
    )
    coordination = FakeCoordination()
    coordination.active_migrations = lambda: [busy]  # type: ignore[method-assign]
    hosts = FakeHosts(replace(host_spec("node1"), max_concurrent_migrations=1), host_spec("node2"))
    hosts.hosts["node1"].engine.add("web", running=True)
    ctx, sink = context(container_spec(), MigrationState(), hosts, coordination=coordination)

    with pytest.raises(Wait) as waited:
        MigrationSteps.admit(cast(MigrationSteps, ScriptedSteps(ctx)))

    assert ctx.state.phase is Phase.PENDING
    assert (ctx.state.reason, sink.saved[-1]["message"]) == ("Queued", str(waited.value))
    assert "node1" in str(waited.value)


def test_every_phase_but_the_endings_names_a_step_and_a_next_phase() -> None:
    for phase, rule in PHASES.items():
        assert (rule.step is None) == phase.is_terminal
        assert (rule.then is None) == phase.is_terminal
        assert rule.step is None or callable(getattr(MigrationSteps, rule.step, None))


def test_a_failure_in_a_frozen_phase_leads_to_the_rollback_and_the_rollback_never_fails() -> None:
    for phase, rule in PHASES.items():
        if rule.frozen and phase is not Phase.ROLLING_BACK:
            assert rule.on_failure is Phase.ROLLING_BACK
    assert Phase.FAILED not in TRANSITIONS[Phase.ROLLING_BACK]


# -- what the freeze window holds, counted


class CallingSteps(ScriptedSteps):
    """Each step makes `calls[step]` host calls, half of them from a pool's threads."""

    def __init__(self, ctx: MigrationContext, calls: dict[str, int]) -> None:
        super().__init__(ctx)
        self.host_calls = calls

    def _step(self, name: str) -> Outcome | None:
        count = self.host_calls.get(name, 0)
        with host_calls.ContextExecutor(max_workers=2) as pool:
            list(pool.map(lambda _: host_calls.completed("node1", "ssh", ["true"]), range(count // 2)))
        for _ in range(count - count // 2):
            host_calls.completed("node2", "docker", ["POST", "/x"])
        return super()._step(name)


def test_host_calls_and_status_writes_are_counted_from_the_freeze_until_the_workload_runs_again() -> None:
    steps, sink = scripted(MigrationState())
    counting = CallingSteps(
        steps.ctx, {"prepare": 9, "checkpoint": 2, "transfer": 3, "restore": 1, "verify": 7}
    )

    run_until_it_ends(counting)

    metrics = counting.state.metrics
    assert metrics.freeze_host_calls == 2 + 3 + 1
    assert metrics.freeze_status_writes == 3  # entering Checkpointing, Transferring and Restoring
    assert sink.saved[-1]["metrics"]["freezeHostCalls"] == 6


def test_a_migration_that_never_froze_reports_no_freeze_counts() -> None:
    steps, _ = scripted(MigrationState())
    steps.returns["prepare"] = Outcome(ending=Phase.SUCCEEDED)  # a dry run

    run_until_it_ends(steps)

    assert steps.state.metrics.freeze_host_calls is None
    assert steps.state.metrics.freeze_status_writes is None


# -- a driver that may no longer act


class LapsingSteps(ScriptedSteps):
    """Its transfer makes three host calls; the driver's lease lapses right after the first."""

    def __init__(self, ctx: MigrationContext, coordination: FakeCoordination) -> None:
        super().__init__(ctx)
        self.coordination = coordination
        self.made: list[str] = []

    def transfer(self) -> Outcome | None:
        for call in ("stream 1", "stream 2", "stream 3"):
            host_calls.starting()
            self.made.append(call)
            self.coordination.in_charge_now = False
        return super().transfer()

    def release(self) -> None:
        pass


def test_a_driver_whose_lease_lapses_mid_step_stops_before_its_next_host_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    coordination = FakeCoordination()
    hosts = FakeHosts(host_spec("node1"), host_spec("node2"))
    ctx, sink = context(container_spec(), MigrationState(), hosts, coordination=coordination)
    steps = LapsingSteps(ctx, coordination)
    monkeypatch.setattr(runner, "migration_for", lambda _: steps)

    with pytest.raises(LostCharge):
        run_migration(ctx)

    assert steps.made == ["stream 1"]  # as if it died right after that call: the next driver resumes
    assert sink.phases[-1] == "Transferring"  # and it wrote nothing since


def test_time_spent_in_line_does_not_count_against_timeout_seconds() -> None:
    an_hour_ago = now() - timedelta(hours=1)  # seen then; queued behind others since
    state = MigrationState(start_time=an_hour_ago, transitions=[(Phase.PENDING, an_hour_ago)])
    steps, _ = scripted(state)

    run_until_it_ends(steps)

    assert state.phase is Phase.SUCCEEDED


def test_timeout_seconds_counts_from_the_slot_on_both_hosts() -> None:
    state = frozen_state(Phase.PREPARING, target_container_id=None, frozen_at=None)
    admitted = now() - timedelta(seconds=301)  # the spec's timeoutSeconds is 300
    state.transitions = [(Phase.PENDING, admitted - timedelta(hours=1)), (Phase.PREPARING, admitted)]
    steps, _ = scripted(state)

    run_phase(steps.ctx, cast(MigrationSteps, steps))

    assert (state.phase, state.reason) == (Phase.FAILED, "Timeout")
    assert "prepare" not in steps.calls
