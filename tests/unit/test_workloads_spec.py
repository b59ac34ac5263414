"""DockerHost.spec.workloads and the twin allowances (allowPrivileged, allowHostPaths, allowDevices),
as ferry.api reads them: the defaults, every field, and what is refused with the field's name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ferry.api import DockerHostSpec, SpecError
from ferry.workloads import DEFAULT_WORKLOADS, LabelRequirement, LabelSelector, ProcessSelector, WorkloadRule
from tests.unit.test_api import docker_host


def parsed(**fields: Any) -> DockerHostSpec:
    return DockerHostSpec.from_resource("node-a", docker_host(**fields))


def test_a_host_without_workloads_lets_any_container_and_no_process_move() -> None:
    host = parsed()

    assert host.workloads == DEFAULT_WORKLOADS == (WorkloadRule(("*",), LabelSelector(), None),)


def test_a_host_without_allowances_allows_no_privilege_host_path_or_device() -> None:
    host = parsed()

    assert (host.allow_privileged, host.allow_host_paths, host.allow_devices) == (False, (), False)


def test_every_field_of_a_workload_rule_is_read() -> None:
    host = parsed(
        workloads=[
            {
                "namespaces": ["team-a"],
                "containers": {
                    "matchLabels": {"app": "web"},
                    "matchExpressions": [
                        {"key": "tier", "operator": "In", "values": ["front", "back"]},
                        {"key": "pinned", "operator": "DoesNotExist"},
                    ],
                },
                "processes": {"users": ["app", "1001"], "executables": ["/opt/app/bin"]},
            }
        ]
    )

    assert host.workloads == (
        WorkloadRule(
            namespaces=("team-a",),
            containers=LabelSelector(
                (("app", "web"),),
                (
                    LabelRequirement("tier", "In", ("front", "back")),
                    LabelRequirement("pinned", "DoesNotExist"),
                ),
            ),
            processes=ProcessSelector(("app", "1001"), ("/opt/app/bin",)),
        ),
    )


def test_a_rule_without_namespaces_serves_every_namespace() -> None:
    host = parsed(workloads=[{"containers": {}}])

    assert host.workload_rules("anything") == [WorkloadRule(containers=LabelSelector())]


def test_only_the_rules_for_a_namespace_apply_to_it() -> None:
    mine = {"namespaces": ["team-a"], "containers": {"matchLabels": {"team": "a"}}}
    theirs = {"namespaces": ["team-b"], "containers": {}}

    rules = parsed(workloads=[mine, theirs]).workload_rules("team-a")

    assert [rule.namespaces for rule in rules] == [("team-a",)]


def test_an_empty_workloads_list_lets_nothing_move() -> None:
    assert parsed(workloads=[]).workload_rules("default") == []


def test_the_allowances_are_read() -> None:
    host = parsed(allowPrivileged=True, allowHostPaths=["/srv/data", "/"], allowDevices=True)

    assert (host.allow_privileged, host.allow_host_paths, host.allow_devices) == (
        True,
        ("/srv/data", "/"),
        True,
    )


REFUSED: list[Any] = [
    pytest.param({"workloads": {"containers": {}}}, "spec.workloads", id="workloads-not-a-list"),
    pytest.param({"workloads": ["containers"]}, "spec.workloads[0]", id="rule-not-an-object"),
    pytest.param(
        {"workloads": [{"namespaces": "team-a", "containers": {}}]},
        "spec.workloads[0].namespaces",
        id="namespaces-a-string",
    ),
    pytest.param({"workloads": [{"containers": []}]}, "spec.workloads[0].containers", id="selector-a-list"),
    pytest.param(
        {"workloads": [{"containers": {"matchLabels": {"app": 1}}}]},
        "spec.workloads[0].containers.matchLabels",
        id="label-value-not-a-string",
    ),
    pytest.param(
        {"workloads": [{"containers": {"matchExpressions": [{"key": "app", "operator": "Equals"}]}}]},
        "spec.workloads[0].containers.matchExpressions[0].operator",
        id="unknown-operator",
    ),
    pytest.param(
        {"workloads": [{"containers": {"matchExpressions": [{"key": "app", "operator": "In"}]}}]},
        "spec.workloads[0].containers.matchExpressions[0].values",
        id="in-without-values",
    ),
    pytest.param(
        {
            "workloads": [
                {"containers": {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}}
            ]
        },
        "spec.workloads[0].containers.matchExpressions[0].values",
        id="exists-with-values",
    ),
    pytest.param(
        {"workloads": [{"containers": {"matchExpressions": [{"operator": "Exists"}]}}]},
        "spec.workloads[0].containers.matchExpressions[0]",
        id="requirement-without-key",
    ),
    pytest.param(
        {"workloads": [{"processes": {"executables": ["/opt/app"]}}]},
        "spec.workloads[0].processes.users",
        id="processes-without-users",
    ),
    pytest.param(
        {"workloads": [{"processes": {"users": [], "executables": ["/opt/app"]}}]},
        "spec.workloads[0].processes",
        id="processes-with-no-user",
    ),
    pytest.param(
        {"workloads": [{"processes": {"users": ["app"], "executables": ["opt/app"]}}]},
        "spec.workloads[0].processes.executables",
        id="executable-relative",
    ),
    pytest.param(
        {"workloads": [{"processes": {"users": ["app"], "executables": ["/opt/../etc"]}}]},
        "spec.workloads[0].processes.executables",
        id="executable-climbing",
    ),
    pytest.param({"allowHostPaths": ["srv"]}, "spec.allowHostPaths", id="host-path-relative"),
    pytest.param({"allowHostPaths": ["/srv/.."]}, "spec.allowHostPaths", id="host-path-climbing"),
    pytest.param({"allowHostPaths": "/srv"}, "spec.allowHostPaths", id="host-paths-a-string"),
    pytest.param({"allowPrivileged": "yes"}, "spec.allowPrivileged", id="privileged-not-a-boolean"),
    pytest.param({"allowDevices": 1}, "spec.allowDevices", id="devices-not-a-boolean"),
]


@pytest.mark.parametrize(("fields", "field"), REFUSED)
def test_a_bad_workload_rule_or_allowance_is_refused_naming_the_field(
    fields: dict[str, Any], field: str
) -> None:
    with pytest.raises(SpecError) as raised:
        parsed(**fields)

    assert field in str(raised.value)


def test_the_sample_docker_host_is_read_with_its_rules() -> None:
    sample = (
        Path(__file__).resolve().parents[2] / "manifests" / "samples" / "ferry.dev_v1alpha1_dockerhost.yaml"
    )

    host = DockerHostSpec.from_resource("node1", yaml.safe_load(sample.read_text())["spec"])

    assert host.workload_rules("default")[0].processes == ProcessSelector(
        ("root",), ("/usr/local/bin/helloer",)
    )
    assert (host.allow_privileged, host.allow_host_paths, host.allow_devices) == (False, (), False)
