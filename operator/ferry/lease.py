"""One driver per Migration: a coordination.k8s.io Lease held while an operator acts on it.

kopf's peering pauses all but one replica, but a paused replica does not stop a handler that is
already running, and a replica that joins late may pick up a Migration another one still drives.
The Lease makes that impossible: only its holder acts, and a holder that dies (SIGKILL, lost node)
lets its Lease expire after `duration` seconds so that another replica can resume.

A holder that cannot renew (the API server is slow or unreachable) stops acting before anyone else
may take the Lease: it counts itself lost once no renewal succeeded within the renew deadline (2/3
of the duration, as client-go's RenewDeadline), measured on its own monotonic clock from the moment
it sent the last renewal that succeeded. Leases live in the operator's own namespace.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)

OPERATOR_NAMESPACE = "ferry-system"
RENEW_DEADLINE = 2 / 3  # of the duration: past it without a renewal, the holder stops acting
RETRY_PERIOD = 1 / 6  # of the duration: how often we renew, and how long one API call may take


class MigrationLease:
    def __init__(
        self,
        api: kubernetes.client.CoordinationV1Api,
        namespace: str,
        uid: str,
        identity: str,
        duration: int = 15,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.name = f"ferry-migration-{uid}"
        self.identity = identity
        self.duration = duration
        self.renew_deadline = duration * RENEW_DEADLINE
        self.retry_period = duration * RETRY_PERIOD
        self._clock = clock
        self._renewed_at: float | None = None  # when the last successful renewal was sent
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    @property
    def lost(self) -> bool:
        """We may not act: never acquired, taken by another, or not renewed within the deadline.

        Once lost, it stays lost: a later run acquires the Lease anew.
        """
        if not self._lost.is_set() and not self._renewed_recently():
            self._lost.set()
        return self._lost.is_set()

    def holder(self) -> str | None:
        lease = self._read()
        return lease.spec.holder_identity if lease is not None else None

    def confirm(self) -> bool:
        """Asks the API server whether we still hold the Lease (and have not lost it locally)."""
        try:
            return not self.lost and self.holder() == self.identity
        except Exception as error:
            log.warning("cannot read lease %s: %s", self.name, error)
            return False

    def acquire(self) -> bool:
        """Takes the Lease if it is free, expired or ours; starts renewing it."""
        sent = self._clock()
        now = datetime.now(UTC)
        lease = self._read()
        try:
            if lease is None:
                self.api.create_namespaced_lease(
                    self.namespace, self._body(now, now), _request_timeout=self.retry_period
                )
            elif lease.spec.holder_identity == self.identity or _expired(lease, now):
                body = self._body(now, now)
                body.metadata = kubernetes.client.V1ObjectMeta(
                    name=self.name, resource_version=lease.metadata.resource_version
                )
                self.api.replace_namespaced_lease(
                    self.name, self.namespace, body, _request_timeout=self.retry_period
                )
            else:
                return False
        except ApiException as error:
            if error.status == 409:  # another replica got there first
                return False
            raise
        self._renewed_at = sent
        self._stop.clear()
        self._lost.clear()
        self._renewer = threading.Thread(target=self._renew_until_stopped, name=self.name, daemon=True)
        self._renewer.start()
        return True

    def renew(self) -> None:
        """One renewal; any failure (API error, connection error, timeout) is only logged: `lost`
        turns true by itself when failures last past the renew deadline."""
        sent = self._clock()
        try:
            lease = self._read()
            if lease is None or lease.spec.holder_identity != self.identity:
                log.error("lost lease %s to %s", self.name, lease.spec.holder_identity if lease else None)
                self._lost.set()
                return
            lease.spec.renew_time = datetime.now(UTC)
            self.api.replace_namespaced_lease(
                self.name, self.namespace, lease, _request_timeout=self.retry_period
            )
        except Exception as error:
            log.warning("could not renew lease %s: %s", self.name, _describe(error))
            return
        self._renewed_at = sent

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
        try:
            lease = self._read()
            if lease is not None and lease.spec.holder_identity == self.identity:
                self.api.delete_namespaced_lease(
                    self.name, self.namespace, _request_timeout=self.retry_period
                )
        except Exception as error:
            log.warning("could not release lease %s: %s", self.name, _describe(error))

    def _renew_until_stopped(self) -> None:
        while not self._stop.wait(self.retry_period):
            if self.lost:
                log.error(
                    "lease %s not renewed for %.1fs: stopped acting on its Migration",
                    self.name,
                    self.renew_deadline,
                )
                return
            self.renew()

    def _renewed_recently(self) -> bool:
        return self._renewed_at is not None and self._clock() - self._renewed_at < self.renew_deadline

    def _read(self) -> Any:
        try:
            return self.api.read_namespaced_lease(
                self.name, self.namespace, _request_timeout=self.retry_period
            )
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


def _describe(error: Exception) -> str:
    return str(getattr(error, "reason", None) or error or type(error).__name__)
