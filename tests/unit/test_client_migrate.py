"""`ferry migrate` and `--wait`: what it creates, what it prints, and the exit codes a script reads."""

from __future__ import annotations

import io
import tomllib
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from ferry.cli import parse_arguments, program_name
from ferry.client import commands
from ferry.client.kube import ClientError
from ferry.client.outcome import ExitCode
from ferry.client.wait import wait_for_end
from ferry.migration.phases import Phase
from ferry.migration.state import Metrics, MigrationState
from tests.unit.fakes import FakeClock, FakeMigrationApi

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
MOVED = (Phase.PREPARING, Phase.CHECKPOINTING, Phase.TRANSFERRING, Phase.RESTORING, Phase.VERIFYING)
FREEZE = Metrics(downtime_ms=1210, checkpoint_ms=400, transfer_ms=300, restore_ms=500)


def statuses(*phases: Phase, reason: str = "", metrics: Metrics | None = None) -> list[dict[str, Any]]:
    """The status after the operator's first write (Pending), then after each of `phases`; a failure
    (Failed, RollingBack) has `reason`."""
    state = MigrationState(workload="container/looper", source_host="node1", target_host="node2")
    state.start("seen by the operator")
    state.metrics = metrics or Metrics()
    written = [state.to_status()]
    for phase in phases:
        failure = phase in (Phase.FAILED, Phase.ROLLING_BACK)
        state.enter(phase, f"{phase} now", reason if failure else "")
        written.append(state.to_status())
    return written


def wait(api: FakeMigrationApi, timeout: float = 60) -> tuple[ExitCode, str]:
    """Waits for default/move-it, which `api` moves on one status per read."""
    api.create_migration({"metadata": {"namespace": "default", "name": "move-it"}, "spec": {}})
    out, clock = io.StringIO(), FakeClock()
    code = wait_for_end(api, "default", "move-it", timeout, Console(file=out), clock=clock, sleep=clock.sleep)
    return code, out.getvalue()


def migrate(api: FakeMigrationApi, *argv: str) -> tuple[ExitCode, str]:
    out = io.StringIO()
    code = commands.migrate_command(parse_arguments(["migrate", *argv]), api, out)
    return code, out.getvalue()


def test_migrate_creates_the_migration_says_so_and_exits_0() -> None:
    api = FakeMigrationApi()

    code, printed = migrate(api, "looper", "--to", "node2", "--from", "node1")

    [(key, resource)] = api.migrations.items()
    assert code == ExitCode.SUCCEEDED
    assert key == ("default", "looper-to-node2-x0000")
    assert resource["spec"] == {
        "workload": {"container": "looper"},
        "targetHost": "node2",
        "sourceHost": "node1",
    }
    assert printed == "migration.ferry.dev/looper-to-node2-x0000 created\n"


def test_migrate_creates_it_in_the_kubeconfig_namespace_by_default() -> None:
    api = FakeMigrationApi(namespace="team-a")

    migrate(api, "looper", "--to", "node2")

    assert [namespace for namespace, _ in api.migrations] == ["team-a"]


def test_migrate_creates_it_in_the_namespace_named_with_n() -> None:
    api = FakeMigrationApi(namespace="team-a")

    migrate(api, "looper", "--to", "node2", "-n", "team-b")

    assert [namespace for namespace, _ in api.migrations] == ["team-b"]


def test_migrate_a_process_by_pid() -> None:
    api = FakeMigrationApi()

    migrate(api, "--pid", "4242", "--from", "node1", "--to", "node2", "--name", "move-pid")

    assert api.migrations["default", "move-pid"]["spec"]["workload"] == {"process": {"pid": 4242}}


def test_migrate_wait_exits_0_and_ends_with_the_downtime_and_its_parts() -> None:
    api = FakeMigrationApi()
    api.progress = [statuses(*MOVED, Phase.SUCCEEDED, metrics=FREEZE)[-1]]

    code, printed = migrate(api, "looper", "--to", "node2", "--wait")

    assert code == ExitCode.SUCCEEDED
    assert "Succeeded: moved container/looper from node1 to node2" in printed
    assert printed.rstrip().endswith("downtime 1.21s (checkpoint 0.40s, transfer 0.30s, restore 0.50s)")


