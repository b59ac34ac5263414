"""The Pending phase: find the workload, then take a slot on both hosts, or say the Migration is
queued and come back later (`Wait`: kopf does the waiting, no worker sleeps)."""

from __future__ import annotations

import contextlib
import difflib

from ferry.api import MigrationSpec, SpecError, Strategy, Transfer
from ferry.migration.admission import QUEUED, ActiveMigration, migrating_container, take_turn
from ferry.migration.context import HostDirectory, MigrationContext
from ferry.migration.errors import Problem, Wait
from ferry.migration.phases import Phase
from ferry.migration.readiness import not_ready, require_ready
from ferry.migration.state import now


def note_the_start(ctx: MigrationContext) -> None:
    """When it began and what it moves, as the spec says (whatever a status says)."""
    ctx.state.start_time = ctx.state.start_time or now()
    ctx.state.workload = ctx.request.spec.workload.describe()


def unsupported(spec: MigrationSpec) -> Problem | None:
    """A combination of the spec that cannot work (the CRD refuses these too, since it has the rules)."""
    process = spec.workload.process is not None
    if process and spec.strategy is Strategy.COLD:
        return Problem(
            "NotSupported", "a plain process can only move Live: a cold move would restart it from scratch"
        )
    if process and spec.transfer is not Transfer.STREAM:
        return Problem("NotSupported", "a plain process moves with transfer: Stream")
    if process and spec.redirect:
        return Problem(
            "NotSupported", "redirect forwards a container's published ports: not for a plain process"
        )
    if spec.strategy is Strategy.COLD and spec.transfer is Transfer.SHARED_DIRECTORY:
        return Problem(
            "NotSupported",
            "transfer: SharedDirectory passes a checkpoint, which strategy: Cold does not take; "
            "use transfer: Stream",
        )
    return None


def admit(ctx: MigrationContext) -> None:
    """Pending -> Preparing: check what only the operator can know, then take a free slot."""
    spec, state = ctx.request.spec, ctx.state
    note_the_start(ctx)
    state.target_host = spec.target_host
    require_ready(ctx, (spec.target_host, state.source_host or spec.source_host))
    container = spec.workload.container
    if container is None:
        state.source_host = spec.source_host
    elif state.source_host is None or state.source_container_id is None:  # found before it queued
        state.source_host = spec.source_host or find_source_host(ctx, container)
        info = ctx.host(state.source_host).engine.find_container(container)
        if info is None:
            raise Problem(
                "ContainerNotFound",
                f"container '{container}' does not exist on host {state.source_host}; "
                + closest_containers(ctx, container, [state.source_host]),
            )
        state.source_container_id = info["Id"]
    take_a_slot(ctx)


def take_a_slot(ctx: MigrationContext) -> None:
    """Returns once the container is free and it is this Migration's turn for a slot on both hosts
    (the runner then enters Preparing); otherwise records that the Migration is queued, why, and
    its place in line, and waits: the further back, the longer."""
    state, coordination = ctx.state, ctx.coordination
    assert state.source_host is not None and state.target_host is not None
    container_id = state.source_container_id
    with coordination.admission_lock:
        active = coordination.active_migrations()
        holder = (
            migrating_container(active, ctx.request.uid, state.source_host, container_id)
            if container_id is not None
            else None
        )
        if holder is not None:
            raise Problem(
                "ContainerBusy",
                f"{state.workload} on {state.source_host} is busy: Migration {holder.key} is moving it",
            )
        turn = take_turn(active, in_line(ctx), host_limits(ctx.hosts))
        if turn.admitted:
            # Entered before the lock is let go, so that the next decision sees this one.
            ctx.advance(Phase.PREPARING)
            return
    if state.message != turn.message:
        state.message, state.reason = turn.message, QUEUED
        ctx.save()
    raise Wait(turn.message, turn.retry_delay)


def in_line(ctx: MigrationContext) -> ActiveMigration:
    """This Migration as it stands in the line for its hosts' slots."""
    state, request = ctx.state, ctx.request
    return ActiveMigration(
        key=f"{request.namespace}/{request.name}",
        uid=request.uid,
        phase=state.phase,
        source_host=state.source_host,
        target_host=state.target_host,
        source_container_ids=frozenset({state.source_container_id} if state.source_container_id else ()),
        created=request.created,
        queued=True,
    )


def host_limits(hosts: HostDirectory) -> dict[str, int]:
    """Each DockerHost's maxConcurrentMigrations; one whose spec is invalid has no slot to give."""
    limits = {}
    for name in hosts.names():
        with contextlib.suppress(SpecError):
            limits[name] = hosts.spec(name).max_concurrent_migrations
    return limits


def find_source_host(ctx: MigrationContext, container: str) -> str:
    spec = ctx.request.spec
    candidates = [
        name
        for name in ctx.hosts.names()
        if name != spec.target_host and ctx.hosts.spec(name).allows_namespace(ctx.request.namespace)
    ]
    unready = [name for name in candidates if not_ready(ctx, name) is not None]
    searched = [name for name in candidates if name not in unready]
    found = [name for name in searched if ctx.host(name).engine.find_container(container) is not None]
    if not found:
        skipped = f"; not searched, as not Ready: {', '.join(unready)}" if unready else ""
        raise Problem(
            "ContainerNotFound",
            f"container '{container}' is on none of the hosts searched ({', '.join(searched) or 'none'}); "
            + closest_containers(ctx, container, searched)
            + skipped,
        )
    if len(found) > 1:
        raise Problem(
            "AmbiguousSource", f"container '{container}' exists on {' and '.join(found)}; set spec.sourceHost"
        )
    return found[0]


def closest_containers(ctx: MigrationContext, container: str, hosts: list[str]) -> str:
    """A hint for a container name not found: the closest names of the containers running on `hosts`."""
    where: dict[str, list[str]] = {}
    for host in hosts:
        for listed in ctx.host(host).engine.running_containers():
            for name in listed["Names"]:
                where.setdefault(name.lstrip("/"), []).append(host)
    closest = difflib.get_close_matches(container, where, n=3)
    if not closest:
        return "no running container there has a similar name"
    return "closest running containers: " + ", ".join(
        f"'{name}' on {' and '.join(where[name])}" for name in closest
    )
