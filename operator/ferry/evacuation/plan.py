"""An Evacuation's decisions, from what it sees: which container stands where, which Migrations to
create next and on which target, and whether it has ended. Pure: the caller reads the cluster and
the hosts, and carries the plan out."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from ferry.api import EvacuationSpec, OnLiveFailure, Strategy
from ferry.evacuation.status import ContainerRecord, EvacuationPhase, Outcome
from ferry.migration.phases import Phase


@dataclass(frozen=True)
class SourceContainer:
    """A container running on the source host."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Attempt:
    """A Migration the Evacuation created for a container: its live move, or the cold one after it."""

    migration: str  # its name
    container: str
    target: str
    strategy: Strategy
    phase: Phase
    message: str = ""
    fallback: bool = False  # the cold move after the live one failed (onLiveFailure: Cold)


@dataclass
class HostLoad:
    """What a host runs now: containers, and Migrations that hold one of its slots."""

    containers: int
    migrating: int
    limit: int

    @property
    def free(self) -> int:
        return max(0, self.limit - self.migrating)


@dataclass(frozen=True)
class NewMigration:
    name: str
    container: str
    target: str
    strategy: Strategy
    fallback: bool = False


def migration_name(evacuation: str, container: str, fallback: bool) -> str:
    """The same name every time for the same move, so that creating it twice creates it once: the
    container's name made a DNS label, with a hash of the real one (two names may look alike)."""
    digest = hashlib.sha256(container.encode()).hexdigest()[:6]
    readable = re.sub(r"[^a-z0-9]+", "-", container.lower()).strip("-")[:40]
    return "-".join(part for part in (evacuation[:150], readable, digest, "cold" if fallback else "") if part)


@dataclass
class Plan:
    records: list[ContainerRecord]
    create: list[NewMigration]
    phase: EvacuationPhase
    message: str


def plan(
    evacuation: str,
    spec: EvacuationSpec,
    on_source: list[SourceContainer],
    attempts: list[Attempt],
    source: HostLoad,
    targets: Mapping[str, HostLoad],
) -> Plan:
    """Every container selected on the source host gets a Migration; at most spec.maxConcurrent
    are under way, never more than a host allows, each on the target that runs the fewest."""
    selected = {c.name for c in on_source if spec.selector.matches(c.labels)}
    by_container: dict[str, list[Attempt]] = {}
    for attempt in attempts:
        by_container.setdefault(attempt.container, []).append(attempt)
    names = sorted(selected | set(by_container))
    records = [_record(spec, name, by_container.get(name, []), name in selected) for name in names]
    stop = _stopping(spec, by_container)
    if stop is not None:
        return _stopped(records, stop)
    create = _place(evacuation, spec, records, by_container, _loads(attempts, source, targets))
    for new in create:
        records[names.index(new.container)] = ContainerRecord(
            name=new.container,
            outcome=Outcome.PENDING,
            target=new.target,
            migration=new.name,
            strategy=new.strategy,
            message=records[names.index(new.container)].message if new.fallback else None,
        )
    return Plan(records, create, *_progress(records, bool(targets)))


def _record(spec: EvacuationSpec, name: str, attempts: list[Attempt], on_source: bool) -> ContainerRecord:
    if not attempts:
        return ContainerRecord(name=name, outcome=Outcome.PENDING, message="waits for a slot")
    last = _last(attempts)
    record = ContainerRecord(
        name=name,
        outcome=_outcome(last.phase),
        target=last.target,
        migration=last.migration,
        strategy=last.strategy,
    )
    if last.phase.is_terminal and last.phase is not Phase.SUCCEEDED:
        record.message = f"Migration {last.migration} {last.phase.value}: {last.message}"
        if _live_failure(spec, last):
            if spec.on_live_failure is OnLiveFailure.SKIP:
                record.outcome = Outcome.SKIPPED
                record.message = f"could not move live, skipped (onLiveFailure: Skip): {record.message}"
            elif spec.on_live_failure is OnLiveFailure.COLD and on_source:
                record.outcome = Outcome.PENDING
                record.message = f"could not move live, to move cold (onLiveFailure: Cold): {record.message}"
    return record


def _last(attempts: list[Attempt]) -> Attempt:
    return next((a for a in attempts if a.fallback), attempts[0])


def _outcome(phase: Phase) -> Outcome:
    if phase is Phase.PENDING:
        return Outcome.PENDING
    if not phase.is_terminal:
        return Outcome.RUNNING
    return {Phase.SUCCEEDED: Outcome.SUCCEEDED, Phase.ROLLED_BACK: Outcome.ROLLED_BACK}.get(
        phase, Outcome.FAILED
    )


