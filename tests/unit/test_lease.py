"""A Migration's Lease: its holder stops acting once it could not renew within the renew deadline."""

from __future__ import annotations

import copy
import time
from typing import Any

import kubernetes
import pytest
import urllib3
from kubernetes.client.exceptions import ApiException

from ferry.lease import MigrationLease
from ferry.migration.errors import LostCharge
from ferry.migration.phases import Phase
from ferry.migration.runner import run_migration
from tests.unit.fakes import FakeCoordination, FakeHosts, container_spec, context, frozen_state, host_spec

DURATION = 15


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeCoordinationApi:
    """The four Lease calls of CoordinationV1Api, on one stored Lease; `failures` are raised in turn
    by the next calls (None lets a call through)."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.lease: Any = None
        self.version = 0
        self.failures: list[Exception | None] = []
        self.timeouts: list[float] = []
        self.namespaces: list[str] = []
        self.replaced = 0
        self.clock = clock
        self.call_seconds = 0.0  # how far the fake clock moves during each call

    def read_namespaced_lease(self, name: str, namespace: str, **kwargs: Any) -> Any:
        self._enter(namespace, kwargs)
        if self.lease is None:
            raise ApiException(status=404, reason="Not Found")
        return copy.deepcopy(self.lease)

    def create_namespaced_lease(self, namespace: str, body: Any, **kwargs: Any) -> Any:
        self._enter(namespace, kwargs)
        self._store(body)
        return body

    def replace_namespaced_lease(self, name: str, namespace: str, body: Any, **kwargs: Any) -> Any:
        self._enter(namespace, kwargs)
        if self.lease is not None and body.metadata.resource_version != self.lease.metadata.resource_version:
            raise ApiException(status=409, reason="Conflict")
        self.replaced += 1
        self._store(body)
        return body

    def delete_namespaced_lease(self, name: str, namespace: str, **kwargs: Any) -> None:
        self._enter(namespace, kwargs)
        self.lease = None

    def take_over(self, identity: str) -> None:
        """Another replica holds the Lease now."""
        self.lease.spec.holder_identity = identity
        self._store(self.lease)

    def _enter(self, namespace: str, kwargs: dict[str, Any]) -> None:
        self.namespaces.append(namespace)
        self.timeouts.append(kwargs["_request_timeout"])
        if self.clock is not None:
            self.clock.now += self.call_seconds
        failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            raise failure

    def _store(self, body: Any) -> None:
        self.version += 1
        stored = copy.deepcopy(body)
        stored.metadata = kubernetes.client.V1ObjectMeta(
            name=body.metadata.name, resource_version=str(self.version)
        )
        self.lease = stored


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def api(clock: FakeClock) -> FakeCoordinationApi:
    return FakeCoordinationApi(clock)


def held_lease(api: FakeCoordinationApi, clock: FakeClock, duration: int = DURATION) -> MigrationLease:
    lease = MigrationLease(api, "ferry-system", "uid-1", "me", duration, clock=clock)  # type: ignore[arg-type]
    assert lease.acquire()
    lease._stop.set()  # these tests renew by hand: no background renewals
    return lease


def test_a_new_lease_is_held_right_after_it_is_acquired(api: FakeCoordinationApi, clock: FakeClock) -> None:
    lease = held_lease(api, clock)

    assert not lease.lost
    assert api.lease.spec.holder_identity == "me"


def test_the_lease_is_created_in_the_operator_namespace_under_the_migration_uid(
    api: FakeCoordinationApi, clock: FakeClock
) -> None:
    held_lease(api, clock)

    assert set(api.namespaces) == {"ferry-system"}
    assert api.lease.metadata.name == "ferry-migration-uid-1"


def test_the_renew_deadline_is_two_thirds_of_the_lease_duration(
    api: FakeCoordinationApi, clock: FakeClock
) -> None:
    assert held_lease(api, clock).renew_deadline == pytest.approx(10.0)


def test_the_lease_is_lost_once_no_renewal_succeeded_within_the_renew_deadline(
    api: FakeCoordinationApi, clock: FakeClock
) -> None:
    lease = held_lease(api, clock)

    clock.now += 9.9
    assert not lease.lost
    clock.now += 0.2
    assert lease.lost


def test_a_successful_renewal_moves_the_deadline(api: FakeCoordinationApi, clock: FakeClock) -> None:
    lease = held_lease(api, clock)

    clock.now += 9.0
    lease.renew()
    clock.now += 9.0

    assert not lease.lost


def test_the_deadline_counts_from_when_the_renewal_was_sent_not_when_it_returned(
    api: FakeCoordinationApi, clock: FakeClock
) -> None:
    lease = held_lease(api, clock)
    api.call_seconds = 2.0  # a slow API server: read and replace take 2 s each

    clock.now += 5.0
    lease.renew()  # sent at +5, returned at +9
    clock.now += 6.1  # +15.1: more than 10 s after the renewal was sent

    assert lease.lost


def test_api_errors_in_the_renewer_count_as_failed_renewals(
    api: FakeCoordinationApi, clock: FakeClock
) -> None:
    lease = held_lease(api, clock)
    api.failures = [ApiException(status=500, reason="Internal Server Error")] * 10

    for _ in range(4):
        clock.now += 3.0
        lease.renew()

    assert lease.lost


@pytest.mark.parametrize(
    "error",
    [
        urllib3.exceptions.MaxRetryError(None, "/apis", "connection refused"),  # type: ignore[arg-type]
        urllib3.exceptions.ReadTimeoutError(None, "/apis", "read timed out"),  # type: ignore[arg-type]
        TimeoutError("timed out"),
        ConnectionResetError("reset by peer"),
    ],
    ids=["connection-refused", "read-timeout", "timeout", "connection-reset"],
)
def test_connection_errors_and_timeouts_count_as_failed_renewals(
    api: FakeCoordinationApi, clock: FakeClock, error: Exception
) -> None:
    lease = held_lease(api, clock)
    api.failures = [error] * 10

    for _ in range(4):
        clock.now += 3.0
        lease.renew()  # does not raise

    assert lease.lost


def test_a_lost_lease_stays_lost_even_if_a_later_renewal_succeeds(
    api: FakeCoordinationApi, clock: FakeClock
) -> None:
    lease = held_lease(api, clock)
    clock.now += 11.0
    assert lease.lost

    lease.renew()

    assert lease.lost


def test_a_lease_taken_by_another_replica_is_lost(api: FakeCoordinationApi, clock: FakeClock) -> None:
    lease = held_lease(api, clock)
    api.take_over("other")

    lease.renew()

    assert lease.lost


def test_a_lease_is_lost_before_it_is_ever_acquired(api: FakeCoordinationApi, clock: FakeClock) -> None:
    lease = MigrationLease(api, "ferry-system", "uid-1", "me", DURATION, clock=clock)  # type: ignore[arg-type]

    assert lease.lost


def test_every_lease_call_has_a_request_timeout_shorter_than_the_deadline(
    api: FakeCoordinationApi, clock: FakeClock
) -> None:
    lease = held_lease(api, clock)
    lease.renew()
    lease.release()

    assert api.timeouts and all(0 < timeout < lease.renew_deadline / 2 for timeout in api.timeouts)


def test_confirm_asks_the_server_who_holds_the_lease(api: FakeCoordinationApi, clock: FakeClock) -> None:
    lease = held_lease(api, clock)
    assert lease.confirm()

    api.take_over("other")

    assert not lease.confirm()


def test_confirm_is_false_when_the_server_cannot_be_asked(api: FakeCoordinationApi, clock: FakeClock) -> None:
    lease = held_lease(api, clock)
    api.failures = [urllib3.exceptions.MaxRetryError(None, "/apis", "refused")]  # type: ignore[arg-type]

    assert not lease.confirm()


def test_the_renewer_thread_survives_failures_and_renews_again(clock: FakeClock) -> None:
    api = FakeCoordinationApi()  # the fake clock stands still: only the failures are under test
    lease = MigrationLease(api, "ferry-system", "uid-1", "me", duration=1, clock=clock)  # type: ignore[arg-type]
    assert lease.acquire()
    api.failures = [None, TimeoutError("slow"), None, RuntimeError("anything at all")]  # read, replace, ...
    try:
        deadline = time.monotonic() + 5
        while api.replaced < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert api.replaced >= 2  # two renewals after the two failed ones
        assert lease._renewer is not None and lease._renewer.is_alive()
    finally:
        lease.release()


def test_the_renewer_thread_stops_once_the_deadline_has_passed(clock: FakeClock) -> None:
    api = FakeCoordinationApi()
    lease = MigrationLease(api, "ferry-system", "uid-1", "me", duration=1, clock=clock)  # type: ignore[arg-type]
    assert lease.acquire()

    clock.now += 1.0
    assert lease._renewer is not None
    lease._renewer.join(timeout=5)

    assert not lease._renewer.is_alive()
    assert lease.lost


def test_a_driver_that_lost_its_lease_starts_no_further_step() -> None:
    hosts = FakeHosts(host_spec("node1"), host_spec("node2"))
    ctx, sink = context(
        container_spec(), frozen_state(Phase.TRANSFERRING), hosts, coordination=FakeCoordination(False)
    )

    with pytest.raises(LostCharge):
        run_migration(ctx)

    assert hosts.connected == []
    assert sink.saved == []
