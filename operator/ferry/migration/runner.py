"""Drives one Migration through the phase table (ferry.migration.phases), from whatever phase its
status says, until it ends or must wait: a `Wait` tells the caller (kopf) when to call again.

Everything a step can raise is handled here, in one place (see ferry.migration.errors): a failure
fails the Migration before the freeze and rolls it back after; a failing rollback waits and is tried
again, never given up. Each step is timed here too.
"""

from __future__ import annotations

import logging
import time

from ferry.api import MigrationSpec, SpecError
from ferry.hosts import host_calls
from ferry.migration import pending
from ferry.migration.container import ContainerMigration
from ferry.migration.container_group import ContainerGroupMigration
from ferry.migration.context import HostDirectory, MigrationContext
from ferry.migration.errors import ClusterUnavailable, HostError, LostCharge, Problem, Wait, as_problem
from ferry.migration.phases import THAW, Outcome, Phase
from ferry.migration.process import ProcessMigration
from ferry.migration.state import MigrationState, milliseconds, now
from ferry.migration.steps import MigrationSteps
from ferry.migration.workload_rules import kind_problem

log = logging.getLogger(__name__)

# A rollback never gives up (that could leave the workload running nowhere): it is tried again,
# each wait about twice as long as the one before, up to a minute, and the status says what it waits for.
ROLLBACK_FIRST_DELAY = 3.0
ROLLBACK_MAX_DELAY = 60.0
PASSED_THROUGH = (Wait, LostCharge, ClusterUnavailable)  # for the caller: not the Migration's failure


def run_migration(ctx: MigrationContext) -> None:
    state = ctx.state
    if state.phase is Phase.PENDING and (problem := pending.unsupported(ctx.request.spec)) is not None:
        pending.note_the_start(ctx)  # what the spec asks cannot work: said before anything else
        ctx.advance(Phase.FAILED, problem.message, reason=problem.reason)
        return
    refusal = authorization_problem(ctx.request.namespace, ctx.request.spec, state, ctx.hosts)
    if refusal is not None:
        refuse(ctx, refusal)
        return
    migration = migration_for(ctx)
    # A driver whose lease lapsed stops before its next host call, even in the middle of a step.
    with host_calls.fenced(ctx.ensure_in_charge):
        try:
            recheck = state.phase is not Phase.PENDING  # it acts on what the status names: judged first
            while not state.phase.is_terminal:
                run_phase(ctx, migration, recheck=recheck)
                recheck = False
        finally:
            migration.release()


def run_phase(ctx: MigrationContext, migration: MigrationSteps, *, recheck: bool = False) -> None:
    """Runs the step of the current phase, then enters the phase the table (or the step) says.
    With `recheck`, the workload is judged first, as Preparing judges it (a status can be patched
    past Preparing, or to name other containers): a workload that may not move, or is not this
    migration's, ends the Migration without touching any host."""
    state = ctx.state
    phase = state.phase
    rule = phase.rule
    assert rule.step is not None
    log.info("%s/%s: %s", ctx.request.namespace, ctx.request.name, phase)
    if pause := ctx.request.pauses.get(phase):
        time.sleep(pause)
    ctx.ensure_in_charge()  # a driver that could not renew its lease stops before the next step
    started, down = now(), state.down
    try:
        if recheck and (refusal := migration.workload_problem()) is not None:
            refuse(ctx, refusal)
            return
        check_deadline(ctx)
        check_cancelled(ctx)
        with host_calls.tallied() as tally:
            try:
                outcome = getattr(migration, rule.step)() or Outcome()
            finally:
                if down:
                    state.metrics.count_in_freeze(host_calls=tally.calls)
    except PASSED_THROUGH:
        raise
    except Exception as error:
        problem = step_problem(error)
        if phase is Phase.ROLLING_BACK:
            raise rollback_wait(ctx, problem) from None
        fail(ctx, migration, problem)
        return
    finished = now()
    if rule.timed is not None and getattr(state.metrics, rule.timed) is None:
        setattr(state.metrics, rule.timed, milliseconds(started, finished))
    if phase is THAW and state.frozen_at is not None:
        state.metrics.downtime_ms = milliseconds(state.frozen_at, finished)
    if rule.enters_then_itself and outcome.ending is None:
        return
    following = outcome.ending or rule.then
    assert following is not None
    ctx.advance(following, outcome.message, outcome.reason)


