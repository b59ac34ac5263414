"""kopf handlers: translate Kubernetes events into calls to ferry.reconcile, nothing more."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from ferry.api import DOCKER_HOSTS, GROUP, MIGRATIONS, VERSION
from ferry.cluster import Cluster, load_kube_config
from ferry.reconcile import HostPool, probe_docker_host, reconcile_migration

HOST_PROBE_SECONDS = 60.0


@kopf.on.startup()
def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    settings.posting.level = logging.WARNING
    settings.execution.max_workers = 32
    settings.watching.server_timeout = 300
    load_kube_config()
    memo.pool = HostPool(Cluster())


@kopf.on.cleanup()
def stop(memo: kopf.Memo, **_: Any) -> None:
    memo.pool.close()


@kopf.on.resume(GROUP, VERSION, MIGRATIONS)
@kopf.on.create(GROUP, VERSION, MIGRATIONS)
def migrate(
    spec: kopf.Spec,
    status: kopf.Status,
    namespace: str | None,
    name: str,
    uid: str,
    meta: kopf.Meta,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    assert namespace is not None  # Migrations are namespaced
    reconcile_migration(
        memo.pool,
        namespace=namespace,
        name=name,
        uid=uid,
        generation=meta.get("generation"),
        spec=dict(spec),
        status=dict(status),
    )


@kopf.timer(GROUP, VERSION, DOCKER_HOSTS, interval=HOST_PROBE_SECONDS)
def probe_host(name: str, memo: kopf.Memo, patch: kopf.Patch, **_: Any) -> None:
    patch.status.update(probe_docker_host(memo.pool, name))
