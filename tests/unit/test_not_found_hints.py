"""A container that cannot be found fails with a way forward: the hosts searched and the closest names."""

from __future__ import annotations

from ferry.api import Workload
from ferry.migration.phases import Phase
from ferry.migration.runner import run_migration
from ferry.migration.state import MigrationState
from tests.unit.fakes import FakeHosts, container_spec, context, host_spec


def hosts_running(**containers: tuple[str, ...]) -> FakeHosts:
    """node1, node2 (the target) and node3, each running the containers named for it."""
    hosts = FakeHosts(host_spec("node1"), host_spec("node2"), host_spec("node3"))
    for host, names in containers.items():
        for name in names:
            hosts.hosts[host].engine.add(name, running=True)
    return hosts


def failure(hosts: FakeHosts, container: str, source_host: str | None = None) -> tuple[str, str]:
    state = MigrationState()
    spec = container_spec(workload=Workload(container=container), source_host=source_host)
    ctx, _ = context(spec, state, hosts)

    run_migration(ctx)

    assert state.phase is Phase.FAILED
    return state.reason, state.message


def test_a_container_on_no_host_names_the_hosts_searched() -> None:
    reason, message = failure(hosts_running(), "lopper")

    assert reason == "ContainerNotFound"
    assert "container 'lopper' is on none of the hosts searched (node1, node3)" in message


def test_a_container_on_no_host_names_the_closest_running_containers_and_where_they_run() -> None:
    _, message = failure(hosts_running(node1=("looper", "db"), node3=("loopers",)), "lopper")

    assert message.endswith("closest running containers: 'looper' on node1, 'loopers' on node3")


def test_a_close_name_running_on_two_hosts_names_both() -> None:
    _, message = failure(hosts_running(node1=("looper",), node3=("looper",)), "lopper")

    assert message.endswith("closest running containers: 'looper' on node1 and node3")


def test_the_target_host_is_not_searched_for_close_names() -> None:
    _, message = failure(hosts_running(node2=("looper",)), "lopper")

    assert "'looper'" not in message


def test_a_container_missing_from_the_named_source_host_names_the_closest_there() -> None:
    reason, message = failure(hosts_running(node1=("looper",), node3=("lopper2",)), "lopper", "node1")

    assert reason == "ContainerNotFound"
    assert message == (
        "container 'lopper' does not exist on host node1; closest running containers: 'looper' on node1"
    )


def test_no_similar_name_says_so() -> None:
    _, message = failure(hosts_running(node1=("db",), node3=("cache",)), "lopper")

    assert message.endswith("no running container there has a similar name")


def test_a_stopped_container_is_not_offered_as_a_close_name() -> None:
    hosts = hosts_running()
    hosts.hosts["node1"].engine.add("looper-old", running=False)

    _, message = failure(hosts, "looper")

    assert "looper-old" not in message
