"""Plain processes (the seed's helloer-c), moved with CRIU between lab hosts."""

from __future__ import annotations

import os
import pty
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.lab import Helloer, Lab, OperatorProcess, unique


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    tmp_path.chmod(0o755)
    yield tmp_path


def test_process_keeps_counting_on_the_target_with_its_pid(
    lab: Lab, operator: OperatorProcess, workdir: Path
) -> None:
    helloer, name = Helloer(workdir), unique("mig-process")
    try:
        assert helloer.network_namespace() == lab.network_namespace("node1")
        lab.migration(name, "", target="node2", process={"pid": helloer.pid})
        status = lab.wait_until(name)["status"]
        assert status["phase"] == "Succeeded", status
        assert helloer.network_namespace() == lab.network_namespace("node2")
        assert status["metrics"]["downtimeMs"] > 0 and status["metrics"]["checkpointBytes"] > 0
        helloer.assert_continuous_and_counting()
    finally:
        helloer.stop()


def test_process_found_by_name_moves_too(lab: Lab, operator: OperatorProcess, workdir: Path) -> None:
    helloer, name = Helloer(workdir), unique("mig-process-name")
    try:
        lab.migration(name, "", target="node2", process={"name": helloer.name})
        assert lab.wait_until(name)["status"]["phase"] == "Succeeded"
        assert helloer.network_namespace() == lab.network_namespace("node2")
        helloer.assert_continuous_and_counting()
    finally:
        helloer.stop()


def test_a_name_matching_two_processes_fails_before_the_freeze(
    lab: Lab, operator: OperatorProcess, workdir: Path
) -> None:
    helloer, name = Helloer(workdir), unique("mig-process-twice")
    twin = subprocess.Popen([str(helloer.binary), str(workdir / "twin.log")])
    try:
        lab.migration(name, "", target="node2", process={"name": helloer.name})
        status = lab.wait_until(name)["status"]
        assert status["phase"] == "Failed"
        assert "2 processes" in status["message"]
        assert helloer.network_namespace() == lab.network_namespace("node1")
        helloer.assert_continuous_and_counting()
    finally:
        twin.kill()
        helloer.stop()


def test_a_process_with_a_terminal_fails_before_the_freeze(
    lab: Lab, operator: OperatorProcess, workdir: Path
) -> None:
    controller, terminal = pty.openpty()
    helloer, name = Helloer(workdir, stdout=terminal), unique("mig-process-tty")
    try:
        lab.migration(name, "", target="node2", process={"pid": helloer.pid})
        status = lab.wait_until(name)["status"]
        assert status["phase"] == "Failed"
        assert "terminal" in status["message"]
        helloer.assert_continuous_and_counting()
    finally:
        helloer.stop()
        os.close(controller)
        os.close(terminal)


def test_a_process_whose_executable_is_gone_fails_before_the_freeze(
    lab: Lab, operator: OperatorProcess, workdir: Path
) -> None:
    helloer, name = Helloer(workdir), unique("mig-process-deleted")
    helloer.binary.unlink()
    try:
        lab.migration(name, "", target="node2", process={"pid": helloer.pid})
        status = lab.wait_until(name)["status"]
        assert status["phase"] == "Failed"
        assert "do not exist on node2" in status["message"]
        helloer.assert_continuous_and_counting()
    finally:
        helloer.stop()
