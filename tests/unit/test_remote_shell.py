"""Shells kept open on a host (for the freeze window, and for the operator's plain commands), driven
here through a local `sh`."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from ferry.hosts.shell import KeptShellSession, RemoteShell
from ferry.hosts.ssh import CommandFailed, CommandResult, SSHEndpoint, SSHError, SSHSession


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

    @property
    def closed(self) -> bool:
        return self.process.poll() is not None

    def exit_status_ready(self) -> bool:
        return self.closed

    def get_transport(self) -> LocalChannel:
        return self  # stands in for the connection too: up while the shell runs

    def is_active(self) -> bool:
        return True


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


def test_a_program_put_on_the_path_after_the_shell_started_is_found(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    for directory, says in ((first, None), (second, "second")):
        directory.mkdir()
        if says:
            (directory / "tool").write_text(f"#!/bin/sh\necho {says}\n")
            (directory / "tool").chmod(0o755)
    os.environ["PATH"], saved = f"{first}:{second}:{os.environ['PATH']}", os.environ["PATH"]
    try:
        shell = RemoteShell(LocalSession())  # type: ignore[arg-type]
    finally:
        os.environ["PATH"] = saved
    assert shell.run(["tool"]).text == "second\n"
    (first / "tool").write_text("#!/bin/sh\necho first\n")  # as a test's fake criu is put in place
    (first / "tool").chmod(0o755)
    assert shell.run(["tool"]).text == "first\n"


# -- the operator's sessions: plain commands in kept shells


class ExecRecorder(SSHSession):
    """Where a command goes when no kept shell takes it: recorded, not run."""

    execs: list[list[str]]

    def run(
        self, argv: Sequence[str], *, input: bytes | None = None, timeout: float = 120.0, check: bool = True
    ) -> CommandResult:
        self.execs.append(list(argv))
        return CommandResult(0, b"exec", b"")


class LocalKeptSession(KeptShellSession, ExecRecorder):
    def __init__(self, kept: int) -> None:
        super().__init__(SSHEndpoint("local", "127.0.0.1", 22, "root", "ssh-ed25519 AAAA", "key"), kept=kept)
        self.execs = []
        self.shells: list[LocalChannel] = []

    def open(  # type: ignore[override]
        self, argv: Sequence[str], timeout: float | None = None, *, counted: bool = True
    ) -> LocalChannel:
        self.shells.append(LocalChannel(argv))
        return self.shells[-1]


def test_plain_commands_share_a_kept_shell_instead_of_an_exec_each() -> None:
    session = LocalKeptSession(kept=2)

    parents = {session.run(["sh", "-c", "echo $PPID"]).text for _ in range(3)}

    assert len(parents) == 1 and len(session.shells) == 1 and session.execs == []


def test_a_command_with_input_gets_an_exec_of_its_own() -> None:
    session = LocalKeptSession(kept=2)

    assert session.run(["iptables-restore"], input=b"*nat\nCOMMIT\n").text == "exec"
    assert session.execs == [["iptables-restore"]] and session.shells == []


def test_when_every_kept_shell_is_busy_a_command_gets_an_exec() -> None:
    session = LocalKeptSession(kept=1)
    busy = threading.Thread(target=session.run, args=(["sleep", "0.5"],))
    busy.start()
    threading.Event().wait(0.2)

    assert session.run(["true"]).text == "exec"
    busy.join()
    assert session.run(["echo", "kept"]).text == "kept\n"  # the shell is free again


def test_a_kept_shell_that_died_is_replaced() -> None:
    session = LocalKeptSession(kept=1)
    session.run(["true"])
    session.shells[0].close()  # as when the host's sshd went away

    assert session.run(["echo", "again"]).text == "again\n"
    assert len(session.shells) == 2


def test_a_failing_command_in_a_kept_shell_raises_and_the_shell_is_kept() -> None:
    session = LocalKeptSession(kept=1)

    with pytest.raises(CommandFailed, match="nope"):
        session.run(["sh", "-c", "echo nope >&2; exit 2"])
    assert session.run(["echo", "fine"]).text == "fine\n" and len(session.shells) == 1
