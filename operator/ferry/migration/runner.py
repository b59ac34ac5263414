"""Drives one Migration through its phases until it ends, whatever phase it starts from."""

from __future__ import annotations

import difflib
import logging
import time
from collections.abc import Callable

from ferry.api import MigrationSpec, SpecError, Strategy, Transfer
from ferry.migration.admission import full_hosts, migrating_container
from ferry.migration.container import ContainerMigration
from ferry.migration.context import HOST_ERRORS, HostDirectory, MigrationContext, Problem
from ferry.migration.process import ProcessMigration
from ferry.migration.state import MigrationState, Phase, milliseconds, now
from ferry.migration.steps import MigrationSteps

log = logging.getLogger(__name__)

ADMISSION_POLL_SECONDS = 1.0
# A rollback never gives up (that could leave the workload running nowhere): it retries, waiting
# twice as long each time up to a minute, and says in the status what it waits for.
ROLLBACK_FIRST_DELAY = 3.0
ROLLBACK_MAX_DELAY = 60.0


def run_migration(ctx: MigrationContext) -> None:
    state = ctx.state
    refusal = authorization_problem(ctx.request.namespace, ctx.request.spec, state, ctx.hosts)
    if refusal is not None:
        refuse(ctx, refusal)
        return
    if state.phase is Phase.PENDING:
        _guarded(ctx, lambda: begin(ctx))
    if state.phase.is_terminal:
        return
    migration = migration_for(ctx)
    steps = migration.steps()

    def next_step() -> None:
        phase = state.phase
        log.info("%s/%s: %s", ctx.request.namespace, ctx.request.name, phase)
        if pause := ctx.request.pauses.get(phase):
            time.sleep(pause)
        ctx.ensure_in_charge()  # a driver that could not renew its lease stops before the next step
        check_deadline(ctx)
        check_cancelled(ctx)
        steps[phase]()

    try:
        while not state.phase.is_terminal:
            if state.phase is Phase.ROLLING_BACK:
                roll_back_until_done(ctx, next_step)
            else:
                _guarded(ctx, next_step)
    finally:
        migration.release()


def authorization_problem(
    namespace: str, spec: MigrationSpec, state: MigrationState, hosts: HostDirectory
) -> Problem | None:
    """Why a run of this Migration may not touch any host, if it may not.

    Decided on every run (create, resume, delete) from the spec and the DockerHosts: the status,
    which a tenant can patch, must agree with the spec and never widens what it allows.
    """
    contradiction = _status_contradiction(spec, state)
    if contradiction is not None:
        return Problem("StatusTampered", contradiction)
    touched = {spec.target_host: "spec.targetHost"}
    for role, name in (
        ("spec.sourceHost", spec.source_host),
        ("status.sourceHost", state.source_host),
        ("status.targetHost", state.target_host),
    ):
        if name is not None:
            touched.setdefault(name, role)
    known = hosts.names()
    for name, role in touched.items():
        if name not in known:
            return Problem(
                "UnknownHost",
                f"{role} names DockerHost '{name}', which does not exist; "
                f"the DockerHosts are: {', '.join(known) or '(none)'}",
            )
        try:
            allowed = hosts.spec(name).allows_namespace(namespace)
        except SpecError as error:
            return Problem("InvalidHost", str(error))
        if not allowed:
            return Problem(
                "NamespaceNotAllowed",
                f"DockerHost '{name}' does not allow Migrations from namespace '{namespace}' "
                "(see its spec.allowedNamespaces)",
            )
    return None


def _status_contradiction(spec: MigrationSpec, state: MigrationState) -> str | None:
    if state.phase is not Phase.PENDING and (state.source_host is None or state.target_host is None):
        return f"status.phase is {state.phase} but the status does not name both hosts"
    if state.target_host is not None and state.target_host != spec.target_host:
        return f"status.targetHost '{state.target_host}' is not spec.targetHost '{spec.target_host}'"
    if spec.source_host is not None and state.source_host not in (None, spec.source_host):
        return f"status.sourceHost '{state.source_host}' is not spec.sourceHost '{spec.source_host}'"
    return None


def refuse(ctx: MigrationContext, problem: Problem) -> None:
    """Ends the Migration Failed, from whatever phase its status claims, without touching any host."""
    state = ctx.state
    log.warning("%s/%s refused: %s", ctx.request.namespace, ctx.request.name, problem.message)
    state.start_time = state.start_time or now()
    state.workload = state.workload or ctx.request.spec.workload.describe()
    state.abandon(f"{problem.message}; stopped in {state.phase} without touching any host", problem.reason)
    ctx.save()


def roll_back_until_done(
    ctx: MigrationContext, step: Callable[[], None], sleep: Callable[[float], None] = time.sleep
) -> None:
    """Runs the rollback step until it ends the Migration (the workload runs again on the source,
    or is kept on the target); each failure is waited out, and a new one is written to the status."""
    delay = ROLLBACK_FIRST_DELAY
    while ctx.state.phase is Phase.ROLLING_BACK:
        ctx.ensure_in_charge()
        try:
            step()
        except Problem as problem:
            obstacle = problem.message
        except HOST_ERRORS as error:
            obstacle = str(error)
        else:
            continue
        log.warning(
            "%s/%s: rollback waits %.0fs for: %s", ctx.request.namespace, ctx.request.name, delay, obstacle
        )
        if ctx.state.wait_for(obstacle):
            ctx.save()
        sleep(delay)
        delay = min(delay * 2, ROLLBACK_MAX_DELAY)