def test_the_downtime_line_says_what_was_done_inside_the_freeze_and_what_it_cut() -> None:
    api = FakeMigrationApi()
    counted = FREEZE.model_copy(
        update={"freeze_host_calls": 6, "freeze_status_writes": 3, "connections_cut": 1}
    )
    api.progress = [statuses(*MOVED, Phase.SUCCEEDED, metrics=counted)[-1]]

    _, printed = migrate(api, "looper", "--to", "node2", "--wait")

    assert printed.rstrip().endswith(
        "downtime 1.21s (checkpoint 0.40s, transfer 0.30s, restore 0.50s; "
        "6 host calls, 3 status writes, 1 connections cut)"
    )


def test_wait_prints_each_phase_once_in_order() -> None:
    api = FakeMigrationApi()
    written = statuses(*MOVED, Phase.SUCCEEDED)
    api.progress = [written[0], written[0], *written[1:]]

    _, printed = wait(api)

    shown = [line.split()[1] for line in printed.splitlines() if line.strip()[:1].isdigit()]
    assert shown == ["Pending", *MOVED, "Succeeded"]


def test_wait_exits_2_when_the_migration_failed_and_says_why() -> None:
    api = FakeMigrationApi()
    api.progress = [*statuses(Phase.PREPARING, Phase.FAILED, reason="ContainerNotFound")]

    code, printed = wait(api)

    assert code == ExitCode.FAILED
    assert "Failed (ContainerNotFound): Failed now" in printed


def test_wait_exits_3_when_the_migration_rolled_back() -> None:
    api = FakeMigrationApi()
    api.progress = [
        *statuses(
            Phase.PREPARING, Phase.CHECKPOINTING, Phase.ROLLING_BACK, Phase.ROLLED_BACK, reason="HostError"
        )
    ]

    assert wait(api)[0] == ExitCode.ROLLED_BACK


def test_wait_exits_4_when_its_timeout_runs_out_and_says_the_migration_goes_on() -> None:
    api = FakeMigrationApi()
    api.progress = [*statuses(Phase.PREPARING, Phase.CHECKPOINTING, Phase.TRANSFERRING)]

    code, printed = wait(api, timeout=5)

    assert code == ExitCode.TIMEOUT
    assert "timed out after 5s: move-it is Transferring; it goes on" in printed


def test_wait_on_a_migration_deleted_meanwhile_is_an_error() -> None:
    api = FakeMigrationApi()
    api.progress = [*statuses(Phase.PREPARING), None]

    with pytest.raises(ClientError, match="deleted while we waited"):
        wait(api)


def test_a_client_error_exits_1_with_the_message_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse_arguments(["describe", "nothing-here"])

    code = commands.run(args, connect=FakeMigrationApi)

    assert code == ExitCode.ERROR
    assert capsys.readouterr().err == "error: Migration default/nothing-here not found\n"


def test_a_usage_error_exits_1_not_2_which_means_failed() -> None:
    with pytest.raises(SystemExit) as exited:
        parse_arguments(["migrate", "looper"])  # no --to

    assert exited.value.code == ExitCode.ERROR


def test_the_help_lists_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_arguments(["migrate", "--help"])

    help_text = capsys.readouterr().out
    assert "2  the migration Failed" in help_text
    assert "4  --wait timed out" in help_text


def test_run_as_a_kubectl_plugin_it_calls_itself_kubectl_ferry() -> None:
    assert program_name("/usr/local/bin/kubectl-ferry") == "kubectl ferry"
    assert program_name("/usr/local/bin/ferry") == "ferry"


def test_the_kubectl_plugin_is_the_same_program_as_ferry() -> None:
    scripts = tomllib.loads(PYPROJECT.read_text())["project"]["scripts"]

    assert scripts["kubectl-ferry"] == scripts["ferry"] == "ferry.cli:main"
