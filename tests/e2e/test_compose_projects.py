"""A Migration that names a compose project moves all of its containers as one: a front end that
calls Redis by its service name on the project's network, and that Redis, freeze together, start on
the target in dependency order (Redis first) and go on talking there, with one downtime; a failed
restore brings both back onto the source. Neither restarts: Redis keeps its server and its keys, the
front end keeps counting from where it stopped."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from ferry.migration.container_group import member_uid
from tests.e2e.lab import SERVICES, Lab, OperatorProcess, report, unique, wait_for
from tests.e2e.test_faults import FAILING_RESTORE, fake_criu
from tests.e2e.test_real_services import TIMEOUT, runs_only_on, services

__all__ = ["services"]  # the module's fixture, used here

PROJECT_LABEL = "com.docker.compose.project"
# The front end: each round it counts, and writes its count into Redis, found by its service name;
# a call that fails is counted too (front:failed), as what its clients would see.
FRONT_END = (
    "i=0; f=0; while true; do i=$((i+1)); "
    "redis-cli -h cache SET front:count $i >/dev/null 2>&1 || "
    "{ f=$((f+1)); redis-cli -h cache SET front:failed $f >/dev/null 2>&1; }; "
    "sleep 0.1; done"
)


@dataclass
class Project:
    name: str
    network: str
    cache: str
    front: str

    def labels(self, service: str, *depends_on: str) -> list[str]:
        """Docker's labels of a compose service's container in this project."""
        labels = {PROJECT_LABEL: self.name, "com.docker.compose.service": service}
        if depends_on:
            labels["com.docker.compose.depends_on"] = ",".join(
                f"{s}:service_started:false" for s in depends_on
            )
        return [flag for key, value in labels.items() for flag in ("--label", f"{key}={value}")]


def start_project(lab: Lab) -> Project:
    """A compose-like project on node1: its network, Redis as service `cache`, and a front end that
    depends on it (started in this order, as compose would)."""
    name = unique("shop")
    project = Project(name, f"{name}_default", f"{name}-cache-1", f"{name}-front-1")
    lab.docker("node1", "network", "create", "--label", f"{PROJECT_LABEL}={name}", project.network)
    lab.run_container(
        "node1",
        project.cache,
        "exec redis-server --save '' --appendonly no --protected-mode no",
        "--network",
        project.network,
        "--network-alias",
        "cache",
        *project.labels("cache"),
        image=SERVICES,
    )
    wait_for(lambda: ask(lab, "node1", project, "SET", "greeting", "hello") == "OK", 30, "redis as cache")
    lab.run_container(
        "node1",
        project.front,
        FRONT_END,
        "--network",
        project.network,
        *project.labels("front", "cache"),
        image=SERVICES,
    )
    wait_for(lambda: count(lab, "node1", project) >= 3, 30, "the front end to count")
    return project


def ask(lab: Lab, host: str, project: Project, *words: str) -> str:
    """What `cache` answers a client container on the project's network on that host."""
    asked = lab.docker(
        host,
        "run",
        "--rm",
        "--network",
        project.network,
        SERVICES,
        "redis-cli",
        "-h",
        "cache",
        *words,
        check=False,
    )
    return asked.stdout.strip()


def count(lab: Lab, host: str, project: Project) -> int:
    """The front end's count, as Redis on that host holds it (0: none yet, or no answer)."""
    answer = ask(lab, host, project, "GET", "front:count")
    return int(answer) if answer.isdigit() else 0


def run_id(lab: Lab, host: str, project: Project) -> str:
    info = ask(lab, host, project, "INFO", "server")
    return next(line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("run_id:"))


def move_project(lab: Lab, project: Project, prefix: str) -> dict[str, Any]:
    """Moves the project from node1 to node2: the Migration once it ended."""
    name = unique(prefix)
    lab.migration(name, "", target="node2", workload={"composeProject": project.name})
    return lab.wait_until(name, timeout=TIMEOUT)


