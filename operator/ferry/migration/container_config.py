"""Builds the Engine API `create` body of a twin container from `docker inspect` of the original."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Config fields that describe the container itself; the rest of `Config` is derived by Docker.
CONFIG_FIELDS = (
    "Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr", "ExposedPorts",
    "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd", "Healthcheck", "ArgsEscaped", "Volumes",
    "WorkingDir", "Entrypoint", "NetworkDisabled", "OnBuild", "Labels", "StopSignal", "StopTimeout", "Shell",
)  # fmt: skip
BUILTIN_NETWORKS = frozenset({"default", "bridge", "host", "none"})
MIGRATION_LABEL = "ferry.dev/migration"  # on what a migration makes on the target: its uid


def clone_create_body(
    info: Mapping[str, Any], *, image: str | None = None, labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The body for POST /containers/create that recreates `info`'s container on another host."""
    config = info["Config"]
    body: dict[str, Any] = {key: config[key] for key in CONFIG_FIELDS if config.get(key) is not None}
    body["Image"] = image or info["Image"]
    body["Labels"] = {**(config.get("Labels") or {}), **(labels or {})}
    body["HostConfig"] = dict(info["HostConfig"])
    networks = info.get("NetworkSettings", {}).get("Networks") or {}
    custom = {
        name: {"Aliases": endpoint.get("Aliases")}
        | ({"IPAMConfig": endpoint["IPAMConfig"]} if endpoint.get("IPAMConfig") else {})
        for name, endpoint in networks.items()
        if name not in BUILTIN_NETWORKS
    }
    if custom:
        body["NetworkingConfig"] = {"EndpointsConfig": custom}
    return body
