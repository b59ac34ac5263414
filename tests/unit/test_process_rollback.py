"""The only running copy of a plain process is never destroyed: in Verifying and in a rollback.

Where the process runs is kept in a set of host names (the /proc and CRIU calls are replaced by
that set); the images are files of the fake hosts.
"""

from __future__ import annotations

import pytest

from ferry.api import ProcessRef, Workload
from ferry.hosts.docker_host import DockerHost
from ferry.hosts.ssh import CommandFailed
from ferry.migration.errors import Problem
from ferry.migration.phases import Phase
from ferry.migration.process import ProcessMigration
from ferry.migration.runner import run_phase
from tests.unit.fakes import FakeHosts, container_spec, context, frozen_state, host_spec


class ProcessOnFakeHosts(ProcessMigration):
    def __init__(self, hosts: FakeHosts, phase: Phase, running_on: set[str]) -> None:
        spec = container_spec(workload=Workload(process=ProcessRef(pid=42)))
        ctx, _ = context(spec, frozen_state(phase, target_container_id=None), hosts)
        super().__init__(ctx)
        self.running_on = running_on

    def _runs_on(self, host: DockerHost) -> bool:
        return host.name in self.running_on

    def _restore_on(self, host: DockerHost, images: str) -> None:
        self.running_on.add(host.name)

    def _wait_for_pid_release(self, host: DockerHost) -> None:
        pass


def process_migration(
    phase: Phase, *, running_on: set[str], images: bool
) -> tuple[ProcessOnFakeHosts, FakeHosts]:
    hosts = FakeHosts(host_spec("node1"), host_spec("node2"))
    steps = ProcessOnFakeHosts(hosts, phase, running_on)
    if images:
        hosts.hosts["node1"].files.paths.add(f"{steps.dumped}/inventory.img")
    return steps, hosts


def test_verify_reports_images_it_could_not_remove_instead_of_rolling_back() -> None:
    steps, hosts = process_migration(Phase.VERIFYING, running_on={"node2"}, images=True)
    hosts.hosts["node1"].files.failing["remove_tree"] = CommandFailed("node1", ["rm"], 1, "busy")

    run_phase(steps.ctx, steps)

    assert steps.state.phase is Phase.SUCCEEDED
    assert f"not done: removing {steps.workdir} on node1" in steps.state.message


def test_verify_removes_the_target_images_before_the_source_images() -> None:
    steps, hosts = process_migration(Phase.VERIFYING, running_on={"node2"}, images=True)

    run_phase(steps.ctx, steps)

    assert [call.split(":")[0] for call in hosts.calls if ":remove_tree:" in call] == ["node2", "node1"]


def test_a_rollback_with_the_source_images_restores_the_source() -> None:
    steps, _ = process_migration(Phase.ROLLING_BACK, running_on=set(), images=True)

    run_phase(steps.ctx, steps)

    assert steps.state.phase is Phase.ROLLED_BACK
    assert steps.running_on == {"node1"}


def test_a_rollback_keeps_the_running_target_when_the_source_images_are_gone() -> None:
    steps, _ = process_migration(Phase.ROLLING_BACK, running_on={"node2"}, images=False)

    run_phase(steps.ctx, steps)

    assert (steps.state.phase, steps.state.reason) == (Phase.SUCCEEDED, "TargetKept")
    assert steps.running_on == {"node2"}


def test_a_rollback_waits_rather_than_ending_when_the_process_runs_nowhere() -> None:
    steps, _ = process_migration(Phase.ROLLING_BACK, running_on=set(), images=False)

    with pytest.raises(Problem, match="runs neither on node1"):
        steps.roll_back()

    assert steps.state.phase is Phase.ROLLING_BACK
