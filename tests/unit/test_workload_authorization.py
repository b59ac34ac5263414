"""The workload rules inside a migration: a workload the DockerHosts do not let the namespace move, or
a twin the target does not allow, ends the Migration Failed before anything is made; a run resumed
past Preparing (as a tenant's patched status would have it) is judged again, and touches nothing."""

from __future__ import annotations

from typing import Any

import pytest

from ferry.api import DockerHostSpec, MigrationSpec, ProcessRef, Workload
from ferry.migration.container import ContainerMigration
from ferry.migration.phases import Phase
from ferry.migration.runner import run_migration
from ferry.migration.state import MigrationState
from ferry.workloads import LabelSelector, ProcessSelector, WorkloadRule
from tests.unit.fakes import (
    FakeHosts,
    FakeProcess,
    FakeSink,
    container_spec,
    context,
    frozen_state,
    host_spec,
)

READS = {"find_container", "inspect_container"}  # the only engine calls a refused migration may record
MOVABLE = WorkloadRule(containers=LabelSelector((("ferry.dev/movable", "true"),)))
APP = WorkloadRule(processes=ProcessSelector(("app",), ("/opt/app",)))
WIDE = WorkloadRule(processes=ProcessSelector(("*",), ("/",)))


def hosts_with(container: str, *, target: dict[str, Any] | None = None, **source: Any) -> FakeHosts:
    """node1 (DockerHost fields `source`) runs `container`; node2 has the DockerHost fields `target`."""
    hosts = FakeHosts(host_spec("node1", **source), host_spec("node2", **(target or source)))
    hosts.hosts["node1"].engine.add(container, running=True)
    hosts.hosts["node1"].engine.add_image()
    return hosts


def migrate(
    hosts: FakeHosts, spec: MigrationSpec, state: MigrationState | None = None
) -> tuple[MigrationState, FakeSink]:
    ctx, sink = context(spec, state or MigrationState(), hosts)
    run_migration(ctx)
    return ctx.state, sink


def changes(hosts: FakeHosts) -> list[str]:
    return [call for call in hosts.calls if call.split(":")[1] not in READS]


def untouched(hosts: FakeHosts, sink: FakeSink) -> bool:
    """Nothing was changed on any host, and the Migration never got past Preparing."""
    past = {"Checkpointing", "Transferring", "Restoring", "Verifying", "RollingBack"}
    return (
        changes(hosts) == [] and hosts.hosts["node2"].engine.containers == {} and not past & set(sink.phases)
    )


def process_spec(pid: int = 4242) -> MigrationSpec:
    return MigrationSpec(
        workload=Workload(process=ProcessRef(pid=pid)), target_host="node2", source_host="node1"
    )


# -- containers: the selectors


def test_a_container_outside_the_selector_fails_before_anything_is_made() -> None:
    hosts = hosts_with("web", workloads=(MOVABLE,))

    state, sink = migrate(hosts, container_spec())

    assert (state.phase, state.reason) == (Phase.FAILED, "WorkloadNotAllowed")
    assert "container 'web' is selected by no rule of DockerHost 'node1'" in state.message
    assert state.preflight is None  # refused before preflight read anything
    assert untouched(hosts, sink)
    assert hosts.hosts["node1"].engine.running("web")


def test_a_container_the_selectors_of_both_hosts_select_goes_on() -> None:
    hosts = hosts_with("web", workloads=(MOVABLE,))
    hosts.hosts["node1"].engine.containers["web"]["Config"]["Labels"] = {"ferry.dev/movable": "true"}

    state, _ = migrate(hosts, container_spec(dry_run=True))

    assert state.reason == "DryRunPassed"


def test_a_dry_run_of_a_container_outside_the_selector_fails_too() -> None:
    state, _ = migrate(hosts_with("web", workloads=(MOVABLE,)), container_spec(dry_run=True))

    assert (state.phase, state.reason) == (Phase.FAILED, "WorkloadNotAllowed")


# -- containers: the twin's allowances on the target


def test_a_privileged_container_fails_before_anything_is_made_without_the_targets_allowance() -> None:
    hosts = hosts_with("web")
    hosts.hosts["node1"].engine.containers["web"]["HostConfig"]["Privileged"] = True

    state, sink = migrate(hosts, container_spec())

    assert (state.phase, state.reason) == (Phase.FAILED, "PrivilegedNotAllowed")
    assert "DockerHost 'node2' does not allow: set its spec.allowPrivileged: true" in state.message
    assert untouched(hosts, sink)


def test_a_privileged_container_goes_on_with_the_targets_allowance() -> None:
    hosts = hosts_with("web", target={"allow_privileged": True})
    hosts.hosts["node1"].engine.containers["web"]["HostConfig"]["Privileged"] = True

    state, _ = migrate(hosts, container_spec(dry_run=True))

    assert state.reason == "DryRunPassed"


