"""Wires Kubernetes objects to the migration layer: host connections, status writes, one entry per event.

The kopf handlers call only what is here; this module knows Kubernetes (through `Cluster`) and the
hosts, but not kopf.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from ferry import metrics
from ferry.api import DockerHostSpec, MigrationSpec, SpecError
from ferry.cluster import Cluster, ClusterError
from ferry.hosts.docker_host import DockerHost
from ferry.hosts.ssh import SSHEndpoint, SSHError, SSHSession
from ferry.migration.context import HOST_ERRORS, MigrationContext, MigrationRequest
from ferry.migration.runner import run_migration
from ferry.migration.state import MigrationState, Phase, now, timestamp

log = logging.getLogger(__name__)


class HostPool:
    """Warm connections to the DockerHosts, rebuilt when a host's spec changes."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._hosts: dict[str, tuple[DockerHostSpec, DockerHost]] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return sorted(self.cluster.docker_hosts())

    def spec(self, name: str) -> DockerHostSpec:
        return self.cluster.docker_host(name)

    def connect(self, name: str) -> DockerHost:
        spec = self.spec(name)
        with self._lock:
            cached = self._hosts.get(name)
            if cached is not None and cached[0] == spec:
                return cached[1]
            if cached is not None:
                cached[1].close()
            try:
                private_key = self.cluster.secret_value(spec.ssh_key_secret)
            except ClusterError as error:
                raise SSHError(f"no SSH key for host {name}: {error}") from None
            endpoint = SSHEndpoint(name, spec.address, spec.port, spec.user, spec.host_key, private_key)
            host = DockerHost(name, SSHSession(endpoint), spec.docker_socket)
            self._hosts[name] = (spec, host)
            return host

    def close(self) -> None:
        with self._lock:
            for _, host in self._hosts.values():
                host.close()
            self._hosts.clear()


class ResourceStatus:
    """Writes a migration's state into its Migration's status subresource."""

    def __init__(self, cluster: Cluster, namespace: str, name: str) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.name = name

    def save(self, state: MigrationState, generation: int | None) -> None:
        self.cluster.patch_migration_status(self.namespace, self.name, state.to_status(generation))


def reconcile_migration(
    pool: HostPool,
    *,
    namespace: str,
    name: str,
    uid: str,
    generation: int | None,
    spec: Mapping[str, Any],
    status: Mapping[str, Any],
) -> MigrationState:
    """Runs (or resumes) one Migration to its end; a finished one is left as it is."""
    state = MigrationState.from_status(dict(status))
    sink = ResourceStatus(pool.cluster, namespace, name)
    if state.phase.is_terminal:
        return state
    try:
        parsed = MigrationSpec.from_dict(spec)
    except SpecError as error:
        state.start_time = now()
        state.enter(Phase.FAILED, str(error), reason="InvalidSpec")
        sink.save(state, generation)
        return state
    ctx = MigrationContext(MigrationRequest(namespace, name, uid, generation, parsed), state, pool, sink)
    metrics.MIGRATIONS_RUNNING.inc()
    try:
        run_migration(ctx)
    finally:
        metrics.MIGRATIONS_RUNNING.dec()
    metrics.record_finished(state)
    return state


def probe_docker_host(pool: HostPool, name: str) -> dict[str, Any]:
    """The DockerHost status: can ferry reach it, and what Docker, CRIU and kernel it runs."""
    probed = timestamp(now())
    try:
        host = pool.connect(name)
        docker_version = str(host.engine.version().get("Version", ""))
        criu_version = host.criu_version()
        kernel = host.kernel()
    except (SpecError, *HOST_ERRORS) as error:
        return {
            "lastProbeTime": probed,
            "message": str(error),
            "conditions": [_ready(False, "Unreachable", str(error))],
        }
    ready = criu_version is not None
    message = "reachable" if ready else "CRIU is not installed (criu --version failed)"
    return {
        "dockerVersion": docker_version,
        "criuVersion": criu_version or "",
        "kernel": kernel,
        "lastProbeTime": probed,
        "message": message,
        "conditions": [_ready(ready, "Reachable" if ready else "CRIUMissing", message)],
    }


def _ready(ready: bool, reason: str, message: str) -> dict[str, Any]:
    return {
        "type": "Ready",
        "status": "True" if ready else "False",
        "reason": reason,
        "message": message,
        "lastTransitionTime": timestamp(now()).split(".")[0] + "Z",
    }
