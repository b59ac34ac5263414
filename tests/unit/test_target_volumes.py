"""The volumes a migration makes on the target: never merged into one that was there (refused before
anything is made, naming it), labelled with the migration, and removed when it fails or rolls back."""

from __future__ import annotations

from typing import Any

from ferry.api import Strategy
from ferry.hosts.docker_engine import DockerError
from ferry.migration.phases import Phase
from ferry.migration.preflight import evaluate
from ferry.migration.runner import run_migration, run_phase
from ferry.migration.state import MigrationState
from tests.unit.fakes import (
    FakeHosts,
    FakeSink,
    GiB,
    container_spec,
    context,
    host_spec,
    preflight_facts,
)
from tests.unit.test_container_rollback import migration

OURS = {"ferry.dev/migration": "uid-1"}  # the label of the migration the tests run (uid-1)
ANONYMOUS = "3f4c" * 16


def hosts_with_web(**spec: Any) -> FakeHosts:
    """node1 runs `web`, with the named volume `data` at /data and an anonymous one at /cache;
    node2 has the image and a volume of someone else's, `theirs`."""
    hosts = FakeHosts(host_spec("node1"), host_spec("node2"))
    web = hosts.hosts["node1"].engine.add("web", running=True)
    web["HostConfig"]["Binds"] = ["data:/data"]
    web["Mounts"] = [
        {
            "Type": "volume",
            "Name": name,
            "Source": f"/v/{name}/_data",
            "Destination": place,
            "Driver": "local",
        }
        for name, place in (("data", "/data"), (ANONYMOUS, "/cache"))
    ]
    for node in hosts.hosts.values():
        node.engine.add_image()
    hosts.hosts["node2"].engine.volumes["theirs"] = {}
    return hosts


def migrate(hosts: FakeHosts, **spec: Any) -> tuple[MigrationState, FakeSink]:
    state = MigrationState()
    ctx, sink = context(container_spec(**spec), state, hosts)
    run_migration(ctx)
    return state, sink


def changes(hosts: FakeHosts) -> list[str]:
    return [
        call
        for call in hosts.calls
        if call.split(":")[1] not in {"find_container", "inspect_container", "find_volume"}
    ]


# -- A volume of that name on the target: refused before anything is made


def test_a_volume_of_that_name_on_the_target_fails_the_migration_before_anything_is_made() -> None:
    hosts = hosts_with_web()
    hosts.hosts["node2"].engine.volumes["data"] = {"app": "someone-else"}

    state, sink = migrate(hosts)

    assert (state.phase, state.reason) == (Phase.FAILED, "VolumeExists")
    assert state.message.startswith("volume data already exists on node2, and ferry copies a volume only")
    assert "Checkpointing" not in sink.phases
    assert changes(hosts) == []
    assert hosts.hosts["node2"].engine.volumes == {"theirs": {}, "data": {"app": "someone-else"}}


def test_a_volume_this_migration_made_before_a_restart_is_its_own() -> None:
    hosts = hosts_with_web()
    hosts.hosts["node2"].engine.volumes["data"] = dict(OURS)

    state, sink = migrate(hosts, dry_run=True)

    assert (state.phase, state.reason) == (Phase.SUCCEEDED, "DryRunPassed")
    checks = {check["name"]: check for check in sink.saved[-1]["preflight"]["checks"]}
    assert checks["Volumes"] == {
        "name": "Volumes",
        "passed": True,
        "message": "the volumes the container mounts are new to node2: data",
    }


def test_every_volume_there_already_is_named() -> None:
    facts = preflight_facts(volumes=["cache", "data", "logs"], volumes_on_target=["data", "logs"])

    (failed,) = [check for check in evaluate(facts) if not check.passed]

    assert failed.message.startswith("volumes data, logs already exist on node2")