def leftovers(lab: Lab, migration: dict[str, Any]) -> list[str]:
    """What the members' moves left on the hosts (files, checkpoints, rules)."""
    uid = migration["metadata"]["uid"]
    members = migration["status"]["members"]
    return [
        left
        for n, member in enumerate(members)
        for left in lab.leftovers(member_uid(uid, n), member.get("targetContainerID"))
    ]


def test_a_compose_project_moves_as_one_and_its_containers_go_on_talking_by_name_on_the_target(
    services: Lab, operator: OperatorProcess, request: pytest.FixtureRequest
) -> None:
    lab = services
    project = start_project(lab)
    server = run_id(lab, "node1", project)

    migration = move_project(lab, project, "mig-project")
    status = migration["status"]
    counted = count(lab, "node2", project)

    assert status["phase"] == "Succeeded", status
    assert [member["workload"] for member in status["members"]] == [
        f"container/{project.cache}",
        f"container/{project.front}",
    ]  # the order they start in: what the front end depends on first
    assert status["workload"] == f"compose/{project.name}"
    assert status["metrics"]["downtimeMs"] > 0  # one downtime, for both
    # The front end counts on from where it stopped, into the Redis on node2, which is the same server.
    wait_for(lambda: count(lab, "node2", project) > counted + 5, 30, "the front end to count on node2")
    metrics, failed = status["metrics"], ask(lab, "node2", project, "GET", "front:failed") or "0"
    report(
        request.config,
        f"compose project (redis + front end): downtime {metrics['downtimeMs']} ms (checkpoint "
        f"{metrics['checkpointMs']}, transfer {metrics['transferMs']}, restore {metrics['restoreMs']}); "
        f"the front end's calls to redis that failed: {failed} of {count(lab, 'node2', project)}",
    )
    assert run_id(lab, "node2", project) == server
    assert ask(lab, "node2", project, "GET", "greeting") == "hello"
    assert counted >= 3  # not a fresh front end counting from 1 (its count was 3 or more before the freeze)
    assert runs_only_on(lab, "node2", project.cache) and runs_only_on(lab, "node2", project.front)
    made = json.loads(lab.docker("node2", "network", "inspect", project.network).stdout)[0]
    assert made["Labels"][PROJECT_LABEL] == project.name
    assert leftovers(lab, migration) == []


def test_a_compose_project_rolls_back_whole_when_a_restore_on_the_target_fails(
    services: Lab, operator: OperatorProcess
) -> None:
    lab = services
    project = start_project(lab)
    server = run_id(lab, "node1", project)

    with fake_criu(lab, "node2", FAILING_RESTORE):
        migration = move_project(lab, project, "mig-project-back")
    status = migration["status"]
    counted = count(lab, "node1", project)

    assert status["phase"] == "RolledBack", status
    assert [member["phase"] for member in status["members"]] == ["RolledBack", "RolledBack"]
    wait_for(lambda: count(lab, "node1", project) > counted + 5, 30, "the front end to count on node1")
    assert run_id(lab, "node1", project) == server
    assert runs_only_on(lab, "node1", project.cache) and runs_only_on(lab, "node1", project.front)
    assert project.network not in lab.network_names("node2")
    assert leftovers(lab, migration) == []


def test_a_compose_project_moves_as_one_through_dockers_checkpoint_api_too(
    services: Lab, operator: OperatorProcess
) -> None:
    """Where the target has not opted into the fast path, each container moves through Docker's own
    checkpoint and restore, still as one."""
    lab = services
    project = start_project(lab)
    server = run_id(lab, "node1", project)

    with lab.without_fast_path("node2"):
        migration = move_project(lab, project, "mig-project-docker")
    status = migration["status"]
    counted = count(lab, "node2", project)

    assert status["phase"] == "Succeeded", status
    assert {member["mechanism"] for member in status["members"]} == {"docker"}
    wait_for(lambda: count(lab, "node2", project) > counted + 5, 30, "the front end to count on node2")
    assert run_id(lab, "node2", project) == server
    assert runs_only_on(lab, "node2", project.cache) and runs_only_on(lab, "node2", project.front)
    assert leftovers(lab, migration) == []
