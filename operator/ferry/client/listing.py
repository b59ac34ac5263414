"""`ferry get` and `ferry hosts`: Migrations and DockerHosts as tables, or as JSON or YAML."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import yaml

from ferry.client.text import age, table
from ferry.migration.admission import HOLDING
from ferry.migration.phases import Phase

MIGRATION_COLUMNS = ("NAME", "WORKLOAD", "SOURCE", "TARGET", "PHASE", "DOWNTIME", "AGE")
PROGRESS_COLUMN = "PROGRESS"  # after PHASE, while a Migration listed reports progress
HOST_COLUMNS = ("NAME", "ADDRESS", "READY", "DOCKER", "CRIU", "FAST PATH", "MIGRATIONS")


def migrations_table(items: Sequence[dict[str, Any]], now: datetime, *, with_namespace: bool) -> str:
    columns = list(MIGRATION_COLUMNS)
    if any("progress" in item.get("status", {}) for item in items):
        columns.insert(columns.index("PHASE") + 1, PROGRESS_COLUMN)
    if with_namespace:
        columns.insert(0, "NAMESPACE")
    rows = []
    for item in items:
        meta, spec, status = item["metadata"], item.get("spec", {}), item.get("status", {})
        cells = {
            "NAMESPACE": meta["namespace"],
            "NAME": meta["name"],
            "WORKLOAD": status.get("workload", ""),
            "SOURCE": status.get("sourceHost") or spec.get("sourceHost", ""),
            "TARGET": spec.get("targetHost", ""),
            "PHASE": status.get("phase", ""),
            PROGRESS_COLUMN: (status.get("progress") or {}).get("summary", ""),
            "DOWNTIME": status.get("downtime", ""),
            "AGE": age(meta.get("creationTimestamp"), now),
        }
        rows.append([cells[column] for column in columns])
    return table(columns, rows)


def hosts_table(hosts: Sequence[dict[str, Any]], migrations: Sequence[dict[str, Any]]) -> str:
    running = _running_per_host(migrations)
    rows = []
    for host in hosts:
        name, spec, status = host["metadata"]["name"], host.get("spec", {}), host.get("status", {})
        rows.append(
            [
                name,
                spec.get("address", ""),
                _readiness(status),
                status.get("dockerVersion", ""),
                status.get("criuVersion", ""),
                _fast_path(spec, status),
                str(running.get(name, 0)),
            ]
        )
    return table(HOST_COLUMNS, rows)


def as_document(resources: dict[str, Any] | Sequence[dict[str, Any]], output: str) -> str:
    """One resource, or a v1 List of them (as kubectl prints), in JSON or YAML."""
    document = (
        resources
        if isinstance(resources, dict)
        else {"apiVersion": "v1", "kind": "List", "items": list(resources)}
    )
    if output == "json":
        return json.dumps(document, indent=2)
    return yaml.safe_dump(document, sort_keys=False).rstrip("\n")


def _readiness(status: dict[str, Any]) -> str:
    ready = next((c for c in status.get("conditions", []) if c.get("type") == "Ready"), None)
    if ready is None:
        return "Unknown"
    return "True" if ready["status"] == "True" else f"{ready['status']} ({ready.get('reason', '')})"


def _fast_path(spec: dict[str, Any], status: dict[str, Any]) -> str:
    if "fastPath" not in spec:
        return "off"
    return "installed" if (status.get("fastPath") or {}).get("installed") else "not installed"


def _running_per_host(migrations: Sequence[dict[str, Any]]) -> dict[str, int]:
    """How many Migrations run with each host as their source or target: those that hold a slot of
    its maxConcurrentMigrations (from Preparing to the end; Pending ones wait)."""
    running: dict[str, int] = {}
    for item in migrations:
        spec, status = item.get("spec", {}), item.get("status", {})
        if Phase(status.get("phase", Phase.PENDING.value)) not in HOLDING:
            continue
        hosts = {
            status.get("sourceHost") or spec.get("sourceHost"),
            status.get("targetHost") or spec.get("targetHost"),
        }
        for host in hosts - {None}:
            running[host] = running.get(host, 0) + 1
    return running
