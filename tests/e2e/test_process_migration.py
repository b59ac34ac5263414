"""Plain processes (the seed's helloer-c), moved with CRIU between lab hosts."""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.lab import LAB_SCRIPT, Helloer, Lab, OperatorProcess, host_path, unique, wait_for
from tests.e2e.test_faults import fake_criu


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
    twin_log = workdir / "twin.log"
    subprocess.Popen(
        [str(LAB_SCRIPT), "exec", "node1", str(helloer.binary), str(twin_log)], stderr=subprocess.DEVNULL
    )
    try:
        wait_for(twin_log.exists, 10, "the second one to start")
        lab.migration(name, "", target="node2", process={"name": helloer.name})
        status = lab.wait_until(name)["status"]
        assert status["phase"] == "Failed"
        assert "2 processes" in status["message"]
        assert helloer.network_namespace() == lab.network_namespace("node1")
        helloer.assert_continuous_and_counting()
    finally:
        subprocess.run(["pkill", "-KILL", "-f", str(twin_log)], check=False)
        helloer.stop()


# The seed's helloer-c as a user runs it from an interactive shell: counting on its terminal.
TERMINAL_HELLOER = r"""
#include <stdio.h>
#include <unistd.h>
int main(void) {
    for (long i = 0;; i++) { printf("hello %ld\n", i); fflush(stdout); usleep(100000); }
}
"""


def counted(text: str) -> list[int]:
    return [int(line.split()[1]) for line in text.splitlines() if line.startswith("hello ")]


@dataclass
class InTerminal:
    """The terminal helloer, started by hand in an interactive bash in a tmux session on node1."""

    lab: Lab
    binary: Path
    users: list[str]  # tmux on the user's own socket
    pid: int = 0

    def start(self) -> None:
        self.binary.with_suffix(".c").write_text(TERMINAL_HELLOER)
        subprocess.run(["gcc", "-O1", "-o", str(self.binary), str(self.binary.with_suffix(".c"))], check=True)
        self._tmux("new-session", "-d", "-s", "user", "-x", "120", "-y", "40", "bash --norc -i")
        self._tmux("send-keys", "-t", "user", str(self.binary), "Enter")
        found = wait_for(lambda: self.pgrep("-x").stdout, 10, f"{self.binary.name} to start")
        self.pid = int(found)
        wait_for(lambda: len(counted(self.terminal_shows())) >= 5, 10, "it to count on its terminal")

    def _tmux(self, *arguments: str) -> str:
        return self.lab.lab("exec", "node1", *self.users, *arguments).stdout

    def pgrep(self, *options: str) -> subprocess.CompletedProcess[str]:
        return self.lab.lab("exec", "node1", "pgrep", *options, self.binary.name, check=False)

    def terminal_shows(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "user")

    def stop(self) -> None:
        if self.pid:
            subprocess.run(["kill", "-KILL", str(self.pid)], check=False)
        self.lab.lab("exec", "node1", *self.users, "kill-server", check=False)


@pytest.fixture
def in_terminal(lab: Lab, workdir: Path) -> Iterator[InTerminal]:
    started = InTerminal(lab, workdir / unique("hello")[:15], ["tmux", "-S", str(workdir / "user.sock")])
    try:
        started.start()
        yield started
    finally:
        started.stop()


def assert_goes_on_in_its_session(lab: Lab, session: dict[str, str], before: list[int]) -> None:
    """It counts on from where it stopped, into the session's log and on the terminal a user attaches to."""
    assert session["log"].endswith(f"{session['session']}.log")
    log = host_path(session["host"], session["log"])
    wait_for(lambda: log.exists() and len(counted(log.read_text())) >= 5, 10, "its output in the log")
    after = counted(log.read_text())
    assert after == list(range(before[-1] + 1, before[-1] + 1 + len(after)))
    attach = shlex.split(session["attach"])
    assert attach[:2] == ["tmux", "-S"] and attach[3:] == ["attach", "-t", session["session"]]
    shown = lab.lab(
        "exec", session["host"], *attach[:3], "capture-pane", "-p", "-t", session["session"]
    ).stdout
    assert counted(shown) and counted(shown)[0] > before[-1]


def test_a_process_started_in_an_interactive_terminal_moves_into_a_terminal_session_on_the_target(
    lab: Lab, operator: OperatorProcess, in_terminal: InTerminal
) -> None:
    name = unique("mig-process-tty")

    lab.migration(name, "", target="node2", process={"pid": in_terminal.pid})
    status = lab.wait_until(name)["status"]

    assert status["phase"] == "Succeeded", status
    assert status["terminal"]["host"] == "node2"
    assert_goes_on_in_its_session(lab, status["terminal"], counted(in_terminal.terminal_shows()))
    assert in_terminal.pgrep("-c", "-x").stdout.strip() == "1"  # exactly once
    assert os.readlink(f"/proc/{in_terminal.pid}/ns/net") == lab.network_namespace("node2")


FAILING_PROCESS_RESTORE = """#!/bin/sh
if [ "$1" = restore ]; then echo "criu: injected restore failure" >&2; exit 1; fi
exec /usr/local/sbin/criu "$@"
"""


def test_a_process_with_a_terminal_rolls_back_into_a_terminal_session_on_the_source(
    lab: Lab, operator: OperatorProcess, in_terminal: InTerminal
) -> None:
    name = unique("mig-process-tty-back")

    with fake_criu(lab, "node2", FAILING_PROCESS_RESTORE):
        lab.migration(name, "", target="node2", process={"pid": in_terminal.pid})
        status = lab.wait_until(name)["status"]

    assert status["phase"] == "RolledBack", status
    assert "injected restore failure" in status["message"]
    assert status["terminal"]["host"] == "node1"
    assert_goes_on_in_its_session(lab, status["terminal"], counted(in_terminal.terminal_shows()))
    assert in_terminal.pgrep("-c", "-x").stdout.strip() == "1"
    assert os.readlink(f"/proc/{in_terminal.pid}/ns/net") == lab.network_namespace("node1")


def test_a_process_whose_executable_is_not_on_the_target_fails_before_the_freeze(
    lab: Lab, operator: OperatorProcess, workdir: Path
) -> None:
    helloer, name = Helloer(workdir, hosts=["node1"]), unique("mig-process-missing")
    try:
        lab.migration(name, "", target="node2", process={"pid": helloer.pid})
        status = lab.wait_until(name)["status"]
        assert status["phase"] == "Failed"
        assert "do not exist on node2" in status["message"]
        helloer.assert_continuous_and_counting()
    finally:
        helloer.stop()
