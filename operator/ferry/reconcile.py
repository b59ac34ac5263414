"""Wires Kubernetes objects to the migration layer: host connections, status writes, one entry per event.

The kopf handlers call only what is here; this module knows Kubernetes (through `Cluster`) and the
hosts, but not kopf.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from ferry import __version__, metrics
from ferry.api import DockerHostSpec, MigrationSpec, SpecError
from ferry.cluster import Cluster, ClusterError, Conflict
from ferry.events import Events, ObjectRef
from ferry.hosts import health
from ferry.hosts.docker_host import DockerHost
from ferry.hosts.peer_stream import PeerEndpoint
from ferry.hosts.runc import FastPathConfig
from ferry.hosts.shell import KeptShellSession
from ferry.hosts.ssh import SSHEndpoint, SSHError
from ferry.lease import MigrationLease
from ferry.migration.admission import QUEUED, ActiveMigration, Turn, take_turn
from ferry.migration.container_group import member_uid
from ferry.migration.context import MigrationContext, MigrationRequest
from ferry.migration.continuity import redirect_tag
from ferry.migration.errors import ClusterUnavailable, HostError, LostCharge, Wait
from ferry.migration.pending import host_limits
from ferry.migration.phases import Phase
from ferry.migration.runner import authorization_problem, run_migration
from ferry.migration.state import MigrationState, now, timestamp
from ferry.settings import DEFAULTS, Settings

log = logging.getLogger(__name__)


class DockerHostCatalog:
    """The DockerHosts as the operator's watch last saw them: kopf indexes, which kopf fills before
    any handler runs and keeps current, so that a lookup costs no API call. `readiness` holds the
    Ready condition's status of each host probed so far."""

    def __init__(
        self,
        index: Mapping[str, Iterable[Mapping[str, Any]]],
        readiness: Mapping[str, Iterable[bool]] | None = None,
    ) -> None:
        self._index = index
        self._readiness = readiness if readiness is not None else {}

    def names(self) -> list[str]:
        return sorted(self._index)

    def spec(self, name: str) -> DockerHostSpec:
        found = list(self._index.get(name, ()))
        if not found:
            raise SpecError(f"DockerHost '{name}' does not exist")
        return DockerHostSpec.from_resource(name, found[0])

    def ready(self, name: str) -> bool | None:
        """What the host's last probe said; None when it was never probed."""
        return next(iter(self._readiness.get(name, ())), None)

    def readiness(self) -> dict[str, bool]:
        """Every probed host's readiness, by name."""
        return {name: ready for name in self.names() if (ready := self.ready(name)) is not None}


class MigrationLine:
    """Every Migration as admission sees it, with no API call, so that a queued Migration learns
    that its turn has not come: a kopf index (all under the key None), and what this operator's
    runs are writing. kopf indexes a Migration's events only between two runs of its handler, so
    while a run goes on (a migration under way, for seconds) the index still shows it as it was
    before; its own status writes stand in for it until the run ends. The view may still be a
    little behind: the decision to start is made on a fresh LIST."""

    def __init__(self, index: Mapping[None, Iterable[ActiveMigration]] | None = None) -> None:
        self._index = index if index is not None else {}
        self._running: dict[str, ActiveMigration] = {}  # by uid: as its run here last wrote it
        self._lock = threading.Lock()

    def written(self, resource: Mapping[str, Any]) -> None:
        migration = active_migration(resource)
        with self._lock:
            self._running[migration.uid] = migration

    def run_ended(self, uid: str) -> None:
        with self._lock:
            self._running.pop(uid, None)

    def turn(self, uid: str, limits: Mapping[str, int]) -> Turn | None:
        """The turn of Migration `uid` if it is queued; None if it is not (or not seen yet)."""
        # Copied in one go: kopf changes the index from its own thread.
        seen = {m.uid: m for m in list(self._index.get(None, ()))}
        with self._lock:
            seen.update(self._running)
        own = seen.get(uid)
        if own is None or not own.queued:
            return None
        return take_turn(seen.values(), own, limits)