def migration_for(ctx: MigrationContext) -> MigrationSteps:
    if ctx.request.spec.workload.process is not None:
        return ProcessMigration(ctx)
    return ContainerMigration(ctx)


def begin(ctx: MigrationContext) -> None:
    """Pending -> Preparing: check what only the operator can know, then wait for a free slot."""
    spec, state = ctx.request.spec, ctx.state
    state.start_time = state.start_time or now()
    state.workload = spec.workload.describe()
    state.target_host = spec.target_host
    if spec.workload.process is not None and spec.strategy is Strategy.COLD:
        raise Problem(
            "NotSupported", "a plain process can only move Live: a cold move would restart it from scratch"
        )
    if spec.workload.process is not None and spec.transfer is not Transfer.STREAM:
        raise Problem("NotSupported", "a plain process moves with transfer: Stream")
    container = spec.workload.container
    if container is None:
        state.source_host = spec.source_host
    else:
        state.source_host = spec.source_host or find_source_host(ctx, container)
        info = ctx.host(state.source_host).engine.find_container(container)
        if info is None:
            raise Problem(
                "ContainerNotFound",
                f"container '{container}' does not exist on host {state.source_host}; "
                + closest_containers(ctx, container, [state.source_host]),
            )
        state.source_container_id = info["Id"]
    wait_for_admission(ctx)


def wait_for_admission(ctx: MigrationContext) -> None:
    """Enters Preparing once the container is free and both hosts have a slot; queues until then."""
    state, coordination = ctx.state, ctx.coordination
    assert state.source_host is not None and state.target_host is not None
    hosts = (state.source_host, state.target_host)
    container_id = state.source_container_id
    while True:
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
            full = full_hosts(
                active, ctx.request.uid, hosts, lambda name: ctx.hosts.spec(name).max_concurrent_migrations
            )
            if not full:
                ctx.advance(Phase.PREPARING)  # recorded before the lock is let go: the next decision sees it
                return
        waiting = f"queued: {'; '.join(full)} (maxConcurrentMigrations)"
        if state.message != waiting:
            state.message, state.reason = waiting, "Queued"
            ctx.save()
        check_deadline(ctx)
        check_cancelled(ctx)
        time.sleep(ADMISSION_POLL_SECONDS)


def find_source_host(ctx: MigrationContext, container: str) -> str:
    spec = ctx.request.spec
    candidates = [
        name
        for name in ctx.hosts.names()
        if name != spec.target_host and ctx.hosts.spec(name).allows_namespace(ctx.request.namespace)
    ]
    found = [name for name in candidates if ctx.host(name).engine.find_container(container) is not None]
    if not found:
        raise Problem(
            "ContainerNotFound",
            f"container '{container}' is on none of the hosts searched ({', '.join(candidates) or 'none'}); "
            + closest_containers(ctx, container, candidates),
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


def check_deadline(ctx: MigrationContext) -> None:
    state, timeout = ctx.state, ctx.request.spec.timeout_seconds
    if state.phase is Phase.ROLLING_BACK or state.start_time is None:
        return  # a rollback runs to its end whatever the clock says
    if milliseconds(state.start_time, now()) > timeout * 1000:
        raise Problem(
            "Timeout", f"the migration took longer than spec.timeoutSeconds ({timeout}s) in {state.phase}"
        )


def check_cancelled(ctx: MigrationContext) -> None:
    """Deleting a Migration cancels it before the freeze; after it, the migration finishes first."""
    state = ctx.state
    if not state.phase.is_frozen and ctx.coordination.cancel_requested():
        raise Problem(
            "Cancelled",
            f"the Migration was deleted before the freeze; {state.workload} stays on {state.source_host}",
        )


def _guarded(ctx: MigrationContext, step: Callable[[], None]) -> None:
    try:
        step()
    except Problem as problem:
        _handle_failure(ctx, problem)
    except HOST_ERRORS as error:
        _handle_failure(ctx, Problem("HostError", str(error)))


def _handle_failure(ctx: MigrationContext, problem: Problem) -> None:
    state = ctx.state
    log.warning(
        "%s/%s failed in %s: %s", ctx.request.namespace, ctx.request.name, state.phase, problem.message
    )
    if state.phase.is_frozen and problem.frozen:
        ctx.advance(Phase.ROLLING_BACK, problem.message, reason=problem.reason)
    else:
        if state.target_container_id is not None:
            try:
                migration_for(ctx).target_cleanup()
            except HOST_ERRORS as error:
                log.warning("could not clean up the target: %s", error)
        ctx.advance(Phase.FAILED, problem.message, reason=problem.reason)
