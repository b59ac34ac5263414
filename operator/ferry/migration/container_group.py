"""Migration of several containers as one (a compose project, or a label selector): one freeze, one
downtime, one rollback unit, so that containers that talk to each other never do so across hosts.

Each container moves as a `ContainerMigration` of its own (its own uid, its own state, kept in the
group's status.members, in start order), driven step by step by the group: every member prepares
before any freezes; they freeze in reverse start order (those that call others first), start again
on the target in start order, and the sources are removed only once every target is verified. A
failure after the freeze rolls them all back onto the source, in start order; when some source
cannot come back, they all stay on the target, where they run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from ferry.api import CONTAINER_NAME, ContainerGroup, Strategy, Workload
from ferry.hosts.docker_host import DockerHost
from ferry.migration.admission import migrating_container
from ferry.migration.container import ContainerMigration
from ferry.migration.context import MigrationContext
from ferry.migration.errors import HostError, Problem, as_problem
from ferry.migration.phases import Outcome, Phase
from ferry.migration.start_order import left_out_services, start_order
from ferry.migration.state import MigrationState, format_duration
from ferry.migration.steps import MigrationSteps, unfinished

MEMBER_PREFIX = "container/"
# What the group's status.metrics sums over its members (its times are the group's own).
SUMMED = ("checkpoint_bytes", "rootfs_bytes", "volume_bytes", "image_bytes")


def member_uid(group_uid: str, index: int) -> str:
    """The uid a member's work files, labels, keys and forwarding rules are named by."""
    return f"{group_uid}-{index}"


def member_name(state: MigrationState) -> str:
    return state.workload.removeprefix(MEMBER_PREFIX)


class MemberContext(MigrationContext):
    """What a member's steps see: a request for its one container under a uid of its own, and its
    own state; the group's status writes (which carry the member's progress), host connections and lease."""

    def __init__(self, group: MigrationContext, state: MigrationState, index: int) -> None:
        request = group.request
        spec = replace(request.spec, workload=Workload(container=member_name(state)))
        super().__init__(
            replace(request, uid=member_uid(request.uid, index), spec=spec, pauses={}),
            state,
            group.hosts,
            group.sink,
            group.coordination,
        )
        self.group = group

    def host(self, name: str) -> DockerHost:
        return self.group.host(name)

    def save(self) -> None:
        if self.state.progress is not None:
            self.group.state.progress = self.state.progress
        self.group.save()


@contextmanager
def naming(member: ContainerMigration, *, frozen: bool | None = None) -> Iterator[None]:
    """A member's failure, said with its container's name; `frozen` overrides whether the failure
    leaves the workload frozen (once one member is frozen, the group is)."""
    try:
        yield
    except (Problem, HostError) as error:
        problem = as_problem(error)
        raise Problem(
            problem.reason,
            f"{member.container}: {problem.message}",
            frozen=problem.frozen if frozen is None else frozen,
        ) from None


