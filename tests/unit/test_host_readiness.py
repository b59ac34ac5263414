"""A Migration to or from a host that is not Ready fails in Pending, saying why, before anything is
made: decided from the host's last probe (its Ready condition) and confirmed by a fresh one."""

from __future__ import annotations

import pytest

from ferry.api import ProcessRef, Strategy, Workload
from ferry.hosts.docker_engine import DockerError
from ferry.migration import pending
from ferry.migration.errors import Problem
from ferry.migration.phases import Phase
from ferry.migration.state import MigrationState
from tests.unit.fakes import FakeHosts, container_spec, context, host_spec


def lab(*, source_running: bool = True) -> FakeHosts:
    """node1 runs container web; node2 and node3 run nothing."""
    hosts = FakeHosts(host_spec("node1"), host_spec("node2"), host_spec("node3"))
    if source_running:
        hosts.hosts["node1"].engine.add("web", running=True)
    return hosts


def docker_down(hosts: FakeHosts, name: str) -> None:
    hosts.readiness[name] = False
    hosts.hosts[name].engine.failing["version"] = DockerError(
        f"docker version on {name}: cannot reach the Docker Engine"
    )


def admitted(hosts: FakeHosts, **spec: object) -> MigrationState:
    state = MigrationState()
    ctx, _ = context(container_spec(**spec), state, hosts)
    pending.admit(ctx)
    return state


def test_a_target_whose_probe_says_not_ready_refuses_the_migration_with_its_reason() -> None:
    hosts = lab()
    docker_down(hosts, "node2")

    with pytest.raises(Problem) as refused:
        admitted(hosts)

    assert refused.value.reason == "DockerUnavailable"
    assert str(refused.value).startswith("DockerHost node2 is not Ready: Docker does not answer")
    assert "node1:find_container:web" not in hosts.calls  # refused before the source is touched


def test_a_source_that_is_not_ready_refuses_the_migration_too() -> None:
    hosts = lab()
    hosts.readiness["node1"] = False
    hosts.hosts["node1"].reachable = False

    with pytest.raises(Problem, match="DockerHost node1 is not Ready: cannot reach host node1") as refused:
        admitted(hosts)

    assert refused.value.reason == "Unreachable"


def test_a_host_never_probed_is_not_refused_and_not_probed() -> None:
    hosts = lab()
    hosts.hosts["node2"].engine.failing["version"] = DockerError("down")

    assert admitted(hosts).phase is Phase.PREPARING
    assert "node2" not in hosts.connected


def test_a_host_that_came_back_since_its_last_probe_is_not_refused() -> None:
    hosts = lab()
    hosts.readiness["node2"] = False  # the last probe saw it down; it answers now

    assert admitted(hosts).phase is Phase.PREPARING


def test_a_host_without_criu_still_takes_a_cold_move() -> None:
    hosts = lab()
    hosts.readiness["node2"] = False
    hosts.hosts["node2"].criu_check = (127, "criu: not found")

    assert admitted(hosts, strategy=Strategy.COLD).phase is Phase.PREPARING
    with pytest.raises(Problem) as refused:
        admitted(hosts)
    assert refused.value.reason == "CRIUMissing"


def test_a_plain_process_does_not_need_docker() -> None:
    hosts = lab()
    docker_down(hosts, "node2")

    state = admitted(hosts, workload=Workload(process=ProcessRef(pid=4242)))

    assert state.phase is Phase.PREPARING


def test_a_search_for_the_source_skips_the_hosts_not_ready_and_says_so() -> None:
    hosts = lab(source_running=False)
    hosts.hosts["node3"].engine.add("web", running=True)
    docker_down(hosts, "node1")

    state = admitted(hosts, source_host=None)

    assert state.source_host == "node3"


def test_a_container_found_on_no_ready_host_names_the_hosts_not_searched() -> None:
    hosts = lab()
    docker_down(hosts, "node1")

    with pytest.raises(Problem) as refused:
        admitted(hosts, source_host=None)

    assert refused.value.reason == "ContainerNotFound"
    assert "none of the hosts searched (node3)" in str(refused.value)
    assert str(refused.value).endswith("; not searched, as not Ready: node1")
