"""Evacuations on the real lab, for tests/e2e/test_evacuation.py and hack/bench-evacuation."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import yaml

from tests.e2e.lab import Lab, wait_for

EVACUATION_LABEL = "ferry.dev/evacuation"
ENDED = ("Succeeded", "Failed")


def evacuate(lab: Lab, name: str, *, pauses: str | None = None, **spec: Any) -> None:
    """Applies an Evacuation of node1 (spec's keys as the CRD spells them); `pauses` go to its Migrations."""
    metadata: dict[str, Any] = {"name": name}
    if pauses:
        metadata["annotations"] = {"ferry.dev/test-pause": pauses}
    body = {
        "apiVersion": "ferry.dev/v1alpha1",
        "kind": "Evacuation",
        "metadata": metadata,
        "spec": {"sourceHost": "node1", **spec},
    }
    lab.kubectl("apply", "-f", "-", input=yaml.safe_dump(body))


def evacuation(lab: Lab, name: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(lab.kubectl("get", "evacuation", name, "-o", "json").stdout)
    return found


def wait_until_ended(lab: Lab, name: str, timeout: float = 300) -> dict[str, Any]:
    status: dict[str, Any] = wait_for(
        lambda: (found := evacuation(lab, name).get("status", {})).get("phase") in ENDED and found,
        timeout,
        f"Evacuation {name} to end",
        interval=1.0,
    )
    return status


def its_migrations(lab: Lab, name: str) -> list[dict[str, Any]]:
    listed = lab.kubectl("get", "migrations", "-A", "-l", f"{EVACUATION_LABEL}={name}", "-o", "json").stdout
    items: list[dict[str, Any]] = json.loads(listed)["items"]
    return items


def delete_evacuation(lab: Lab, name: str) -> None:
    lab.kubectl("delete", "evacuation", name, "--ignore-not-found", "--wait=false", check=False)


def busiest(migrations: list[dict[str, Any]], host: str | None = None) -> int:
    """The most of `migrations` that held a slot at one moment (on `host`, or anywhere): each holds
    one from entering Preparing until it ends, as status.phaseTransitions says."""
    edges: list[tuple[datetime, int]] = []
    for migration in migrations:
        status = migration["status"]
        if host is not None and host not in (status.get("sourceHost"), status.get("targetHost")):
            continue
        times = {entry["phase"]: _time(entry["time"]) for entry in status.get("phaseTransitions", [])}
        if "Preparing" not in times:
            continue
        ended = max(times.values())
        edges += [(times["Preparing"], 1), (ended, -1)]
    held = most = 0
    for _, step in sorted(edges, key=lambda edge: (edge[0], edge[1])):  # an end before a start at a tie
        held += step
        most = max(most, held)
    return most


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
