"""Wires Evacuations to the cluster and the hosts. Each tick reads the Migrations an Evacuation owns
and what its hosts run, plans (ferry.evacuation.plan), creates the Migrations the plan asks for, and
returns the status to write; the Migrations do the moving, each as if a user had written it.

The handlers call only what is here; this module knows Kubernetes and the hosts, not kopf.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ferry.api import GROUP, VERSION, EvacuationSpec, SpecError, Strategy
from ferry.evacuation.plan import Attempt, HostLoad, NewMigration, SourceContainer, plan
from ferry.evacuation.status import ContainerRecord, EvacuationPhase, EvacuationStatus, Outcome
from ferry.events import Events, ObjectRef
from ferry.migration.admission import running_per_host
from ferry.migration.errors import ClusterUnavailable, HostError
from ferry.migration.phases import Phase
from ferry.migration.state import now
from ferry.reconcile import TEST_PAUSE_ANNOTATION, Operator, active_migration

log = logging.getLogger(__name__)

EVACUATION_LABEL = "ferry.dev/evacuation"  # on each Migration an Evacuation creates: its name
FALLBACK_LABEL = "ferry.dev/cold-fallback"  # "true" on the cold move after a live one failed


def reconcile_evacuation(
    operator: Operator,
    name: str,
    uid: str,
    spec: Mapping[str, Any],
    status: Mapping[str, Any],
    annotations: Mapping[str, str],
) -> dict[str, Any] | None:
    """One tick: the Evacuation's new status, or None once it has ended (nothing more to do)."""
    before = EvacuationStatus.from_status(dict(status))
    if before.phase.is_terminal:
        return None
    after = before.model_copy(deep=True)
    after.start_time = after.start_time or now()
    ref = ObjectRef("Evacuation", name, uid)
    try:
        parsed = EvacuationSpec.from_dict(spec)
        _check(operator, name, parsed)
    except SpecError as error:
        after.ended(EvacuationPhase.FAILED, str(error), now())
        operator.events.post(ref, "InvalidSpec", str(error), warning=True)
        return after.to_status()
    try:
        migrations = operator.cluster.list_migrations()
        attempts = [_attempt(m) for m in migrations if _owned_by(m, name, uid)]
        slots_held = running_per_host(active_migration(m) for m in migrations)
        on_source, source = _source(operator, parsed, slots_held)
        targets = _targets(operator, parsed, slots_held)
    except (HostError, ClusterUnavailable) as error:
        log.warning("Evacuation %s waits: %s", name, error)
        after.message = f"waiting: {error}"
        return after.to_status()
    decided = plan(name, parsed, on_source, attempts, source, targets)
    for new in decided.create:
        operator.cluster.create_migration(
            parsed.migration_namespace, _migration(operator, name, uid, parsed, new, annotations)
        )
    after.containers, after.phase, after.message = decided.records, decided.phase, decided.message
    if decided.phase.is_terminal:
        after.ended(decided.phase, decided.message, now())
    _post_news(operator.events, ref, parsed, before, after)
    return after.to_status()


def cancel_evacuation(operator: Operator, name: str, uid: str) -> None:
    """The Evacuation is being deleted: so are its Migrations. Each one that has not frozen is
    cancelled; one past the freeze finishes or rolls back first (the Migration's own deletion)."""
    for migration in operator.cluster.list_migrations():
        if _owned_by(migration, name, uid):
            meta = migration["metadata"]
            operator.cluster.delete_migration(meta["namespace"], meta["name"])


def _check(operator: Operator, name: str, spec: EvacuationSpec) -> None:
    if len(name) > 63:
        raise SpecError(
            f"the Evacuation's name has {len(name)} characters: at most 63 (it labels its Migrations)"
        )
    for host in (spec.source_host, *spec.target_hosts):
        operator.pool.spec(host)  # SpecError when it does not exist
    served = operator.settings.namespaces
    if served and spec.migration_namespace not in served:
        raise SpecError(
            f"spec.migrationNamespace {spec.migration_namespace} is not served by this operator "
            f"(it serves {', '.join(served)})"
        )


def _owned_by(migration: Mapping[str, Any], name: str, uid: str) -> bool:
    meta = migration["metadata"]
    return meta.get("labels", {}).get(EVACUATION_LABEL) == name and any(
        owner.get("uid") == uid for owner in meta.get("ownerReferences", [])
    )


