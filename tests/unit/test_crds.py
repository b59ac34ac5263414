"""The CRDs describe themselves (`kubectl explain`), group under `kubectl get ferry`, and keep every
status field the operator writes (the API server drops fields a schema does not declare)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from ferry.api import Strategy
from ferry.evacuation.status import ContainerRecord, Counts, EvacuationPhase, EvacuationStatus, Outcome
from ferry.migration import preflight
from ferry.migration.phases import Phase
from ferry.migration.state import ConnectionHold, Metrics, MigrationState, PostCopy, Progress, Terminal
from tests.unit.fakes import preflight_facts

CRDS = Path(__file__).resolve().parents[2] / "crds"
FERRY_CRDS = ["ferry.dev_migrations.yaml", "ferry.dev_dockerhosts.yaml", "ferry.dev_evacuations.yaml"]


def crd(file: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CRDS / file).read_text())
    return loaded


def schema(file: str) -> dict[str, Any]:
    (version,) = crd(file)["spec"]["versions"]
    found: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return found


def undescribed(node: dict[str, Any], path: str) -> list[str]:
    """The paths of the properties under `node` (nested, and in array items) that have no description."""
    missing = []
    for name, child in node.get("properties", {}).items():
        if not str(child.get("description", "")).strip():
            missing.append(f"{path}.{name}")
        missing += undescribed(child, f"{path}.{name}")
    if "items" in node:
        missing += undescribed(node["items"], f"{path}[]")
    return missing


PRESERVED = "x-kubernetes-preserve-unknown-fields"


def undeclared(value: Any, node: dict[str, Any], path: str) -> list[str]:
    """The paths of the keys in `value` (nested, and in lists) that the schema `node` does not declare."""
    if isinstance(value, list):
        return [missing for item in value for missing in undeclared(item, node.get("items", {}), f"{path}[]")]
    if not isinstance(value, dict):
        return []
    properties = node.get("properties", {})
    missing = []
    for key, child in value.items():
        if key not in properties:
            if not node.get(PRESERVED):
                missing.append(f"{path}.{key}")
        else:
            missing += undeclared(child, properties[key], f"{path}.{key}")
    return missing


@pytest.mark.parametrize("file", FERRY_CRDS)
def test_every_field_of_the_crd_has_a_description(file: str) -> None:
    assert undescribed(schema(file), "") == []


@pytest.mark.parametrize("file", FERRY_CRDS)
def test_the_crd_is_in_the_ferry_category(file: str) -> None:
    assert crd(file)["spec"]["names"]["categories"] == ["ferry"]


@pytest.mark.parametrize(
    ("file", "short_name"), [(FERRY_CRDS[0], "mig"), (FERRY_CRDS[1], "dh"), (FERRY_CRDS[2], "evac")]
)
def test_the_crd_keeps_its_short_name(file: str, short_name: str) -> None:
    assert crd(file)["spec"]["names"]["shortNames"] == [short_name]


def test_the_walk_finds_a_nested_property_without_a_description() -> None:
    node = {"properties": {"a": {"description": "x", "items": {"properties": {"b": {"type": "string"}}}}}}

    assert undescribed(node, "") == [".a[].b"]


def status_with_every_field() -> dict[str, Any]:
    """The status of a migration that has set every field, every key of preflight and of the
    restart policy, and waits on a rollback: all that the operator may write."""
    moment = datetime(2024, 5, 1, tzinfo=UTC)
    facts = preflight_facts()
    state = MigrationState(
        phase=Phase.ROLLING_BACK,
        message="restore failed",
        workload="container/web",
        source_host="node1",
        target_host="node2",
        source_container_id="a" * 64,
        target_container_id="b" * 64,
        checkpoint_name="ferry-uid-1",
        transfer="Stream",
        fingerprint_pid=42,
        fingerprint_stack="7ffd0000",
        shell_job=False,
        redirect="node1:80/tcp -> 10.0.0.2",
        connection_hold=ConnectionHold(
            drained_ms=80, cut_by_freeze=0, released=True, connections=12, udp_dropped=0, held_ms=900
        ),
        restore_requested=True,
        mechanism="runc",
        checkpoint_in_memory=True,
        restart_policy={"Name": "always", "MaximumRetryCount": 0},
        post_copy=PostCopy(port=27100, pages_arrived=True),
        terminal=Terminal(host="node2", session="ferry-1a2b3c4d", attach="tmux -S s attach", log="/l"),
        operator_version="0.1.0",
        preflight=preflight.report(facts, preflight.evaluate(facts)),  # every key: a live move, image copied
        source_was_running=False,
        start_time=moment,
        frozen_at=moment,
        completion_time=moment,
        transitions=[(Phase.PENDING, moment), (Phase.PREPARING, moment)],
        metrics=Metrics(**{name: 1 for name in Metrics.model_fields}),
        progress=Progress(phase=Phase.TRANSFERRING, step="transfer", moved_bytes=1, expected_bytes=2),
        members=[
            MigrationState(
                phase=Phase.ROLLING_BACK,
                workload="container/web",
                source_container_id="c" * 64,
                target_container_id="d" * 64,
            )
        ],
    )
    state.wait_for("cannot reach node1")
    return state.to_status(generation=1)


def key_paths(value: Any, path: str) -> set[str]:
    """The paths of the keys in `value`, nested (a list: the keys of any of its items)."""
    if isinstance(value, list):
        return set().union(*(key_paths(item, f"{path}[]") for item in value))
    paths = set()
    if isinstance(value, dict):
        for key, child in value.items():
            paths |= {f"{path}.{key}", *key_paths(child, f"{path}.{key}")}
    return paths


def open_paths(node: dict[str, Any], path: str) -> set[str]:
    """The paths of the objects the schema `node` keeps whole, unknown keys too."""
    paths = {path} if node.get(PRESERVED) else set()
    for name, child in node.get("properties", {}).items():
        paths |= open_paths(child, f"{path}.{name}")
    if "items" in node:
        paths |= open_paths(node["items"], f"{path}[]")
    return paths


def declared_paths(node: dict[str, Any], path: str) -> set[str]:
    """The paths of the properties the schema `node` declares, nested (and in array items)."""
    paths = set()
    for name, child in node.get("properties", {}).items():
        paths |= {f"{path}.{name}", *declared_paths(child, f"{path}.{name}")}
    if "items" in node:
        paths |= declared_paths(node["items"], f"{path}[]")
    return paths


def test_every_status_field_the_operator_writes_is_in_the_migration_schema() -> None:
    status = status_with_every_field()

    assert undeclared(status, schema(FERRY_CRDS[0])["properties"]["status"], "status") == []


def test_the_migration_schema_declares_exactly_the_status_fields_the_operator_writes() -> None:
    """The schema and the model cannot drift apart: the server drops a field the schema lacks, and
    a field the operator no longer writes would stay documented."""
    status_schema = schema(FERRY_CRDS[0])["properties"]["status"]
    declared = declared_paths(status_schema, "status")
    kept_whole = open_paths(status_schema, "status")
    written = {
        path
        for path in key_paths(status_with_every_field(), "status")
        if path in declared or not any(path.startswith(f"{open_path}.") for open_path in kept_whole)
    }

    assert declared == written


def test_the_status_with_every_field_has_every_key_the_models_write() -> None:
    """So a field added to a model is in `status_with_every_field`, which the tests above check."""
    status = status_with_every_field()

    assert written_keys(MigrationState) - set(status) == set()
    assert written_keys(Metrics) - set(status["metrics"]) == set()


def written_keys(model: type[BaseModel]) -> set[str]:
    written = model.model_json_schema(mode="serialization", by_alias=True)
    if "$ref" in written:  # a model that nests itself (a group's members) is one of its own $defs
        written = written["$defs"][model.__name__]
    return set(written["properties"])


def evacuation_status_with_every_field() -> dict[str, Any]:
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    record = ContainerRecord(
        name="web",
        outcome=Outcome.SUCCEEDED,
        target="node2",
        migration="m",
        strategy=Strategy.LIVE,
        message="x",
    )
    status = EvacuationStatus(
        phase=EvacuationPhase.SUCCEEDED, message="1 of 1 moved", start_time=moment, completion_time=moment
    )
    status.containers.append(record)
    return status.to_status()


def test_the_evacuation_schema_declares_exactly_the_status_fields_the_operator_writes() -> None:
    status_schema = schema(FERRY_CRDS[2])["properties"]["status"]

    assert declared_paths(status_schema, "status") == key_paths(
        evacuation_status_with_every_field(), "status"
    )


def test_the_evacuation_status_with_every_field_has_every_key_the_models_write() -> None:
    status = evacuation_status_with_every_field()

    assert written_keys(EvacuationStatus) - set(status) == set()
    assert written_keys(ContainerRecord) - set(status["containers"][0]) == set()
    assert written_keys(Counts) - set(status["counts"]) == set()


def test_the_evacuation_printer_columns_are_those_of_a_drain() -> None:
    (version,) = crd(FERRY_CRDS[2])["spec"]["versions"]
    shown = [column["name"] for column in version["additionalPrinterColumns"] if not column.get("priority")]

    assert shown == ["Host", "Total", "Done", "Failed", "Phase", "Age"]


# What a schema node of a CRD may say (JSONSchemaProps): the API server refuses the whole CRD over
# any other key, as it did over a flow mapping whose description had a comma in it.
SCHEMA_KEYWORDS = {
    *("$ref", "$schema", "additionalItems", "additionalProperties", "allOf", "anyOf", "default"),
    *("definitions", "dependencies", "description", "enum", "example", "exclusiveMaximum"),
    *("exclusiveMinimum", "externalDocs", "format", "id", "items", "maxItems", "maxLength"),
    *("maxProperties", "maximum", "minItems", "minLength", "minProperties", "minimum", "multipleOf"),
    *("not", "nullable", "oneOf", "pattern", "patternProperties", "properties", "required", "title"),
    *("type", "uniqueItems"),
}


def unknown_keywords(node: dict[str, Any], path: str) -> list[str]:
    """The keys of `node` and of the schemas nested in it that are no schema keyword."""
    found = [
        f"{path}: {key!r}"
        for key in node
        if key not in SCHEMA_KEYWORDS and not key.startswith("x-kubernetes-")
    ]
    for name, child in (node.get("properties") or {}).items():
        found += unknown_keywords(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        found += unknown_keywords(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        found += unknown_keywords(node["additionalProperties"], f"{path}{{}}")
    return found


@pytest.mark.parametrize("file", FERRY_CRDS)
def test_every_schema_node_of_the_crd_says_only_what_a_schema_may(file: str) -> None:
    assert unknown_keywords(schema(file), "") == []


def test_a_description_cut_by_a_comma_in_a_flow_mapping_is_found() -> None:
    node = yaml.safe_load("properties: {n: {type: integer, description: Not started, or queued.}}")

    assert unknown_keywords(node, "") == [".n: 'or queued.'"]
