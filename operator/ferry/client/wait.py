"""`ferry migrate --wait`: follows a Migration to its end with live progress, then tells how it ended."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from ferry.client.kube import ClientError, MigrationApi
from ferry.client.outcome import ExitCode, ending, exit_code
from ferry.migration.phases import Phase
from ferry.migration.state import MigrationState
from ferry.migration.state import Progress as BytesMoved

POLL_SECONDS = 0.5
STEPS = (
    Phase.PENDING,
    Phase.PREPARING,
    Phase.CHECKPOINTING,
    Phase.TRANSFERRING,
    Phase.RESTORING,
    Phase.VERIFYING,
)


def wait_for_end(
    api: MigrationApi,
    namespace: str,
    name: str,
    timeout: float,
    console: Console,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ExitCode:
    """Prints a line per phase (with a spinner, a bar of the steps and the time on a terminal);
    ends with the outcome's exit code, or TIMEOUT after `timeout` seconds."""
    try:
        state = _follow(api, namespace, name, timeout, console, clock, sleep)
    except KeyboardInterrupt:
        _say(console, f"stopped waiting: Migration {namespace}/{name} goes on (ferry describe {name})")
        return ExitCode.ERROR
    if not state.phase.is_terminal:
        _say(
            console,
            f"timed out after {timeout:g}s: {name} is {state.phase}; it goes on (ferry describe {name})",
        )
        return ExitCode.TIMEOUT
    _say(console, ending(state))
    return exit_code(state.phase)


def _follow(
    api: MigrationApi,
    namespace: str,
    name: str,
    timeout: float,
    console: Console,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> MigrationState:
    """The Migration's state once it ended, or when `timeout` ran out."""
    start, shown = clock(), ""
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task(f"{name}: waiting for the operator", total=len(STEPS))
        moving = progress.add_task("", total=None, visible=False)
        while True:
            resource = api.get_migration(namespace, name)
            if resource is None:
                raise ClientError(f"Migration {namespace}/{name} was deleted while we waited for it")
            status = resource.get("status", {})
            state = MigrationState.from_status(status)
            if status.get("phase", "") != shown:
                shown = state.phase.value
                _say(progress.console, f"{clock() - start:6.1f}s  {shown:<13}  {state.message}")
                progress.update(task, description=f"{name}: {shown}", completed=_steps_done(state.phase))
            _show_bytes(progress, moving, state.progress)
            if state.phase.is_terminal or clock() - start >= timeout:
                return state
            sleep(POLL_SECONDS)


def _show_bytes(bar: Progress, task: TaskID, moved: BytesMoved | None) -> None:
    """A second line with the bytes the step under way moves, while the status reports them."""
    if moved is None:
        bar.update(task, visible=False)
        return
    bar.update(
        task,
        description=f"  {moved.summary}",
        total=moved.expected_bytes,
        completed=moved.moved_bytes,
        visible=True,
        refresh=True,
    )


def _steps_done(phase: Phase) -> int | None:
    """How far along the bar is; None (unchanged) in a rollback or a failure."""
    if phase is Phase.SUCCEEDED:
        return len(STEPS)
    return STEPS.index(phase) if phase in STEPS else None


def _say(console: Console, text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)
