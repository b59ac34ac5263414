"""`ferry hosts add`: registers a Docker host. It reads the host's SSH key with ssh-keyscan (and
checks it against --host-key when one is given), then creates the Secret holding the private key
and the DockerHost that pins the host key, as `kubectl create` would, saying what it created;
`--dry-run` prints them instead."""

from __future__ import annotations

import argparse
import base64
import hashlib
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from ferry.api import ABSOLUTE_PATH, GROUP, HOST_KEY, HOST_NAME, VERSION
from ferry.client.kube import ClientError, MigrationApi
from ferry.client.outcome import ExitCode
from ferry.hosts.ssh import SSHError, load_private_key
from ferry.lease import OPERATOR_NAMESPACE

# As the DockerHost schema has them: checked here too, so that ssh-keyscan is never handed an option.
ADDRESS = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.:-]*[A-Za-z0-9])?$")
USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
SECRET_KEY = "id_ed25519"  # the DockerHost's default sshKeySecretRef.key
# The key pinned when the host has several: the type paramiko (the operator's SSH) prefers first.
KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa")
SCAN_SECONDS = 10

Scan = Callable[[str, int], list[str]]  # (address, port) -> the host keys presented there


@dataclass(frozen=True)
class HostRegistration:
    name: str
    address: str
    port: int
    user: str
    private_key: str
    host_key: str  # "TYPE BASE64", as the host presented it
    secret_namespace: str
    docker_socket: str | None = None

    @property
    def secret_name(self) -> str:
        return f"ferry-ssh-{self.name}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="the DockerHost's name, which Migrations use")
    parser.add_argument("--address", required=True, help="the host's sshd: a host name or IP address")
    parser.add_argument("--port", type=int, default=22, help="the sshd's port (default 22)")
    parser.add_argument("--user", default="root", help="the SSH user, with root's rights (default root)")
    parser.add_argument(
        "--ssh-key", required=True, metavar="FILE", help="the private key that user accepts (OpenSSH format)"
    )
    parser.add_argument(
        "--docker-socket", metavar="PATH", help="the Engine's socket (default /var/run/docker.sock)"
    )
    parser.add_argument(
        "--host-key",
        metavar="KEY",
        help="the host key to expect ('TYPE BASE64'): the one the host presents must be it",
    )
    parser.add_argument(
        "--secret-namespace",
        default=OPERATOR_NAMESPACE,
        help=f"where the Secret goes; the operator must read Secrets there (default {OPERATOR_NAMESPACE})",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the Secret and DockerHost, create nothing"
    )


def check_arguments(args: argparse.Namespace) -> None:
    """What the DockerHost schema would refuse, refused before anything is read or made."""
    valid = {
        "NAME": HOST_NAME.fullmatch(args.name),
        "--address": ADDRESS.fullmatch(args.address),
        "--port": 1 <= args.port <= 65535,
        "--user": USER.fullmatch(args.user),
        "--docker-socket": args.docker_socket is None or ABSOLUTE_PATH.fullmatch(args.docker_socket),
        "--host-key": args.host_key is None or HOST_KEY.fullmatch(args.host_key),
    }
    wrong = [option for option, holds in valid.items() if not holds]
    if wrong:
        raise ClientError(
            f"not valid for a DockerHost: {', '.join(wrong)} (see kubectl explain dockerhost.spec)"
        )


def scan_host_keys(address: str, port: int) -> list[str]:
    """The host keys ("TYPE BASE64") the sshd at address:port presents, as ssh-keyscan reads them."""
    try:
        scanned = subprocess.run(
            ["ssh-keyscan", "-T", str(SCAN_SECONDS), "-p", str(port), "--", address],
            capture_output=True,
            text=True,
            timeout=SCAN_SECONDS * 3,
        )
    except FileNotFoundError:
        raise ClientError("ssh-keyscan is not installed (it comes with the OpenSSH client)") from None
    except subprocess.TimeoutExpired:
        raise ClientError(f"ssh-keyscan got no answer from {address}:{port}") from None
    keys = [
        " ".join(fields[1:3])
        for line in scanned.stdout.splitlines()
        if not line.startswith("#") and len(fields := line.split()) >= 3
    ]
    if not keys:
        said = scanned.stderr.strip().splitlines()
        raise ClientError(f"no SSH host key read from {address}:{port} ({said[-1] if said else 'no answer'})")
    return keys


