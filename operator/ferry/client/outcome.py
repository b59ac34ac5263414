"""The exit codes a script can rely on, and how a Migration's end is told."""

from __future__ import annotations

from enum import IntEnum

from ferry.migration.phases import Phase
from ferry.migration.state import Metrics, MigrationState, format_duration


class ExitCode(IntEnum):
    SUCCEEDED = 0
    ERROR = 1
    FAILED = 2
    ROLLED_BACK = 3
    TIMEOUT = 4


EXIT_CODES_HELP = """exit codes:
  0  done; with --wait: the migration Succeeded
  1  usage error, or any other error (no cluster, no such Migration, refused by the API server)
  2  the migration Failed (before the freeze: the workload stayed on its source)
  3  the migration RolledBack (a failure after the freeze: the workload runs on its source again)
  4  --wait timed out (the Migration goes on)"""

_ENDINGS = {
    Phase.SUCCEEDED: ExitCode.SUCCEEDED,
    Phase.FAILED: ExitCode.FAILED,
    Phase.ROLLED_BACK: ExitCode.ROLLED_BACK,
}


def exit_code(phase: Phase) -> ExitCode:
    return _ENDINGS[phase]


def freeze_window(metrics: Metrics) -> str | None:
    """'1.21s (checkpoint 0.40s, transfer 0.30s, restore 0.50s; 6 host calls, 3 status writes,
    1 connections cut)': the downtime, its parts, what was done inside it and what it cut."""
    if metrics.downtime_ms is None:
        return None
    parts = {
        "checkpoint": metrics.checkpoint_ms,
        "transfer": metrics.transfer_ms,
        "restore": metrics.restore_ms,
    }
    split = ", ".join(f"{part} {format_duration(ms)}" for part, ms in parts.items() if ms is not None)
    counts = {
        "host calls": metrics.freeze_host_calls,
        "status writes": metrics.freeze_status_writes,
        "connections cut": metrics.connections_cut,
    }
    inside = ", ".join(f"{count} {what}" for what, count in counts.items() if count is not None)
    details = "; ".join(part for part in (split, inside) if part)
    return (
        f"{format_duration(metrics.downtime_ms)} ({details})"
        if details
        else format_duration(metrics.downtime_ms)
    )


def ending(state: MigrationState) -> str:
    """How a finished Migration ended, in a line or two."""
    moved = f"{state.workload} from {state.source_host} to {state.target_host}"
    if state.phase is Phase.SUCCEEDED:
        total = f" in {format_duration(state.metrics.total_ms)}" if state.metrics.total_ms is not None else ""
        lines = [f"Succeeded: moved {moved}{total}"]
    else:
        lines = [f"{state.phase} ({state.reason or state.phase}): {state.message}"]
    window = freeze_window(state.metrics)
    if window is not None:
        lines.append(f"downtime {window}")
    return "\n".join(lines)
