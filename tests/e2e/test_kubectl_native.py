"""kubectl-native behaviour on the real lab: `kubectl wait` ends on any outcome, `kubectl explain`
describes every field, `kubectl get ferry` lists both kinds, a new Migration shows Pending first,
the status names the operator's version, and a mistyped name gets a hint."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from tests.e2e.lab import REPO, Counter, Lab, OperatorProcess, unique, wait_for


def operator_version() -> str:
    """What `ferry --version` says, in the environment the operator under test runs in."""
    printed = subprocess.run(
        [sys.executable, "-m", "ferry", "--version"], capture_output=True, text=True, check=True
    )
    program, version = printed.stdout.split()
    assert program == "ferry"
    return version


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == kind)


def kubectl_wait(lab: Lab, name: str, condition: str, timeout: int = 120) -> str:
    waited = lab.kubectl("wait", f"--for=condition={condition}", f"migration/{name}", f"--timeout={timeout}s")
    return waited.stdout


@dataclass
class Watched:
    name: str
    phases: list[str]  # the phase in each event `kubectl get -w` showed, in order ("" before any status)
    status: dict[str, Any]


@pytest.fixture(scope="module")
def watched_move(lab: Lab, operator: OperatorProcess) -> Watched:
    """A counter moved node1 -> node2, watched with `kubectl get -w` from before it was created."""
    counter, name = Counter(lab), unique("mig-watched")
    with lab.watching(name, '{.status.phase}{"\\n"}') as phases:
        lab.migration(name, counter.name, target="node2")
        kubectl_wait(lab, name, "Complete")
        status = lab.get_migration(name)["status"]
    return Watched(name, phases, status)


@pytest.fixture(scope="module")
def missing_container(lab: Lab, operator: OperatorProcess) -> dict[str, Any]:
    """A Migration naming a container that does not exist, waited for with `kubectl wait`, not polled."""
    name = unique("mig-missing")
    lab.migration(name, unique("no-such-container"), target="node2")
    assert "condition met" in kubectl_wait(lab, name, "Complete")
    return lab.get_migration(name)


# -- kubectl wait


def test_kubectl_wait_for_complete_returns_for_a_failed_migration(missing_container: dict[str, Any]) -> None:
    status = missing_container["status"]

    assert status["phase"] == "Failed", status
    assert condition(status, "Complete")["status"] == "True"
    assert condition(status, "Failed")["status"] == "True"
    assert condition(status, "Succeeded")["status"] == "False"


def test_kubectl_wait_for_failed_returns_for_a_failed_migration(
    lab: Lab, missing_container: dict[str, Any]
) -> None:
    name = missing_container["metadata"]["name"]

    assert "condition met" in kubectl_wait(lab, name, "Failed", timeout=10)


def test_kubectl_wait_for_complete_and_succeeded_return_for_a_successful_migration(
    lab: Lab, watched_move: Watched
) -> None:
    assert watched_move.status["phase"] == "Succeeded", watched_move.status
    assert "condition met" in kubectl_wait(lab, watched_move.name, "Complete", timeout=10)
    assert "condition met" in kubectl_wait(lab, watched_move.name, "Succeeded", timeout=10)
    assert condition(watched_move.status, "Failed")["status"] == "False"
    assert condition(watched_move.status, "RolledBack")["status"] == "False"


# -- Pending from the first sight


def test_the_first_phase_kubectl_get_watch_shows_is_pending(watched_move: Watched) -> None:
    shown = [phase for phase in watched_move.phases if phase]

    assert shown[0] == "Pending", watched_move.phases
    assert shown[-1] == "Succeeded", watched_move.phases


def test_pending_is_the_first_phase_transition(watched_move: Watched) -> None:
    transitions = watched_move.status["phaseTransitions"]

    assert transitions[0]["phase"] == "Pending"
    assert transitions[0]["time"] == watched_move.status["startTime"]


def test_a_failed_migration_was_pending_first(missing_container: dict[str, Any]) -> None:
    phases = [entry["phase"] for entry in missing_container["status"]["phaseTransitions"]]

    assert phases == ["Pending", "Failed"]


# -- versions


def test_the_status_names_the_operator_version(watched_move: Watched) -> None:
    assert watched_move.status["operatorVersion"] == operator_version()


def test_the_operator_logs_its_version_at_start(operator: OperatorProcess) -> None:
    assert f"ferry {operator_version()} starting as " in operator.log()


# -- kubectl explain and kubectl get ferry


CRD_FILES = {"migration": "ferry.dev_migrations.yaml", "dockerhost": "ferry.dev_dockerhosts.yaml"}


def crd_description(field: str) -> str:
    """The description the CRD gives `field` ("migration.spec.targetHost"), whitespace collapsed."""
    kind, *path = field.split(".")
    crd = yaml.safe_load((REPO / "crds" / CRD_FILES[kind]).read_text())
    node = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for name in path:
        node = node.get("items", node)["properties"][name]
    return " ".join(str(node["description"]).split())


def explained(lab: Lab, field: str) -> str:
    return " ".join(lab.kubectl("explain", field, check=False).stdout.split())


@pytest.mark.parametrize(
    "field",
    [
        "migration.spec.targetHost",
        "migration.spec",
        "migration.spec.workload.container",
        "migration.spec.timeoutSeconds",
        "migration.status.phase",
        "migration.status.operatorVersion",
        "migration.status.conditions.type",
        "migration.status.metrics.downtimeMs",
        "dockerhost.spec.maxConcurrentMigrations",
        "dockerhost.spec.sshKeySecretRef.key",
        "dockerhost.status.criuVersion",
    ],
)
def test_kubectl_explain_prints_the_description_of_the_field(lab: Lab, field: str) -> None:
    description = crd_description(field)

    wait_for(lambda: description in explained(lab, field), 30, f"kubectl explain {field} to describe it")


def test_kubectl_get_ferry_lists_both_kinds(lab: Lab, missing_container: dict[str, Any]) -> None:
    listed = lab.kubectl("get", "ferry", "-o", "name").stdout.split()

    assert f"migration.ferry.dev/{missing_container['metadata']['name']}" in listed
    assert {f"dockerhost.ferry.dev/{host}" for host in lab.hosts} <= set(listed)


@pytest.mark.parametrize(("short_name", "kind"), [("mig", "migration"), ("dh", "dockerhost")])
def test_the_short_names_still_work(
    lab: Lab, missing_container: dict[str, Any], short_name: str, kind: str
) -> None:
    listed = lab.kubectl("get", short_name, "-o", "name").stdout.split()

    assert listed and all(line.startswith(f"{kind}.ferry.dev/") for line in listed)


# -- messages with a way forward


def test_an_unknown_target_host_names_the_known_hosts(lab: Lab, operator: OperatorProcess) -> None:
    name = unique("mig-typo-host")
    lab.migration(name, unique("anything"), target="nod2", source=None)

    kubectl_wait(lab, name, "Failed")
    status = lab.get_migration(name)["status"]

    assert condition(status, "Failed")["reason"] == "UnknownHost"
    assert "DockerHost 'nod2', which does not exist" in status["message"]
    assert all(host in status["message"] for host in lab.hosts), status["message"]


def test_a_mistyped_container_names_the_hosts_searched_and_the_real_name(
    lab: Lab, operator: OperatorProcess
) -> None:
    counter, name = Counter(lab), unique("mig-typo-container")
    mistyped = counter.name[:-1] + ("x" if counter.name[-1] != "x" else "y")
    lab.migration(name, mistyped, target="node2", source=None)

    kubectl_wait(lab, name, "Failed")
    status = lab.get_migration(name)["status"]

    assert condition(status, "Failed")["reason"] == "ContainerNotFound"
    assert "none of the hosts searched (node1" in status["message"]
    assert f"'{counter.name}' on node1" in status["message"]
    assert counter.assert_runs_once_and_continuous() == "node1"


def test_kubectl_and_the_api_server_report_their_release(lab: Lab) -> None:
    versions = json.loads(lab.kubectl("version", "-o", "json").stdout)
    assert versions["clientVersion"]["gitVersion"].startswith("v1.")
    assert versions["serverVersion"]["gitVersion"] == versions["clientVersion"]["gitVersion"]
