"""Specification of how ferry.hosts.ssh hands commands and keys to paramiko.

No SSH server is involved: SSHSession gets a fake transport that records the command line, and a
real local `sh -c` plays the remote shell to show that the recorded line runs nothing injected.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from ferry.hosts.ssh import SSHEndpoint, SSHError, SSHSession, load_private_key, parse_host_key

PRIVATE_KEY_SECRET = "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END"

HOSTILE_VALUES = [
    "x; touch MARKER",
    "$(touch MARKER)",
    "`touch MARKER`",
    "x && touch MARKER",
    "x || touch MARKER",
    "x | touch MARKER",
    "x > MARKER",
    "x\ntouch MARKER",
    "'; touch MARKER; '",
    '"; touch MARKER; "',
    "$HOME ${PATH} *",
    "",
]


class FakeChannel:
    def __init__(self) -> None:
        self.commands: list[str] = []
        self.timeout: float | None = None

    def settimeout(self, timeout: float | None) -> None:
        self.timeout = timeout

    def exec_command(self, command: str) -> None:
        self.commands.append(command)


class FakeTransport:
    def __init__(self, failure: Exception | None = None) -> None:
        self.channel = FakeChannel()
        self.failure = failure

    def open_session(self, timeout: float | None = None) -> FakeChannel:
        if self.failure is not None:
            raise self.failure
        return self.channel


class FakeTransportSession(SSHSession):
    """An SSHSession whose connection is a FakeTransport; nothing touches the network."""

    def __init__(self, fake: FakeTransport) -> None:
        super().__init__(endpoint())
        self.fake = fake

    def transport(self) -> paramiko.Transport:
        return cast(paramiko.Transport, self.fake)


def endpoint() -> SSHEndpoint:
    return SSHEndpoint(
        name="node-a",
        address="192.0.2.10",
        port=22,
        user="root",
        host_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
        private_key=PRIVATE_KEY_SECRET,
    )


def remote_command(argv: Sequence[str]) -> str:
    """The command line SSHSession.open sends for argv."""
    fake = FakeTransport()
    FakeTransportSession(fake).open(argv)
    assert len(fake.channel.commands) == 1
    return fake.channel.commands[0]


def run_as_remote_shell(command: str, cwd: Path) -> str:
    """Runs a command line the way sshd does (`sh -c LINE`) and returns its output."""
    result = subprocess.run(
        ["sh", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
    )
    return result.stdout


# -- SSHSession.open


def test_open_sends_the_shlex_joined_argv() -> None:
    argv = ["docker", "checkpoint", "create", "web; reboot", "ferry-1"]

    assert remote_command(argv) == shlex.join(argv)


def test_open_sends_plain_arguments_unchanged() -> None:
    assert remote_command(["criu", "check", "--all"]) == "criu check --all"


def test_open_sets_the_channel_timeout() -> None:
    fake = FakeTransport()

    FakeTransportSession(fake).open(["true"], timeout=12.5)

    assert fake.channel.timeout == 12.5


def test_open_returns_the_channel_it_started() -> None:
    fake = FakeTransport()

    channel = FakeTransportSession(fake).open(["true"])

    assert channel is cast(paramiko.Channel, fake.channel)


@pytest.mark.parametrize("failure", [paramiko.SSHException("gone"), OSError("reset"), EOFError()])
def test_open_reports_a_lost_connection_as_ssh_error_naming_the_host(failure: Exception) -> None:
    session = FakeTransportSession(FakeTransport(failure=failure))

    with pytest.raises(SSHError, match="lost the SSH connection to node-a"):
        session.open(["true"])


@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_shell_metacharacters_in_an_argument_run_nothing(value: str, tmp_path: Path) -> None:
    run_as_remote_shell(remote_command(["echo", value]), cwd=tmp_path)

    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_shell_metacharacters_in_an_argument_reach_the_command_literally(value: str, tmp_path: Path) -> None:
    output = run_as_remote_shell(remote_command(["echo", value]), cwd=tmp_path)

    assert output == value + "\n"


def test_every_argument_stays_one_argument(tmp_path: Path) -> None:
    argv = ["printf", "[%s]\\n", "two words", "", "a'b", 'c"d', "*"]

    output = run_as_remote_shell(remote_command(argv), cwd=tmp_path)

    assert output == "[two words]\n[]\n[a'b]\n[c\"d]\n[*]\n"


def test_control_unquoted_join_would_run_the_injected_command(tmp_path: Path) -> None:
    """Shows the harness can see an injection: without shlex.join the marker appears."""
    run_as_remote_shell(" ".join(["echo", "x; touch MARKER"]), cwd=tmp_path)

    assert (tmp_path / "MARKER").exists()


# -- parse_host_key


def ed25519_key_pair() -> tuple[str, str]:
    """A fresh (OpenSSH private key, OpenSSH public key) pair."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    return private, public


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "garbage",
        "ssh-ed25519",
        "not a key",
        "ssh-ed25519 ***",
        "ssh-ed25519 AAAA",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDx",
        "made-up-type AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
        "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
    ],
)
def test_parse_host_key_rejects_garbage_with_ssh_error(text: str) -> None:
    with pytest.raises(SSHError):
        parse_host_key(text)


def test_parse_host_key_reads_an_openssh_public_key_line() -> None:
    _, public = ed25519_key_pair()

    key = parse_host_key(public + " root@node-a")

    assert key.get_name() == "ssh-ed25519"
    assert key.get_base64() == public.split()[1]


# -- load_private_key


def test_load_private_key_reads_an_openssh_ed25519_key() -> None:
    private, public = ed25519_key_pair()

    key = load_private_key(private)

    assert isinstance(key, paramiko.Ed25519Key)
    assert key.get_base64() == public.split()[1]


def test_load_private_key_reads_an_ecdsa_key() -> None:
    private = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
        .decode()
    )

    assert load_private_key(private).get_name() == "ecdsa-sha2-nistp256"


@pytest.mark.parametrize("text", ["", "not a key", PRIVATE_KEY_SECRET])
def test_load_private_key_rejects_a_non_key_with_ssh_error(text: str) -> None:
    with pytest.raises(SSHError, match="not a private key"):
        load_private_key(text)


def test_load_private_key_error_does_not_echo_the_key() -> None:
    with pytest.raises(SSHError) as raised:
        load_private_key(PRIVATE_KEY_SECRET)

    assert "c2VjcmV0" not in str(raised.value)


# -- SSHEndpoint


def test_endpoint_repr_does_not_include_the_private_key() -> None:
    text = repr(endpoint())

    assert "c2VjcmV0" not in text
    assert "PRIVATE KEY" not in text
    assert "private_key" not in text


def test_endpoint_repr_still_names_the_host() -> None:
    text = repr(endpoint())

    assert "node-a" in text
    assert "192.0.2.10" in text
