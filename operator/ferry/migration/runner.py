"""Drives one Migration through its phases until it ends, whatever phase it starts from."""

from __future__ import annotations

import logging
from collections.abc import Callable

from ferry.api import Strategy, Transfer
from ferry.migration.container import LiveContainerMigration
from ferry.migration.context import HOST_ERRORS, MigrationContext, Problem
from ferry.migration.state import Phase, milliseconds, now

log = logging.getLogger(__name__)


def run_migration(ctx: MigrationContext) -> None:
    state = ctx.state
    if state.phase is Phase.PENDING:
        _guarded(ctx, lambda: begin(ctx))
    if state.phase.is_terminal:
        return
    migration = LiveContainerMigration(ctx)
    steps = migration.steps()

    def next_step() -> None:
        log.info("%s/%s: %s", ctx.request.namespace, ctx.request.name, state.phase)
        check_deadline(ctx)
        steps[state.phase]()

    try:
        while not state.phase.is_terminal:
            _guarded(ctx, next_step)
    finally:
        migration.release()


def begin(ctx: MigrationContext) -> None:
    """Pending -> Preparing: check what only the operator can know, and find the source host."""
    spec, state = ctx.request.spec, ctx.state
    state.start_time = now()
    state.workload = spec.workload.describe()
    state.target_host = spec.target_host
    if spec.workload.container is None:
        raise Problem("NotSupported", "process workloads are not supported yet; use workload.container")
    if spec.strategy is not Strategy.LIVE:
        raise Problem("NotSupported", f"strategy {spec.strategy} is not supported yet; use Live")
    if spec.transfer is not Transfer.STREAM:
        raise Problem("NotSupported", f"transfer {spec.transfer} is not supported yet; use Stream")
    known = ctx.hosts.names()
    for role, name in (("targetHost", spec.target_host), ("sourceHost", spec.source_host)):
        if name is None:
            continue
        if name not in known:
            raise Problem("UnknownHost", f"spec.{role} names DockerHost '{name}', which does not exist")
        if not ctx.hosts.spec(name).allows_namespace(ctx.request.namespace):
            raise Problem(
                "NamespaceNotAllowed",
                f"DockerHost '{name}' does not allow Migrations from namespace '{ctx.request.namespace}' "
                "(see its spec.allowedNamespaces)",
            )
    state.source_host = spec.source_host or find_source_host(ctx, spec.workload.container)
    ctx.advance(Phase.PREPARING)


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
            f"container '{container}' is on none of the hosts {', '.join(candidates) or '(none)'}",
        )
    if len(found) > 1:
        raise Problem(
            "AmbiguousSource", f"container '{container}' exists on {' and '.join(found)}; set spec.sourceHost"
        )
    return found[0]


def check_deadline(ctx: MigrationContext) -> None:
    state, timeout = ctx.state, ctx.request.spec.timeout_seconds
    if state.phase is Phase.ROLLING_BACK or state.start_time is None:
        return  # a rollback runs to its end whatever the clock says
    if milliseconds(state.start_time, now()) > timeout * 1000:
        raise Problem(
            "Timeout", f"the migration took longer than spec.timeoutSeconds ({timeout}s) in {state.phase}"
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
    if state.phase is Phase.ROLLING_BACK:
        ctx.advance(
            Phase.FAILED,
            f"rollback failed: {problem.message}; the checkpoint {state.checkpoint_name} "
            f"is kept on {state.source_host} (cause of the rollback: {state.message})",
            reason="RollbackFailed",
        )
    elif state.phase.is_frozen and problem.frozen:
        ctx.advance(Phase.ROLLING_BACK, problem.message, reason=problem.reason)
    else:
        if state.target_container_id is not None:
            try:
                LiveContainerMigration(ctx).target_cleanup()
            except HOST_ERRORS as error:
                log.warning("could not clean up the target: %s", error)
        ctx.advance(Phase.FAILED, problem.message, reason=problem.reason)