def bound(hosts: FakeHosts, path: str) -> None:
    """web bind-mounts `path`, which exists on node2."""
    hosts.hosts["node1"].engine.containers["web"]["Mounts"] = [
        {"Type": "bind", "Source": path, "Destination": "/d"}
    ]
    hosts.hosts["node2"].files.paths.add(path)


def test_a_bind_mount_outside_the_targets_allowed_host_paths_fails_before_anything_is_made() -> None:
    hosts = hosts_with("web", target={"allow_host_paths": ("/srv/data",)})
    bound(hosts, "/etc")

    state, sink = migrate(hosts, container_spec())

    assert (state.phase, state.reason) == (Phase.FAILED, "HostPathNotAllowed")
    assert (
        "mounts host path /etc, outside DockerHost 'node2''s spec.allowHostPaths ([/srv/data])"
        in state.message
    )
    assert untouched(hosts, sink)


def test_a_bind_mount_inside_the_targets_allowed_host_paths_goes_on() -> None:
    hosts = hosts_with("web", target={"allow_host_paths": ("/srv/data",)})
    bound(hosts, "/srv/data/web")

    state, _ = migrate(hosts, container_spec(dry_run=True))

    assert state.reason == "DryRunPassed"


def test_a_bind_mount_whose_link_on_the_target_leads_outside_fails_before_anything_is_made() -> None:
    hosts = hosts_with("web", target={"allow_host_paths": ("/srv/data",)})
    bound(hosts, "/srv/data/web")
    hosts.hosts["node2"].files.links["/srv/data/web"] = "/etc"

    state, sink = migrate(hosts, container_spec())

    assert (state.phase, state.reason) == (Phase.FAILED, "HostPathNotAllowed")
    assert "leads to /etc on node2 (through a symbolic link)" in state.message
    assert untouched(hosts, sink)


# -- processes


def hosts_running(process: FakeProcess, **fields: Any) -> FakeHosts:
    hosts = FakeHosts(host_spec("node1", **fields), host_spec("node2", **fields))
    hosts.hosts["node1"].procs[4242] = process
    return hosts


def test_a_process_migration_between_hosts_without_a_process_rule_fails_without_reaching_a_host() -> None:
    hosts = hosts_running(FakeProcess())

    state, sink = migrate(hosts, process_spec())

    assert (state.phase, state.reason) == (Phase.FAILED, "WorkloadNotAllowed")
    assert "move no plain processes" in state.message and "spec.workloads" in state.message
    assert hosts.connected == [] and sink.phases == ["Failed"]


def test_a_process_outside_the_process_selector_fails_before_anything_is_made() -> None:
    hosts = hosts_running(FakeProcess(executable="/usr/bin/perl", command="perl"), workloads=(APP,))

    state, sink = migrate(hosts, process_spec())

    assert (state.phase, state.reason) == (Phase.FAILED, "WorkloadNotAllowed")
    assert (
        "process 4242 (/usr/bin/perl, user app) is selected by no rule of DockerHost 'node1'" in state.message
    )
    assert untouched(hosts, sink)


def test_sshd_is_refused_even_by_the_widest_process_selector() -> None:
    hosts = hosts_running(FakeProcess("/usr/sbin/sshd", "sshd", (0, 0, 0, 0)), workloads=(WIDE,))

    state, sink = migrate(hosts, process_spec())

    assert (state.phase, state.reason) == (Phase.FAILED, "ProtectedProcess")
    assert untouched(hosts, sink)


# -- a tenant who patched the status past Preparing


def resumed_hosts(*, privileged: bool = False, **fields: Any) -> FakeHosts:
    """c-src on node1, running (as before a freeze); c-tgt, its twin, on node2, made but not started."""
    hosts = FakeHosts(host_spec("node1", **fields), host_spec("node2", **fields))
    source = hosts.hosts["node1"].engine.add_source(running=True, checkpoints=("ferry-uid-1",))
    twin = hosts.hosts["node2"].engine.add_twin(running=False, checkpoints=("ferry-uid-1",))
    for info in (source, twin):
        info["HostConfig"]["Privileged"] = privileged
    return hosts


def test_a_status_patched_to_checkpointing_does_not_freeze_a_container_outside_the_selector() -> None:
    hosts = resumed_hosts(workloads=(MOVABLE,))
    hosts.hosts["node1"].engine.checkpoints["c-src"] = set()

    state, sink = migrate(hosts, container_spec(), frozen_state(Phase.CHECKPOINTING))

    assert (state.phase, state.reason) == (Phase.FAILED, "WorkloadNotAllowed")
    assert "stopped in Checkpointing without touching any host" in state.message
    assert sink.phases == ["Failed"] and changes(hosts) == []
    assert (
        hosts.hosts["node1"].engine.running("c-src") and not hosts.hosts["node1"].engine.checkpoints["c-src"]
    )


