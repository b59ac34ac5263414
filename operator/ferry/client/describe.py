"""`ferry describe NAME`: one Migration's story, from its status."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ferry.client.outcome import freeze_window
from ferry.client.text import size, table
from ferry.migration.state import Metrics, MigrationState, format_duration, milliseconds, timestamp


def describe(resource: dict[str, Any], now: datetime) -> str:
    meta, spec, status = resource["metadata"], resource.get("spec", {}), resource.get("status", {})
    state = MigrationState.from_status(status)
    fields = {
        "Name": meta["name"],
        "Namespace": meta["namespace"],
        "Workload": state.workload or "-",
        "Source": state.source_host or spec.get("sourceHost") or "(searched by the operator)",
        "Target": spec.get("targetHost", "-"),
        "Strategy": spec.get("strategy", "Live"),
        "Phase": status.get("phase", "(not seen by the operator yet)"),
        "Reason": state.reason or "-",
        "Message": state.message or "-",
        "Progress": f"{state.progress.summary} ({state.progress.phase})" if state.progress else "-",
        "Downtime": freeze_window(state.metrics) or "-",
        "Bytes moved": _bytes_moved(state.metrics) or "-",
    }
    width = max(len(label) for label in fields) + 2
    lines = [f"{label + ':':<{width}}{value}" for label, value in fields.items()]
    if state.members:
        lines += ["Members (in start order):", _indent(_members(state))]
    lines += ["Timeline:", _indent(_timeline(state, now))]
    conditions = [
        [c["type"], c["status"], c.get("reason", ""), c.get("message", "")]
        for c in status.get("conditions", [])
    ]
    lines += ["Conditions:", _indent(table(("TYPE", "STATUS", "REASON", "MESSAGE"), conditions))]
    return "\n".join(lines)


def _timeline(state: MigrationState, now: datetime) -> str:
    """Each phase with when it began and how long it lasted (the current one: so far)."""
    rows = []
    for index, (phase, began) in enumerate(state.transitions):
        if index + 1 < len(state.transitions):
            lasted = format_duration(milliseconds(began, state.transitions[index + 1][1]))
        elif phase.is_terminal:
            lasted = ""
        else:
            lasted = f"{format_duration(milliseconds(began, now))} so far"
        rows.append([phase.value, timestamp(began), lasted])
    return table(("PHASE", "BEGAN", "LASTED"), rows)


def _members(state: MigrationState) -> str:
    """A group's containers, each with its move's own figures."""
    rows = [
        [
            member.workload,
            member.mechanism or "-",
            _ms(member.metrics.checkpoint_ms),
            _ms(member.metrics.transfer_ms),
            _ms(member.metrics.restore_ms),
            _bytes_moved(member.metrics) or "-",
        ]
        for member in state.members
    ]
    return table(("CONTAINER", "MECHANISM", "CHECKPOINT", "TRANSFER", "RESTORE", "BYTES"), rows)


def _ms(value: int | None) -> str:
    return format_duration(value) if value is not None else "-"


def _bytes_moved(metrics: Metrics) -> str:
    moved = {
        "checkpoint": metrics.checkpoint_bytes,
        "writable layer": metrics.rootfs_bytes,
        "volumes": metrics.volume_bytes,
        "image (before the freeze)": metrics.image_bytes,
    }
    return ", ".join(f"{what} {size(count)}" for what, count in moved.items() if count is not None)


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())