def _attempt(migration: Mapping[str, Any]) -> Attempt:
    meta, spec, status = migration["metadata"], migration.get("spec", {}), migration.get("status", {})
    return Attempt(
        migration=meta["name"],
        container=str(spec.get("workload", {}).get("container", "")),
        target=str(spec.get("targetHost", "")),
        strategy=Strategy(spec.get("strategy", Strategy.LIVE.value)),
        phase=Phase(status.get("phase", Phase.PENDING.value)),
        message=str(status.get("message", "")),
        fallback=meta.get("labels", {}).get(FALLBACK_LABEL) == "true",
    )


def _load(operator: Operator, host: str, slots_held: Mapping[str, int], containers: int) -> HostLoad:
    return HostLoad(containers, slots_held.get(host, 0), operator.pool.spec(host).max_concurrent_migrations)


def _source(
    operator: Operator, spec: EvacuationSpec, slots_held: Mapping[str, int]
) -> tuple[list[SourceContainer], HostLoad]:
    running = operator.pool.connect(spec.source_host).engine.running_containers()
    found = [SourceContainer(c["Names"][0].lstrip("/"), c.get("Labels") or {}) for c in running]
    return found, _load(operator, spec.source_host, slots_held, len(found))


def _targets(operator: Operator, spec: EvacuationSpec, slots_held: Mapping[str, int]) -> dict[str, HostLoad]:
    """The hosts it may move containers to, now: those named (or every Ready host but the source)
    that are not known to be down, allow the Migrations' namespace, and answer."""
    pool = operator.pool
    named = spec.target_hosts or tuple(n for n in pool.names() if n != spec.source_host and pool.ready(n))
    targets = {}
    for host in named:
        if pool.ready(host) is False or not pool.spec(host).allows_namespace(spec.migration_namespace):
            continue
        try:
            running = len(pool.connect(host).engine.running_containers())
        except HostError as error:
            log.warning("Evacuation: target %s left out for now: %s", host, error)
            continue
        targets[host] = _load(operator, host, slots_held, running)
    return targets


def _migration(
    operator: Operator,
    evacuation: str,
    uid: str,
    spec: EvacuationSpec,
    new: NewMigration,
    annotations: Mapping[str, str],
) -> dict[str, Any]:
    labels = {EVACUATION_LABEL: evacuation}
    if new.fallback:
        labels[FALLBACK_LABEL] = "true"
    metadata: dict[str, Any] = {
        "name": new.name,
        "namespace": spec.migration_namespace,
        "labels": labels,
        "ownerReferences": [
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Evacuation",
                "name": evacuation,
                "uid": uid,
                "controller": True,
            }
        ],
    }
    if operator.settings.test_hooks and TEST_PAUSE_ANNOTATION in annotations:
        metadata["annotations"] = {TEST_PAUSE_ANNOTATION: annotations[TEST_PAUSE_ANNOTATION]}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Migration",
        "metadata": metadata,
        "spec": {
            "workload": {"container": new.container},
            "sourceHost": spec.source_host,
            "targetHost": new.target,
            "strategy": new.strategy.value,
        },
    }


NEWS = {
    Outcome.SUCCEEDED: ("Moved", False),
    Outcome.FAILED: ("NotMoved", True),
    Outcome.ROLLED_BACK: ("NotMoved", True),
    Outcome.SKIPPED: ("Skipped", True),
}


def _post_news(
    events: Events, ref: ObjectRef, spec: EvacuationSpec, before: EvacuationStatus, after: EvacuationStatus
) -> None:
    """Events for what changed since the last status: the start, each Migration created, each
    container's end, the Evacuation's end."""
    if before.start_time is None:
        events.post(ref, "Started", f"evacuating {len(after.containers)} containers from {spec.source_host}")
    earlier = {record.name: record for record in before.containers}
    for record in after.containers:
        was = earlier.get(record.name, ContainerRecord(name=record.name, outcome=Outcome.PENDING))
        if record.migration is not None and record.migration != was.migration:
            events.post(
                ref,
                "MigrationCreated",
                f"{record.name} to {record.target} ({record.strategy}): "
                f"Migration {spec.migration_namespace}/{record.migration}",
            )
        if record.outcome in NEWS and record.outcome is not was.outcome:
            reason, warning = NEWS[record.outcome]
            events.post(
                ref, reason, f"{record.name}: {record.message or f'now on {record.target}'}", warning=warning
            )
    if after.phase.is_terminal:
        events.post(ref, after.phase.value, after.message, warning=after.phase is EvacuationPhase.FAILED)
