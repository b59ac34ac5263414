"""The Migration that `ferry migrate` creates."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ferry.api import GROUP, VERSION
from ferry.client.kube import ClientError

NAME_BASE_LENGTH = 50  # generateName adds 5 characters; Kubernetes keeps names far shorter than 253


@dataclass(frozen=True)
class MigrateRequest:
    """What `ferry migrate` was told: exactly one of container, pid, process and compose project."""

    target: str
    namespace: str
    source: str | None = None
    container: str | None = None
    pid: int | None = None
    process: str | None = None
    compose_project: str | None = None
    strategy: str | None = None
    redirect: bool = False
    name: str | None = None


def migration_manifest(request: MigrateRequest) -> dict[str, Any]:
    workload = _workload(request)
    metadata: dict[str, Any] = {"namespace": request.namespace}
    if request.name is not None:
        metadata["name"] = request.name
    else:
        what = request.container or request.process or request.compose_project or f"pid-{request.pid}"
        metadata["generateName"] = f"{_dns_label(what)}-to-{_dns_label(request.target)}-"
    spec: dict[str, Any] = {"workload": workload, "targetHost": request.target}
    if request.source is not None:
        spec["sourceHost"] = request.source
    if request.strategy is not None:
        spec["strategy"] = request.strategy
    if request.redirect:
        spec["redirect"] = True
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Migration", "metadata": metadata, "spec": spec}


def _workload(request: MigrateRequest) -> dict[str, Any]:
    named = (request.container, request.pid, request.process, request.compose_project)
    if sum(what is not None for what in named) != 1:
        raise ClientError(
            "name exactly one workload: a CONTAINER, --compose-project NAME, --pid N or --process NAME"
        )
    if request.container is not None:
        return {"container": request.container}
    if request.source is None:
        raise ClientError("a process or a compose project moves from one host: say which with --from HOST")
    if request.compose_project is not None:
        return {"composeProject": request.compose_project}
    if request.pid is not None:
        return {"process": {"pid": request.pid}}
    return {"process": {"name": request.process}}


def _dns_label(text: str) -> str:
    """A container or host name as part of a Kubernetes name: lower case, letters, digits and dashes."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:NAME_BASE_LENGTH] or "workload"
