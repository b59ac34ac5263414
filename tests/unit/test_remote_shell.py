"""The shell kept open on a host for the freeze window, driven here through a local `sh`."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence

import pytest

from ferry.hosts.shell import RemoteShell
from ferry.hosts.ssh import CommandFailed, SSHError


class LocalChannel:
    """The parts of a paramiko channel RemoteShell uses, over a local process."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.process = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def settimeout(self, timeout: float | None) -> None:
        pass

    def sendall(self, data: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def recv(self, size: int) -> bytes:
        assert self.process.stdout is not None
        return os.read(self.process.stdout.fileno(), size)

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


class LocalSession:
    name = "local"

    def open(self, argv: Sequence[str], timeout: float | None = None) -> LocalChannel:
        return LocalChannel(argv)


@pytest.fixture
def shell() -> RemoteShell:
    return RemoteShell(LocalSession())  # type: ignore[arg-type]


def test_commands_run_one_after_another_in_the_same_shell(shell: RemoteShell) -> None:
    first = shell.run(["sh", "-c", "echo $PPID"]).text
    second = shell.run(["sh", "-c", "echo $PPID"]).text
    assert first == second


def test_stdout_stderr_and_exit_status_come_back_apart(shell: RemoteShell) -> None:
    result = shell.run(["sh", "-c", "printf 'out\\nmore'; echo err >&2; exit 3"], check=False)
    assert (result.exit_code, result.stdout, result.stderr) == (3, b"out\nmore", b"err\n")


def test_a_failing_command_raises_with_its_error_output(shell: RemoteShell) -> None:
    with pytest.raises(CommandFailed, match="no such thing"):
        shell.run(["sh", "-c", "echo no such thing >&2; exit 1"])


def test_arguments_reach_the_command_unquoted_by_no_shell(shell: RemoteShell) -> None:
    hostile = "$(touch /tmp/ferry-pwned); `id` ; 'quote\" \\n"
    assert shell.run(["printf", "%s", hostile]).text == hostile


def test_a_shell_that_died_is_reported_not_waited_for(shell: RemoteShell) -> None:
    with pytest.raises(SSHError, match="the shell broke"):
        shell.run(["sh", "-c", "kill -KILL $PPID"])
