"""Byte streams between two hosts, relayed through the operator's two SSH connections.

Hosts need not trust each other: the operator reads from a command on one host and writes into a
command on the other, so only the operator holds keys.
"""

from __future__ import annotations

import shlex
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import paramiko

from ferry.hosts import host_calls
from ferry.hosts.errors import HostError, last_line
from ferry.hosts.ssh import CommandFailed, SSHSession

CHUNK = 1 << 20


class TransferFailed(HostError):
    pass


Moved = Callable[[int], None]  # told the number of bytes a stream has moved so far


class Stream(Protocol):
    """Bytes from a command on one host into a command on another, set up before it is fired."""

    def fire(self, progress: Moved | None = None) -> int:
        """Streams everything; returns the number of bytes moved. `progress` is told the bytes moved
        so far as often as the stream knows them (through the operator: at every chunk)."""
        ...

    def close(self) -> None: ...


# Says "ready", then runs the producer only once a line arrives on stdin: the session (and the host's
# login shell, slow on some hosts) is set up before the freeze.
WAIT_FOR_GO = ["sh", "-c", 'echo ready && read -r _ && exec "$@"', "ferry-armed"]
READY = b"ready\n"
READY_SECONDS = 60.0


def wait_until_ready(channel: paramiko.Channel, host: str) -> None:
    """Reads the "ready" line an armed command prints once it waits for "go" (nothing more)."""
    channel.settimeout(READY_SECONDS)
    received = b""
    try:
        while not received.endswith(READY):
            byte = channel.recv(1)
            if not byte:
                said = last_line(channel.makefile_stderr("rb").read())
                raise TransferFailed(f"an armed command on {host} ended before it was ready: {said}")
            received += byte
    except TimeoutError:
        raise TransferFailed(
            f"an armed command on {host} was not ready within {READY_SECONDS:.0f}s"
        ) from None


@dataclass(frozen=True)
class Pipe:
    """What a stream moves: `producer`'s output on the source host into `consumer` on the target."""

    source: SSHSession
    producer: list[str]
    target: SSHSession
    consumer: list[str]

    def __str__(self) -> str:
        return f"{self.source.name} to {self.target.name}"


class Relay:
    """Pipes `producer` on source into `consumer` on target; only the operator holds keys for both.

    `timeout` bounds every wait for progress (a dead link or host shows up as a stall, not a hang).

    With `armed=True` both remote commands start at once but the producer waits for `fire()`: the
    cost of opening SSH sessions (and whatever the hosts' shells do at start) is paid before the
    workload is frozen, not during its downtime.
    """

    def __init__(self, pipe: Pipe, *, armed: bool = False, timeout: float = 30.0) -> None:
        self.pipe = pipe
        source, target = pipe.source, pipe.target
        self._armed = armed
        self._timeout = timeout
        self._writer = target.open(pipe.consumer, timeout=timeout)
        self._consumer_errors = _StderrCollector(self._writer)
        self._reader = source.open(
            [*WAIT_FOR_GO, *pipe.producer] if armed else pipe.producer, timeout=timeout
        )
        if armed:
            wait_until_ready(self._reader, source.name)
            self._reader.settimeout(timeout)

    def fire(self, progress: Moved | None = None) -> int:
        """Streams everything; returns the number of bytes moved, telling `progress` at every chunk."""
        reader, writer = self._reader, self._writer
        moved = 0
        try:
            host_calls.starting()
            if self._armed:
                reader.sendall(b"go\n")
            reader.shutdown_write()
            while chunk := reader.recv(CHUNK):
                writer.sendall(chunk)
                moved += len(chunk)
                if progress is not None:
                    progress(moved)
            writer.shutdown_write()
            producer_status = exit_status(reader, self._timeout)
            producer_stderr = reader.makefile_stderr("rb").read().decode(errors="replace")
            consumer_status = exit_status(writer, self._timeout)
        except (OSError, EOFError, paramiko.SSHException) as error:
            raise TransferFailed(
                f"stream from {self.pipe} broke after {moved} bytes: {error or type(error).__name__}"
            ) from None
        finally:
            self.close()
        host_calls.completed(str(self.pipe), "stream ended", self.pipe.producer)
        if producer_status != 0:
            raise CommandFailed(self.pipe.source.name, self.pipe.producer, producer_status, producer_stderr)
        if consumer_status != 0:
            raise CommandFailed(
                self.pipe.target.name, self.pipe.consumer, consumer_status, self._consumer_errors.text()
            )
        return moved

    def close(self) -> None:
        """Ends both commands (an armed producer that never fired exits without running)."""
        self._reader.close()
        self._writer.close()


@dataclass(frozen=True)
class Ended:
    status: int
    stdout: bytes
    stderr: bytes


class ArmedCommand:
    """A remote command started before the freeze that says "ready", then waits for "go" on its
    stdin: the freeze pays neither for the SSH session nor for the host's shell starting."""

    def __init__(
        self, ssh: SSHSession, argv: list[str], *, label: str | None = None, timeout: float = 900
    ) -> None:
        self.ssh = ssh
        self.argv = argv
        self._timeout = timeout
        self._channel = ssh.open(argv, timeout=timeout)
        wait_until_ready(self._channel, label or ssh.name)
        self._channel.settimeout(timeout)

    def fire(self) -> Ended:
        """Lets it run to its end; a lost session raises OSError, EOFError or TimeoutError."""
        channel = self._channel
        try:
            host_calls.starting()
            channel.sendall(b"go\n")
            channel.shutdown_write()
            stdout = channel.makefile("rb").read()
            stderr = channel.makefile_stderr("rb").read()
            ended = Ended(exit_status(channel, self._timeout), stdout, stderr)
        finally:
            channel.close()
        host_calls.completed(self.ssh.name, "ssh ended", self.argv)
        return ended

    def fire_until(self, line: bytes) -> Ended | None:
        """Lets it run until it prints `line` (None: the session is closed, the command goes on by
        itself) or ends first (its end); a lost session raises OSError, EOFError or TimeoutError."""
        channel = self._channel
        try:
            host_calls.starting()
            channel.sendall(b"go\n")
            channel.shutdown_write()
            stdout = channel.makefile("rb")
            printed = b""
            while output := stdout.readline():
                printed += output
                if output == line:
                    return None
            stderr = channel.makefile_stderr("rb").read()
            return Ended(exit_status(channel, self._timeout), printed, stderr)
        finally:
            channel.close()

    def close(self) -> None:
        self._channel.close()

    def __repr__(self) -> str:
        return f"ArmedCommand({self.ssh.name}: {shlex.join(self.argv[:2])} ...)"


def exit_status(channel: paramiko.Channel, timeout: float) -> int:
    if not channel.status_event.wait(timeout):
        raise TimeoutError(f"no exit status after {timeout:.0f}s")
    return channel.recv_exit_status()


class _StderrCollector:
    """Drains a consumer's stderr while we write its stdin, so a chatty error cannot stall it."""

    def __init__(self, channel: paramiko.Channel) -> None:
        self._chunks: list[bytes] = []
        self._thread = threading.Thread(target=self._read, args=(channel,), daemon=True)
        self._thread.start()

    def _read(self, channel: paramiko.Channel) -> None:
        try:
            while data := channel.recv_stderr(65536):
                self._chunks.append(data)
        except (OSError, EOFError):
            return

    def text(self) -> str:
        self._thread.join(timeout=5)
        return b"".join(self._chunks).decode(errors="replace")