def pinned_key(presented: list[str], expected: str | None, address: str) -> str:
    """The key to pin: the one expected, if the host presents it; else the type preferred first."""
    if expected is not None:
        wanted = " ".join(expected.split()[:2])
        if wanted not in presented:
            raise ClientError(
                f"{address} does not present the --host-key given ({fingerprint(wanted)}; it presents "
                f"{', '.join(map(fingerprint, presented))}): is it the host you mean?"
            )
        return wanted
    ranked = sorted(presented, key=lambda key: _rank(key.split()[0]))
    if _rank(ranked[0].split()[0]) == len(KEY_TYPES):
        raise ClientError(f"{address} presents no host key of a type ferry pins ({', '.join(KEY_TYPES)})")
    return ranked[0]


def _rank(key_type: str) -> int:
    return KEY_TYPES.index(key_type) if key_type in KEY_TYPES else len(KEY_TYPES)


def fingerprint(key: str) -> str:
    """'ssh-ed25519 SHA256:...', as ssh-keygen -l shows a key."""
    key_type, blob = key.split()[:2]
    digest = base64.b64encode(hashlib.sha256(base64.b64decode(blob)).digest()).decode().rstrip("=")
    return f"{key_type} SHA256:{digest}"


def read_private_key(path: str) -> str:
    """The key file's text, once the operator's SSH could use it (unencrypted, of a known type)."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise ClientError(f"cannot read --ssh-key {path}: {error}") from None
    try:
        load_private_key(text)
    except SSHError:
        raise ClientError(
            f"--ssh-key {path} is not an unencrypted private key the operator can use"
        ) from None
    return text


def secret_manifest(registration: HostRegistration) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": registration.secret_name, "namespace": registration.secret_namespace},
        "type": "Opaque",
        "data": {SECRET_KEY: base64.b64encode(registration.private_key.encode()).decode()},
    }


def docker_host_manifest(registration: HostRegistration) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "address": registration.address,
        "port": registration.port,
        "user": registration.user,
        "sshKeySecretRef": {
            "name": registration.secret_name,
            "namespace": registration.secret_namespace,
            "key": SECRET_KEY,
        },
        "hostKey": registration.host_key,
    }
    if registration.docker_socket is not None:
        spec["dockerSocket"] = registration.docker_socket
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DockerHost",
        "metadata": {"name": registration.name},
        "spec": spec,
    }


def add_host_command(
    args: argparse.Namespace, api: MigrationApi, out: TextIO, *, scan: Scan = scan_host_keys
) -> ExitCode:
    """`scan(address, port)` reads the host's keys (ssh-keyscan, unless a test gives another)."""
    check_arguments(args)
    host_key = pinned_key(scan(args.address, args.port), args.host_key, args.address)
    if args.host_key is None:
        print(
            f"pinning the host key {fingerprint(host_key)} that {args.address}:{args.port} presented "
            "(compare it with `ssh-keygen -lf` of the host's key, or give --host-key)",
            file=sys.stderr,
        )
    registration = HostRegistration(
        name=args.name,
        address=args.address,
        port=args.port,
        user=args.user,
        private_key=read_private_key(args.ssh_key),
        host_key=host_key,
        secret_namespace=args.secret_namespace,
        docker_socket=args.docker_socket,
    )
    secret, host = secret_manifest(registration), docker_host_manifest(registration)
    if args.dry_run:
        print(yaml.safe_dump_all([secret, host], sort_keys=False).rstrip("\n"), file=out)
        return ExitCode.SUCCEEDED
    api.create_secret(secret)
    print(f"secret/{registration.secret_name} created", file=out)
    try:
        api.create_docker_host(host)
    except ClientError:
        api.delete_secret(registration.secret_namespace, registration.secret_name)
        print(f"secret/{registration.secret_name} deleted", file=out)
        raise
    print(f"dockerhost.{GROUP}/{registration.name} created", file=out)
    return ExitCode.SUCCEEDED
