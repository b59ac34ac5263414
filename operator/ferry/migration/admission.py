"""Who may start: one migration per container, and at most maxConcurrentMigrations per host.

Pure decisions over the Migrations that are under way (read from the cluster, so they survive an
operator restart); the caller makes them atomic with a lock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ferry.migration.phases import Phase

# A Migration holds its container and its hosts' slots from Preparing until it ends.
HOLDING = frozenset(phase for phase in Phase if not phase.is_terminal and phase is not Phase.PENDING)


@dataclass(frozen=True)
class ActiveMigration:
    key: str  # namespace/name
    uid: str
    phase: Phase
    source_host: str | None
    target_host: str | None
    source_container_ids: frozenset[str]  # the container it moves, or each of a group's


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


def full_hosts(
    migrations: Iterable[ActiveMigration], own_uid: str, hosts: Iterable[str], limit: Callable[[str], int]
) -> list[str]:
    """Hosts among `hosts` that already run as many migrations as they allow, each described."""
    busy = holding(migrations, own_uid)
    full = []
    for host in hosts:
        running = sum(1 for m in busy if host in (m.source_host, m.target_host))
        if running >= limit(host):
            full.append(f"{host} runs {running} of {limit(host)} migrations")
    return full