def step_problem(error: Exception) -> Problem:
    if isinstance(error, (Problem, HostError)):
        return as_problem(error)
    log.exception("a step failed unexpectedly")
    return Problem("InternalError", f"ferry failed unexpectedly ({type(error).__name__}: {error})")


def fail(ctx: MigrationContext, migration: MigrationSteps, problem: Problem) -> None:
    """Before the freeze (or when a failed dump left the workload running): Failed, and what was made
    on the target removed. After it: RollingBack."""
    state = ctx.state
    log.warning(
        "%s/%s failed in %s: %s", ctx.request.namespace, ctx.request.name, state.phase, problem.message
    )
    ending = state.phase.rule.on_failure
    if ending is Phase.ROLLING_BACK and problem.frozen:
        ctx.advance(Phase.ROLLING_BACK, problem.message, reason=problem.reason)
        return
    if migration.made_on_target():
        try:
            migration.target_cleanup()
        except (HostError, Problem) as error:
            log.warning("could not clean up the target: %s", error)
    ctx.advance(Phase.FAILED, problem.message, reason=problem.reason)


def rollback_wait(ctx: MigrationContext, problem: Problem) -> Wait:
    """Records what the rollback waits for (written only when that changed); the wait is as long as
    it has waited already plus the first delay, so each wait about doubles, up to a minute."""
    state = ctx.state
    log.warning("%s/%s: rollback waits for: %s", ctx.request.namespace, ctx.request.name, problem.message)
    if state.wait_for(problem.message):
        ctx.save()
    waited = milliseconds(state.waiting_since or now(), now()) / 1000
    return Wait(problem.message, min(waited + ROLLBACK_FIRST_DELAY, ROLLBACK_MAX_DELAY))


def authorization_problem(
    namespace: str, spec: MigrationSpec, state: MigrationState, hosts: HostDirectory
) -> Problem | None:
    """Why a run of this Migration may not touch any host, if it may not.

    Decided on every run (create, resume, delete) from the spec and the DockerHosts: the status,
    which a tenant can patch, must agree with the spec and never widens what it allows. Each host
    must let the namespace in and move this kind of workload (ferry.migration.workload_rules).
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
            host = hosts.spec(name)
        except SpecError as error:
            return Problem("InvalidHost", str(error))
        if not host.allows_namespace(namespace):
            return Problem(
                "NamespaceNotAllowed",
                f"DockerHost '{name}' does not allow Migrations from namespace '{namespace}' "
                "(see its spec.allowedNamespaces)",
            )
        if (refused := kind_problem(namespace, spec.workload, host)) is not None:
            return refused
    return None


def _status_contradiction(spec: MigrationSpec, state: MigrationState) -> str | None:
    if state.phase is not Phase.PENDING and (state.source_host is None or state.target_host is None):
        return f"status.phase is {state.phase} but the status does not name both hosts"
    if state.phase is Phase.PENDING and state.target_container_id:
        return "status.phase is Pending but the status names a target container, which only Preparing makes"
    if state.target_host is not None and state.target_host != spec.target_host:
        return f"status.targetHost '{state.target_host}' is not spec.targetHost '{spec.target_host}'"
    if spec.source_host is not None and state.source_host not in (None, spec.source_host):
        return f"status.sourceHost '{state.source_host}' is not spec.sourceHost '{spec.source_host}'"
    return None


def refuse(ctx: MigrationContext, problem: Problem) -> None:
    """Ends the Migration Failed, from whatever phase its status claims, without touching any host."""
    state = ctx.state
    log.warning("%s/%s refused: %s", ctx.request.namespace, ctx.request.name, problem.message)
    pending.note_the_start(ctx)
    state.abandon(f"{problem.message}; stopped in {state.phase} without touching any host", problem.reason)
    ctx.save()


def migration_for(ctx: MigrationContext) -> MigrationSteps:
    workload = ctx.request.spec.workload
    if workload.process is not None:
        return ProcessMigration(ctx)
    if workload.group is not None:
        return ContainerGroupMigration(ctx)
    return ContainerMigration(ctx)


def check_deadline(ctx: MigrationContext) -> None:
    """spec.timeoutSeconds, counted from the slot on its hosts: waiting in line is not held against it,
    and a rollback runs to its end whatever the clock says."""
    state, timeout = ctx.state, ctx.request.spec.timeout_seconds
    since = state.admitted_at or state.start_time
    if state.phase in (Phase.PENDING, Phase.ROLLING_BACK) or since is None:
        return
    if milliseconds(since, now()) > timeout * 1000:
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
