"""The command line shows a running Migration's status.progress: `ferry get` in a PROGRESS column,
`ferry describe` on a line of its own, `ferry migrate --wait` on a bar of the bytes (on a terminal)."""

from __future__ import annotations

import io

from rich.console import Console

from ferry.client.describe import describe
from ferry.client.outcome import ExitCode
from ferry.client.wait import wait_for_end
from ferry.migration.phases import Phase
from ferry.migration.state import MigrationState, Progress
from tests.unit.fakes import FakeClock, FakeMigrationApi
from tests.unit.test_client_output import NOW, api_with, migration, run

MiB = 1 << 20
IMAGE = Progress(phase=Phase.PREPARING, step="image", moved_bytes=120 * MiB, expected_bytes=300 * MiB)


def test_get_adds_a_progress_column_after_the_phase_while_a_migration_reports_progress() -> None:
    api = api_with(
        migration("move-a", "Preparing", progress=IMAGE.model_dump(mode="json", by_alias=True)),
        migration("move-b", "Succeeded", downtime="1.21s"),
    )

    lines = run(api, "get").splitlines()

    header = lines[0].split()
    assert header[4:6] == ["PHASE", "PROGRESS"]
    assert "Preparing   image 120.0 MiB of 300.0 MiB (40%)" in lines[1]


def test_describe_shows_the_progress_and_the_phase_it_belongs_to() -> None:
    running = migration("move-a", "Preparing", progress=IMAGE.model_dump(mode="json", by_alias=True))

    assert "Progress:    image 120.0 MiB of 300.0 MiB (40%) (Preparing)" in describe(running, NOW)


def test_wait_on_a_terminal_shows_the_bytes_the_step_moves() -> None:
    state = MigrationState(workload="container/looper", source_host="node1", target_host="node2")
    state.start("seen")
    state.enter(Phase.PREPARING)
    state.progress = IMAGE
    copying = state.to_status()
    state.enter(Phase.CHECKPOINTING)
    state.enter(Phase.FAILED, "stopped", "Cancelled")
    api = FakeMigrationApi()
    api.create_migration({"metadata": {"namespace": "default", "name": "move-it"}, "spec": {}})
    api.progress = [copying, state.to_status()]
    out, clock = io.StringIO(), FakeClock()
    console = Console(file=out, force_terminal=True, width=120)

    code = wait_for_end(api, "default", "move-it", 60, console, clock=clock, sleep=clock.sleep)

    assert code == ExitCode.FAILED
    assert "image 120.0 MiB of 300.0 MiB (40%)" in out.getvalue()
