"""Byte streams between two hosts, relayed through the operator's two SSH connections.

Hosts need not trust each other: the operator reads from a command on one host and writes into a
command on the other, so only the operator holds keys.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import paramiko

from ferry.hosts.ssh import CommandFailed, SSHSession

CHUNK = 1 << 20


class TransferFailed(RuntimeError):
    pass


def relay(
    source: SSHSession,
    producer: Sequence[str],
    target: SSHSession,
    consumer: Sequence[str],
    *,
    timeout: float = 600.0,
) -> int:
    """Pipes `producer` on source into `consumer` on target; returns the number of bytes moved."""
    reader = source.open(producer, timeout=timeout)
    writer = target.open(consumer, timeout=timeout)
    consumer_errors = _StderrCollector(writer)
    moved = 0
    try:
        while True:
            chunk = reader.recv(CHUNK)
            if not chunk:
                break
            writer.sendall(chunk)
            moved += len(chunk)
        writer.shutdown_write()
        producer_status = reader.recv_exit_status()
        producer_stderr = reader.makefile_stderr("rb").read().decode(errors="replace")
        consumer_status = writer.recv_exit_status()
    except (OSError, EOFError, paramiko.SSHException) as error:
        raise TransferFailed(
            f"stream from {source.name} to {target.name} broke after {moved} bytes: "
            f"{error or type(error).__name__}"
        ) from None
    finally:
        reader.close()
        writer.close()
    if producer_status != 0:
        raise CommandFailed(source.name, producer, producer_status, producer_stderr)
    if consumer_status != 0:
        raise CommandFailed(target.name, consumer, consumer_status, consumer_errors.text())
    return moved


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
