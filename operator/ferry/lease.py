"""One driver per Migration: a coordination.k8s.io Lease held while an operator acts on it.

kopf's peering pauses all but one replica, but a paused replica does not stop a handler that is
already running, and a replica that joins late may pick up a Migration another one still drives.
The Lease makes that impossible: only its holder acts, and a holder that dies (SIGKILL, lost node)
lets its Lease expire after `duration` seconds so that another replica can resume.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)


class MigrationLease:
    def __init__(
        self,
        api: kubernetes.client.CoordinationV1Api,
        namespace: str,
        uid: str,
        identity: str,
        duration: int = 15,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.name = f"ferry-migration-{uid}"
        self.identity = identity
        self.duration = duration
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def holder(self) -> str | None:
        lease = self._read()
        return lease.spec.holder_identity if lease is not None else None

    def acquire(self) -> bool:
        """Takes the Lease if it is free, expired or ours; starts renewing it."""
        now = datetime.now(UTC)
        lease = self._read()
        try:
            if lease is None:
                self.api.create_namespaced_lease(self.namespace, self._body(now, now))
            elif lease.spec.holder_identity == self.identity or _expired(lease, now):
                body = self._body(now, now)
                body.metadata = kubernetes.client.V1ObjectMeta(
                    name=self.name, resource_version=lease.metadata.resource_version
                )
                self.api.replace_namespaced_lease(self.name, self.namespace, body)
            else:
                return False
        except ApiException as error:
            if error.status == 409:  # another replica got there first
                return False
            raise
        self._stop.clear()
        self._lost.clear()
        self._renewer = threading.Thread(target=self._renew_until_stopped, name=self.name, daemon=True)
        self._renewer.start()
        return True

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
        try:
            lease = self._read()
            if lease is not None and lease.spec.holder_identity == self.identity:
                self.api.delete_namespaced_lease(self.name, self.namespace)
        except ApiException as error:
            log.warning("could not release lease %s: %s", self.name, error.reason)

    def _renew_until_stopped(self) -> None:
        while not self._stop.wait(self.duration / 3):
            try:
                lease = self._read()
                if lease is None or lease.spec.holder_identity != self.identity:
                    log.error("lost lease %s to %s", self.name, lease.spec.holder_identity if lease else None)
                    self._lost.set()
                    return
                lease.spec.renew_time = datetime.now(UTC)
                self.api.replace_namespaced_lease(self.name, self.namespace, lease)
            except ApiException as error:
                log.warning("could not renew lease %s: %s", self.name, error.reason)

    def _read(self) -> Any:
        try:
            return self.api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def _body(self, acquired: datetime, renewed: datetime) -> kubernetes.client.V1Lease:
        return kubernetes.client.V1Lease(
            metadata=kubernetes.client.V1ObjectMeta(
                name=self.name, labels={"app.kubernetes.io/managed-by": "ferry"}
            ),
            spec=kubernetes.client.V1LeaseSpec(
                holder_identity=self.identity,
                lease_duration_seconds=self.duration,
                acquire_time=acquired,
                renew_time=renewed,
            ),
        )


def _expired(lease: Any, now: datetime) -> bool:
    renewed = lease.spec.renew_time or lease.spec.acquire_time
    if renewed is None:
        return True
    if renewed.tzinfo is None:
        renewed = renewed.replace(tzinfo=UTC)
    return bool(renewed + timedelta(seconds=lease.spec.lease_duration_seconds or 15) < now)