def test_a_status_patched_to_restoring_does_not_start_a_privileged_twin() -> None:
    hosts = resumed_hosts(privileged=True)

    state, sink = migrate(hosts, container_spec(), frozen_state(Phase.RESTORING))

    assert (state.phase, state.reason) == (Phase.FAILED, "PrivilegedNotAllowed")
    assert sink.phases == ["Failed"] and changes(hosts) == []
    assert not hosts.hosts["node2"].engine.running("c-tgt")


def test_a_status_patched_past_preparing_for_a_process_migration_fails_without_reaching_a_host() -> None:
    hosts = hosts_running(FakeProcess())  # no process rule on either host

    state, sink = migrate(hosts, process_spec(), frozen_state(Phase.CHECKPOINTING, fingerprint_pid=4242))

    assert (state.phase, state.reason) == (Phase.FAILED, "WorkloadNotAllowed")
    assert hosts.connected == [] and sink.phases == ["Failed"]


def test_a_status_naming_sshd_and_its_stack_does_not_get_sshd_dumped() -> None:
    hosts = hosts_running(FakeProcess(), workloads=(WIDE,))
    hosts.hosts["node1"].procs[22] = FakeProcess("/usr/sbin/sshd", "sshd", (0, 0, 0, 0))

    state, sink = migrate(hosts, process_spec(22), frozen_state(Phase.CHECKPOINTING, fingerprint_pid=22))

    assert (state.phase, state.reason) == (Phase.FAILED, "ProtectedProcess")
    assert sink.phases == ["Failed"] and changes(hosts) == []  # a dump would have failed the fake host


def test_a_status_naming_a_bystander_as_the_twin_gets_it_neither_started_nor_removed() -> None:
    hosts = resumed_hosts()
    bystander = hosts.hosts["node2"].engine.containers["c-tgt"]
    bystander["Config"]["Labels"] = {}  # somebody else's container, not made by this migration

    state, sink = migrate(hosts, container_spec(), frozen_state(Phase.RESTORING))

    assert (state.phase, state.reason) == (Phase.FAILED, "StatusTampered")
    assert (
        "status.targetContainerID names container web on node2, which is not this migration's"
        in state.message
    )
    assert sink.phases == ["Failed"] and changes(hosts) == []


@pytest.mark.parametrize("phase", [Phase.PREPARING, Phase.CHECKPOINTING, Phase.VERIFYING, Phase.ROLLING_BACK])
def test_a_status_naming_another_container_as_the_source_gets_it_neither_frozen_nor_removed(
    phase: Phase,
) -> None:
    hosts = resumed_hosts()
    hosts.hosts["node1"].engine.containers["c-src"]["Name"] = "/database"

    state, _ = migrate(hosts, container_spec(), frozen_state(phase))

    assert (state.phase, state.reason) == (Phase.FAILED, "StatusTampered")
    assert "status.sourceContainerID names container database on node1" in state.message
    assert changes(hosts) == [] and hosts.hosts["node1"].engine.running("c-src")


def test_a_failure_in_preparing_removes_only_a_twin_this_migration_made() -> None:
    hosts = resumed_hosts()
    hosts.hosts["node2"].engine.containers["c-tgt"]["Config"]["Labels"] = {"ferry.dev/migration": "another"}
    migration = ContainerMigration(context(container_spec(), frozen_state(Phase.PREPARING), hosts)[0])

    migration.target_cleanup()

    assert "c-tgt" in hosts.hosts["node2"].engine.containers


def test_a_run_resumed_past_preparing_judges_the_containers_it_would_act_on() -> None:
    """A legitimate resume (an operator restarted mid-migration) is judged the same way, and goes on."""
    hosts = resumed_hosts(workloads=(MOVABLE,))
    for host, container in (("node1", "c-src"), ("node2", "c-tgt")):
        hosts.hosts[host].engine.containers[container]["Config"]["Labels"]["ferry.dev/movable"] = "true"
    ctx, _ = context(container_spec(), frozen_state(Phase.TRANSFERRING), hosts)

    assert ContainerMigration(ctx).workload_problem() is None
    del hosts.hosts["node2"].engine.containers["c-tgt"]["Config"]["Labels"]["ferry.dev/movable"]
    problem = ContainerMigration(ctx).workload_problem()
    assert problem is not None and problem.reason == "WorkloadNotAllowed"


def test_changing_a_dockerhost_takes_effect_on_the_next_run() -> None:
    """Nothing is cached from one run to the next: the DockerHosts as they are now decide."""
    hosts = hosts_with("web")
    hosts.specs["node2"] = DockerHostSpec(**{**vars(hosts.specs["node2"]), "workloads": (MOVABLE,)})

    state, _ = migrate(hosts, container_spec())

    assert state.reason == "WorkloadNotAllowed" and "DockerHost 'node2'" in state.message
