"""A group of containers (a compose project) moves as one: every target is verified before any
source goes; a rollback brings them all back in start order, or keeps them all on the target when
one cannot come back; a status naming a container the selector does not select is refused."""

from __future__ import annotations

from typing import Any

import pytest

from ferry.api import COMPOSE_PROJECT_LABEL, ContainerGroup, Workload
from ferry.hosts.docker_engine import DockerError
from ferry.migration.container_config import MIGRATION_LABEL
from ferry.migration.container_group import ContainerGroupMigration, member_uid
from ferry.migration.errors import Problem
from ferry.migration.phases import Phase
from ferry.migration.runner import run_migration, run_phase
from ferry.migration.state import MigrationState, Progress
from ferry.workloads import LabelSelector
from tests.unit.fakes import UID, FakeHost, FakeHosts, container_spec, context, frozen_state, host_spec

SERVICE = "com.docker.compose.service"
DEPENDS_ON = "com.docker.compose.depends_on"
READS = {"find_container", "inspect_container", "containers"}  # the engine calls that change nothing
SHOP = Workload(group=ContainerGroup.of_project("shop"))
MEMBERS = ("cache", "front")  # in start order: the front end depends on the cache
PROJECT = {COMPOSE_PROJECT_LABEL: "shop"}


def group(
    phase: Phase,
    *,
    sources: tuple[str, str] = ("checkpointed",) * 2,
    targets: tuple[str, str] = ("running",) * 2,
) -> tuple[ContainerGroupMigration, FakeHost, FakeHost]:
    """The compose project `shop` in `phase`: each member's source is "checkpointed", "running" or
    "gone"; its twin on node2 "running", "created" or "gone"."""
    hosts = FakeHosts(host_spec("node1"), host_spec("node2"))
    node1, node2 = hosts.hosts["node1"], hosts.hosts["node2"]
    members = []
    for index, (name, source, target) in enumerate(zip(MEMBERS, sources, targets, strict=True)):
        uid = member_uid(UID, index)
        checkpoint = f"ferry-{uid}"
        if source != "gone":
            checkpoints = (checkpoint,) if source == "checkpointed" else ()
            node1.engine.add(
                f"{name}-src", running=source == "running", checkpoints=checkpoints, name=name, labels=PROJECT
            )
        if target != "gone":
            labels = {**PROJECT, MIGRATION_LABEL: uid}
            node2.engine.add(
                f"{name}-tgt",
                running=target == "running",
                checkpoints=(checkpoint,),
                name=name,
                labels=labels,
            )
        members.append(
            frozen_state(
                phase,
                workload=f"container/{name}",
                source_container_id=f"{name}-src",
                target_container_id=f"{name}-tgt",
                checkpoint_name=checkpoint,
            )
        )
    state = frozen_state(
        phase,
        workload="compose/shop",
        source_container_id=None,
        target_container_id=None,
        checkpoint_name=None,
        fingerprint_pid=None,
        fingerprint_stack=None,
        members=members,
    )
    spec = container_spec(workload=SHOP)
    ctx, _ = context(spec, state, hosts)
    return ContainerGroupMigration(ctx), node1, node2


def calls_of(host: FakeHost, *names: str) -> list[str]:
    return [call for call in host.engine.calls if call.split(":")[1] in names]


def test_every_target_is_verified_before_any_source_is_removed() -> None:
    steps, node1, _ = group(Phase.VERIFYING, targets=("running", "created"))  # the front end did not start

    with pytest.raises(Problem, match=r"^front: the container on node2 is exited after the restore"):
        steps.verify()

    assert {"cache-src", "front-src"} <= set(node1.engine.containers)  # both can still take over


def test_a_verified_group_removes_every_source_and_says_what_moved() -> None:
    steps, node1, _ = group(Phase.VERIFYING)

    run_phase(steps.ctx, steps)

    assert steps.state.phase is Phase.SUCCEEDED
    assert "compose/shop (cache, front) runs on node2" in steps.state.message
    assert not {"cache-src", "front-src"} & set(node1.engine.containers)
    assert [member.phase for member in steps.state.members] == [Phase.SUCCEEDED] * 2


def test_a_verify_resumed_after_one_source_went_reports_what_fails_and_removes_the_other_source() -> None:
    steps, node1, node2 = group(Phase.VERIFYING, sources=("gone", "checkpointed"))
    node2.engine.failing["delete_checkpoint"] = DockerError("deleting checkpoint on node2 failed")

    run_phase(steps.ctx, steps)

    assert steps.state.phase is Phase.SUCCEEDED
    assert "not done: removing checkpoint" in steps.state.message
    assert "front-src" not in node1.engine.containers


def test_a_rollback_brings_every_member_back_on_the_source_dependencies_first() -> None:
    steps, node1, node2 = group(Phase.ROLLING_BACK)

    run_phase(steps.ctx, steps)

    assert steps.state.phase is Phase.ROLLED_BACK
    assert node1.engine.running("cache-src") and node1.engine.running("front-src")
    assert not {"cache-tgt", "front-tgt"} & set(node2.engine.containers)
    assert calls_of(node1, "start") == ["node1:start:cache-src", "node1:start:front-src"]


def test_when_one_source_cannot_come_back_the_whole_group_stays_on_the_target() -> None:
    steps, node1, node2 = group(Phase.ROLLING_BACK, sources=("gone", "checkpointed"))

    run_phase(steps.ctx, steps)

    assert (steps.state.phase, steps.state.reason) == (Phase.SUCCEEDED, "TargetKept")
    assert "container/cache: the source container cache-src is gone from node1" in steps.state.message
    assert node2.engine.running("cache-tgt") and node2.engine.running("front-tgt")
    assert "front-src" not in node1.engine.containers  # never split across two hosts, nor left behind