def test_the_target_disk_check_counts_what_every_local_volume_holds_on_the_source() -> None:
    hosts = hosts_with_web()
    node1, node2 = hosts.hosts["node1"], hosts.hosts["node2"]
    node1.files.sizes.update({"/v/data/_data": 3 * GiB, f"/v/{ANONYMOUS}/_data": 2 * GiB})
    node2.disk_available = 4 * GiB

    state, _ = migrate(hosts)

    assert (state.phase, state.reason) == (Phase.FAILED, "NoDiskSpace")
    assert "its volumes (5.0 GiB)" in state.message


def test_a_container_without_named_volumes_has_no_volumes_check() -> None:
    assert "Volumes" not in [check.name for check in evaluate(preflight_facts())]


# -- Made new and labelled with the migration, before the twin


def test_a_twin_that_cannot_be_made_leaves_no_volume_made_for_it() -> None:
    hosts = hosts_with_web()
    node2 = hosts.hosts["node2"]
    node2.engine.failing["create_container"] = DockerError("creating container web on node2 failed")

    state, _ = migrate(hosts, strategy=Strategy.COLD)

    assert state.phase is Phase.FAILED
    made = [call for call in node2.calls if call.split(":")[1] in {"create_volume", "create_container"}]
    assert made == ["node2:create_volume:data", "node2:create_container:web"]  # the anonymous one: by Docker
    assert node2.engine.volumes == {"theirs": {}}


def test_a_volume_that_appears_after_the_checks_is_never_copied_into() -> None:
    hosts = hosts_with_web()
    node2 = hosts.hosts["node2"]
    web = hosts.hosts["node1"].engine.containers["web"]
    web["HostConfig"]["Binds"].insert(0, "aaa:/a")
    web["Mounts"].append({**web["Mounts"][0], "Name": "aaa", "Destination": "/a"})
    node2.engine.volumes["data"] = {"app": "someone-else"}
    node2.engine.find_volume = lambda name: None  # type: ignore[method-assign]  # made after the checks

    state, _ = migrate(hosts, strategy=Strategy.COLD)

    assert (state.phase, state.reason) == (Phase.FAILED, "VolumeExists")
    assert "volume data appeared on node2 after the checks" in state.message
    assert node2.engine.volumes == {"theirs": {}, "data": {"app": "someone-else"}}  # aaa, made first, is gone


# -- Removed when the migration fails or rolls back


def test_a_failure_removes_the_twin_its_anonymous_volumes_and_the_volumes_made_for_it() -> None:
    steps, _, node2 = migration(Phase.PREPARING, target="created")
    node2.engine.volumes.update(
        {"data": dict(OURS), "anon": {}, "theirs": {}, "other": {"ferry.dev/migration": "u2"}}
    )
    node2.engine.anonymous_volumes["c-tgt"] = ["anon"]

    steps.target_cleanup()

    assert "c-tgt" not in node2.engine.containers
    assert node2.engine.volumes == {"theirs": {}, "other": {"ferry.dev/migration": "u2"}}


def test_a_rollback_removes_the_volumes_copied_to_the_target() -> None:
    steps, node1, node2 = migration(Phase.ROLLING_BACK)
    node2.engine.volumes.update({"data": dict(OURS), "anon": {}, "theirs": {}})
    node2.engine.anonymous_volumes["c-tgt"] = ["anon"]

    run_phase(steps.ctx, steps)

    assert steps.state.phase is Phase.ROLLED_BACK
    assert node1.engine.running("c-src")
    assert node2.engine.volumes == {"theirs": {}}


def test_a_volume_that_cannot_be_removed_does_not_hold_the_workload_back() -> None:
    steps, node1, node2 = migration(Phase.ROLLING_BACK)
    node2.engine.volumes["data"] = dict(OURS)
    node2.engine.failing["remove_volume"] = DockerError("removing volume data on node2 failed: in use")

    run_phase(steps.ctx, steps)

    assert steps.state.phase is Phase.ROLLED_BACK
    assert node1.engine.running("c-src")
    assert "not done: removing the volumes copied to node2 (removing volume data" in steps.state.message
