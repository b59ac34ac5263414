"""Network continuity: clients of the source host's published ports are forwarded to the target."""

from __future__ import annotations

from typing import Any

from ferry.hosts.docker_host import DockerHost
from ferry.migration.container_data import published_ports


def redirect_tag(uid: str) -> str:
    """Tags the NAT rules of one Migration, which owns them (they go when it is deleted)."""
    return f"ferry:{uid}"


def forward_published_ports(
    source: DockerHost, target_info: dict[str, Any], target_address: str, uid: str
) -> str:
    """The source host forwards the ports the target container publishes; says what it forwards."""
    ports = published_ports(target_info)
    source.netfilter.forward_ports(ports, target_address, redirect_tag(uid))
    return ", ".join(f"{source.name}:{port}/{proto} -> {target_address}" for proto, port in ports)
