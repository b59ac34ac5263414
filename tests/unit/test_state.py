"""Specification of a Migration's phase machine and its status round trip (ferry.migration.state)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ferry.migration import state as state_module
from ferry.migration.phases import Phase
from ferry.migration.state import (
    IllegalTransition,
    Metrics,
    MigrationState,
    format_duration,
)

P = Phase

# The phase machine as the design describes it, written out independently of TRANSITIONS.
LEGAL: frozenset[tuple[Phase, Phase]] = frozenset(
    {
        (P.PENDING, P.PREPARING),
        (P.PENDING, P.FAILED),
        (P.PREPARING, P.CHECKPOINTING),
        (P.PREPARING, P.FAILED),
        (P.PREPARING, P.SUCCEEDED),  # a dry run ends after its preflight
        (P.CHECKPOINTING, P.TRANSFERRING),
        (P.CHECKPOINTING, P.ROLLING_BACK),
        (P.CHECKPOINTING, P.FAILED),  # CRIU resumes the tasks when a dump fails
        (P.TRANSFERRING, P.RESTORING),
        (P.TRANSFERRING, P.ROLLING_BACK),
        (P.RESTORING, P.VERIFYING),
        (P.RESTORING, P.ROLLING_BACK),
        (P.VERIFYING, P.SUCCEEDED),
        (P.VERIFYING, P.ROLLING_BACK),
        (P.ROLLING_BACK, P.ROLLED_BACK),
        (P.ROLLING_BACK, P.SUCCEEDED),  # the source cannot come back; the running target is kept
    }
)
ILLEGAL = sorted(set(itertools.product(Phase, Phase)) - LEGAL)
TERMINAL_PHASES = [P.SUCCEEDED, P.FAILED, P.ROLLED_BACK]

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[datetime], None]:
    """Sets the time that MigrationState.enter reads."""

    def set_time(moment: datetime) -> None:
        monkeypatch.setattr(state_module, "now", lambda: moment)

    set_time(T0)
    return set_time


# -- the phase machine


def test_new_migration_is_pending_with_no_history() -> None:
    state = MigrationState()

    assert state.phase is Phase.PENDING
    assert state.transitions == []
    assert state.frozen_at is None
    assert state.completion_time is None


@pytest.mark.parametrize(("before", "after"), sorted(LEGAL))
def test_legal_transition_moves_to_the_new_phase_and_records_it(
    before: Phase, after: Phase, clock: Callable[[datetime], None]
) -> None:
    state = MigrationState(phase=before)

    state.enter(after)

    assert state.phase is after
    assert state.transitions == [(after, T0)]


@pytest.mark.parametrize(("before", "after"), ILLEGAL)
def test_illegal_transition_raises_and_leaves_the_state_unchanged(before: Phase, after: Phase) -> None:
    state = MigrationState(phase=before, message="as it was", reason="Kept")

    with pytest.raises(IllegalTransition):
        state.enter(after)

    assert state == MigrationState(phase=before, message="as it was", reason="Kept")


@pytest.mark.parametrize("terminal", TERMINAL_PHASES)
def test_terminal_phase_cannot_be_left(terminal: Phase) -> None:
    state = MigrationState(phase=terminal)

    for target in Phase:
        with pytest.raises(IllegalTransition):
            state.enter(target)


def test_illegal_transition_message_names_both_phases() -> None:
    state = MigrationState(phase=Phase.PENDING)

    with pytest.raises(IllegalTransition, match="from Pending to Succeeded"):
        state.enter(Phase.SUCCEEDED)


def test_a_phase_cannot_be_re_entered() -> None:
    state = MigrationState(phase=Phase.TRANSFERRING)

    with pytest.raises(IllegalTransition):
        state.enter(Phase.TRANSFERRING)


def test_full_happy_path_records_every_phase_in_order(clock: Callable[[datetime], None]) -> None:
    path = [P.PREPARING, P.CHECKPOINTING, P.TRANSFERRING, P.RESTORING, P.VERIFYING, P.SUCCEEDED]
    state = MigrationState()

    for second, phase in enumerate(path):
        clock(T0 + timedelta(seconds=second))
        state.enter(phase)

    assert [phase for phase, _ in state.transitions] == path
    assert [moment for _, moment in state.transitions] == [T0 + timedelta(seconds=s) for s in range(6)]


@pytest.mark.parametrize(
    ("phase", "terminal", "frozen"),
    [
        (P.PENDING, False, False),
        (P.PREPARING, False, False),
        (P.CHECKPOINTING, False, True),
        (P.TRANSFERRING, False, True),
        (P.RESTORING, False, True),
        (P.VERIFYING, False, True),
        (P.ROLLING_BACK, False, True),
        (P.SUCCEEDED, True, False),
        (P.FAILED, True, False),
        (P.ROLLED_BACK, True, False),
    ],
)
def test_phase_knows_whether_it_is_terminal_and_whether_the_workload_is_frozen(
    phase: Phase, terminal: bool, frozen: bool
) -> None:
    assert phase.is_terminal is terminal
    assert phase.is_frozen is frozen


def test_enter_stores_the_message() -> None:
    state = MigrationState(phase=Phase.PENDING)

    state.enter(Phase.PREPARING, "pulling image")

    assert state.message == "pulling image"


def test_enter_without_reason_uses_the_phase_name_as_reason() -> None:
    state = MigrationState(phase=Phase.PENDING, reason="Old")

    state.enter(Phase.PREPARING)

    assert state.reason == "Preparing"


def test_enter_with_reason_keeps_it() -> None:
    state = MigrationState(phase=Phase.PENDING)

    state.enter(Phase.FAILED, "bad spec", reason="InvalidSpec")

    assert state.reason == "InvalidSpec"


# -- frozen_at


def test_frozen_at_is_unset_before_checkpointing(clock: Callable[[datetime], None]) -> None:
    state = MigrationState()

    state.enter(Phase.PREPARING)

    assert state.frozen_at is None


def test_entering_checkpointing_sets_frozen_at_to_the_transition_time(
    clock: Callable[[datetime], None],
) -> None:
    state = MigrationState(phase=Phase.PREPARING)
    clock(T0 + timedelta(seconds=3))

    state.enter(Phase.CHECKPOINTING)

    assert state.frozen_at == T0 + timedelta(seconds=3)
    assert state.transitions[-1] == (Phase.CHECKPOINTING, state.frozen_at)


def test_frozen_at_already_recorded_is_kept_on_entering_checkpointing(
    clock: Callable[[datetime], None],
) -> None:
    earlier = T0 - timedelta(minutes=1)
    state = MigrationState(phase=Phase.PREPARING, frozen_at=earlier)

    state.enter(Phase.CHECKPOINTING)

    assert state.frozen_at == earlier


def test_frozen_at_does_not_move_on_later_phases(clock: Callable[[datetime], None]) -> None:
    state = MigrationState(phase=Phase.PREPARING)
    state.enter(Phase.CHECKPOINTING)
    clock(T0 + timedelta(seconds=5))

    state.enter(Phase.TRANSFERRING)

    assert state.frozen_at == T0


# -- completion and total_ms


@pytest.mark.parametrize(
    ("before", "terminal"),
    [(P.VERIFYING, P.SUCCEEDED), (P.PENDING, P.FAILED), (P.ROLLING_BACK, P.ROLLED_BACK)],
)
def test_entering_a_terminal_phase_sets_completion_time_and_total_ms(
    before: Phase, terminal: Phase, clock: Callable[[datetime], None]
) -> None:
    state = MigrationState(phase=before, start_time=T0)
    clock(T0 + timedelta(seconds=1, milliseconds=500))

    state.enter(terminal)

    assert state.completion_time == T0 + timedelta(seconds=1, milliseconds=500)
    assert state.metrics.total_ms == 1500


def test_non_terminal_phase_sets_neither_completion_time_nor_total_ms(
    clock: Callable[[datetime], None],
) -> None:
    state = MigrationState(phase=Phase.PENDING, start_time=T0 - timedelta(seconds=1))

    state.enter(Phase.PREPARING)

    assert state.completion_time is None
    assert state.metrics.total_ms is None


def test_terminal_phase_without_start_time_has_completion_time_but_no_total_ms(
    clock: Callable[[datetime], None],
) -> None:
    state = MigrationState(phase=Phase.PENDING)

    state.enter(Phase.FAILED)

    assert state.completion_time == T0
    assert state.metrics.total_ms is None


def test_total_ms_is_never_negative(clock: Callable[[datetime], None]) -> None:
    state = MigrationState(phase=Phase.VERIFYING, start_time=T0 + timedelta(seconds=2))

    state.enter(Phase.SUCCEEDED)

    assert state.metrics.total_ms == 0


# -- status round trip


def full_state() -> MigrationState:
    """A state using every field, with millisecond-precision times (what the status keeps)."""
    return MigrationState(
        phase=Phase.RESTORING,
        message="restoring on node-b",
        reason="Restoring",
        workload="container/web",
        source_host="node-a",
        target_host="node-b",
        source_container_id="a" * 64,
        target_container_id="b" * 64,
        checkpoint_name="ferry-1234",
        transfer="Stream",
        fingerprint_pid=4242,
        fingerprint_stack="0x7ffc0000",
        preflight={"checks": [{"name": "PortsFree", "passed": True, "message": "free"}], "rootfsBytes": 4096},
        source_was_running=True,
        start_time=T0,
        frozen_at=T0 + timedelta(milliseconds=1250),
        completion_time=None,
        transitions=[
            (Phase.PREPARING, T0 + timedelta(milliseconds=10)),
            (Phase.CHECKPOINTING, T0 + timedelta(milliseconds=1250)),
            (Phase.TRANSFERRING, T0 + timedelta(milliseconds=2001)),
            (Phase.RESTORING, T0 + timedelta(milliseconds=3999)),
        ],
        metrics=Metrics(
            downtime_ms=2750,
            checkpoint_ms=700,
            transfer_ms=1998,
            restore_ms=None,
            image_transfer_ms=0,
            prepare_ms=1240,
            verify_ms=None,
            checkpoint_bytes=10_485_760,
            rootfs_bytes=4096,
            image_bytes=None,
            total_ms=None,
        ),
    )


def test_status_round_trip_gives_back_the_same_state() -> None:
    original = full_state()

    assert MigrationState.from_status(original.to_status(generation=3)) == original


def test_status_round_trip_of_a_finished_migration_gives_back_the_same_state() -> None:
    original = full_state()
    original.phase = Phase.SUCCEEDED
    original.reason = "Succeeded"
    original.completion_time = T0 + timedelta(seconds=5)
    original.transitions.append((Phase.SUCCEEDED, T0 + timedelta(seconds=5)))
    original.metrics.total_ms = 5000

    assert MigrationState.from_status(original.to_status()) == original


def test_status_round_trip_after_real_transitions_is_stable() -> None:
    state = MigrationState(start_time=state_module.now())
    state.enter(Phase.PREPARING)
    state.enter(Phase.CHECKPOINTING)
    status = state.to_status(generation=1)

    assert MigrationState.from_status(status).to_status(generation=1) == status


def test_status_uses_the_crd_field_names() -> None:
    status = full_state().to_status(generation=3)

    assert status["phase"] == "Restoring"
    assert status["sourceHost"] == "node-a"
    assert status["targetHost"] == "node-b"
    assert status["sourceContainerID"] == "a" * 64
    assert status["checkpointName"] == "ferry-1234"
    assert status["startTime"] == "2024-05-01T12:00:00.000Z"
    assert status["frozenAt"] == "2024-05-01T12:00:01.250Z"
    assert status["phaseTransitions"][0] == {"phase": "Preparing", "time": "2024-05-01T12:00:00.010Z"}
    assert status["fingerprint"] == {"pid": 4242, "stackAddress": "0x7ffc0000"}
    assert status["observedGeneration"] == 3


def test_status_metrics_use_camel_case_and_omit_unmeasured_values() -> None:
    metrics = full_state().to_status()["metrics"]

    assert metrics == {
        "downtimeMs": 2750,
        "checkpointMs": 700,
        "transferMs": 1998,
        "imageTransferMs": 0,
        "prepareMs": 1240,
        "checkpointBytes": 10_485_760,
        "rootfsBytes": 4096,
    }


def test_status_shows_downtime_in_human_form() -> None:
    assert full_state().to_status()["downtime"] == "2.75s"


def test_status_omits_unknown_values() -> None:
    status = MigrationState().to_status()

    for key in ("sourceHost", "targetHost", "startTime", "frozenAt", "completionTime", "downtime"):
        assert key not in status
    assert "fingerprint" not in status
    assert "observedGeneration" not in status


def test_empty_status_reads_as_a_new_pending_migration() -> None:
    assert MigrationState.from_status({}) == MigrationState()


def test_keys_a_status_does_not_know_are_ignored_when_it_is_read_back() -> None:
    """Another version of the operator may have written them, or a tenant who may patch the status."""
    status = full_state().to_status(generation=3)
    status.update({"futureField": {"x": 1}, "source_host": "forged", "reason": "Forged", "waitingSince": "?"})
    status["metrics"]["futureMs"] = 5
    status["fingerprint"]["futureKey"] = True

    assert MigrationState.from_status(status) == full_state()


def test_restore_requested_is_written_only_once_true() -> None:
    assert "restoreRequested" not in MigrationState().to_status()
    assert MigrationState(restore_requested=True).to_status()["restoreRequested"] is True


def test_a_fingerprint_is_written_with_its_stack_address_even_when_none_was_found() -> None:
    fingerprint = MigrationState(fingerprint_pid=42, shell_job=True).to_status()["fingerprint"]

    assert fingerprint == {"pid": 42, "stackAddress": None, "shellJob": True}


def test_an_empty_time_in_a_status_reads_as_no_time() -> None:
    assert MigrationState.from_status({"startTime": "", "frozenAt": ""}) == MigrationState()


# -- the Succeeded condition


@pytest.mark.parametrize(
    ("phase", "expected"),
    [(P.SUCCEEDED, "True"), (P.FAILED, "False"), (P.ROLLED_BACK, "False")]
    + [(phase, "Unknown") for phase in Phase if not phase.is_terminal],
)
def test_succeeded_condition_status_follows_the_phase(phase: Phase, expected: str) -> None:
    condition = MigrationState(phase=phase, transitions=[(phase, T0)]).succeeded_condition(None)

    assert condition["type"] == "Succeeded"
    assert condition["status"] == expected


def test_succeeded_condition_carries_reason_message_and_second_precision_time() -> None:
    state = MigrationState(
        phase=Phase.FAILED,
        message="host node-b refused",
        reason="HostUnreachable",
        transitions=[(Phase.FAILED, T0 + timedelta(milliseconds=1750))],
    )

    condition = state.succeeded_condition(7)

    assert condition == {
        "type": "Succeeded",
        "status": "False",
        "reason": "HostUnreachable",
        "message": "host node-b refused",
        "lastTransitionTime": "2024-05-01T12:00:01Z",
        "observedGeneration": 7,
    }


def test_succeeded_condition_falls_back_to_the_phase_name_for_reason_and_message() -> None:
    condition = MigrationState(phase=Phase.PREPARING).succeeded_condition(None)

    assert condition["reason"] == "Preparing"
    assert condition["message"] == "Preparing"
    assert "observedGeneration" not in condition


def test_status_conditions_are_succeeded_then_complete_failed_and_rolled_back() -> None:
    conditions = full_state().to_status()["conditions"]

    assert [condition["type"] for condition in conditions] == [
        "Succeeded",
        "Complete",
        "Failed",
        "RolledBack",
    ]


# -- Complete, Failed and RolledBack: `kubectl wait` ends on any outcome


def condition_of(state: MigrationState, kind: str) -> dict[str, Any]:
    return next(c for c in state.to_status()["conditions"] if c["type"] == kind)


@pytest.mark.parametrize("phase", list(Phase))
def test_complete_condition_is_true_in_every_terminal_phase_and_false_before(phase: Phase) -> None:
    state = MigrationState(phase=phase, transitions=[(phase, T0)])

    assert condition_of(state, "Complete")["status"] == ("True" if phase.is_terminal else "False")


@pytest.mark.parametrize("phase", list(Phase))
def test_failed_condition_is_true_only_in_failed(phase: Phase) -> None:
    state = MigrationState(phase=phase, transitions=[(phase, T0)])

    assert condition_of(state, "Failed")["status"] == ("True" if phase is P.FAILED else "False")


@pytest.mark.parametrize("phase", list(Phase))
def test_rolled_back_condition_is_true_only_in_rolled_back(phase: Phase) -> None:
    state = MigrationState(phase=phase, transitions=[(phase, T0)])

    assert condition_of(state, "RolledBack")["status"] == ("True" if phase is P.ROLLED_BACK else "False")


def test_ending_conditions_carry_the_reason_message_and_time_of_the_last_phase_change(
    clock: Callable[[datetime], None],
) -> None:
    state = MigrationState(phase=Phase.PREPARING, start_time=T0)
    clock(T0 + timedelta(seconds=4, milliseconds=900))
    state.enter(Phase.FAILED, "no space left on node2", reason="DiskFull")

    assert condition_of(state, "Failed") == {
        "type": "Failed",
        "status": "True",
        "reason": "DiskFull",
        "message": "no space left on node2",
        "lastTransitionTime": "2024-05-01T12:00:04Z",
    }
    assert condition_of(state, "Complete")["lastTransitionTime"] == "2024-05-01T12:00:04Z"


def test_ending_conditions_carry_the_observed_generation() -> None:
    conditions = MigrationState(phase=Phase.SUCCEEDED).ending_conditions(5)

    assert [c["observedGeneration"] for c in conditions] == [5, 5, 5]


def test_a_rollback_waiting_keeps_its_condition_next_to_the_ending_ones() -> None:
    state = MigrationState(phase=Phase.ROLLING_BACK)
    state.wait_for("cannot reach node1")

    types = [c["type"] for c in state.to_status()["conditions"]]

    assert types == ["Succeeded", "Complete", "Failed", "RolledBack", "RollbackWaiting"]


# -- Pending from the first sight


def test_start_makes_a_new_migration_pending_from_now(clock: Callable[[datetime], None]) -> None:
    state = MigrationState()

    state.start("seen by the operator")

    assert (state.phase, state.reason, state.message) == (P.PENDING, "Pending", "seen by the operator")
    assert state.transitions == [(P.PENDING, T0)]
    assert state.start_time == T0


def test_a_started_migration_writes_pending_first_in_its_phase_transitions(
    clock: Callable[[datetime], None],
) -> None:
    state = MigrationState()
    state.start("seen by the operator")
    state.enter(Phase.PREPARING)

    phases = [entry["phase"] for entry in state.to_status()["phaseTransitions"]]

    assert phases == ["Pending", "Preparing"]


def test_a_started_migration_has_its_complete_condition_false_since_it_was_seen(
    clock: Callable[[datetime], None],
) -> None:
    state = MigrationState()
    state.start("seen by the operator")

    condition = condition_of(state, "Complete")

    assert (condition["status"], condition["lastTransitionTime"]) == ("False", "2024-05-01T12:00:00Z")


# -- the operator's version


def test_the_operator_version_is_written_to_the_status() -> None:
    assert MigrationState(operator_version="1.2.3").to_status()["operatorVersion"] == "1.2.3"


def test_the_operator_version_survives_a_status_round_trip() -> None:
    state = MigrationState(operator_version="1.2.3")

    assert MigrationState.from_status(state.to_status()).operator_version == "1.2.3"


# -- format_duration


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "0.00s"),
        (7, "0.01s"),
        (1500, "1.50s"),
        (59_990, "59.99s"),
        (60_000, "1m0s"),
        (61_000, "1m1s"),
        (125_000, "2m5s"),
        (3_600_000, "60m0s"),
    ],
)
def test_format_duration_uses_seconds_below_a_minute_and_minutes_above(ms: int, text: str) -> None:
    assert format_duration(ms) == text


@pytest.mark.parametrize("ms", [119_500, 119_999, 179_600])
def test_format_duration_never_shows_sixty_seconds(ms: int) -> None:
    seconds = format_duration(ms).split("m")[1].rstrip("s")

    assert int(seconds) < 60


# -- what a rollback waits for


def test_what_a_rollback_waits_for_is_a_condition_of_its_own(clock: Callable[[datetime], None]) -> None:
    state = MigrationState(phase=Phase.ROLLING_BACK, message="restore failed")

    assert state.wait_for("cannot reach node2")
    conditions = state.to_status()["conditions"]

    assert conditions[-1] == {
        "type": "RollbackWaiting",
        "status": "True",
        "reason": "Retrying",
        "message": "cannot reach node2",
        "lastTransitionTime": "2024-05-01T12:00:00Z",
    }
    assert state.message == "restore failed"


def test_waiting_for_the_same_obstacle_again_is_no_change() -> None:
    state = MigrationState(phase=Phase.ROLLING_BACK)
    state.wait_for("cannot reach node2")

    assert not state.wait_for("cannot reach node2")


def test_what_a_rollback_waits_for_survives_a_status_round_trip(clock: Callable[[datetime], None]) -> None:
    state = MigrationState(phase=Phase.ROLLING_BACK, reason="RestoreFailed")
    state.wait_for("cannot reach node2")

    assert MigrationState.from_status(state.to_status()) == state


def test_entering_a_phase_ends_the_wait() -> None:
    state = MigrationState(phase=Phase.ROLLING_BACK)
    state.wait_for("cannot reach node2")

    state.enter(Phase.ROLLED_BACK)

    assert "RollbackWaiting" not in [c["type"] for c in state.to_status()["conditions"]]


@pytest.mark.parametrize("phase", [P.PENDING, P.RESTORING, P.ROLLING_BACK])
def test_abandon_ends_failed_from_any_phase(phase: Phase) -> None:
    state = MigrationState(phase=phase)

    state.abandon("forged status", "StatusTampered")

    assert (state.phase, state.reason, state.message) == (P.FAILED, "StatusTampered", "forged status")
    assert state.completion_time is not None
