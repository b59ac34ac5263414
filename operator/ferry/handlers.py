"""kopf handlers: translate Kubernetes events into calls to ferry.reconcile, nothing more."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from typing import Any

import kopf

from ferry import __version__, metrics
from ferry.api import DOCKER_HOSTS, EVACUATIONS, GROUP, MIGRATIONS, VERSION
from ferry.cluster import Cluster, load_kube_config
from ferry.evacuations import cancel_evacuation, reconcile_evacuation
from ferry.migration.admission import ActiveMigration
from ferry.reconcile import (
    DockerHostCatalog,
    HostPool,
    MigrationLine,
    Operator,
    TryAgain,
    active_migration,
    probe_and_report,
    probed_readiness,
    reconcile_migration,
    release_redirect,
)
from ferry.settings import DEFAULTS, Settings

log = logging.getLogger(__name__)


class WaitsAreNotErrors(logging.Filter):
    """kopf logs every temporary error at ERROR, and posts it as an Event on the object. ferry's are
    all waits (queued, a rollback's next try, another driver, the API server away): the status
    already says what a Migration waits for, and reconcile logs what deserves a warning. So they
    are logged at INFO, below the Events' level."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and "failed temporarily" in record.getMessage():
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


logging.getLogger("kopf.objects").addFilter(WaitsAreNotErrors())


@kopf.index(GROUP, VERSION, DOCKER_HOSTS)
def docker_hosts(name: str, spec: kopf.Spec, **_: Any) -> dict[str, dict[str, Any]]:
    """Every DockerHost's spec by name: what migrations read of their hosts, with no API call."""
    return {name: dict(spec)}


@kopf.index(GROUP, VERSION, DOCKER_HOSTS)
def docker_host_readiness(name: str, status: kopf.Status, **_: Any) -> dict[str, bool]:
    """Every probed DockerHost's readiness by name (its Ready condition), so that a Migration is
    refused a host that is not Ready with no API call; a host never probed has none."""
    ready = probed_readiness(status)
    return {} if ready is None else {name: ready}


@kopf.index(GROUP, VERSION, MIGRATIONS)
def migrations_in_line(body: kopf.Body, **_: Any) -> ActiveMigration:
    """Every Migration as admission sees it (all under the key None), so that a queued Migration
    learns that its turn has not come with no API call."""
    return active_migration(body)


@kopf.on.startup()
def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs: Any) -> None:
    """Configures kopf and makes what every handler shares; the indexes of DockerHosts are empty yet
    (kopf fills them before any resource handler runs)."""
    docker_hosts: kopf.Index[str, dict[str, Any]] = kwargs["docker_hosts"]
    readiness: kopf.Index[str, bool] = kwargs["docker_host_readiness"]
    in_line: kopf.Index[None, ActiveMigration] = kwargs["migrations_in_line"]
    ours: Settings = memo.get("settings") or DEFAULTS
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    settings.posting.level = logging.WARNING
    settings.execution.max_workers = ours.max_workers
    settings.watching.server_timeout = 300
    settings.peering.lifetime = max(5, ours.lease_seconds)
    load_kube_config()
    cluster = Cluster()
    identity = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    log.info("ferry %s starting as %s", __version__, identity)
    catalog = DockerHostCatalog(docker_hosts, readiness)
    metrics.export_host_readiness(catalog.readiness)
    memo.operator = Operator(cluster, HostPool(cluster, catalog), identity, ours, line=MigrationLine(in_line))


@kopf.on.cleanup()
def stop(memo: kopf.Memo, **_: Any) -> None:
    memo.operator.pool.close()
    memo.operator.events.flush()


@kopf.on.resume(GROUP, VERSION, MIGRATIONS, backoff=DEFAULTS.retry_seconds)
@kopf.on.create(GROUP, VERSION, MIGRATIONS, backoff=DEFAULTS.retry_seconds)
def migrate(namespace: str | None, name: str, uid: str, memo: kopf.Memo, **_: Any) -> None:
    """Runs a Migration to its end."""
    assert namespace is not None  # Migrations are namespaced
    _reconcile(memo.operator, namespace, name, uid)


@kopf.on.delete(GROUP, VERSION, MIGRATIONS, backoff=DEFAULTS.retry_seconds)
def migration_deleted(namespace: str | None, name: str, uid: str, memo: kopf.Memo, **_: Any) -> None:
    """Cancels a Migration before the freeze or finishes it after; then drops its port forwarding."""
    assert namespace is not None
    _reconcile(memo.operator, namespace, name, uid)
    release_redirect(memo.operator, namespace=namespace, name=name, uid=uid)


def _reconcile(operator: Operator, namespace: str, name: str, uid: str) -> None:
    try:
        reconcile_migration(operator, namespace=namespace, name=name, uid=uid)
    except TryAgain as later:
        raise kopf.TemporaryError(str(later), delay=later.delay) from None


EVACUATION_TICK_SECONDS = 2.0


@kopf.timer(GROUP, VERSION, EVACUATIONS, interval=EVACUATION_TICK_SECONDS)
def evacuate(
    name: str,
    uid: str,
    spec: kopf.Spec,
    status: kopf.Status,
    annotations: kopf.Annotations,
    memo: kopf.Memo,
    patch: kopf.Patch,
    **_: Any,
) -> None:
    """Follows an Evacuation: its Migrations are created, placed and counted at each tick."""
    found = reconcile_evacuation(memo.operator, name, uid, dict(spec), dict(status), dict(annotations))
    if found is not None and found != dict(status):
        patch.status.update(found)


@kopf.on.delete(GROUP, VERSION, EVACUATIONS, backoff=DEFAULTS.retry_seconds)
def evacuation_deleted(name: str, uid: str, memo: kopf.Memo, **_: Any) -> None:
    """Deletes its Migrations: those not frozen yet are cancelled, the others finish or roll back."""
    cancel_evacuation(memo.operator, name, uid)


def probe_host(
    name: str, uid: str, status: kopf.Status, memo: kopf.Memo, patch: kopf.Patch, **_: Any
) -> None:
    patch.status.update(probe_and_report(memo.operator, name, uid, status))


def register_host_probe(interval: float) -> None:
    """The DockerHost probe's timer, registered once `ferry run` has said how often it probes (kopf's
    decorator takes the interval)."""
    kopf.timer(GROUP, VERSION, DOCKER_HOSTS, interval=interval)(probe_host)
