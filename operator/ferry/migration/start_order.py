"""The order in which a group's containers start: each after the containers of the services it
depends on, as docker compose records them in its labels. A group freezes in the reverse order
(those that call others stop first) and starts again, on either host, in this one."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from graphlib import CycleError, TopologicalSorter

from ferry.api import COMPOSE_PROJECT_LABEL
from ferry.migration.errors import Problem

SERVICE_LABEL = "com.docker.compose.service"
DEPENDS_ON_LABEL = "com.docker.compose.depends_on"  # "redis:service_started:false,db:service_healthy:true"


def depended_services(labels: Mapping[str, str]) -> list[str]:
    """The services a compose container depends on (the first field of each depends_on entry)."""
    entries = labels.get(DEPENDS_ON_LABEL, "").split(",")
    return [entry.split(":")[0].strip() for entry in entries if entry.strip()]


def left_out_services(
    selected: Mapping[str, Mapping[str, str]], others: Collection[Mapping[str, str]]
) -> set[str]:
    """The services of the selected containers' compose projects that only containers outside the
    selection run (a selector narrower than the project)."""
    projects = {
        labels[COMPOSE_PROJECT_LABEL] for labels in selected.values() if COMPOSE_PROJECT_LABEL in labels
    }
    return {
        labels[SERVICE_LABEL]
        for labels in others
        if labels.get(COMPOSE_PROJECT_LABEL) in projects and SERVICE_LABEL in labels
    }


def start_order(containers: Mapping[str, Mapping[str, str]], left_out: Collection[str] = ()) -> list[str]:
    """The names of `containers` (name -> labels), dependencies first, ties by name. A dependency on
    a service that runs only outside the group (`left_out`) would be left behind on the other host,
    and a cycle has no order: both are refused."""
    by_service: dict[str, list[str]] = {}
    for name, labels in containers.items():
        if SERVICE_LABEL in labels:
            by_service.setdefault(labels[SERVICE_LABEL], []).append(name)
    sorter: TopologicalSorter[str] = TopologicalSorter()
    for name, labels in sorted(containers.items()):
        needed = []
        for service in depended_services(labels):
            if service in by_service:
                needed += by_service[service]
            elif service in left_out:
                raise Problem(
                    "DependencyLeftOut",
                    f"container '{name}' depends on service '{service}', whose containers the selector "
                    "leaves out: they would stay behind on the other host; select them too (or name the "
                    "whole compose project)",
                )
        sorter.add(name, *needed)
    try:
        sorter.prepare()
    except CycleError as error:
        raise Problem(
            "DependencyCycle",
            f"the containers depend on each other in a circle: {' -> '.join(error.args[1])}",
        ) from None
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        order += ready
        sorter.done(*ready)
    return order
