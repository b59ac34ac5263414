"""The phase graph of a Migration, in one table.

Each phase names the step that runs in it (a method of `MigrationSteps`), where the Migration goes
when that step returns, where a failure in it leads, any other ending the step may choose, and
whether the workload is frozen there. The runner reads the table and moves the Migration on;
a step names a phase only to choose one of its declared other endings.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Phase(StrEnum):
    PENDING = "Pending"
    PREPARING = "Preparing"
    CHECKPOINTING = "Checkpointing"
    TRANSFERRING = "Transferring"
    RESTORING = "Restoring"
    VERIFYING = "Verifying"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    ROLLING_BACK = "RollingBack"
    ROLLED_BACK = "RolledBack"

    @property
    def rule(self) -> PhaseRule:
        return PHASES[self]

    @property
    def is_terminal(self) -> bool:
        return self.rule.step is None

    @property
    def is_frozen(self) -> bool:
        """From the freeze on, a failure must bring the workload back rather than just stop."""
        return self.rule.frozen


@dataclass(frozen=True)
class PhaseRule:
    step: str | None = None  # the MigrationSteps method run in this phase; None: the Migration ended
    then: Phase | None = None  # where it goes when the step returns
    on_failure: Phase | None = None  # where a failure leads; None: the step is tried again later
    may_end: frozenset[Phase] = frozenset()  # other endings the step may choose
    frozen: bool = False  # the workload is frozen, or its only copy may be the checkpoint
    timed: str | None = None  # the Metrics field the runner records the step's duration in
    # The step enters `then` itself, in one move with the decision that allows it (a slot on both
    # hosts is taken under the operator's admission lock, so the next decision sees it).
    enters_then_itself: bool = False

    @property
    def exits(self) -> frozenset[Phase]:
        return frozenset(p for p in (self.then, self.on_failure) if p is not None) | self.may_end


PHASES: dict[Phase, PhaseRule] = {
    Phase.PENDING: PhaseRule("admit", Phase.PREPARING, Phase.FAILED, enters_then_itself=True),
    # A dry run ends after its preflight, Succeeded.
    Phase.PREPARING: PhaseRule(
        "prepare", Phase.CHECKPOINTING, Phase.FAILED, frozenset({Phase.SUCCEEDED}), timed="prepare_ms"
    ),
    # CRIU resumes the tasks when a dump fails: nothing is frozen, the Migration just fails.
    Phase.CHECKPOINTING: PhaseRule(
        "checkpoint",
        Phase.TRANSFERRING,
        Phase.ROLLING_BACK,
        frozenset({Phase.FAILED}),
        frozen=True,
        timed="checkpoint_ms",
    ),
    Phase.TRANSFERRING: PhaseRule(
        "transfer", Phase.RESTORING, Phase.ROLLING_BACK, frozen=True, timed="transfer_ms"
    ),
    Phase.RESTORING: PhaseRule(
        "restore", Phase.VERIFYING, Phase.ROLLING_BACK, frozen=True, timed="restore_ms"
    ),
    Phase.VERIFYING: PhaseRule("verify", Phase.SUCCEEDED, Phase.ROLLING_BACK, frozen=True, timed="verify_ms"),
    # A rollback never gives up; it ends Succeeded when the source cannot come back and the target,
    # which runs, is kept.
    Phase.ROLLING_BACK: PhaseRule(
        "roll_back", Phase.ROLLED_BACK, None, frozenset({Phase.SUCCEEDED}), frozen=True
    ),
    Phase.SUCCEEDED: PhaseRule(),
    Phase.FAILED: PhaseRule(),
    Phase.ROLLED_BACK: PhaseRule(),
}

TERMINAL = frozenset(phase for phase in Phase if phase.is_terminal)
TRANSITIONS: dict[Phase, frozenset[Phase]] = {phase: rule.exits for phase, rule in PHASES.items()}
FREEZE = Phase.CHECKPOINTING  # entering it starts the downtime
THAW = Phase.RESTORING  # its step's end ends the downtime


@dataclass(frozen=True)
class Outcome:
    """What a step may return: the message (and reason) of the phase it leads to, and, among the
    endings the table allows it, a phase other than the table's next one."""

    message: str = ""
    reason: str = ""
    ending: Phase | None = None