class HostPool:
    """The DockerHosts (from the catalog) and warm connections to them."""

    def __init__(self, cluster: Cluster, catalog: DockerHostCatalog) -> None:
        self.cluster = cluster
        self.catalog = catalog
        self._hosts: dict[str, tuple[tuple[DockerHostSpec, SSHEndpoint], DockerHost]] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return self.catalog.names()

    def spec(self, name: str) -> DockerHostSpec:
        return self.catalog.spec(name)

    def ready(self, name: str) -> bool | None:
        return self.catalog.ready(name)

    def connect(self, name: str) -> DockerHost:
        """The host's warm connection; a new one when its spec or its SSH key changed.

        A replaced connection is not closed here: migrations that started with it finish with it.
        """
        spec = self.spec(name)
        try:
            private_key = self.cluster.secret_value(spec.ssh_key_secret)
        except ClusterError as error:
            raise SSHError(f"no SSH key for host {name}: {error}") from None
        endpoint = SSHEndpoint(name, spec.address, spec.port, spec.user, spec.host_key, private_key)
        with self._lock:
            cached = self._hosts.get(name)
            if cached is not None and cached[0] == (spec, endpoint):
                return cached[1]
            host = DockerHost(
                name,
                KeptShellSession(endpoint),
                spec.docker_socket,
                fast_path=_fast_path(spec),
                peer=_peer(spec),
            )
            self._hosts[name] = ((spec, endpoint), host)
            return host

    def close(self) -> None:
        with self._lock:
            for _, host in self._hosts.values():
                host.close()
            self._hosts.clear()


def _fast_path(spec: DockerHostSpec) -> FastPathConfig | None:
    if spec.fast_path is None:
        return None
    return FastPathConfig(exec_root=spec.fast_path.exec_root, daemon_config=spec.fast_path.daemon_config)


def _peer(spec: DockerHostSpec) -> PeerEndpoint | None:
    if spec.peer_transfer is None:
        return None
    return PeerEndpoint(
        spec.address, spec.port, spec.user, spec.host_key, spec.peer_transfer.authorized_keys_file
    )


