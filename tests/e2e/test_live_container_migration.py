"""A live migration of a running container, through kubectl, on the real lab."""

from __future__ import annotations

import re
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest

from tests.e2e.lab import Lab, LogFollower, OperatorProcess, free_port, unique, wait_for

COUNTER = "i=0; while true; do echo $i; i=$((i+1)); sleep 0.1; done"


@dataclass
class CounterMigration:
    container: str
    migration: dict[str, Any]
    source_lines: list[str]
    target_lines: list[str]


@pytest.fixture(scope="module")
def counter_migration(lab: Lab, operator: OperatorProcess) -> CounterMigration:
    """A busybox loop printing a counter every 0.1 s, moved node1 -> node2."""
    container, name = unique("counter"), unique("mig-counter")
    lab.run_container("node1", container, COUNTER)
    wait_for(lambda: len(lab.logs("node1", container)) >= 10, 30, "the counter to count")
    follower = LogFollower("node1", container)
    lab.migration(name, container, target="node2")
    migration = lab.wait_until(name)
    source_lines = follower.lines()
    wait_for(lambda: len(lab.logs("node2", container)) >= 5, 30, "the counter to count on node2")
    return CounterMigration(container, migration, source_lines, lab.logs("node2", container))


def test_counter_resumes_on_target_where_it_stopped(counter_migration: CounterMigration) -> None:
    assert counter_migration.migration["status"]["phase"] == "Succeeded", counter_migration.migration[
        "status"
    ]
    last_on_source = int(counter_migration.source_lines[-1])
    first_on_target = int(counter_migration.target_lines[0])
    assert last_on_source >= 10
    assert first_on_target == last_on_source + 1
    assert [int(n) for n in counter_migration.target_lines[:5]] == list(
        range(first_on_target, first_on_target + 5)
    )


def test_source_container_is_gone_after_success(lab: Lab, counter_migration: CounterMigration) -> None:
    assert counter_migration.container not in lab.container_names("node1")
    assert lab.running("node2", counter_migration.container)


def test_status_records_phases_metrics_and_condition(counter_migration: CounterMigration) -> None:
    status = counter_migration.migration["status"]
    metrics = status["metrics"]
    assert 0 < metrics["downtimeMs"] <= metrics["totalMs"]
    assert metrics["checkpointBytes"] > 0
    assert metrics["checkpointMs"] > 0 and metrics["transferMs"] > 0 and metrics["restoreMs"] > 0
    assert metrics["checkpointMs"] + metrics["transferMs"] + metrics["restoreMs"] <= metrics["downtimeMs"]
    phases = [entry["phase"] for entry in status["phaseTransitions"]]
    assert phases == [
        "Pending",
        "Preparing",
        "Checkpointing",
        "Transferring",
        "Restoring",
        "Verifying",
        "Succeeded",
    ]
    times = [
        datetime.fromisoformat(entry["time"].replace("Z", "+00:00")) for entry in status["phaseTransitions"]
    ]
    assert times == sorted(times)
    condition = next(c for c in status["conditions"] if c["type"] == "Succeeded")
    assert condition["status"] == "True"
    assert status["sourceHost"] == "node1" and status["targetHost"] == "node2"
    assert status["sourceContainerID"] != status["targetContainerID"]


def test_kubectl_get_shows_workload_hosts_phase_and_downtime(
    lab: Lab, counter_migration: CounterMigration
) -> None:
    name = counter_migration.migration["metadata"]["name"]
    header, row = lab.kubectl("get", "migrations", name).stdout.splitlines()
    assert header.split() == ["NAME", "WORKLOAD", "SOURCE", "TARGET", "PHASE", "DOWNTIME", "AGE"]
    columns = row.split()
    assert columns[1:5] == [f"container/{counter_migration.container}", "node1", "node2", "Succeeded"]
    assert re.fullmatch(r"\d+\.\d\ds", columns[5])


