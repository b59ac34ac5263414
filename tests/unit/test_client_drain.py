"""`ferry drain`: the Evacuation it creates, and with --wait what it prints and how it exits."""

from __future__ import annotations

import io
from typing import Any

import pytest

from ferry.cli import parse_arguments
from ferry.client.drain import drain_command
from ferry.client.kube import ClientError
from ferry.client.outcome import ExitCode
from tests.unit.fakes import FakeClock, FakeMigrationApi


def drain(api: FakeMigrationApi, *argv: str) -> tuple[ExitCode, str]:
    out, clock = io.StringIO(), FakeClock()
    code = drain_command(parse_arguments(["drain", *argv]), api, out, clock=clock, sleep=clock.sleep)
    return code, out.getvalue()


def status(phase: str, message: str, *containers: dict[str, Any]) -> dict[str, Any]:
    return {"phase": phase, "message": message, "containers": list(containers)}


MOVED = {"name": "web", "outcome": "Succeeded", "target": "node2", "strategy": "Live"}
SKIPPED = {"name": "tty", "outcome": "Skipped", "target": "node3", "message": "could not move live"}


def test_drain_creates_an_evacuation_of_the_host_and_says_so() -> None:
    api = FakeMigrationApi()

    code, said = drain(api, "node1")

    (evacuation,) = api.evacuations.values()
    assert evacuation["spec"] == {"sourceHost": "node1"}
    assert evacuation["metadata"]["name"].startswith("drain-node1-")
    assert said == f"evacuation.ferry.dev/{evacuation['metadata']['name']} created\n"
    assert code is ExitCode.SUCCEEDED


def test_drain_passes_its_options_as_the_spec_says_them() -> None:
    api = FakeMigrationApi()

    drain(
        api,
        "node1",
        "--to",
        "node2,node3",
        "--selector",
        "tier=web,app=shop",
        "--max-concurrent",
        "2",
        "--on-live-failure",
        "Cold",
        "--name",
        "maintenance",
    )

    assert api.evacuations["maintenance"]["spec"] == {
        "sourceHost": "node1",
        "targetHosts": ["node2", "node3"],
        "selector": {"matchLabels": {"tier": "web", "app": "shop"}},
        "maxConcurrent": 2,
        "onLiveFailure": "Cold",
    }


def test_a_selector_that_is_not_key_value_pairs_is_refused_before_anything_is_created() -> None:
    api = FakeMigrationApi()

    with pytest.raises(ClientError, match="KEY=VALUE"):
        drain(api, "node1", "--selector", "tier")
    assert api.evacuations == {}


def test_wait_prints_each_new_progress_line_once_then_where_each_container_went() -> None:
    api = FakeMigrationApi()
    api.evacuation_progress = [
        {},
        status("Running", "0 of 2 moved, 2 moving, 0 waiting"),
        status("Running", "0 of 2 moved, 2 moving, 0 waiting"),
        status("Succeeded", "1 of 2 moved, 1 skipped", MOVED, SKIPPED),
    ]

    code, said = drain(api, "node1", "--wait", "--name", "m")

    assert said.splitlines() == [
        "evacuation.ferry.dev/m created",
        "waiting for the operator",
        "0 of 2 moved, 2 moving, 0 waiting",
        "1 of 2 moved, 1 skipped",
        "  web: Succeeded on node2 (Live)",
        "  tty: Skipped: could not move live",
    ]
    assert code is ExitCode.SUCCEEDED


def test_wait_exits_2_when_some_container_did_not_move() -> None:
    api = FakeMigrationApi()
    api.evacuation_progress = [status("Failed", "0 of 1 moved, 1 did not move")]

    code, _ = drain(api, "node1", "--wait")

    assert code is ExitCode.FAILED


def test_wait_exits_4_when_its_timeout_runs_out_and_the_evacuation_goes_on() -> None:
    api = FakeMigrationApi()
    api.evacuation_progress = [status("Running", "0 of 9 moved, 2 moving, 7 waiting")] * 100

    code, said = drain(api, "node1", "--wait", "--timeout", "5", "--name", "slow")

    assert code is ExitCode.TIMEOUT
    assert said.splitlines()[-1] == "timed out after 5s: slow goes on (kubectl get evac slow)"
