"""The phase machine of a Migration and the state it keeps in the resource's status.

The status is the migration's only memory: every step records what it did before moving on, so an
operator that restarts reads it back and resumes (or rolls back) from the real phase.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from ferry.migration.phases import TRANSITIONS, Phase

WAITING = "RollbackWaiting"  # the condition that says what a rollback waits for


class IllegalTransition(RuntimeError):
    pass


def now() -> datetime:
    return datetime.now(UTC)


def timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def milliseconds(start: datetime, end: datetime) -> int:
    return max(0, round((end - start).total_seconds() * 1000))


def format_duration(ms: int) -> str:
    if ms < 60_000:
        return f"{ms / 1000:.2f}s"
    minutes, seconds = divmod(ms // 1000, 60)
    return f"{minutes}m{seconds}s"


@dataclass
class Metrics:
    downtime_ms: int | None = None
    checkpoint_ms: int | None = None
    transfer_ms: int | None = None
    restore_ms: int | None = None
    image_transfer_ms: int | None = None
    prepare_ms: int | None = None
    verify_ms: int | None = None
    checkpoint_bytes: int | None = None
    rootfs_bytes: int | None = None
    volume_bytes: int | None = None
    image_bytes: int | None = None
    total_ms: int | None = None

    FIELDS: ClassVar[dict[str, str]] = {
        "downtime_ms": "downtimeMs",
        "checkpoint_ms": "checkpointMs",
        "transfer_ms": "transferMs",
        "restore_ms": "restoreMs",
        "image_transfer_ms": "imageTransferMs",
        "prepare_ms": "prepareMs",
        "verify_ms": "verifyMs",
        "checkpoint_bytes": "checkpointBytes",
        "rootfs_bytes": "rootfsBytes",
        "volume_bytes": "volumeBytes",
        "image_bytes": "imageBytes",
        "total_ms": "totalMs",
    }

    def to_status(self) -> dict[str, int]:
        return {key: value for attr, key in self.FIELDS.items() if (value := getattr(self, attr)) is not None}

    @classmethod
    def from_status(cls, status: dict[str, Any]) -> Metrics:
        return cls(**{attr: status[key] for attr, key in cls.FIELDS.items() if key in status})


@dataclass
class MigrationState:
    """What the status says about one migration, read back on every resume."""

    phase: Phase = Phase.PENDING
    message: str = ""
    reason: str = ""
    workload: str = ""
    source_host: str | None = None
    target_host: str | None = None
    source_container_id: str | None = None
    target_container_id: str | None = None
    checkpoint_name: str | None = None
    transfer: str | None = None
    fingerprint_pid: int | None = None
    fingerprint_stack: str | None = None
    shell_job: bool | None = None  # a process outside its own session: CRIU needs --shell-job
    redirect: str | None = None  # the forwarding the source host does for clients of the old address
    restore_requested: bool = False  # the target may have been started: rollback must make sure it is not
    waiting: str = ""  # what a rollback waits for (which host, which error); a condition in the status
    waiting_since: datetime | None = None
    mechanism: str | None = None  # how it checkpoints and restores: "runc" (the fast path) or "docker"
    restart_policy: dict[str, Any] | None = None  # the source's, set aside while runc checkpoints it
    operator_version: str | None = None  # of the operator that drove it last
    preflight: dict[str, Any] | None = None  # the checks before the freeze, as status.preflight shows them
    source_was_running: bool | None = None  # False: a stopped container, moved stopped (Cold)
    start_time: datetime | None = None
    frozen_at: datetime | None = None
    completion_time: datetime | None = None
    transitions: list[tuple[Phase, datetime]] = field(default_factory=list)
    metrics: Metrics = field(default_factory=Metrics)

    def start(self, message: str) -> None:
        """A new Migration, just seen by the operator: Pending from now on, saying what comes next."""
        self._entered(Phase.PENDING, message, "")
        self.start_time = self.transitions[-1][1]

    def enter(self, phase: Phase, message: str = "", reason: str = "") -> None:
        if phase not in TRANSITIONS[self.phase]:
            raise IllegalTransition(f"a migration cannot go from {self.phase} to {phase}")
        self._entered(phase, message, reason)

    def abandon(self, message: str, reason: str) -> None:
        """Ends Failed from any phase, outside the phase machine: for a run that may not touch any
        host (a status that cannot be trusted, a host the namespace may not use)."""
        self._entered(Phase.FAILED, message, reason)

    def wait_for(self, obstacle: str) -> bool:
        """Records what the rollback waits for; says whether that changed (worth a status write)."""
        if obstacle == self.waiting:
            return False
        if not self.waiting:
            self.waiting_since = now()
        self.waiting = obstacle
        return True

    def _entered(self, phase: Phase, message: str, reason: str) -> None:
        moment = now()
        self.waiting, self.waiting_since = "", None
        self.phase = phase
        self.message = message
        self.reason = reason or phase.value
        self.transitions.append((phase, moment))
        if phase is Phase.CHECKPOINTING and self.frozen_at is None:
            self.frozen_at = moment
        if phase.is_terminal:
            self.completion_time = moment
            if self.start_time is not None:
                self.metrics.total_ms = milliseconds(self.start_time, moment)

    def to_status(self, generation: int | None = None) -> dict[str, Any]:
        status: dict[str, Any] = {
            "phase": self.phase.value,
            "message": self.message,
            "workload": self.workload,
            "sourceHost": self.source_host,
            "targetHost": self.target_host,
            "sourceContainerID": self.source_container_id,
            "targetContainerID": self.target_container_id,
            "checkpointName": self.checkpoint_name,
            "transfer": self.transfer,
            "restoreRequested": self.restore_requested or None,
            "mechanism": self.mechanism,
            "restartPolicy": self.restart_policy,
            "redirect": self.redirect,
            "startTime": _optional_timestamp(self.start_time),
            "frozenAt": _optional_timestamp(self.frozen_at),
            "completionTime": _optional_timestamp(self.completion_time),
            "phaseTransitions": [
                {"phase": phase.value, "time": timestamp(t)} for phase, t in self.transitions
            ],
            "metrics": self.metrics.to_status(),
            "downtime": format_duration(self.metrics.downtime_ms)
            if self.metrics.downtime_ms is not None
            else None,
            "conditions": [
                self.succeeded_condition(generation),
                *self.ending_conditions(generation),
                *self._waiting_condition(),
            ],
            "observedGeneration": generation,
            "operatorVersion": self.operator_version,
            "preflight": self.preflight,
            "sourceWasRunning": self.source_was_running,
        }
        if self.fingerprint_pid is not None:
            status["fingerprint"] = {"pid": self.fingerprint_pid, "stackAddress": self.fingerprint_stack}
            if self.shell_job is not None:
                status["fingerprint"]["shellJob"] = self.shell_job
        return {key: value for key, value in status.items() if value is not None}

    def succeeded_condition(self, generation: int | None) -> dict[str, Any]:
        """A `Succeeded` condition for `kubectl wait --for=condition=Succeeded`: Unknown until the end."""
        if self.phase is Phase.SUCCEEDED:
            status = "True"
        elif self.phase.is_terminal:
            status = "False"
        else:
            status = "Unknown"
        return self._phase_condition("Succeeded", status, generation)

    def ending_conditions(self, generation: int | None) -> list[dict[str, Any]]:
        """What `kubectl wait` can end on, as a Job's conditions, each False until its phase comes; but
        `Complete` means the Migration ended whichever way (`Succeeded`, `Failed`, `RolledBack` say how)."""
        endings = {
            "Complete": self.phase.is_terminal,
            "Failed": self.phase is Phase.FAILED,
            "RolledBack": self.phase is Phase.ROLLED_BACK,
        }
        return [
            self._phase_condition(kind, "True" if holds else "False", generation)
            for kind, holds in endings.items()
        ]

    def _phase_condition(self, kind: str, status: str, generation: int | None) -> dict[str, Any]:
        """A condition that follows the phase: it changes with it, and says why the phase is what it is."""
        changed = self.transitions[-1][1] if self.transitions else now()
        condition: dict[str, Any] = {
            "type": kind,
            "status": status,
            "reason": self.reason or self.phase.value,
            "message": self.message or self.phase.value,
            "lastTransitionTime": timestamp(changed).split(".")[0] + "Z",
        }
        if generation is not None:
            condition["observedGeneration"] = generation
        return condition

    def _waiting_condition(self) -> list[dict[str, Any]]:
        if not self.waiting:
            return []
        since = self.waiting_since or now()
        return [
            {
                "type": WAITING,
                "status": "True",
                "reason": "Retrying",
                "message": self.waiting,
                "lastTransitionTime": timestamp(since).split(".")[0] + "Z",
            }
        ]

    @classmethod
    def from_status(cls, status: dict[str, Any]) -> MigrationState:
        fingerprint = status.get("fingerprint") or {}
        condition = _condition(status, "Succeeded")
        waiting = _condition(status, WAITING)
        return cls(
            phase=Phase(status.get("phase", Phase.PENDING.value)),
            message=status.get("message", ""),
            reason=condition.get("reason", ""),
            workload=status.get("workload", ""),
            source_host=status.get("sourceHost"),
            target_host=status.get("targetHost"),
            source_container_id=status.get("sourceContainerID"),
            target_container_id=status.get("targetContainerID"),
            checkpoint_name=status.get("checkpointName"),
            transfer=status.get("transfer"),
            restore_requested=bool(status.get("restoreRequested", False)),
            mechanism=status.get("mechanism"),
            restart_policy=status.get("restartPolicy"),
            operator_version=status.get("operatorVersion"),
            preflight=status.get("preflight"),
            source_was_running=status.get("sourceWasRunning"),
            redirect=status.get("redirect"),
            fingerprint_pid=fingerprint.get("pid"),
            fingerprint_stack=fingerprint.get("stackAddress"),
            shell_job=fingerprint.get("shellJob"),
            start_time=_optional_datetime(status.get("startTime")),
            frozen_at=_optional_datetime(status.get("frozenAt")),
            completion_time=_optional_datetime(status.get("completionTime")),
            transitions=[
                (Phase(entry["phase"]), parse_timestamp(entry["time"]))
                for entry in status.get("phaseTransitions", [])
            ],
            metrics=Metrics.from_status(status.get("metrics", {})),
            waiting=waiting.get("message", ""),
            waiting_since=_optional_datetime(waiting.get("lastTransitionTime")),
        )


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions", []) if c.get("type") == kind), {})


def _optional_timestamp(moment: datetime | None) -> str | None:
    return timestamp(moment) if moment is not None else None


def _optional_datetime(text: str | None) -> datetime | None:
    return parse_timestamp(text) if text else None