class MigrationStore(Protocol):
    """Where Migrations are read and their status written (the cluster)."""

    def get_migration(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def patch_migration_status(
        self, namespace: str, name: str, status: dict[str, Any], resource_version: str
    ) -> dict[str, Any]: ...


CONFLICT_RETRIES = 5


class ResourceStatus:
    """Writes a migration's state into its Migration's status subresource, fenced: each write is
    conditional on the resourceVersion this driver last saw, so a stale driver cannot overwrite a
    newer one's status. A write that changes the phase posts an Event about it."""

    def __init__(
        self,
        store: MigrationStore,
        resource: dict[str, Any],
        still_held: Callable[[], bool],
        events: Events,
        on_written: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.store = store
        self.namespace = resource["metadata"]["namespace"]
        self.name = resource["metadata"]["name"]
        self._ref = ObjectRef("Migration", self.name, resource["metadata"]["uid"], self.namespace)
        self._still_held = still_held
        self._events = events
        self._on_written = on_written  # told of each write that went through
        self._resource_version: str = resource["metadata"]["resourceVersion"]
        self._written: dict[str, Any] = resource.get("status", {})  # the status as the server has it

    def save(self, state: MigrationState, generation: int | None) -> None:
        status = state.to_status(generation)
        previous_phase = self._written.get("phase")
        for _ in range(CONFLICT_RETRIES):
            # A merge patch removes a key only when it says null: what the state no longer has (progress
            # once it ended, a redirect taken back) must not stay on the server.
            gone = {key: None for key in self._written if key not in status}
            try:
                written = self.store.patch_migration_status(
                    self.namespace, self.name, {**status, **gone}, self._resource_version
                )
            except Conflict:
                self._catch_up()
                continue
            self._seen(written)
            if status["phase"] != previous_phase:
                self._events.phase_entered(self._ref, state)
            return
        raise ClusterError(f"Migration {self.namespace}/{self.name} kept changing while we wrote its status")

    def _catch_up(self) -> None:
        """After a conflict: if only metadata changed (kopf's annotations), write on top of it; if the
        status changed, another driver wrote it, and we stop, unless we still hold the lease."""
        resource = self.store.get_migration(self.namespace, self.name)
        if resource is None:
            raise LostCharge(f"Migration {self.namespace}/{self.name} is gone")
        if resource.get("status", {}) != self._written:
            if not self._still_held():
                raise LostCharge(f"the status of {self.namespace}/{self.name} was written by another driver")
            log.warning(
                "the status of %s/%s was changed by someone else; we hold its lease, so ours replaces it",
                self.namespace,
                self.name,
            )
        self._resource_version = str(resource["metadata"]["resourceVersion"])

    def _seen(self, resource: dict[str, Any]) -> None:
        self._resource_version = str(resource["metadata"]["resourceVersion"])
        self._written = resource.get("status", {})
        if self._on_written is not None:
            self._on_written(resource)


TEST_PAUSE_ANNOTATION = "ferry.dev/test-pause"  # "Phase=seconds,...", honoured with `ferry run --test-hooks`


class TryAgain(Exception):
    """For the handlers: call again in `delay` seconds (queued, a rollback waiting, another driver
    holding the Migration, the API server away)."""

    def __init__(self, message: str, delay: float = DEFAULTS.retry_seconds) -> None:
        super().__init__(message)
        self.delay = delay


@dataclass
class Operator:
    """What every handler of one operator process shares."""

    cluster: Cluster
    pool: HostPool
    identity: str
    settings: Settings = field(default_factory=Settings)
    line: MigrationLine = field(default_factory=MigrationLine)
    admission_lock: threading.Lock = field(default_factory=threading.Lock)
    events: Events = field(init=False)

    def __post_init__(self) -> None:
        self.events = Events(self.cluster, self.identity)


class ClusterCoordination:
    """The migration layer's view of the cluster: other Migrations, deletion, and our lease."""

    def __init__(self, operator: Operator, lease: MigrationLease, namespace: str, name: str) -> None:
        self.admission_lock = operator.admission_lock
        self._cluster = operator.cluster
        self._lease = lease
        self._namespace = namespace
        self._name = name

    def active_migrations(self) -> list[ActiveMigration]:
        return [active_migration(item) for item in self._cluster.list_migrations()]

    def cancel_requested(self) -> bool:
        resource = self._cluster.get_migration(self._namespace, self._name)
        return resource is None or bool(resource["metadata"].get("deletionTimestamp"))

    def in_charge(self) -> bool:
        return not self._lease.lost


def reconcile_migration(operator: Operator, *, namespace: str, name: str, uid: str) -> MigrationState | None:
    """Runs (or resumes) one Migration until it ends, or must wait (`TryAgain`); a finished one is
    left as it is.

    The status is read afresh under the Migration's lease: the previous driver (a crashed or
    replaced operator) may have moved it on since the event that called us.
    """
    try:
        _wait_in_line(operator, uid)
        if _terminal(operator.cluster.get_migration(namespace, name)):
            return None
        lease = MigrationLease(
            operator.cluster.coordination,
            operator.settings.operator_namespace,
            uid,
            operator.identity,
            operator.settings.lease_seconds,
        )
        if not lease.acquire():
            raise TryAgain(f"Migration {namespace}/{name} is driven by {lease.holder()}")
        try:
            resource = operator.cluster.get_migration(namespace, name)
            if resource is None or _terminal(resource):
                return None
            return _drive(operator, lease, resource)
        finally:
            operator.line.run_ended(uid)
            lease.release()
    except Wait as wait:
        raise TryAgain(str(wait), wait.delay) from None
    except LostCharge as lost:
        log.error("%s", lost)
        raise TryAgain(str(lost)) from None  # it resumes if no one else drives it
    except ClusterUnavailable as error:
        log.warning("%s/%s waits for the API server: %s", namespace, name, error)
        raise TryAgain(f"the API server: {error}") from None


def _wait_in_line(operator: Operator, uid: str) -> None:
    """A queued Migration whose turn has not come, as the index sees it, waits again at once with
    no API call of ours (kopf still records the retry on the Migration)."""
    turn = operator.line.turn(uid, host_limits(operator.pool))
    if turn is not None and not turn.admitted:
        raise TryAgain(turn.message, turn.retry_delay)


def release_redirect(operator: Operator, *, namespace: str, name: str, uid: str) -> None:
    """Removes the port forwarding a Migration left on its source host (it is owned by the Migration)."""
    resource = operator.cluster.get_migration(namespace, name)
    if resource is None:
        return
    state = MigrationState.from_status(resource.get("status", {}))
    tags = [redirect_tag(uid)] if state.redirect else []
    tags += [redirect_tag(member_uid(uid, n)) for n, member in enumerate(state.members) if member.redirect]
    if not tags:
        return
    try:
        spec = MigrationSpec.from_dict(resource.get("spec", {}))
    except SpecError:
        return  # an invalid spec never got as far as a redirect
    refusal = authorization_problem(namespace, spec, state, operator.pool)
    if refusal is not None:
        log.warning("%s/%s: leaving its port forwarding alone: %s", namespace, name, refusal.message)
    elif state.source_host is not None:
        netfilter = operator.pool.connect(state.source_host).netfilter
        for tag in tags:
            netfilter.remove_forwards(tag)


def _drive(operator: Operator, lease: MigrationLease, resource: dict[str, Any]) -> MigrationState:
    meta = resource["metadata"]
    namespace, name, generation = meta["namespace"], meta["name"], meta.get("generation")
    status = resource.get("status", {})
    state = MigrationState.from_status(status)
    state.operator_version = __version__
    sink = ResourceStatus(
        operator.cluster,
        resource,
        still_held=lease.confirm,
        events=operator.events,
        on_written=operator.line.written,
    )
    if "phase" not in status:  # a new Migration: `kubectl get -w` shows Pending from the first write
        state.start("seen by the operator: it checks the spec, the hosts and the workload, then queues it")
        sink.save(state, generation)
    try:
        spec = MigrationSpec.from_dict(resource.get("spec", {}))
    except SpecError as error:
        state.enter(Phase.FAILED, str(error), reason="InvalidSpec")
        sink.save(state, generation)
        return state
    pauses = _test_pauses(meta.get("annotations", {})) if operator.settings.test_hooks else {}
    request = MigrationRequest(namespace, name, meta["uid"], generation, spec, _created(meta), pauses)
    coordination = ClusterCoordination(operator, lease, namespace, name)
    ctx = MigrationContext(request, state, operator.pool, sink, coordination)
    metrics.MIGRATIONS_RUNNING.inc()
    try:
        run_migration(ctx)
    finally:
        metrics.MIGRATIONS_RUNNING.dec()
    if state.phase.is_terminal:
        metrics.record_finished(state)
    return state


def _terminal(resource: dict[str, Any] | None) -> bool:
    return resource is None or MigrationState.from_status(resource.get("status", {})).phase.is_terminal


def active_migration(resource: Mapping[str, Any]) -> ActiveMigration:
    """A Migration as admission sees it."""
    meta, status = resource["metadata"], resource.get("status", {})
    state = MigrationState.from_status(status)
    return ActiveMigration(
        key=f"{meta['namespace']}/{meta['name']}",
        uid=meta["uid"],
        phase=state.phase,
        source_host=state.source_host,
        target_host=state.target_host,
        source_container_ids=frozenset(
            found
            for move in (status, *status.get("members", []))
            if isinstance(move, dict) and (found := move.get("sourceContainerID"))
        ),
        created=_created(meta),
        queued=state.phase is Phase.PENDING and state.reason == QUEUED and not meta.get("deletionTimestamp"),
    )


def _created(meta: Mapping[str, Any]) -> datetime:
    return datetime.fromisoformat(meta["creationTimestamp"])


def _test_pauses(annotations: Mapping[str, str]) -> dict[Phase, float]:
    pauses = {}
    for item in annotations.get(TEST_PAUSE_ANNOTATION, "").split(","):
        phase, _, seconds = item.partition("=")
        if phase.strip() and seconds.strip():
            pauses[Phase(phase.strip())] = float(seconds)
    return pauses


def probe_docker_host(pool: HostPool, name: str) -> dict[str, Any]:
    """The DockerHost status: can ferry reach it, and does it have what a migration needs there
    (ferry.hosts.health); the Ready condition's reason is the first fault's."""
    probed = timestamp(now())
    try:
        found = health.probe(pool.connect(name))
    except (SpecError, HostError) as error:  # no usable spec, or no key to connect with
        found = health.unreachable(error)
    reason = found.faults[0].reason if found.faults else "Reachable"
    status: dict[str, Any] = {
        "lastProbeTime": probed,
        "message": found.message,
        "conditions": [_ready(found.ready, reason, found.message)],
    }
    if found.kernel:  # it answered over SSH
        status.update(
            fastPath=found.fast_path,
            dockerVersion=found.docker_version,
            criuVersion=found.criu_version,
            kernel=found.kernel,
        )
    return status


def probe_and_report(operator: Operator, name: str, uid: str, previous: Mapping[str, Any]) -> dict[str, Any]:
    """The DockerHost's new status; an Event when its readiness, or the reason for it, changed since
    the `previous` status (the first probe of a host reports it too)."""
    status = probe_docker_host(operator.pool, name)
    before, ready = ready_condition(previous), ready_condition(status)
    if (before.get("status"), before.get("reason")) != (ready["status"], ready["reason"]):
        operator.events.post(
            ObjectRef("DockerHost", name, uid),
            ready["reason"],
            f"Ready={ready['status']}: {ready['message']}",
            warning=ready["status"] != "True",
        )
    return status


def ready_condition(status: Mapping[str, Any]) -> Mapping[str, Any]:
    return next((c for c in status.get("conditions", []) if c.get("type") == "Ready"), {})


def probed_readiness(status: Mapping[str, Any]) -> bool | None:
    """What a DockerHost status's Ready condition says; None before the first probe."""
    return {"True": True, "False": False}.get(ready_condition(status).get("status", ""))


def _ready(ready: bool, reason: str, message: str) -> dict[str, Any]:
    return {
        "type": "Ready",
        "status": "True" if ready else "False",
        "reason": reason,
        "message": message,
        "lastTransitionTime": timestamp(now()).split(".")[0] + "Z",
    }
