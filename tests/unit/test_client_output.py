"""What `ferry get`, `ferry describe` and `ferry hosts` print."""

from __future__ import annotations

import io
import json
from typing import Any

import yaml

from ferry.cli import parse_arguments
from ferry.client.describe import describe
from ferry.client.text import age, size
from ferry.migration.state import parse_timestamp
from tests.unit.fakes import FakeMigrationApi

NOW = parse_timestamp("2024-05-01T12:00:10.000Z")


def migration(name: str, phase: str, namespace: str = "default", **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "ferry.dev/v1alpha1",
        "kind": "Migration",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": "2024-05-01T12:00:00Z"},
        "spec": {"workload": {"container": "looper"}, "targetHost": "node2"},
        "status": {"phase": phase, "workload": "container/looper", "sourceHost": "node1", **status},
    }


def run(api: FakeMigrationApi, *argv: str) -> str:
    out = io.StringIO()
    args = parse_arguments(list(argv))
    assert args.handler(args, api, out) == 0
    return out.getvalue()


def api_with(*migrations: dict[str, Any], hosts: tuple[dict[str, Any], ...] = ()) -> FakeMigrationApi:
    api = FakeMigrationApi(hosts=hosts)
    for item in migrations:
        api.migrations[item["metadata"]["namespace"], item["metadata"]["name"]] = item
    return api


def test_get_lists_the_migrations_of_the_namespace_as_kubectl_does() -> None:
    api = api_with(
        migration("move-a", "Succeeded", downtime="1.21s"), migration("move-b", "Failed", namespace="team-a")
    )

    lines = run(api, "get").splitlines()

    assert lines[0].split() == ["NAME", "WORKLOAD", "SOURCE", "TARGET", "PHASE", "DOWNTIME", "AGE"]
    assert lines[1].split()[:6] == ["move-a", "container/looper", "node1", "node2", "Succeeded", "1.21s"]
    assert len(lines) == 2


def test_get_all_namespaces_adds_the_namespace_column() -> None:
    api = api_with(migration("move-a", "Succeeded"), migration("move-b", "Failed", namespace="team-a"))

    lines = run(api, "get", "-A").splitlines()

    assert lines[0].split()[0] == "NAMESPACE"
    assert [line.split()[:2] for line in lines[1:]] == [["default", "move-a"], ["team-a", "move-b"]]


def test_get_json_is_a_list_of_the_migrations() -> None:
    api = api_with(migration("move-a", "Succeeded"))

    document = json.loads(run(api, "get", "-o", "json"))

    assert document["kind"] == "List"
    assert [item["metadata"]["name"] for item in document["items"]] == ["move-a"]


def test_get_a_name_as_yaml_is_the_migration_itself() -> None:
    api = api_with(migration("move-a", "Succeeded"))

    document = yaml.safe_load(run(api, "get", "move-a", "-o", "yaml"))

    assert document["kind"] == "Migration"
    assert document["status"]["phase"] == "Succeeded"


def test_get_in_an_empty_namespace_says_so() -> None:
    assert run(FakeMigrationApi(), "get", "-n", "team-a") == "no Migrations in team-a\n"


DESCRIBED = migration(
    "move-a",
    "Succeeded",
    message="moved",
    phaseTransitions=[
        {"phase": "Pending", "time": "2024-05-01T12:00:00.000Z"},
        {"phase": "Preparing", "time": "2024-05-01T12:00:00.250Z"},
        {"phase": "Checkpointing", "time": "2024-05-01T12:00:02.000Z"},
        {"phase": "Succeeded", "time": "2024-05-01T12:00:03.500Z"},
    ],
    metrics={
        "downtimeMs": 1210,
        "checkpointMs": 400,
        "transferMs": 300,
        "restoreMs": 500,
        "checkpointBytes": 3 << 20,
    },
    conditions=[{"type": "Succeeded", "status": "True", "reason": "Succeeded", "message": "moved"}],
)


def field(text: str, label: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith(f"{label}:"))


