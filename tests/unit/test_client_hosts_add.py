"""`ferry hosts add`: reads the host key (checked against --host-key when given), creates the Secret
and the DockerHost as kubectl would and says so; --dry-run prints them; bad input creates nothing."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import paramiko
import pytest
import yaml

from ferry.cli import parse_arguments
from ferry.client.host_registration import add_host_command, fingerprint, scan_host_keys
from ferry.client.kube import ClientError
from ferry.client.outcome import ExitCode
from ferry.hosts.peer_stream import new_key
from tests.unit.fakes import FakeMigrationApi

ED25519 = "ssh-ed25519 " + base64.b64encode(b"\0\0\0\x0bssh-ed25519\0\0\0\x20" + b"k" * 32).decode()
RSA = "ssh-rsa " + base64.b64encode(b"\0\0\0\x07ssh-rsa" + b"r" * 40).decode()


class Scanner:
    """Presents `keys` as the host's; records that it was asked."""

    def __init__(self, *keys: str) -> None:
        self.keys = list(keys)
        self.asked: list[tuple[str, int]] = []

    def __call__(self, address: str, port: int) -> list[str]:
        self.asked.append((address, port))
        return self.keys


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "id_ed25519"
    path.write_text(new_key("ferry-test")[0])
    return path


def add(
    api: FakeMigrationApi, key_file: Path, *options: str, scanner: Scanner | None = None
) -> tuple[ExitCode, str]:
    argv = ["hosts", "add", "node3", "--address", "10.0.0.3", "--ssh-key", str(key_file), *options]
    out = io.StringIO()
    code = add_host_command(parse_arguments(argv), api, out, scan=scanner or Scanner(RSA, ED25519))
    return code, out.getvalue()


def test_it_creates_the_secret_and_the_dockerhost_and_says_so_as_kubectl_does(key_file: Path) -> None:
    api = FakeMigrationApi()

    code, printed = add(api, key_file, "--docker-socket", "/run/docker.sock")

    assert code == ExitCode.SUCCEEDED
    assert printed == "secret/ferry-ssh-node3 created\ndockerhost.ferry.dev/node3 created\n"
    secret = api.secrets["ferry-system", "ferry-ssh-node3"]
    assert base64.b64decode(secret["data"]["id_ed25519"]).decode() == key_file.read_text()
    [host] = api.hosts
    assert host["metadata"] == {"name": "node3"}
    assert host["spec"] == {
        "address": "10.0.0.3",
        "port": 22,
        "user": "root",
        "sshKeySecretRef": {"name": "ferry-ssh-node3", "namespace": "ferry-system", "key": "id_ed25519"},
        "hostKey": ED25519,  # preferred over the RSA key the host also presents
        "dockerSocket": "/run/docker.sock",
    }


def test_the_host_key_read_is_reported_with_its_fingerprint_when_none_was_given(
    key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    add(FakeMigrationApi(), key_file)

    assert (
        f"pinning the host key {fingerprint(ED25519)} that 10.0.0.3:22 presented" in capsys.readouterr().err
    )


def test_a_host_key_given_is_the_one_pinned_when_the_host_presents_it(key_file: Path) -> None:
    api = FakeMigrationApi()

    add(api, key_file, "--host-key", f"{RSA} root@node3")

    assert api.hosts[0]["spec"]["hostKey"] == RSA


def test_a_host_that_does_not_present_the_key_given_is_refused_and_nothing_is_created(key_file: Path) -> None:
    api = FakeMigrationApi()

    with pytest.raises(ClientError, match="does not present the --host-key given"):
        add(api, key_file, "--host-key", ED25519, scanner=Scanner(RSA))

    assert (api.secrets, api.hosts) == ({}, [])


def test_dry_run_prints_the_secret_and_the_dockerhost_and_creates_nothing(key_file: Path) -> None:
    api = FakeMigrationApi()

    _, printed = add(api, key_file, "--dry-run", "--secret-namespace", "ops")

    secret, host = yaml.safe_load_all(printed)
    assert (secret["kind"], secret["metadata"]["namespace"]) == ("Secret", "ops")
    assert (host["kind"], host["spec"]["sshKeySecretRef"]["namespace"]) == ("DockerHost", "ops")
    assert (api.secrets, api.hosts) == ({}, [])


def test_a_dockerhost_refused_takes_its_new_secret_with_it(key_file: Path) -> None:
    api = FakeMigrationApi(hosts=[{"metadata": {"name": "node3"}, "spec": {}}])

    with pytest.raises(ClientError, match="already exists"):
        add(api, key_file)

    assert api.secrets == {}


@pytest.mark.parametrize(
    "options",
    [
        ("--address", "-oProxyCommand=touch /tmp/x"),
        ("--port", "0"),
        ("--user", "Root; rm"),
        ("--docker-socket", "run/docker.sock"),
        ("--host-key", "not a key"),
    ],
)
def test_what_the_dockerhost_schema_refuses_is_refused_before_the_host_is_scanned(
    key_file: Path, options: tuple[str, str]
) -> None:
    scanner = Scanner(ED25519)

    with pytest.raises(ClientError, match=f"not valid for a DockerHost: {options[0]}"):
        add(FakeMigrationApi(), key_file, *options, scanner=scanner)

    assert scanner.asked == []


def test_a_key_file_the_operator_could_not_use_is_refused(tmp_path: Path) -> None:
    encrypted = tmp_path / "id_rsa"
    paramiko.RSAKey.generate(1024).write_private_key_file(str(encrypted), password="secret")
    api = FakeMigrationApi()

    with pytest.raises(ClientError, match="not an unencrypted private key"):
        add(api, encrypted)

    assert api.secrets == {}


def test_the_fingerprint_is_the_one_ssh_keygen_shows() -> None:
    key = paramiko.PKey.from_type_string("ssh-ed25519", base64.b64decode(ED25519.split()[1]))

    assert fingerprint(ED25519) == f"ssh-ed25519 {key.fingerprint}"


def fake_keyscan(directory: Path, monkeypatch: pytest.MonkeyPatch, *lines: str) -> None:
    """An ssh-keyscan first on the PATH that runs the shell `lines`, whatever it is asked."""
    fake = directory / "ssh-keyscan"
    fake.write_text("#!/bin/sh\n" + "".join(f"{line}\n" for line in lines))
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{directory}{os.pathsep}{os.environ['PATH']}")


def test_the_scan_reads_every_key_ssh_keyscan_prints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_keyscan(
        tmp_path,
        monkeypatch,
        "echo '# 10.0.0.3:22 SSH-2.0-OpenSSH_9.2' >&2",
        f"echo '10.0.0.3 {ED25519}'",
        f"echo '10.0.0.3 {RSA}'",
    )

    assert scan_host_keys("10.0.0.3", 22) == [ED25519, RSA]


def test_a_host_that_presents_no_key_says_what_ssh_keyscan_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_keyscan(tmp_path, monkeypatch, "echo '10.0.0.3: Connection refused' >&2")

    with pytest.raises(
        ClientError, match=r"no SSH host key read from 10.0.0.3:2222 \(10.0.0.3: Connection refused\)"
    ):
        scan_host_keys("10.0.0.3", 2222)
