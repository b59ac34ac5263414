"""What of a container lives outside its checkpoint: volumes, bind mounts, shared directories, ports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class VolumeCopy:
    name: str
    source_dir: str
    target_dir: str


def local_volumes(source_info: dict[str, Any], target_info: dict[str, Any]) -> list[VolumeCopy]:
    """Named volumes of the `local` driver, paired with the twin container's volume of that name."""
    targets = {m["Name"]: m["Source"] for m in target_info.get("Mounts") or [] if m.get("Type") == "volume"}
    return [
        VolumeCopy(m["Name"], m["Source"], targets[m["Name"]])
        for m in source_info.get("Mounts") or []
        if m.get("Type") == "volume" and m.get("Driver", "local") == "local" and m["Name"] in targets
    ]


def bind_sources(info: dict[str, Any]) -> list[tuple[str, str]]:
    """(host path, container path) of every bind mount."""
    return [(m["Source"], m["Destination"]) for m in info.get("Mounts") or [] if m.get("Type") == "bind"]


def published_ports(info: dict[str, Any]) -> list[tuple[str, int]]:
    """(protocol, host port) of every port the container publishes."""
    return sorted(
        {
            (spec.split("/")[-1], int(binding["HostPort"]))
            for spec, bindings in (info["HostConfig"].get("PortBindings") or {}).items()
            for binding in bindings or []
            if binding.get("HostPort")
        }
    )


def container_ports(info: dict[str, Any]) -> list[int]:
    """The container's own TCP ports that are published (where its open connections are)."""
    return sorted(
        {
            int(spec.split("/")[0])
            for spec, bindings in (info["HostConfig"].get("PortBindings") or {}).items()
            if spec.endswith("/tcp") and any(b.get("HostPort") for b in bindings or [])
        }
    )
