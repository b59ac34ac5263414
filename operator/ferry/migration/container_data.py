"""What of a container lives outside its checkpoint: volumes, bind mounts, shared directories, ports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ferry.migration.errors import Problem


@dataclass(frozen=True)
class VolumeCopy:
    name: str
    source_dir: str
    target_dir: str


def local_volumes(source_info: dict[str, Any], target_info: dict[str, Any]) -> list[VolumeCopy]:
    """Volumes of the `local` driver, each paired with the twin container's volume mounted at the same
    place: the namesake of a named volume, the new volume Docker made for an anonymous one."""
    targets = {
        m["Destination"]: m["Source"] for m in target_info.get("Mounts") or [] if m.get("Type") == "volume"
    }
    copies = {}
    for mount in _local_volume_mounts(source_info):
        name, place = mount["Name"], mount["Destination"]
        if place not in targets:
            raise Problem("VolumeMissing", f"the twin has no volume at {place} to copy volume {name} into")
        copies[name] = VolumeCopy(name, mount["Source"], targets[place])
    return list(copies.values())  # a volume mounted at two places is copied once


def local_volume_dirs(info: dict[str, Any]) -> list[str]:
    """Where the container's local volumes keep their data on its host, each once."""
    return sorted({m["Source"] for m in _local_volume_mounts(info)})


def named_volumes(info: dict[str, Any]) -> list[str]:
    """The local volumes the container mounts by name: the twin mounts their namesakes on the target.
    An anonymous volume (`-v /data`) is named nowhere in the configuration: the twin gets a new one."""
    host_config = info["HostConfig"]
    named = {bind.split(":")[0] for bind in host_config.get("Binds") or [] if not bind.startswith("/")}
    named |= {
        m["Source"] for m in host_config.get("Mounts") or [] if m.get("Type") == "volume" and m.get("Source")
    }
    return sorted({m["Name"] for m in _local_volume_mounts(info) if m["Name"] in named})


def _local_volume_mounts(info: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        m
        for m in info.get("Mounts") or []
        if m.get("Type") == "volume" and m.get("Driver", "local") == "local"
    ]


def bind_sources(info: dict[str, Any]) -> list[tuple[str, str]]:
    """(host path, container path) of every bind mount."""
    return [(m["Source"], m["Destination"]) for m in info.get("Mounts") or [] if m.get("Type") == "bind"]


def published_ports(info: dict[str, Any]) -> list[tuple[str, int]]:
    """(protocol, host port) of every port the container publishes on one host port."""
    return sorted(
        {
            (spec.split("/")[-1], int(host_port))
            for spec, host_port in _host_ports(info)
            if host_port.isdigit()
        }
    )


def container_ports(info: dict[str, Any]) -> list[int]:
    """The container's own TCP ports that are published (where its open connections are)."""
    return sorted({int(spec.split("/")[0]) for spec, _ in _host_ports(info) if spec.endswith("/tcp")})


def published_port_ranges(info: dict[str, Any]) -> list[str]:
    """Each port published on a range of host ports (`-p 8000-8010:80`), as "80/tcp on 8000-8010":
    Docker binds whichever port of the range is free at each start."""
    return sorted(f"{spec} on {host_port}" for spec, host_port in _host_ports(info) if "-" in host_port)


def _host_ports(info: dict[str, Any]) -> list[tuple[str, str]]:
    """(container port/protocol, host port as Docker keeps it) of every published port."""
    return [
        (spec, str(binding["HostPort"]))
        for spec, bindings in (info["HostConfig"].get("PortBindings") or {}).items()
        for binding in bindings or []
        if binding.get("HostPort")
    ]