class ContainerGroupMigration(MigrationSteps):
    def __init__(self, context: MigrationContext) -> None:
        super().__init__(context)
        group = context.request.spec.workload.group
        assert group is not None
        self.group: ContainerGroup = group
        self.live = context.request.spec.strategy is Strategy.LIVE
        self._members: list[ContainerMigration] | None = None

    def members(self) -> list[ContainerMigration]:
        """One migration per container the status lists, in start order, each in the group's phase
        (the group's state moves its members' with it)."""
        if self._members is None:
            self._members = [
                ContainerMigration(MemberContext(self.ctx, state, index), network_owner=self.ctx.request.uid)
                for index, state in enumerate(self.state.members)
            ]
        return self._members

    # -- Preparing: the group is found and put in order; every member prepares while all still run.

    def prepare(self) -> Outcome | None:
        if not self.state.members:
            self._claim(self._find())
        checked = []
        for member in self.members():  # every one checked before anything is made for any
            with naming(member):
                checked.append((member, member.check()))
        dry_runs = [(member, outcome) for member, outcome in checked if outcome is not None]
        if dry_runs:  # a dry run: each passed, and nothing is made
            said = "; ".join(f"{member.container}: {outcome.message}" for member, outcome in dry_runs)
            return Outcome(said, dry_runs[0][1].reason, dry_runs[0][1].ending)
        for member in self.members():
            with naming(member):
                member.make()
        for member in self.members():  # the last of it, for all at once: clients wait only from here
            with naming(member):
                member.hold_clients()
        return None

    def _find(self) -> list[tuple[str, str]]:
        """The selected containers on the source, (name, ID) in start order."""
        selected: dict[str, dict[str, str]] = {}
        ids, others = {}, []
        for container in self.source.engine.list_containers(stopped_too=not self.live):
            labels = container.get("Labels") or {}
            if self.group.selector.matches(labels):
                name = container["Names"][0].lstrip("/")
                selected[name], ids[name] = labels, container["Id"]
            else:
                others.append(labels)
        if not selected:
            running = "running " if self.live else ""
            raise Problem(
                "ContainerNotFound",
                f"no {running}container on host {self.source.name} is selected by "
                f"{self.group.selector.describe()}",
            )
        return [(name, ids[name]) for name in start_order(selected, left_out_services(selected, others))]

    def _claim(self, found: list[tuple[str, str]]) -> None:
        """Lists the members in the status, unless another Migration moves one of them: decided and
        written under the operator's admission lock, so the next decision sees them (as Pending
        does for a single container)."""
        coordination, source = self.ctx.coordination, self.source.name
        with coordination.admission_lock:
            active = coordination.active_migrations()
            for name, container_id in found:
                holder = migrating_container(active, self.ctx.request.uid, source, container_id)
                if holder is not None:
                    raise Problem(
                        "ContainerBusy",
                        f"container '{name}' on {source} is busy: Migration {holder.key} is moving it",
                    )
            self.state.members = [
                MigrationState(
                    phase=self.state.phase,
                    workload=f"{MEMBER_PREFIX}{name}",
                    source_host=self.state.source_host,
                    target_host=self.state.target_host,
                    source_container_id=container_id,
                    start_time=self.state.start_time,
                )
                for name, container_id in found
            ]
            self._members = None
            self.ctx.save()

    def workload_problem(self) -> Problem | None:
        """Each member the status lists must be a container the spec's selector selects, and be
        allowed to move as a container of its own (its status judged as one); once frozen, the
        list cannot be empty (a patched status must not let a group's phases pass over it)."""
        if not self.state.members and self.state.phase.is_frozen:
            return Problem(
                "StatusTampered", f"status.phase is {self.state.phase} but status.members is empty"
            )
        for state in self.state.members:
            if not CONTAINER_NAME.fullmatch(member_name(state)):
                return Problem(
                    "StatusTampered", f"status.members names {state.workload!r}, which is not a container"
                )
        for member in self.members():
            info = self.source.engine.find_container(member.state.source_container_id or member.container)
            if info is not None and not self.group.selector.matches(info["Config"].get("Labels") or {}):
                return Problem(
                    "StatusTampered",
                    f"status.members names container {info['Name'].lstrip('/')}, which "
                    f"{self.group.selector.describe()} does not select",
                )
            if (problem := member.workload_problem()) is not None:
                return problem
        return None

    # -- The freeze, the transfer and the restore: one downtime for all.

    def checkpoint(self) -> None:
        """Those that call others freeze first. Once one is frozen, a failure of the next (even a dump
        that left its own container running) rolls them all back."""
        members = self.members()
        for count, member in enumerate(reversed(members)):
            with naming(member, frozen=True if count else None):
                member.checkpoint()
        expected = [
            member.state.progress.expected_bytes if member.state.progress else None for member in members
        ]
        total = None if None in expected else sum(count or 0 for count in expected)
        self.progress.start("transfer", total, phase=Phase.TRANSFERRING)  # written with the phase change

    def transfer(self) -> None:
        members = self.members()
        for member in members:
            with naming(member):
                member.transfer()
        for field in SUMMED:
            counts = [getattr(member.state.metrics, field) for member in members]
            if any(count is not None for count in counts):
                setattr(self.state.metrics, field, sum(count or 0 for count in counts))
        self.state.transfer = self.ctx.request.spec.transfer.value

    def restore(self) -> None:
        """Dependencies first: each starts where those it calls already run."""
        for member in self.members():
            with naming(member):
                member.restore()

    # -- Verifying: every target checked before any source is removed.

    def verify(self) -> Outcome:
        """Once any source is gone (a run resumed after it removed one), the group is past the point
        of no return: what fails is reported, and the other sources go too."""
        members = self.members()
        there = [member.source_exists() for member in members]
        all_there = all(there)
        not_done: list[str] = []
        for member in members:
            with naming(member):
                not_done += member.verify_target(all_there)
        for member, source_there in zip(members, there, strict=True):
            not_done += member.remove_source(source_there)
        downtime = format_duration(self.state.metrics.downtime_ms or 0)
        moved = ", ".join(member.container for member in members)
        message = f"{self.state.workload} ({moved}) runs on {self.target.name}; downtime {downtime}"
        return Outcome(message + unfinished(not_done), reason="Migrated")

    # -- RollingBack: all of them back onto the source, dependencies first, or all kept on the target.

    def roll_back(self) -> Outcome:
        cause, members = self.state.message, self.members()
        unrestorable = [
            f"{member.state.workload}: {why}"
            for member in members
            if (why := member.source_unrestorable()) is not None
        ]
        if unrestorable:  # one of them can run only on the target: the others stay with it there
            for member in members:
                member.keep_target(cause, "; ".join(unrestorable))  # each runs there, or this waits
            left = [
                gone for member in members if member.source_exists() for gone in member.remove_source(True)
            ]
            return self.target_kept(cause, "; ".join(unrestorable) + unfinished(left))
        not_done: list[str] = []
        for member in members:
            with naming(member):
                not_done += member.roll_back_onto_source()
        return self.rolled_back(cause, not_done)

    def made_on_target(self) -> bool:
        return any(member.made_on_target() for member in self.members())

    def target_cleanup(self) -> None:
        """Every member's; one that cannot be cleaned does not keep the others from it."""
        failures = [
            failed
            for member in self.members()
            for failed in self.attempt(member.container, member.target_cleanup)
        ]
        if failures:
            raise Problem("CleanupFailed", "; ".join(failures))

    def release(self) -> None:
        for member in self.members():
            member.release()
