"""Preflight inside a migration: a failed check ends it before anything is made on a host, and a dry
run ends with the report, changing nothing."""

from __future__ import annotations

from typing import Any

from ferry.hosts.peer_stream import PeerEndpoint
from ferry.migration.phases import Phase
from ferry.migration.runner import run_migration
from ferry.migration.state import MigrationState
from tests.unit.fakes import FakeHosts, FakeSink, container_spec, context, host_spec

READS = {"find_container", "inspect_container"}  # the only engine calls a preflight may record


def hosts_with_web() -> FakeHosts:
    """node1 runs `web`, publishing 8080/tcp, of an image node2 lacks."""
    hosts = FakeHosts(host_spec("node1"), host_spec("node2"))
    hosts.hosts["node1"].engine.add("web", running=True, ports=(("tcp", 8080),))
    hosts.hosts["node1"].engine.add_image()
    return hosts


def migrate(hosts: FakeHosts, **spec: Any) -> tuple[MigrationState, FakeSink]:
    state = MigrationState()
    ctx, sink = context(container_spec(**spec), state, hosts)
    run_migration(ctx)
    return state, sink


def changes(hosts: FakeHosts) -> list[str]:
    """The host calls that are not reads."""
    return [call for call in hosts.calls if call.split(":")[1] not in READS]


def test_a_port_a_host_process_holds_on_the_target_fails_the_migration_before_the_freeze() -> None:
    hosts = hosts_with_web()
    hosts.hosts["node2"].listen("tcp", 8080)

    state, sink = migrate(hosts)

    assert (state.phase, state.reason) == (Phase.FAILED, "PortTaken")
    assert "Checkpointing" not in sink.phases
    assert changes(hosts) == [] and hosts.hosts["node2"].engine.containers == {}


def test_a_failed_preflight_leaves_its_report_in_the_status() -> None:
    hosts = hosts_with_web()
    hosts.hosts["node2"].memory_available = 1 << 20

    _, sink = migrate(hosts)

    checks = {check["name"]: check["passed"] for check in sink.saved[-1]["preflight"]["checks"]}
    assert checks["TargetMemory"] is False and checks["PortsFree"] is True


def test_a_dry_run_that_passes_ends_succeeded_with_dry_run_passed() -> None:
    state, _ = migrate(hosts_with_web(), dry_run=True)

    assert (state.phase, state.reason) == (Phase.SUCCEEDED, "DryRunPassed")
    assert state.message.startswith("dry run: 8 checks passed; a real run would copy image busybox")


def test_a_dry_run_changes_nothing_on_any_host() -> None:
    hosts = hosts_with_web()

    migrate(hosts, dry_run=True)

    assert changes(hosts) == []
    assert hosts.hosts["node2"].engine.containers == {} and hosts.hosts["node2"].engine.images == {}


def test_a_dry_run_leaves_the_stream_keys_of_a_peer_target_alone() -> None:
    hosts = hosts_with_web()
    hosts.hosts["node2"].peer = PeerEndpoint("10.0.0.2", 22, "root", "ssh-ed25519 AAAA", "/root/.ssh/keys")

    state, _ = migrate(hosts, dry_run=True)  # the fake host refuses any command that is not a read

    assert state.reason == "DryRunPassed"


def test_a_dry_run_reports_the_checks_and_what_a_real_run_would_move() -> None:
    _, sink = migrate(hosts_with_web(), dry_run=True)

    report = sink.saved[-1]["preflight"]
    assert all(check["passed"] for check in report["checks"])
    assert report["imageToCopy"] == {"name": "busybox", "bytes": 5 << 20}
    assert report["expectedCheckpointBytes"] == 2048 * 1024  # the RSS of the container's process
    assert report["rootfsBytes"] == 10 << 20


def test_a_dry_run_with_a_failed_check_ends_failed_with_its_reason() -> None:
    hosts = hosts_with_web()
    hosts.hosts["node2"].engine.architecture = "aarch64"

    state, _ = migrate(hosts, dry_run=True)

    assert (state.phase, state.reason) == (Phase.FAILED, "ArchitectureMismatch")


def test_the_sources_cpu_is_checked_by_criu_on_the_target_before_the_freeze() -> None:
    hosts = hosts_with_web()
    hosts.hosts["node2"].runs_cpus = {b"another cpu"}

    state, sink = migrate(hosts)

    assert (state.phase, state.reason) == (Phase.FAILED, "CPUMismatch")
    assert "Checkpointing" not in sink.phases and changes(hosts) == []


def test_no_cpu_comparison_when_criu_fails_on_a_host() -> None:
    hosts = hosts_with_web()
    hosts.hosts["node2"].criu_check = (1, "Error: no userfaultfd")

    state, _ = migrate(hosts)

    assert state.reason == "CRIUCheckFailed" and state.preflight is not None
    assert [check["name"] for check in state.preflight["checks"] if not check["passed"]] == ["CRIUCheck"]
