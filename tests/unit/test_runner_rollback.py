"""A rollback never gives up into a terminal phase: it retries with backoff and says what it waits for."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, cast

import pytest

from ferry.hosts.ssh import SSHError
from ferry.migration import runner
from ferry.migration import state as state_module
from ferry.migration.context import MigrationContext
from ferry.migration.errors import LostCharge, Problem, Wait
from ferry.migration.phases import Outcome, Phase
from ferry.migration.runner import run_migration, run_phase
from ferry.migration.state import WAITING
from ferry.migration.steps import MigrationSteps
from tests.unit.fakes import FakeCoordination, FakeHosts, container_spec, context, frozen_state, host_spec


class ScriptedRollback:
    """A rollback step that fails with each of `failures` in turn, then ends RolledBack."""

    def __init__(self, ctx: MigrationContext, failures: list[Exception]) -> None:
        self.ctx = ctx
        self.failures = failures
        self.runs = 0

    def roll_back(self) -> Outcome:
        self.runs += 1
        if self.failures:
            raise self.failures.pop(0)
        return Outcome("back on node1")


class FakeClock:
    moment = state_module.now()


clock = FakeClock()


@pytest.fixture(autouse=True)
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The time the runner and the state read, moved on only by the waits."""
    clock.moment = state_module.now()
    for module in (state_module, runner):
        monkeypatch.setattr(module, "now", lambda: clock.moment)


def roll_back_until_done(
    ctx: MigrationContext, step: ScriptedRollback, sleep: Callable[[float], None]
) -> None:
    """Runs the rollback as kopf does: each `Wait` is let pass (on the fake clock), then it runs again."""
    while ctx.state.phase is Phase.ROLLING_BACK:
        try:
            run_phase(ctx, cast(MigrationSteps, step))
        except Wait as wait:
            sleep(wait.delay)
            clock.moment += timedelta(seconds=wait.delay)


def rolling_back(
    failures: list[Exception], coordination: FakeCoordination | None = None
) -> tuple[MigrationContext, ScriptedRollback, list[float], list[dict[str, Any]]]:
    hosts = FakeHosts(host_spec("node1"), host_spec("node2"))
    state = frozen_state(Phase.ROLLING_BACK, message="restore failed on node2")
    ctx, sink = context(container_spec(), state, hosts, coordination=coordination)
    return ctx, ScriptedRollback(ctx, failures), [], sink.saved


def unreachable(host: str) -> SSHError:
    return SSHError(f"cannot reach {host}: connection refused")


def test_a_rollback_retries_after_host_errors_until_it_ends_rolled_back() -> None:
    ctx, step, sleeps, _ = rolling_back([unreachable("node1"), unreachable("node1")])

    roll_back_until_done(ctx, step, sleep=sleeps.append)

    assert ctx.state.phase is Phase.ROLLED_BACK
    assert step.runs == 3


def test_a_rollback_never_ends_failed_however_often_it_fails() -> None:
    ctx, step, sleeps, saved = rolling_back([unreachable("node1")] * 100)

    roll_back_until_done(ctx, step, sleep=sleeps.append)

    assert ctx.state.phase is Phase.ROLLED_BACK
    assert all(status["phase"] != "Failed" for status in saved)


def test_a_problem_in_the_rollback_is_retried_too() -> None:
    ctx, step, sleeps, _ = rolling_back([Problem("RestoreFailed", "criu restore failed on node1")])

    roll_back_until_done(ctx, step, sleep=sleeps.append)

    assert ctx.state.phase is Phase.ROLLED_BACK


def test_the_wait_between_tries_doubles_from_three_seconds_up_to_a_minute() -> None:
    ctx, step, sleeps, _ = rolling_back([unreachable("node1")] * 8)

    roll_back_until_done(ctx, step, sleep=sleeps.append)

    assert sleeps == [3, 6, 12, 24, 48, 60, 60, 60]


def test_the_status_says_what_the_rollback_waits_for() -> None:
    ctx, step, sleeps, saved = rolling_back([unreachable("node1")])

    roll_back_until_done(ctx, step, sleep=sleeps.append)

    waiting = [c for c in saved[0]["conditions"] if c["type"] == WAITING]
    assert waiting[0]["message"] == "cannot reach node1: connection refused"
    assert saved[0]["message"] == "restore failed on node2"  # the cause of the rollback is kept


def test_the_status_is_written_only_when_what_it_waits_for_changes() -> None:
    failures: list[Exception] = [unreachable("node1"), unreachable("node1"), unreachable("node2")]
    ctx, step, sleeps, saved = rolling_back(failures)

    roll_back_until_done(ctx, step, sleep=sleeps.append)

    assert [status["phase"] for status in saved] == ["RollingBack", "RollingBack", "RolledBack"]


def test_the_waiting_condition_is_gone_once_the_rollback_ends() -> None:
    ctx, step, sleeps, saved = rolling_back([unreachable("node1")])

    roll_back_until_done(ctx, step, sleep=sleeps.append)

    assert WAITING not in [c["type"] for c in saved[-1]["conditions"]]


def test_a_rollback_stops_without_acting_once_the_lease_is_lost() -> None:
    coordination = FakeCoordination()
    ctx, step, _, _ = rolling_back([unreachable("node1")] * 5, coordination)

    def lose_the_lease(seconds: float) -> None:
        coordination.in_charge_now = False

    with pytest.raises(LostCharge):
        roll_back_until_done(ctx, step, sleep=lose_the_lease)

    assert step.runs == 1


def test_a_verify_failure_after_the_source_was_removed_ends_with_the_target_kept() -> None:
    """Resumed in Verifying with the source already removed, the target check fails: the rollback
    that follows must keep the running target, not remove it."""
    hosts = FakeHosts(host_spec("node1"), host_spec("node2"))
    hosts.hosts["node2"].engine.add_twin(running=True)  # node1 has no source container any more
    hosts.hosts["node2"].stack = "0000dead"  # the target check fails (a flaky read of its stack)
    ctx, sink = context(container_spec(), frozen_state(Phase.VERIFYING), hosts)

    run_migration(ctx)

    assert sink.phases == ["RollingBack", "Succeeded"]
    assert ctx.state.reason == "TargetKept"
    assert hosts.hosts["node2"].engine.running("c-tgt")
