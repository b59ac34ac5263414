"""A host that is not Ready takes part in no migration: it is refused in Pending, before anything is
made on any host, with what is wrong there.

Decided from the host's Ready condition as the operator's watch holds it (no call to anything, and
what `kubectl get dockerhosts` shows), confirmed by a fresh probe before refusing: a host that came
back since its last probe is not refused for a state it left. A host never probed is not refused,
and one that broke since its last probe fails at first contact, as any host error does. Only the
faults that break what this migration uses count: a host without CRIU still takes a Cold move.
"""

from __future__ import annotations

from collections.abc import Iterable

from ferry.api import MigrationSpec, Strategy
from ferry.hosts import health
from ferry.hosts.health import Part
from ferry.migration.context import MigrationContext
from ferry.migration.errors import HostError, Problem

LIVE_CONTAINER = frozenset(Part)
COLD_CONTAINER = frozenset({Part.SSH, Part.DOCKER})  # stopped, copied and started: no checkpoint
PROCESS = frozenset({Part.SSH, Part.CRIU})  # CRIU over SSH: Docker plays no part


def parts_used(spec: MigrationSpec) -> frozenset[Part]:
    if spec.workload.process is not None:
        return PROCESS
    return COLD_CONTAINER if spec.strategy is Strategy.COLD else LIVE_CONTAINER


def not_ready(ctx: MigrationContext, name: str) -> Problem | None:
    """Why host `name` cannot take part in this migration, when its last probe and a fresh one agree
    that it cannot."""
    if ctx.hosts.ready(name) is not False:
        return None
    try:
        found = health.probe(ctx.host(name))
    except HostError as error:  # no connection to be had (its SSH key, say)
        found = health.unreachable(error)
    faults = found.breaking(parts_used(ctx.request.spec))
    if not faults:
        return None
    return Problem(
        faults[0].reason, f"DockerHost {name} is not Ready: {'; '.join(fault.message for fault in faults)}"
    )


def require_ready(ctx: MigrationContext, names: Iterable[str | None]) -> None:
    """Raises the Problem of the first of `names` that is not Ready for this migration."""
    for name in names:
        if name is not None and (problem := not_ready(ctx, name)) is not None:
            raise problem