def _live_failure(spec: EvacuationSpec, attempt: Attempt) -> bool:
    """A live move that ended without moving the container (onLiveFailure decides what follows)."""
    return (
        spec.strategy is Strategy.LIVE
        and not attempt.fallback
        and attempt.phase.is_terminal
        and attempt.phase is not Phase.SUCCEEDED
    )


def _stopping(spec: EvacuationSpec, by_container: Mapping[str, list[Attempt]]) -> str | None:
    """With onLiveFailure: Stop, the first container that could not move live stops the Evacuation."""
    if spec.on_live_failure is not OnLiveFailure.STOP:
        return None
    failed = sorted(name for name, attempts in by_container.items() if _live_failure(spec, _last(attempts)))
    if not failed:
        return None
    return f"stopped: {', '.join(failed)} could not move live (onLiveFailure: Stop)"


def _stopped(records: list[ContainerRecord], why: str) -> Plan:
    """No new Migration; those under way finish. What never started is skipped."""
    for record in records:
        if record.outcome is Outcome.PENDING and record.migration is None:
            record.outcome, record.message = Outcome.SKIPPED, "not started: the Evacuation stopped"
    under_way = sum(1 for r in records if r.outcome in (Outcome.PENDING, Outcome.RUNNING))
    if under_way:
        return Plan(records, [], EvacuationPhase.RUNNING, f"{why}; waiting for {under_way} under way")
    return Plan(records, [], EvacuationPhase.FAILED, why)


def _loads(
    attempts: list[Attempt], source: HostLoad, targets: Mapping[str, HostLoad]
) -> tuple[HostLoad, dict[str, HostLoad]]:
    """The hosts' loads counting the Evacuation's queued Migrations too: those hold no slot yet, but
    will (the cluster's count has only the Migrations that took theirs)."""
    source, targets = replace(source), {name: replace(load) for name, load in targets.items()}
    for attempt in attempts:
        if attempt.phase is Phase.PENDING:
            source.migrating += 1
            if attempt.target in targets:
                targets[attempt.target].migrating += 1
    return source, targets


def _place(
    evacuation: str,
    spec: EvacuationSpec,
    records: list[ContainerRecord],
    by_container: Mapping[str, list[Attempt]],
    loads: tuple[HostLoad, dict[str, HostLoad]],
) -> list[NewMigration]:
    """The Migrations to create now, each on the target with the fewest containers and Migrations."""
    source, targets = loads
    under_way = [a for attempts in by_container.values() for a in attempts if not a.phase.is_terminal]
    budget = min(spec.max_concurrent - len(under_way), source.free)
    create: list[NewMigration] = []
    for record in records:
        if budget <= 0:
            break
        if record.outcome is not Outcome.PENDING or _under_way(by_container.get(record.name, [])):
            continue
        open_targets = [name for name, load in targets.items() if load.free > 0]
        if not open_targets:
            break
        target = min(
            open_targets, key=lambda name: (targets[name].containers + targets[name].migrating, name)
        )
        fallback = record.name in by_container  # it had a live move: this one is cold
        strategy = Strategy.COLD if fallback else spec.strategy
        name = migration_name(evacuation, record.name, fallback)
        create.append(NewMigration(name, record.name, target, strategy, fallback))
        targets[target].migrating += 1
        budget -= 1
    return create


def _under_way(attempts: list[Attempt]) -> bool:
    return any(not a.phase.is_terminal for a in attempts)


def _progress(records: list[ContainerRecord], any_target: bool) -> tuple[EvacuationPhase, str]:
    counts = {outcome: sum(1 for r in records if r.outcome is outcome) for outcome in Outcome}
    waiting, running = counts[Outcome.PENDING], counts[Outcome.RUNNING]
    if waiting or running:
        moved = counts[Outcome.SUCCEEDED]
        where = "" if any_target else "; no target host is Ready and allows the Migrations' namespace"
        return (
            EvacuationPhase.RUNNING,
            f"{moved} of {len(records)} moved, {running} moving, {waiting} waiting{where}",
        )
    not_moved = counts[Outcome.FAILED] + counts[Outcome.ROLLED_BACK]
    summary = f"{counts[Outcome.SUCCEEDED]} of {len(records)} moved"
    if counts[Outcome.SKIPPED]:
        summary += f", {counts[Outcome.SKIPPED]} skipped"
    if not_moved:
        return EvacuationPhase.FAILED, f"{summary}, {not_moved} did not move"
    return EvacuationPhase.SUCCEEDED, summary