def test_kubectl_wait_sees_succeeded_condition(lab: Lab, counter_migration: CounterMigration) -> None:
    name = counter_migration.migration["metadata"]["name"]
    waited = lab.kubectl("wait", "--for=condition=Succeeded", f"migration/{name}", "--timeout=10s")
    assert "condition met" in waited.stdout


WEB_SERVER = (
    "mkdir -p /var/www && echo page-$PAGE > /var/www/index.html && httpd -p 80 -h /var/www; "
    "exec 3>>/counter.log; i=0; while true; do echo $i >&3; i=$((i+1)); sleep 0.1; done"
)


def http_get(address: str, port: int) -> str:
    with urllib.request.urlopen(f"http://{address}:{port}/", timeout=5) as response:
        body: bytes = response.read()
        return body.decode().strip()


def test_web_server_with_open_file_keeps_serving_and_counting(lab: Lab, operator: OperatorProcess) -> None:
    container, name, page = unique("web"), unique("mig-web"), unique("content")
    port = free_port(lab)
    lab.run_container("node1", container, WEB_SERVER, "-e", f"PAGE={page}", "-p", f"{port}:80")
    source, target = lab.address("node1"), lab.address("node2")
    wait_for(lambda: http_get(source, port) == f"page-{page}", 30, "the page on node1")
    counted_before = len(lab.docker("node1", "exec", container, "cat", "/counter.log").stdout.split())

    lab.migration(name, container, target="node2")
    status = lab.wait_until(name)["status"]

    assert status["phase"] == "Succeeded", status
    assert http_get(target, port) == f"page-{page}"
    assert status["metrics"]["rootfsBytes"] > 0
    wait_for(
        lambda: (
            len(lab.docker("node2", "exec", container, "cat", "/counter.log").stdout.split())
            > counted_before + 5
        ),
        30,
        "the file counter to go on on node2",
    )
    numbers = [int(n) for n in lab.docker("node2", "exec", container, "cat", "/counter.log").stdout.split()]
    assert numbers == list(range(len(numbers))), "the counter file has a gap or a repeat"


def test_image_is_copied_before_the_freeze(lab: Lab, operator: OperatorProcess) -> None:
    container, name, image = unique("fresh"), unique("mig-image"), f"ferry-e2e/{unique('image')}"
    builder = unique("builder")
    lab.run_container("node1", builder, f"echo {image} > /built-by")
    lab.docker("node1", "wait", builder)
    lab.docker("node1", "commit", builder, image)
    lab.docker("node1", "rm", builder)
    image_id = lab.docker("node1", "image", "inspect", "-f", "{{.Id}}", image).stdout.strip()
    assert image_id not in lab.image_ids("node2")
    lab.run_container("node1", container, COUNTER, image=image)

    lab.migration(name, container, target="node2")
    status = lab.wait_until(name)["status"]

    assert status["phase"] == "Succeeded", status
    assert image_id in lab.image_ids("node2")
    metrics = status["metrics"]
    assert metrics["imageTransferMs"] > 0 and metrics["imageBytes"] > 0
    started, frozen = (
        datetime.fromisoformat(status[key].replace("Z", "+00:00")) for key in ("startTime", "frozenAt")
    )
    assert (frozen - started).total_seconds() * 1000 >= metrics["imageTransferMs"]
    assert metrics["downtimeMs"] <= metrics["totalMs"] - metrics["imageTransferMs"]


def test_missing_container_fails_naming_it_and_changes_nothing(lab: Lab, operator: OperatorProcess) -> None:
    missing, name = unique("no-such-container"), unique("mig-missing")
    before = {host: (lab.container_names(host), lab.image_ids(host)) for host in lab.hosts}

    lab.migration(name, missing, target="node2")
    status = lab.wait_until(name)["status"]

    assert status["phase"] == "Failed"
    assert missing in status["message"]
    condition = next(c for c in status["conditions"] if c["type"] == "Succeeded")
    assert condition["status"] == "False" and condition["reason"] == "ContainerNotFound"
    after = {host: (lab.container_names(host), lab.image_ids(host)) for host in lab.hosts}
    assert after == before
