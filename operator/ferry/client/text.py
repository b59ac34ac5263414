"""Plain text for the terminal and for scripts: aligned columns, as kubectl prints them, and ages."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ferry.migration.state import format_size, parse_timestamp


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[column]) for row in (header, *rows)) for column in range(len(header))]
    return "\n".join(
        "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    )


def age(created: str | None, now: datetime) -> str:
    """'42s', '5m', '3h', '2d': how long ago `created` (an RFC 3339 time) was."""
    if not created:
        return "<unknown>"
    seconds = max(0, int((now - parse_timestamp(created)).total_seconds()))
    for unit, size, up_to in (("s", 1, 120), ("m", 60, 120 * 60), ("h", 3600, 48 * 3600)):
        if seconds < up_to:
            return f"{seconds // size}{unit}"
    return f"{seconds // 86400}d"


size = format_size  # '512 B', '4.0 KiB', '12.3 MiB', '1.5 GiB': as the status's progress says them
