"""The user-defined networks a container is on, made on the target when it lacks them (a compose
project's network, for one): the same name, driver, options and labels, and the same subnet where it
is free there (else one Docker picks). Each is labelled with the migration that made it, so that a
failure or a rollback removes it and a resumed migration knows it as its own; once the container
runs there, the network stays with it."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ferry.hosts.docker_engine import DockerError
from ferry.hosts.docker_host import DockerHost
from ferry.migration.container_config import BUILTIN_NETWORKS, MIGRATION_LABEL
from ferry.migration.errors import Problem

log = logging.getLogger(__name__)

# Drivers whose networks live on one host and need nothing of it to be made (an overlay needs a
# swarm, a macvlan the host's own interface): only these are made on a target.
LOCAL_DRIVERS = frozenset({"bridge"})


def user_networks(info: Mapping[str, Any]) -> list[str]:
    """The user-defined networks a container (`docker inspect`) is on."""
    return sorted(set(info.get("NetworkSettings", {}).get("Networks") or {}) - BUILTIN_NETWORKS)


def can_be_made(network: Mapping[str, Any]) -> bool:
    """Whether ferry makes a network like this one (`docker network inspect`) on a target."""
    return network.get("Driver") in LOCAL_DRIVERS and network.get("Scope") == "local"


class TargetNetworks:
    def __init__(self, source: DockerHost, target: DockerHost, uid: str) -> None:
        self.source = source
        self.target = target
        self.uid = uid

    def make(self, info: Mapping[str, Any]) -> None:
        """Makes the container's networks the target lacks, as the source has them."""
        present = self.target.engine.network_names()
        for name in user_networks(info):
            if name not in present:
                self._make(self.source.engine.inspect_network(name))

    def _make(self, network: Mapping[str, Any]) -> None:
        name = network["Name"]
        if not can_be_made(network):
            raise Problem(
                "NetworkMissing",
                f"network {name} ({network.get('Driver')}, {network.get('Scope')} scope) does not exist on "
                f"{self.target.name}, and ferry makes only local bridge networks: create it there first",
            )
        labels = {**(network.get("Labels") or {}), MIGRATION_LABEL: self.uid}
        spec = {**network, "Labels": labels}
        try:
            self.target.engine.create_network(spec)
        except DockerError as error:
            if "overlap" not in str(error):
                raise
            log.info("subnet of network %s is taken on %s: Docker picks another", name, self.target.name)
            self.target.engine.create_network({**spec, "IPAM": {**network.get("IPAM", {}), "Config": []}})

    def remove(self) -> None:
        """Removes the networks this migration made on the target; one that another container joined
        since stays (with a warning)."""
        for name in self.target.engine.networks_labelled(MIGRATION_LABEL, self.uid):
            try:
                self.target.engine.remove_network(name)
            except DockerError as error:
                if "active endpoints" not in str(error):
                    raise
                log.warning("leaving network %s on %s: other containers use it", name, self.target.name)
