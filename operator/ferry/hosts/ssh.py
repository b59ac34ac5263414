"""One lazy, pinned-host-key SSH connection to a host, and commands run through it.

Commands are given as argument lists and joined with shlex, so no value ever reaches the remote
shell unquoted. The private key is parsed in memory; it is never written to disk or logged.
"""

from __future__ import annotations

import base64
import io
import shlex
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import paramiko

from ferry.hosts import host_calls
from ferry.hosts.errors import HostError, last_line

DEAD_LINK_SECONDS = 15


class SSHError(HostError):
    """The host could not be reached or refused us."""


class HostKeyMismatch(SSHError):
    """The host presented a key other than the pinned one."""


class CommandFailed(HostError):
    def __init__(self, host: str, argv: Sequence[str], exit_code: int, stderr: str) -> None:
        self.exit_code = exit_code
        self.stderr = stderr
        super().__init__(f"`{shlex.join(argv)}` on {host} exited {exit_code}: {last_line(stderr)}")


@dataclass(frozen=True)
class SSHEndpoint:
    name: str
    address: str
    port: int
    user: str
    host_key: str  # "TYPE BASE64 [comment]"
    private_key: str = field(repr=False)


@dataclass(frozen=True)
class CommandResult:
    exit_code: int
    stdout: bytes
    stderr: bytes

    @property
    def text(self) -> str:
        return self.stdout.decode(errors="replace")


class Commands(Protocol):
    """Something that runs commands on a host: its SSH session, or a shell kept open there."""

    @property
    def name(self) -> str: ...

    def run(
        self, argv: Sequence[str], *, input: bytes | None = None, timeout: float = 120.0, check: bool = True
    ) -> CommandResult: ...


def load_private_key(text: str) -> paramiko.PKey:
    """Parses an OpenSSH/PEM private key of any type paramiko supports."""
    for key_class in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return key_class.from_private_key(io.StringIO(text))
        except (paramiko.SSHException, ValueError):
            continue
    raise SSHError("the SSH key in the Secret is not a private key paramiko can read")


def parse_host_key(text: str) -> paramiko.PKey:
    parts = text.split()
    if len(parts) < 2:
        raise SSHError(f"host key {text!r} is not 'TYPE BASE64'")
    try:
        return paramiko.PKey.from_type_string(parts[0], base64.b64decode(parts[1]))
    except Exception as error:
        raise SSHError(f"host key {parts[0]} cannot be parsed: {error}") from error


class SSHSession:
    """A connection opened on first use and kept warm; safe to share between threads."""

    def __init__(self, endpoint: SSHEndpoint, connect_timeout: float = 10.0) -> None:
        self.endpoint = endpoint
        self.connect_timeout = connect_timeout
        self._client: paramiko.SSHClient | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.endpoint.name

    def transport(self) -> paramiko.Transport:
        with self._lock:
            if self._client is not None:
                transport = self._client.get_transport()
                if transport is not None and transport.is_active():
                    return transport
                self._client.close()
            self._client = self._connect()
            transport = self._client.get_transport()
            assert transport is not None
            return transport

    def _connect(self) -> paramiko.SSHClient:
        endpoint = self.endpoint
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        known_as = endpoint.address if endpoint.port == 22 else f"[{endpoint.address}]:{endpoint.port}"
        pinned = parse_host_key(endpoint.host_key)
        client.get_host_keys().add(known_as, pinned.get_name(), pinned)
        try:
            client.connect(
                endpoint.address,
                sock=self._open_socket(),
                port=endpoint.port,
                username=endpoint.user,
                pkey=load_private_key(endpoint.private_key),
                timeout=self.connect_timeout,
                banner_timeout=self.connect_timeout,
                auth_timeout=self.connect_timeout,
                allow_agent=False,
                look_for_keys=False,
            )
        except paramiko.BadHostKeyException as error:
            raise HostKeyMismatch(
                f"host {endpoint.name} ({endpoint.address}) presented a {error.key.get_name()} key "
                "that is not the one pinned in its DockerHost spec.hostKey; refusing to connect"
            ) from None
        except (TimeoutError, paramiko.SSHException, OSError) as error:
            raise SSHError(
                f"cannot reach host {endpoint.name} over SSH at {endpoint.address}:{endpoint.port}: {error}"
            ) from None
        transport = client.get_transport()
        assert transport is not None
        transport.set_keepalive(15)
        return client

    def _open_socket(self) -> socket.socket:
        """A TCP connection that fails within seconds when the link dies, instead of retrying for
        many minutes: unacknowledged data times out (TCP_USER_TIMEOUT) and idle peers are probed."""
        endpoint = self.endpoint
        sock = socket.create_connection((endpoint.address, endpoint.port), timeout=self.connect_timeout)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, DEAD_LINK_SECONDS // 3)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, DEAD_LINK_SECONDS // 6)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, DEAD_LINK_SECONDS * 1000)
        return sock

    def open(
        self, argv: Sequence[str], timeout: float | None = None, *, counted: bool = True
    ) -> paramiko.Channel:
        """Starts a command and returns its channel (stdin, stdout and stderr as streams). Not
        `counted` as a host call of its own when what goes over it is (a command's end, the Docker
        Engine's requests)."""
        host_calls.starting()
        transport = self.transport()
        try:
            channel = transport.open_session(timeout=self.connect_timeout)
            channel.settimeout(timeout)
            channel.exec_command(shlex.join(argv))
        except (paramiko.SSHException, OSError, EOFError) as error:
            raise SSHError(
                f"lost the SSH connection to {self.name}: {error or type(error).__name__}"
            ) from None
        if counted:
            host_calls.completed(self.name, "ssh started", argv)
        return channel

    def run(
        self, argv: Sequence[str], *, input: bytes | None = None, timeout: float = 120.0, check: bool = True
    ) -> CommandResult:
        channel = self.open(argv, timeout=timeout, counted=False)
        try:
            if input is not None:
                channel.sendall(input)
            channel.shutdown_write()
            stdout, stderr = _drain(channel)
            if not channel.status_event.wait(timeout):
                raise TimeoutError
            exit_code = channel.recv_exit_status()
        except TimeoutError:
            raise SSHError(f"`{shlex.join(argv)}` on {self.name} took longer than {timeout:.0f}s") from None
        finally:
            channel.close()
        host_calls.completed(self.name, "ssh", argv)
        if check and exit_code != 0:
            raise CommandFailed(self.name, argv, exit_code, stderr.decode(errors="replace"))
        return CommandResult(exit_code, stdout, stderr)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


def _drain(channel: paramiko.Channel) -> tuple[bytes, bytes]:
    """Reads a finished command's output; stderr is small for every command ferry runs."""
    stdout = channel.makefile("rb").read()
    stderr = channel.makefile_stderr("rb").read()
    return stdout, stderr
