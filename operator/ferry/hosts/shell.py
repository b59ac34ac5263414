"""A shell kept open on a host, so that commands inside the freeze window cost no SSH exec each.

Every `ssh.run` starts the user's login shell on the host; on hosts whose root `.bashrc` is heavy that
costs 0.1-0.3 s per command. A migration opens one `sh` per host before the freeze and sends it one
command line at a time: arguments are joined with shlex (no value reaches the shell unquoted), stdin
is /dev/null, and each answer is framed by a marker line carrying the exit status and stderr's size.
"""

from __future__ import annotations

import secrets
import shlex
import threading
from collections.abc import Sequence

import paramiko

from ferry.hosts import host_calls
from ferry.hosts.ssh import CommandFailed, CommandResult, SSHError, SSHSession

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
        marker = f"ferry-{secrets.token_hex(8)}"
        line = (
            f'{{ {shlex.join(argv)} ; }} </dev/null 2>"$ferry_err"; '
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

    def close(self) -> None:
        self._channel.close()