def test_a_member_failing_in_a_rollback_is_named_in_what_the_rollback_waits_for() -> None:
    steps, node1, _ = group(Phase.ROLLING_BACK)
    node1.engine.failing["start"] = DockerError("starting the container failed")

    with pytest.raises(Problem, match=r"^cache: starting the container failed"):
        steps.roll_back()


def test_a_status_naming_a_container_outside_the_project_is_refused() -> None:
    steps, node1, _ = group(Phase.RESTORING)
    node1.engine.containers["front-src"]["Config"]["Labels"] = {COMPOSE_PROJECT_LABEL: "bank"}

    problem = steps.workload_problem()

    assert problem is not None and problem.reason == "StatusTampered"
    assert "front" in problem.message and "does not select" in problem.message


def test_a_frozen_group_whose_status_lists_no_member_is_refused() -> None:
    steps, _, _ = group(Phase.RESTORING)
    steps.state.members = []

    problem = steps.workload_problem()

    assert problem is not None and problem.reason == "StatusTampered"


def test_members_enter_each_phase_their_group_enters() -> None:
    state = MigrationState(phase=Phase.PREPARING, members=[MigrationState(phase=Phase.PREPARING)])

    state.enter(Phase.CHECKPOINTING)
    state.enter(Phase.ROLLING_BACK)

    member = state.members[0]
    assert member.phase is Phase.ROLLING_BACK
    assert member.frozen_at is not None  # a member is frozen from its group's freeze


# -- Preparing: every container checked before anything is made for any


def hosts_with_shop(*, front_port: int = 8080) -> FakeHosts:
    """node1 runs the project `shop`: cache, and front (publishing `front_port`) depending on it."""
    hosts = FakeHosts(host_spec("node1"), host_spec("node2"))
    engine = hosts.hosts["node1"].engine
    engine.add("cache", running=True, labels={**PROJECT, SERVICE: "cache"})
    front = {**PROJECT, SERVICE: "front", DEPENDS_ON: "cache:service_started:false"}
    engine.add("front", running=True, ports=(("tcp", front_port),), labels=front)
    engine.add("other", running=True, labels={COMPOSE_PROJECT_LABEL: "bank"})
    engine.add_image()
    return hosts


def prepare_group(hosts: FakeHosts, workload: Workload, **spec: Any) -> MigrationState:
    state = MigrationState()
    ctx, _ = context(container_spec(workload=workload, **spec), state, hosts)
    run_migration(ctx)
    return state


def changes(hosts: FakeHosts) -> list[str]:
    return [call for call in hosts.calls if call.split(":")[1] not in READS]


def test_a_dry_run_of_a_project_checks_every_container_in_start_order_and_changes_nothing() -> None:
    hosts = hosts_with_shop()

    state = prepare_group(hosts, SHOP, dry_run=True)

    assert (state.phase, state.reason) == (Phase.SUCCEEDED, "DryRunPassed")
    assert [member.workload for member in state.members] == ["container/cache", "container/front"]
    assert state.message.startswith("cache: dry run:") and "; front: dry run:" in state.message
    assert changes(hosts) == []


def test_one_container_the_preflight_refuses_fails_the_project_before_anything_is_made_for_any() -> None:
    hosts = hosts_with_shop()
    hosts.hosts["node2"].listen("tcp", 8080)  # the front's port is taken on the target

    state = prepare_group(hosts, SHOP)

    assert (state.phase, state.reason) == (Phase.FAILED, "PortTaken")
    assert state.message.startswith("front: ")
    assert changes(hosts) == [] and hosts.hosts["node2"].engine.containers == {}


def test_a_selector_that_leaves_out_a_dependency_is_refused_naming_it() -> None:
    selector = LabelSelector(match_labels=((SERVICE, "front"),))

    state = prepare_group(hosts_with_shop(), Workload(group=ContainerGroup(selector)))

    assert (state.phase, state.reason) == (Phase.FAILED, "DependencyLeftOut")
    assert "depends on service 'cache'" in state.message


def test_a_project_with_no_container_on_the_source_is_refused() -> None:
    state = prepare_group(hosts_with_shop(), Workload(group=ContainerGroup.of_project("mail")))

    assert (state.phase, state.reason) == (Phase.FAILED, "ContainerNotFound")
    assert "com.docker.compose.project=mail" in state.message


# -- what a member's steps see


def test_a_member_moves_its_one_container_under_a_uid_of_its_own() -> None:
    steps, _, _ = group(Phase.RESTORING)

    second = steps.members()[1]

    assert second.ctx.request.uid == f"{UID}-1"
    assert second.ctx.request.spec.workload == Workload(container="front")
    assert second.network_owner == UID  # the networks it makes are the group's


def test_a_members_status_write_is_the_groups_and_carries_its_progress() -> None:
    state = frozen_state(
        Phase.PREPARING, members=[MigrationState(phase=Phase.PREPARING, workload="container/a")]
    )
    ctx, sink = context(
        container_spec(workload=SHOP), state, FakeHosts(host_spec("node1"), host_spec("node2"))
    )
    member = ContainerGroupMigration(ctx).members()[0]
    member.state.progress = Progress(phase=Phase.PREPARING, step="image", moved_bytes=5)

    member.ctx.save()

    written = sink.saved[-1]
    assert written["progress"]["movedBytes"] == 5 and written["members"][0]["workload"] == "container/a"
