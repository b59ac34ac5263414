"""The state a Migration keeps in its status, and the moves of the phase machine (ferry.migration.phases).

The status is the migration's only memory: every step records what it did before moving on, so an
operator that restarts reads it back and resumes (or rolls back) from the real phase.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AliasPath, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, computed_field
from pydantic.alias_generators import to_camel

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


def format_size(count: int) -> str:
    """'512 B', '4.0 KiB', '12.3 MiB', '1.5 GiB'."""
    if count < 1024:
        return f"{count} B"
    value = float(count)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{value:.1f} {unit}"


def _read_time(value: Any) -> Any:
    """A time as the status writes it, or a datetime as it is; an empty text is no time."""
    if isinstance(value, str):
        return parse_timestamp(value) if value else None
    return value


def _read_transition(entry: Any) -> Any:
    """An entry of status.phaseTransitions, or a (phase, datetime) as it is."""
    return (entry["phase"], parse_timestamp(entry["time"])) if isinstance(entry, dict) else entry


def _write_transition(transition: tuple[Phase, datetime]) -> dict[str, str]:
    phase, moment = transition
    return {"phase": phase.value, "time": timestamp(moment)}


# A time of the status, to the millisecond (2026-01-02T03:04:05.678Z); None while unset.
StatusTime = Annotated[Annotated[datetime, PlainSerializer(timestamp)] | None, BeforeValidator(_read_time)]
# (phase, when it was entered) in memory; {"phase": ..., "time": ...} in status.phaseTransitions.
Transition = Annotated[
    tuple[Phase, datetime], BeforeValidator(_read_transition), PlainSerializer(_write_transition)
]


class StatusPart(BaseModel):
    """A part of a Migration's status: a field is the key of its name in camelCase unless it says
    otherwise (`to_status` leaves out those that are None). An unknown field is an error in code, but
    an unknown key in a status read back is ignored: another version of the operator may have written it."""

    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True, extra="forbid"
    )


class Metrics(StatusPart):
    """status.metrics: how long each step took and how much it moved (None: not measured)."""

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
    post_copy_ms: int | None = None  # restore end -> last page (spec.postCopy)
    lazy_pages: int | None = None  # pages pulled after the restore (spec.postCopy)
    freeze_host_calls: int | None = None  # host calls made while the workload was down
    freeze_status_writes: int | None = None  # status writes made while the workload was down
    connections_cut: int | None = None  # TCP connections the checkpoint closed, from CRIU's log

    def count_in_freeze(self, *, host_calls: int = 0, status_writes: int = 0) -> None:
        self.freeze_host_calls = (self.freeze_host_calls or 0) + host_calls
        self.freeze_status_writes = (self.freeze_status_writes or 0) + status_writes


class ConnectionHold(StatusPart):
    """status.connectionHold: new connections to the published ports held across the freeze."""

    drained_ms: int = 0  # how long connections open before the freeze got to end
    cut_by_freeze: int = 0  # those still open when the drain's bound passed
    released: bool = False  # let go to wherever the workload runs again
    connections: int | None = None  # connection attempts held, then let go (None: not counted)
    udp_dropped: int | None = None  # UDP datagrams dropped while held
    held_ms: int | None = None  # from the hold to the release


class PostCopy(StatusPart):
    """status.postCopy: where the source serves the memory (spec.postCopy), and once all of it
    arrived: until then the frozen source is the only complete copy."""

    port: int
    pages_arrived: bool = False


class Terminal(StatusPart):
    """status.terminal: the tmux session a process that had a terminal runs in since its restore."""

    host: str
    session: str
    attach: str  # the command that attaches to it, as root on that host
    log: str  # its output, appended whether or not anyone is attached


class Progress(StatusPart):
    """status.progress: the bytes a long step moves, while the Migration runs (`kubectl get -w` shows
    its summary). Before the freeze it is written as the bytes move (ferry.migration.progress); inside
    it only with the phase changes around the transfer, as every write there is downtime. Gone once
    the Migration ends."""

    phase: Phase  # the phase whose step moves these bytes
    step: str  # what moves: image, volumes, transfer
    moved_bytes: int = 0
    expected_bytes: int | None = None  # an estimate (the preflight's); None: not known

    @computed_field  # type: ignore[prop-decorator]
    @property
    def summary(self) -> str:
        """'image 120.0 MiB of 300.0 MiB (40%)', for people."""
        moved = format_size(self.moved_bytes)
        if not self.expected_bytes:
            return f"{self.step} {moved}"
        percent = min(100, self.moved_bytes * 100 // self.expected_bytes)
        return f"{self.step} {moved} of {format_size(self.expected_bytes)} ({percent}%)"


def _in_fingerprint(key: str) -> Any:
    """A field kept flat in memory and read from status.fingerprint (see `MigrationState.fingerprint`)."""
    return Field(None, validation_alias=AliasPath("fingerprint", key), exclude=True)


class MigrationState(StatusPart):
    """What the status says about one migration, read back on every resume."""

    phase: Phase = Phase.PENDING
    message: str = ""
    reason: str = Field("", exclude=True)  # the reason of the status's Succeeded condition
    workload: str = ""
    source_host: str | None = None
    target_host: str | None = None
    source_container_id: str | None = Field(None, alias="sourceContainerID")
    target_container_id: str | None = Field(None, alias="targetContainerID")
    checkpoint_name: str | None = None
    transfer: str | None = None
    fingerprint_pid: int | None = _in_fingerprint("pid")
    fingerprint_stack: str | None = _in_fingerprint("stackAddress")
    # a process outside its own session: CRIU needs --shell-job
    shell_job: bool | None = _in_fingerprint("shellJob")
    redirect: str | None = None  # the forwarding the source host does for clients of the old address
    connection_hold: ConnectionHold | None = None
    # the target may have been started: rollback must make sure it is not (written only when True)
    restore_requested: bool = Field(False, exclude_if=lambda requested: not requested)
    # what a rollback waits for (which host, which error); the RollbackWaiting condition in the status
    waiting: str = Field("", exclude=True)
    waiting_since: StatusTime = Field(None, exclude=True)
    mechanism: str | None = None  # how it checkpoints and restores: "runc" (the fast path) or "docker"
    checkpoint_in_memory: bool | None = None  # the fast path's target received the images into a tmpfs
    restart_policy: dict[str, Any] | None = None  # the source's, set aside while runc checkpoints it
    post_copy: PostCopy | None = None
    terminal: Terminal | None = None  # set in Preparing for a process with a terminal; host: where it runs
    operator_version: str | None = None  # of the operator that drove it last
    preflight: dict[str, Any] | None = None  # the checks before the freeze, as status.preflight shows them
    source_was_running: bool | None = None  # False: a stopped container, moved stopped (Cold)
    start_time: StatusTime = None
    frozen_at: StatusTime = None
    completion_time: StatusTime = None
    transitions: list[Transition] = Field(default_factory=list, alias="phaseTransitions")
    metrics: Metrics = Field(default_factory=Metrics)
    progress: Progress | None = None
    # a group's containers (ferry.migration.container_group), each with its own state, in start order
    members: list[MigrationState] = Field(default_factory=list, exclude_if=lambda members: not members)

    def start(self, message: str) -> None:
        """A new Migration, just seen by the operator: Pending from now on, saying what comes next."""
        self._entered(Phase.PENDING, message, "")
        self.start_time = self.transitions[-1][1]

    @property
    def down(self) -> bool:
        """The freeze window is open: from the freeze until the workload runs again (on either host)."""
        return self.frozen_at is not None and self.metrics.downtime_ms is None

    def enter(self, phase: Phase, message: str = "", reason: str = "") -> None:
        if phase not in TRANSITIONS[self.phase]:
            raise IllegalTransition(f"a migration cannot go from {self.phase} to {phase}")
        self._entered(phase, message, reason)

    def follow(self, phase: Phase) -> None:
        """A member of a group enters the phase its group entered (the group's moves are the checked ones)."""
        if phase is self.phase:
            return
        self._entered(phase, "", "")
        if phase.is_frozen and self.frozen_at is None:  # a group resumed past its freeze
            self.frozen_at = self.transitions[-1][1]

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
        for member in self.members:
            member.follow(phase)
        if phase.is_terminal:
            self.completion_time = moment
            self.progress = None
            if self.start_time is not None:
                self.metrics.total_ms = milliseconds(self.start_time, moment)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def fingerprint(self) -> dict[str, Any] | None:
        """status.fingerprint: what tells the workload's process from another with the same PID."""
        if self.fingerprint_pid is None:
            return None
        found: dict[str, Any] = {"pid": self.fingerprint_pid, "stackAddress": self.fingerprint_stack}
        if self.shell_job is not None:
            found["shellJob"] = self.shell_job
        return found

    @computed_field  # type: ignore[prop-decorator]
    @property
    def downtime(self) -> str | None:
        """status.downtime, for people (`kubectl get`): the freeze window, once measured."""
        downtime_ms = self.metrics.downtime_ms
        return format_duration(downtime_ms) if downtime_ms is not None else None

    @property
    def admitted_at(self) -> datetime | None:
        """When it left the line for its hosts' slots (entered Preparing); spec.timeoutSeconds counts
        from here, so that time spent queued behind other Migrations is not held against it."""
        return next((moment for phase, moment in self.transitions if phase is Phase.PREPARING), None)

    def to_status(self, generation: int | None = None) -> dict[str, Any]:
        """The status to write: the fields under their keys, and conditions that follow the phase."""
        status = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        status["conditions"] = [
            self.succeeded_condition(generation),
            *self.ending_conditions(generation),
            *self._waiting_condition(),
        ]
        if generation is not None:
            status["observedGeneration"] = generation
        return status

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
        """The state a status says, whatever else it holds; what it keeps only in its conditions
        (the reason, what a rollback waits for) is read back from them."""
        waiting = _condition(status, WAITING)
        kept_in_conditions = {
            "reason": _condition(status, "Succeeded").get("reason", ""),
            "waiting": waiting.get("message", ""),
            "waitingSince": waiting.get("lastTransitionTime"),
        }
        return cls.model_validate({**status, **kept_in_conditions}, by_name=False, extra="ignore")


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions", []) if c.get("type") == kind), {})
