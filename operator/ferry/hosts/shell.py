"""Shells kept open on a host, so that commands cost no SSH exec each.

Every SSH exec starts the user's login shell on the host; on hosts whose root `.bashrc` is heavy that
costs 0.1-0.3 s of time and CPU per command. A `RemoteShell` is one `sh` on the host, sent one
command line at a time: arguments are joined with shlex (no value reaches the shell unquoted), each
command runs in a subshell that looks its program up afresh (a binary put on the PATH meanwhile is
found) with stdin /dev/null, and each answer is framed by a marker line carrying the exit status and
stderr's size. A process migration opens one per host for its freeze window; `KeptShellSession`
keeps a few per host for every plain command (no stdin) of the operator.
"""

from __future__ import annotations

import secrets
import shlex
import threading
from collections.abc import Sequence

import paramiko

from ferry.hosts import host_calls
from ferry.hosts.ssh import CommandFailed, CommandResult, SSHEndpoint, SSHError, SSHSession

# Set up once: a private file for each command's stderr.
PRELUDE = "ferry_err=$(mktemp) || exit 1; trap 'rm -f -- \"$ferry_err\"' EXIT\n"


class RemoteShell:
    """Runs commands one after the other in one `sh` on the host; `run` mirrors `SSHSession.run`."""

    def __init__(self, session: SSHSession, timeout: float = 120.0) -> None:
        self.session = session
        self.name = session.name
        self._channel = session.open(["sh"], timeout=timeout)
        self._channel.sendall(PRELUDE.encode())
        self._buffer = b""
        self._lock = threading.Lock()
        self.run(["true"], timeout=timeout)  # returns once the host's login shell and `sh` are up

    def run(
        self, argv: Sequence[str], *, input: bytes | None = None, timeout: float = 120.0, check: bool = True
    ) -> CommandResult:
        if input is not None:
            return self.session.run(argv, input=input, timeout=timeout, check=check)
        host_calls.starting()
        marker = f"ferry-{secrets.token_hex(8)}"
        line = (
            f'( hash -r; {shlex.join(argv)} ) </dev/null 2>"$ferry_err"; '
            f'printf \'\\n{marker} %d %d\\n\' "$?" "$(wc -c <"$ferry_err")"; cat "$ferry_err"\n'
        )
        with self._lock:
            try:
                self._channel.settimeout(timeout)
                self._channel.sendall(line.encode())
                stdout, status, stderr_size = self._read_until(f"\n{marker} ".encode())
                stderr = self._read_exactly(stderr_size)
            except (TimeoutError, OSError, EOFError, paramiko.SSHException) as error:
                self.close()
                raise SSHError(f"`{shlex.join(argv)}` on {self.name}: the shell broke: {error}") from None
        host_calls.completed(self.name, "shell", argv)
        if check and status != 0:
            raise CommandFailed(self.name, argv, status, stderr.decode(errors="replace"))
        return CommandResult(status, stdout, stderr)

    def _read_until(self, marker: bytes) -> tuple[bytes, int, int]:
        while True:
            found = self._buffer.find(marker)
            if found >= 0:
                end = self._buffer.find(b"\n", found + len(marker))
                if end >= 0:
                    stdout = self._buffer[:found]
                    status, stderr_size = self._buffer[found + len(marker) : end].split()
                    self._buffer = self._buffer[end + 1 :]
                    return stdout, int(status), int(stderr_size)
            self._receive()

    def _read_exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._receive()
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def _receive(self) -> None:
        chunk = self._channel.recv(65536)
        if not chunk:
            raise EOFError("the shell ended")
        self._buffer += chunk

    @property
    def alive(self) -> bool:
        """Its shell still runs, on a connection still up (a reconnected session leaves it behind)."""
        channel = self._channel
        transport = channel.get_transport()
        return (
            not (channel.closed or channel.exit_status_ready())
            and transport is not None
            and transport.is_active()
        )

    def close(self) -> None:
        self._channel.close()


class KeptShellSession(SSHSession):
    """An SSHSession whose plain commands (no stdin) run in one of up to `kept` shells it keeps open
    on the host; when all are busy, a command gets an SSH exec of its own, as with SSHSession."""

    def __init__(self, endpoint: SSHEndpoint, kept: int = 2) -> None:
        super().__init__(endpoint)
        self._kept = kept
        self._idle: list[RemoteShell] = []
        self._opened = 0
        self._shells_lock = threading.Lock()

    def run(
        self, argv: Sequence[str], *, input: bytes | None = None, timeout: float = 120.0, check: bool = True
    ) -> CommandResult:
        shell = self._borrow() if input is None else None
        if shell is None:
            return super().run(argv, input=input, timeout=timeout, check=check)
        try:
            result = shell.run(argv, timeout=timeout, check=False)
        except SSHError:
            self._forget(shell)
            raise
        with self._shells_lock:
            self._idle.append(shell)
        if check and result.exit_code != 0:
            raise CommandFailed(self.name, argv, result.exit_code, result.stderr.decode(errors="replace"))
        return result

    def _borrow(self) -> RemoteShell | None:
        with self._shells_lock:
            while self._idle:
                shell = self._idle.pop()
                if shell.alive:
                    return shell
                shell.close()
                self._opened -= 1
            if self._opened >= self._kept:
                return None
            self._opened += 1
        try:
            return RemoteShell(self)
        except SSHError:
            with self._shells_lock:
                self._opened -= 1
            raise

    def _forget(self, shell: RemoteShell) -> None:
        shell.close()
        with self._shells_lock:
            self._opened -= 1

    def close(self) -> None:
        with self._shells_lock:
            for shell in self._idle:
                shell.close()
            self._opened -= len(self._idle)
            self._idle = []
        super().close()
