"""The Argo CD health script of manifests/argocd, run in Lua (lupa) on a Migration in every phase."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import LuaRuntime

from ferry.migration.phases import Phase

CUSTOMIZATIONS = Path(__file__).resolve().parents[2] / "manifests" / "argocd" / "resource-customizations.yaml"
HEALTH_KEY = "resource.customizations.health.ferry.dev_Migration"

EXPECTED = {
    Phase.PENDING: "Progressing",
    Phase.PREPARING: "Progressing",
    Phase.CHECKPOINTING: "Progressing",
    Phase.TRANSFERRING: "Progressing",
    Phase.RESTORING: "Progressing",
    Phase.VERIFYING: "Progressing",
    Phase.ROLLING_BACK: "Progressing",
    Phase.SUCCEEDED: "Healthy",
    Phase.FAILED: "Degraded",
    Phase.ROLLED_BACK: "Degraded",
}


def health(migration: dict[str, Any]) -> dict[str, str]:
    """What Argo CD would compute: the script runs with the object as the global `obj`."""
    script = yaml.safe_load(CUSTOMIZATIONS.read_text())[HEALTH_KEY]
    lua = LuaRuntime()
    lua.globals().obj = lua.table_from(migration, recursive=True)
    result = lua.execute(script)
    return {"status": result["status"], "message": result["message"]}


def migration(status: dict[str, Any] | None) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "apiVersion": "ferry.dev/v1alpha1",
        "kind": "Migration",
        "metadata": {"name": "move-web", "namespace": "default"},
        "spec": {"workload": {"container": "web"}, "targetHost": "node2"},
    }
    if status is not None:
        resource["status"] = status
    return resource


@pytest.mark.parametrize("phase", list(Phase))
def test_the_health_of_a_migration_follows_its_phase(phase: Phase) -> None:
    assert health(migration({"phase": phase.value, "message": "m"}))["status"] == EXPECTED[phase]


def test_a_migration_the_operator_has_not_seen_is_progressing() -> None:
    assert health(migration(None)) == {"status": "Progressing", "message": "waiting for the operator"}


def test_the_health_message_is_the_status_message() -> None:
    status = {"phase": "Failed", "message": "no container web on node1"}

    assert health(migration(status)) == {"status": "Degraded", "message": "no container web on node1"}


def test_the_health_message_is_the_phase_when_the_status_has_no_message() -> None:
    assert health(migration({"phase": "Preparing"}))["message"] == "Preparing"
