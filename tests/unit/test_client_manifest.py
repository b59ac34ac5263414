"""The Migration `ferry migrate` creates from its options (ferry.client.manifest)."""

from __future__ import annotations

import pytest

from ferry.api import MigrationSpec
from ferry.client.kube import ClientError
from ferry.client.manifest import MigrateRequest, migration_manifest


def test_a_container_migration_names_the_container_and_the_target() -> None:
    manifest = migration_manifest(MigrateRequest(target="node2", namespace="team-a", container="looper"))

    assert manifest["apiVersion"] == "ferry.dev/v1alpha1"
    assert manifest["kind"] == "Migration"
    assert manifest["metadata"]["namespace"] == "team-a"
    assert manifest["spec"] == {"workload": {"container": "looper"}, "targetHost": "node2"}


def test_the_spec_is_one_the_operator_accepts() -> None:
    request = MigrateRequest(
        target="node2", namespace="default", source="node1", pid=4242, strategy="Cold", redirect=True
    )

    spec = MigrationSpec.from_dict(migration_manifest(request)["spec"])

    assert (spec.source_host, spec.strategy, spec.redirect) == ("node1", "Cold", True)
    assert spec.workload.process is not None and spec.workload.process.pid == 4242


def test_without_a_name_the_api_server_generates_one_from_the_container_and_the_target() -> None:
    metadata = migration_manifest(MigrateRequest(target="node2", namespace="default", container="looper"))[
        "metadata"
    ]

    assert metadata == {"namespace": "default", "generateName": "looper-to-node2-"}


def test_a_generated_name_is_a_kubernetes_name_whatever_the_container_is_called() -> None:
    request = MigrateRequest(target="node2", namespace="default", container="My_App.v2")

    assert migration_manifest(request)["metadata"]["generateName"] == "my-app-v2-to-node2-"


def test_a_name_given_is_the_migrations_name() -> None:
    request = MigrateRequest(target="node2", namespace="default", container="looper", name="move-it")

    assert migration_manifest(request)["metadata"] == {"namespace": "default", "name": "move-it"}


def test_a_process_is_named_by_its_command_name() -> None:
    request = MigrateRequest(target="node2", namespace="default", source="node1", process="helloer")

    manifest = migration_manifest(request)

    assert manifest["spec"]["workload"] == {"process": {"name": "helloer"}}
    assert manifest["metadata"]["generateName"] == "helloer-to-node2-"


def test_a_process_needs_its_source_host() -> None:
    with pytest.raises(ClientError, match="--from HOST"):
        migration_manifest(MigrateRequest(target="node2", namespace="default", pid=4242))


def test_no_workload_is_refused() -> None:
    with pytest.raises(ClientError, match="exactly one workload"):
        migration_manifest(MigrateRequest(target="node2", namespace="default"))


def test_a_container_and_a_process_at_once_are_refused() -> None:
    request = MigrateRequest(target="node2", namespace="default", source="node1", container="web", pid=7)

    with pytest.raises(ClientError, match="exactly one workload"):
        migration_manifest(request)


def test_strategy_and_redirect_are_left_to_the_defaults_unless_asked() -> None:
    spec = migration_manifest(MigrateRequest(target="node2", namespace="default", container="web"))["spec"]

    assert "strategy" not in spec and "redirect" not in spec


def test_a_compose_project_is_named_from_its_source_host() -> None:
    manifest = migration_manifest(
        MigrateRequest(target="node2", namespace="team-a", source="node1", compose_project="shop")
    )

    assert manifest["spec"]["workload"] == {"composeProject": "shop"}
    assert manifest["spec"]["sourceHost"] == "node1"
    assert manifest["metadata"]["generateName"] == "shop-to-node2-"


def test_a_compose_project_without_its_source_host_is_refused() -> None:
    with pytest.raises(ClientError, match="--from HOST"):
        migration_manifest(MigrateRequest(target="node2", namespace="team-a", compose_project="shop"))
