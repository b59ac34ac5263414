"""Who may start: one migration per container, at most maxConcurrentMigrations per host, and the
queued Migrations in the order they came.

Pure decisions over the Migrations that are under way or queued (read from the cluster, so they
survive an operator restart); the caller makes them atomic with a lock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from ferry.migration.phases import Phase

# A Migration holds its container and its hosts' slots from Preparing until it ends.
HOLDING = frozenset(phase for phase in Phase if not phase.is_terminal and phase is not Phase.PENDING)
QUEUED = "Queued"  # the status reason of a Pending Migration waiting for a slot

# How soon a queued Migration asks again: each second at the front of the line, less often further
# back, so that a long line makes a few retries a second rather than one per Migration.
FRONT_RETRY_SECONDS = 1.0
BACK_RETRY_SECONDS = 10.0
PLACES_PER_SECOND_OF_DELAY = 2


@dataclass(frozen=True)
class ActiveMigration:
    key: str  # namespace/name
    uid: str
    phase: Phase
    source_host: str | None
    target_host: str | None
    source_container_ids: frozenset[str]  # the container it moves, or each of a group's
    created: datetime  # its creationTimestamp: its place in the line
    queued: bool  # Pending, waiting for a slot (and not being deleted)

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(host for host in dict.fromkeys((self.source_host, self.target_host)) if host)


@dataclass(frozen=True)
class Turn:
    """A Migration's turn for its hosts' slots."""

    place: int  # in the line for its hosts: 1 + the older queued Migrations that need one of them
    waits_for: tuple[str, ...]  # each of its hosts with no slot for it now, described; none: it may start

    @property
    def admitted(self) -> bool:
        return not self.waits_for

    @property
    def message(self) -> str:
        return f"queued: {'; '.join(self.waits_for)} (maxConcurrentMigrations); {ordinal(self.place)} in line"

    @property
    def retry_delay(self) -> float:
        return min(BACK_RETRY_SECONDS, max(FRONT_RETRY_SECONDS, self.place / PLACES_PER_SECOND_OF_DELAY))


def holding(migrations: Iterable[ActiveMigration], own_uid: str) -> list[ActiveMigration]:
    return [m for m in migrations if m.uid != own_uid and m.phase in HOLDING]


def migrating_container(
    migrations: Iterable[ActiveMigration], own_uid: str, host: str, container_id: str
) -> ActiveMigration | None:
    """The other Migration already moving this container, if any."""
    return next(
        (
            m
            for m in holding(migrations, own_uid)
            if m.source_host == host and container_id in m.source_container_ids
        ),
        None,
    )


def take_turn(
    migrations: Iterable[ActiveMigration], candidate: ActiveMigration, limits: Mapping[str, int]
) -> Turn:
    """Whether `candidate` may start now, given the others and each host's limit (a host without
    one has no slot to give).

    The queued Migrations, the candidate among them, take the hosts' free slots oldest first
    (creationTimestamp, then namespace/name). One whose hosts have no free slot left is passed
    over, so a younger one on other hosts starts meanwhile (backfill); but a younger one on the
    same hosts never overtakes an older one that fits. The candidate stands in the line by its age
    even before it has queued: just created, it is the youngest, so it goes behind the Migrations
    already waiting for its hosts.
    """
    others = [m for m in migrations if m.uid != candidate.uid]
    running = running_per_host(others)
    free = {host: limit - running.get(host, 0) for host, limit in limits.items()}
    place = 1
    for older in sorted((m for m in others if m.queued and _arrival(m) < _arrival(candidate)), key=_arrival):
        if set(older.hosts) & set(candidate.hosts):
            place += 1
        if all(free.get(host, 0) > 0 for host in older.hosts):
            for host in older.hosts:
                free[host] -= 1
    waits_for = tuple(
        _no_slot(host, running.get(host, 0), limits.get(host, 0))
        for host in candidate.hosts
        if free.get(host, 0) <= 0
    )
    return Turn(place, waits_for)


def running_per_host(migrations: Iterable[ActiveMigration]) -> dict[str, int]:
    """How many of `migrations` hold a slot of each host, as its source or its target."""
    running: dict[str, int] = {}
    for migration in migrations:
        if migration.phase in HOLDING:
            for host in migration.hosts:
                running[host] = running.get(host, 0) + 1
    return running


def ordinal(number: int) -> str:
    """1st, 2nd, 3rd, 4th, ... 11th, 12th, 13th, ... 21st."""
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def _arrival(migration: ActiveMigration) -> tuple[datetime, str]:
    return migration.created, migration.key


def _no_slot(host: str, running: int, limit: int) -> str:
    described = f"{host} runs {running} of {limit} migrations"
    return described if running >= limit else f"{described}, older queued ones take the rest"
