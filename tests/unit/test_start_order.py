"""The order a group's containers start in, from compose's labels."""

from __future__ import annotations

import pytest

from ferry.migration.errors import Problem
from ferry.migration.start_order import depended_services, left_out_services, start_order

PROJECT = "com.docker.compose.project"


def service(name: str, *depends_on: str, project: str = "shop") -> dict[str, str]:
    labels = {PROJECT: project, "com.docker.compose.service": name}
    if depends_on:
        labels["com.docker.compose.depends_on"] = ",".join(f"{d}:service_started:false" for d in depends_on)
    return labels


def test_depends_on_entries_name_their_service_first() -> None:
    labels = {"com.docker.compose.depends_on": "db:service_healthy:true, cache:service_started:false"}

    assert depended_services(labels) == ["db", "cache"]


def test_a_container_starts_after_the_containers_of_the_services_it_depends_on() -> None:
    containers = {
        "shop-web-1": service("web", "api"),
        "shop-api-1": service("api", "db", "cache"),
        "shop-db-1": service("db"),
        "shop-cache-1": service("cache"),
    }

    assert start_order(containers) == ["shop-cache-1", "shop-db-1", "shop-api-1", "shop-web-1"]


def test_every_replica_of_a_service_starts_before_those_that_depend_on_it() -> None:
    containers = {"a-1": service("front", "back"), "b-1": service("back"), "b-2": service("back")}

    assert start_order(containers) == ["b-1", "b-2", "a-1"]


def test_containers_without_compose_labels_start_by_name() -> None:
    assert start_order({"zeta": {}, "alpha": {"team": "x"}}) == ["alpha", "zeta"]


def test_a_dependency_on_a_service_with_no_container_is_no_obstacle() -> None:
    assert start_order({"shop-web-1": service("web", "gone")}) == ["shop-web-1"]


def test_a_dependency_the_selection_leaves_behind_is_refused_naming_it() -> None:
    with pytest.raises(Problem, match="depends on service 'db'") as raised:
        start_order({"shop-web-1": service("web", "db")}, left_out={"db"})

    assert raised.value.reason == "DependencyLeftOut"


def test_a_circle_of_dependencies_is_refused() -> None:
    with pytest.raises(Problem) as raised:
        start_order({"a-1": service("a", "b"), "b-1": service("b", "a")})

    assert raised.value.reason == "DependencyCycle"


def test_the_services_left_out_are_those_of_the_same_projects_only() -> None:
    selected = {"shop-web-1": service("web", "db")}
    others = [service("db"), service("db", project="other"), service("mail", project="other"), {}]

    assert left_out_services(selected, others) == {"db"}
