"""What an Evacuation reports in its status: a record per container, the counts, the wall time."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field, computed_field

from ferry.api import Strategy
from ferry.migration.state import StatusPart, StatusTime


class EvacuationPhase(StrEnum):
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"  # every container moved, or was skipped as onLiveFailure: Skip says
    FAILED = "Failed"  # some container did not move (or the Evacuation stopped, or its spec is bad)

    @property
    def is_terminal(self) -> bool:
        return self is not EvacuationPhase.RUNNING


class Outcome(StrEnum):
    """Where one container stands: its Migration's phase, summed up."""

    PENDING = "Pending"  # no Migration yet, or one that waits for its slot
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"  # it ended before the freeze: the container still runs on the source host
    ROLLED_BACK = "RolledBack"  # it was frozen, then brought back onto the source host
    SKIPPED = "Skipped"


class ContainerRecord(StatusPart):
    """status.containers[]: which container went where, by which Migration."""

    name: str
    outcome: Outcome
    target: str | None = None
    migration: str | None = None
    strategy: Strategy | None = None
    message: str | None = None


class Counts(StatusPart):
    total: int = 0
    pending: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    rolled_back: int = 0
    skipped: int = 0

    @classmethod
    def of(cls, records: list[ContainerRecord]) -> Counts:
        def count(outcome: Outcome) -> int:
            return sum(1 for record in records if record.outcome is outcome)

        return cls(
            total=len(records),
            pending=count(Outcome.PENDING),
            running=count(Outcome.RUNNING),
            succeeded=count(Outcome.SUCCEEDED),
            failed=count(Outcome.FAILED),
            rolled_back=count(Outcome.ROLLED_BACK),
            skipped=count(Outcome.SKIPPED),
        )


class EvacuationStatus(StatusPart):
    phase: EvacuationPhase = EvacuationPhase.RUNNING
    message: str = ""
    start_time: StatusTime = None
    completion_time: StatusTime = None
    containers: list[ContainerRecord] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def counts(self) -> Counts:
        return Counts.of(self.containers)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def wall_seconds(self) -> float | None:
        """From the first look at the source host to the end of the last Migration."""
        if self.start_time is None or self.completion_time is None:
            return None
        return round((self.completion_time - self.start_time).total_seconds(), 1)

    def to_status(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    @classmethod
    def from_status(cls, status: dict[str, Any]) -> EvacuationStatus:
        return cls.model_validate(status, by_name=False, extra="ignore")

    def ended(self, phase: EvacuationPhase, message: str, moment: datetime) -> None:
        self.phase, self.message, self.completion_time = phase, message, moment
