"""Combinations that cannot work end with a clear error before anything changes on a host. The CRD
refuses the spec ones at admission (tests/e2e/test_admission.py); the operator refuses them too, for
a Migration made before its CRD had the rule. A port published on a range of host ports fails the
preflight."""

from __future__ import annotations

from typing import Any

from ferry.api import ProcessRef, Strategy, Transfer, Workload
from ferry.migration.phases import Phase
from ferry.migration.runner import run_migration
from ferry.migration.state import MigrationState
from tests.unit.fakes import FakeHosts, container_spec, context, host_spec

READS = {"find_container", "inspect_container"}


def migrate(*, port_bindings: dict[str, Any] | None = None, **spec: Any) -> tuple[MigrationState, FakeHosts]:
    """A migration of `web`, running on node1 (publishing `port_bindings`), to node2."""
    hosts = FakeHosts(host_spec("node1"), host_spec("node2"))
    web = hosts.hosts["node1"].engine.add("web", running=True)
    web["HostConfig"]["PortBindings"] = port_bindings or {}
    hosts.hosts["node1"].engine.add_image()
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


def test_a_port_published_on_a_range_of_host_ports_fails_before_the_freeze_naming_it() -> None:
    bindings = {"80/tcp": [{"HostIp": "", "HostPort": "8000-8010"}], "53/udp": [{"HostPort": "5353"}]}

    state, hosts = migrate(port_bindings=bindings)

    assert (state.phase, state.reason) == (Phase.FAILED, "PortRange")
    assert state.message.startswith("the container publishes 80/tcp on 8000-8010 (a range of host ports)")
    assert "publish each port on one host port to move the container" in state.message
    assert [call for call in hosts.calls if call.split(":")[1] not in READS] == []


def test_a_dry_run_reports_a_port_range_among_the_other_checks() -> None:
    state, _ = migrate(port_bindings={"80/tcp": [{"HostPort": "8000-8010"}]}, dry_run=True)

    assert (state.phase, state.reason) == (Phase.FAILED, "PortRange")
    assert state.preflight is not None
    checks = {check["name"]: check["passed"] for check in state.preflight["checks"]}
    assert checks == {
        "PortsFree": True,
        "PortRanges": False,
        "TargetDiskSpace": True,
        "SourceDiskSpace": True,
        "TargetMemory": True,
        "CRIUCheck": True,
        "CPU": True,
        "Architecture": True,
        "Networks": True,
    }
