"""Combinations that cannot work end with a clear error before anything changes on a host. The CRD
refuses the spec ones at admission (tests/e2e/test_admission.py); the operator refuses them too, for
a Migration made before its CRD had the rule."""

from __future__ import annotations

from typing import Any

from ferry.api import ProcessRef, Strategy, Transfer, Workload
from ferry.migration.phases import Phase
from ferry.migration.runner import run_migration
from ferry.migration.state import MigrationState
from tests.unit.fakes import FakeHosts, container_spec, context, host_spec


def migrate(**spec: Any) -> tuple[MigrationState, FakeHosts]:
    hosts = FakeHosts(host_spec("node1"), host_spec("node2"))
    hosts.hosts["node1"].engine.add("web", running=True)
    state = MigrationState()
    ctx, _ = context(container_spec(**spec), state, hosts)
    run_migration(ctx)
    return state, hosts


def test_cold_through_a_shared_directory_fails_before_any_host_is_touched() -> None:
    state, hosts = migrate(strategy=Strategy.COLD, transfer=Transfer.SHARED_DIRECTORY)

    assert (state.phase, state.reason) == (Phase.FAILED, "NotSupported")
    assert (
        "transfer: SharedDirectory passes a checkpoint, which strategy: Cold does not take" in state.message
    )
    assert (hosts.connected, hosts.calls) == ([], [])


def test_redirect_of_a_process_fails_before_any_host_is_touched() -> None:
    state, hosts = migrate(workload=Workload(process=ProcessRef(pid=4242)), redirect=True)

    assert (state.phase, state.reason) == (Phase.FAILED, "NotSupported")
    assert state.message == "redirect forwards a container's published ports: not for a plain process"
    assert (hosts.connected, hosts.calls) == ([], [])