def test_describe_shows_each_phase_with_how_long_it_lasted() -> None:
    text = describe(DESCRIBED, NOW)

    timeline = text.split("Timeline:\n")[1].split("Conditions:")[0].splitlines()
    assert [line.split()[0] for line in timeline] == [
        "PHASE",
        "Pending",
        "Preparing",
        "Checkpointing",
        "Succeeded",
    ]
    assert [line.split()[2:] for line in timeline[1:]] == [["0.25s"], ["1.75s"], ["1.50s"], []]


def test_describe_shows_how_long_the_current_phase_has_lasted_so_far() -> None:
    running = migration(
        "move-b",
        "Transferring",
        phaseTransitions=[{"phase": "Transferring", "time": "2024-05-01T12:00:07.000Z"}],
    )

    assert "3.00s so far" in describe(running, NOW)


def test_describe_splits_the_freeze_window_into_its_parts() -> None:
    text = describe(DESCRIBED, NOW)

    assert field(text, "Downtime") == "1.21s (checkpoint 0.40s, transfer 0.30s, restore 0.50s)"
    assert field(text, "Bytes moved") == "checkpoint 3.0 MiB"


def test_describe_shows_the_message_and_the_conditions() -> None:
    text = describe(DESCRIBED, NOW)

    assert field(text, "Message") == "moved"
    assert text.splitlines()[-1].split() == ["Succeeded", "True", "Succeeded", "moved"]


def test_describe_lists_a_groups_containers_in_start_order_with_their_own_figures() -> None:
    members = [
        {"workload": "container/shop-cache-1", "mechanism": "runc", "metrics": {"checkpointMs": 200}},
        {"workload": "container/shop-front-1", "mechanism": "runc", "metrics": {"restoreMs": 350}},
    ]
    group = migration("move-shop", "Succeeded", workload="compose/shop", members=members)

    text = describe(group, NOW)

    listed = text.split("Members (in start order):\n")[1].split("Timeline:")[0].splitlines()
    assert [line.split()[:5] for line in listed] == [
        ["CONTAINER", "MECHANISM", "CHECKPOINT", "TRANSFER", "RESTORE"],
        ["container/shop-cache-1", "runc", "0.20s", "-", "-"],
        ["container/shop-front-1", "runc", "-", "-", "0.35s"],
    ]


def host(name: str, ready: str | None, *, fast_path: bool | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"address": f"10.0.0.{len(name)}"}
    status: dict[str, Any] = {"dockerVersion": "25.0.3", "criuVersion": "4.2"}
    if ready is not None:
        status["conditions"] = [{"type": "Ready", "status": ready, "reason": "Unreachable"}]
    if fast_path is not None:
        spec["fastPath"] = {}
        status["fastPath"] = {"installed": fast_path}
    return {"metadata": {"name": name}, "spec": spec, "status": status}


def test_hosts_shows_address_readiness_versions_and_fast_path() -> None:
    api = api_with(hosts=(host("node1", "True", fast_path=True), host("node2", "False"), host("node3", None)))

    lines = run(api, "hosts").splitlines()

    assert lines[0].split() == ["NAME", "ADDRESS", "READY", "DOCKER", "CRIU", "FAST", "PATH", "MIGRATIONS"]
    assert lines[1].split() == ["node1", "10.0.0.5", "True", "25.0.3", "4.2", "installed", "0"]
    assert lines[2].split()[:4] == ["node2", "10.0.0.5", "False", "(Unreachable)"]
    assert lines[2].split()[-2:] == ["off", "0"]
    assert lines[3].split()[2] == "Unknown"


def test_hosts_counts_the_migrations_running_to_or_from_each_host() -> None:
    api = api_with(
        migration("running", "Transferring", targetHost="node2"),
        migration("queued", "Pending"),
        migration("done", "Succeeded", targetHost="node2"),
        hosts=(host("node1", "True"), host("node2", "True")),
    )

    lines = run(api, "hosts").splitlines()

    assert [line.split()[-1] for line in lines[1:]] == ["1", "1"]


def test_ages_read_as_kubectls() -> None:
    assert [age(f"2024-05-01T{t}Z", NOW) for t in ("12:00:00", "11:55:10", "09:00:10")] == ["10s", "5m", "3h"]


def test_sizes_read_in_binary_units() -> None:
    assert [size(n) for n in (512, 4096, 3 << 20, 5 << 30)] == ["512 B", "4.0 KiB", "3.0 MiB", "5.0 GiB"]
