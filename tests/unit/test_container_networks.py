"""The networks a container is on, made on the target as the source has them."""

from __future__ import annotations

from typing import Any

import pytest

from ferry.api import Strategy
from ferry.hosts.docker_engine import DockerError
from ferry.hosts.docker_host import DockerHost
from ferry.migration.container_config import MIGRATION_LABEL
from ferry.migration.container_networks import TargetNetworks
from ferry.migration.errors import Problem
from ferry.migration.phases import Phase
from ferry.migration.runner import run_migration, run_phase
from ferry.migration.state import MigrationState
from tests.unit.fakes import FakeHost, FakeHosts, container_spec, context, host_spec
from tests.unit.test_container_rollback import migration

UID = "uid-1"  # the uid of the migration the runner's tests run
OURS = {MIGRATION_LABEL: UID}


def hosts() -> tuple[FakeHost, FakeHost, TargetNetworks]:
    calls: list[str] = []
    source, target = FakeHost("node1", calls), FakeHost("node2", calls)
    return source, target, TargetNetworks(as_host(source), as_host(target), UID)


def as_host(fake: FakeHost) -> DockerHost:
    return fake  # type: ignore[return-value]  # a FakeHost answers as a DockerHost does


def network(name: str, subnet: str, *, driver: str = "bridge", scope: str = "local") -> dict[str, Any]:
    return {
        "Name": name,
        "Driver": driver,
        "Scope": scope,
        "IPAM": {"Driver": "default", "Config": [{"Subnet": subnet, "Gateway": subnet.replace("0/24", "1")}]},
        "Options": {"com.docker.network.bridge.enable_icc": "true"},
        "Labels": {"com.docker.compose.project": "shop", "com.docker.compose.network": "default"},
    }


def on(*networks: str) -> dict[str, Any]:
    return {"NetworkSettings": {"Networks": {name: {} for name in ("bridge", *networks)}}}


def test_a_network_missing_on_the_target_is_made_as_the_source_has_it_labelled_with_the_migration() -> None:
    source, target, networks = hosts()
    source.engine.networks["shop_default"] = network("shop_default", "172.30.5.0/24")

    networks.make(on("shop_default"))

    made = target.engine.networks["shop_default"]
    assert made["IPAM"]["Config"] == [{"Subnet": "172.30.5.0/24", "Gateway": "172.30.5.1"}]
    assert made["Options"] == {"com.docker.network.bridge.enable_icc": "true"}
    assert made["Labels"] == {
        "com.docker.compose.project": "shop",
        "com.docker.compose.network": "default",
        MIGRATION_LABEL: UID,
    }


def test_a_network_the_target_has_already_is_left_as_it_is() -> None:
    source, target, networks = hosts()
    source.engine.networks["shop_default"] = network("shop_default", "172.30.5.0/24")
    target.engine.networks["shop_default"] = network("shop_default", "172.31.0.0/24")

    networks.make(on("shop_default"))

    assert target.engine.networks["shop_default"]["IPAM"]["Config"][0]["Subnet"] == "172.31.0.0/24"
    assert networks.target.engine.networks_labelled(MIGRATION_LABEL, UID) == []


def test_a_subnet_taken_on_the_target_gives_way_to_one_docker_picks() -> None:
    source, target, networks = hosts()
    source.engine.networks["shop_default"] = network("shop_default", "172.30.5.0/24")
    target.engine.networks["other"] = network("other", "172.30.5.0/24")

    networks.make(on("shop_default"))

    assert target.engine.networks["shop_default"]["IPAM"]["Config"] == []


@pytest.mark.parametrize(("driver", "scope"), [("overlay", "swarm"), ("macvlan", "local")])
def test_a_network_of_another_driver_is_not_made_and_says_to_create_it(driver: str, scope: str) -> None:
    source, target, networks = hosts()
    source.engine.networks["wide"] = network("wide", "10.9.0.0/24", driver=driver, scope=scope)

    with pytest.raises(Problem) as raised:
        networks.make(on("wide"))

    assert raised.value.reason == "NetworkMissing"
    assert f"network wide ({driver}, {scope} scope) does not exist on node2" in str(raised.value)
    assert "wide" not in target.engine.networks


def test_only_the_networks_this_migration_made_are_removed() -> None:
    source, target, networks = hosts()
    source.engine.networks["shop_default"] = network("shop_default", "172.30.5.0/24")
    target.engine.networks["users_own"] = network("users_own", "172.30.6.0/24")
    networks.make(on("shop_default", "users_own"))

    networks.remove()

    assert set(target.engine.networks) == {"bridge", "host", "none", "users_own"}


def test_a_rollback_removes_the_networks_made_on_the_target_and_no_others() -> None:
    steps, node1, node2 = migration(Phase.ROLLING_BACK)
    node2.engine.networks["shop_default"] = {**network("shop_default", "172.30.5.0/24"), "Labels": OURS}
    node2.engine.networks["users_own"] = network("users_own", "172.30.6.0/24")

    run_phase(steps.ctx, steps)

    assert steps.state.phase is Phase.ROLLED_BACK
    assert node1.engine.running("c-src")
    assert set(node2.engine.networks) == {"bridge", "host", "none", "users_own"}


def test_a_failure_making_the_twin_removes_the_networks_made_for_it() -> None:
    hosts = FakeHosts(host_spec("node1"), host_spec("node2"))
    web = hosts.hosts["node1"].engine.add("web", running=True, networks=("shop_default",))
    web["NetworkSettings"]["Networks"]["shop_default"] = {"Aliases": ["cache"]}
    hosts.hosts["node1"].engine.networks["shop_default"] = network("shop_default", "172.30.5.0/24")
    for node in hosts.hosts.values():
        node.engine.add_image()
    node2 = hosts.hosts["node2"]
    node2.engine.failing["create_container"] = DockerError("creating container web on node2 failed: boom")
    state = MigrationState()
    ctx, _ = context(container_spec(strategy=Strategy.COLD), state, hosts)

    run_migration(ctx)

    assert state.phase is Phase.FAILED
    assert "node2:create_network:shop_default" in node2.engine.calls
    assert "shop_default" not in node2.engine.networks
