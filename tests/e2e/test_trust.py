"""Host trust: pinned host keys, private keys kept secret, namespaces, checkpoint files, quoting."""

from __future__ import annotations

import base64
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.lab import REPO, Counter, Lab, OperatorProcess, host_path, unique

LAB = REPO / ".lab"


def host_key(host: str) -> str:
    return " ".join((LAB / "hosts" / host / "ssh_host_ed25519_key.pub").read_text().split()[:2])


@pytest.fixture
def extra_host(lab: Lab) -> Iterator[Any]:
    """Registers DockerHosts for one test and removes them afterwards."""
    created: list[str] = []

    def register(name: str, **spec: Any) -> None:
        body = {
            "apiVersion": "ferry.dev/v1alpha1",
            "kind": "DockerHost",
            "metadata": {"name": name},
            "spec": {
                "address": lab.address("node2"),
                "hostKey": host_key("node2"),
                "sshKeySecretRef": {"name": "ferry-ssh", "namespace": "ferry-system", "key": "id_ed25519"},
                "dockerSocket": "/run/ferry-lab/node2/docker.sock",
                **spec,
            },
        }
        lab.kubectl("apply", "-f", "-", input=yaml.safe_dump(body))
        created.append(name)

    yield register
    for name in created:
        lab.kubectl("delete", "dockerhost", name, "--ignore-not-found")


def test_a_host_presenting_another_key_is_refused(
    lab: Lab, operator: OperatorProcess, extra_host: Any
) -> None:
    impostor = unique("impostor")
    extra_host(impostor, hostKey=host_key("node1"))  # node2's address, node1's key
    counter, name = Counter(lab), unique("mig-impostor")
    lab.migration(name, counter.name, target=impostor)
    status = lab.wait_until(name)["status"]
    assert status["phase"] == "Failed"
    assert "not the one pinned" in status["message"]
    assert counter.assert_runs_once_and_continuous() == "node1"
    assert counter.name not in lab.container_names("node2")


def test_a_host_refuses_migrations_from_namespaces_it_does_not_allow(
    lab: Lab, operator: OperatorProcess, extra_host: Any
) -> None:
    restricted = unique("restricted")
    extra_host(restricted, allowedNamespaces=["team-a"])
    counter, name = Counter(lab), unique("mig-namespace")
    lab.migration(name, counter.name, target=restricted)
    status = lab.wait_until(name)["status"]
    assert status["phase"] == "Failed"
    assert "does not allow Migrations from namespace 'default'" in status["message"]
    assert counter.assert_runs_once_and_continuous() == "node1"


def test_shell_metacharacters_in_every_free_string_run_nothing(
    lab: Lab, operator: OperatorProcess, extra_host: Any
) -> None:
    """What admission lets through (the Secret key name, the host key comment) never reaches a shell."""
    marker = Path("/tmp") / unique("ferry-injected")
    evil = unique("evil")
    extra_host(
        evil,
        hostKey=f"{host_key('node2')} $(touch {marker}-comment);touch {marker}-comment2",
        sshKeySecretRef={"name": "ferry-ssh", "namespace": "ferry-system", "key": f"k;touch {marker}-key"},
    )
    counter, name = Counter(lab), unique("mig-evil")
    lab.migration(name, counter.name, target=evil)
    status = lab.wait_until(name)["status"]
    assert status["phase"] == "Failed"
    everywhere = [
        Path("/tmp"),
        *(host_path(host, "/tmp") for host in lab.hosts),
    ]  # the operator's, the hosts'
    assert not [found for tmp in everywhere for found in tmp.glob(f"{marker.name}*")], (
        "an injected command ran"
    )
    assert counter.assert_runs_once_and_continuous() == "node1"


def test_private_key_never_appears_in_logs_status_or_events(lab: Lab, operator: OperatorProcess) -> None:
    key_lines = (LAB / "ssh" / "id_ed25519").read_text().splitlines()[1:-1]
    secret_material = [line for line in key_lines if len(line) > 20]
    assert secret_material
    encoded = base64.b64encode((LAB / "ssh" / "id_ed25519").read_bytes()).decode()
    haystacks = {
        "operator log": operator.log(),
        "migrations": lab.kubectl("get", "migrations", "-A", "-o", "yaml").stdout,
        "dockerhosts": lab.kubectl("get", "dockerhosts", "-o", "yaml").stdout,
        "events": lab.kubectl("get", "events", "-A", "-o", "yaml").stdout,
    }
    for where, text in haystacks.items():
        assert not any(line in text for line in secret_material), f"key material in {where}"
        assert encoded[:40] not in text, f"encoded key in {where}"


def test_kept_checkpoint_is_readable_by_root_only(lab: Lab, operator: OperatorProcess) -> None:
    counter, name = Counter(lab), unique("mig-keep")
    lab.migration(name, counter.name, target="node2", keepCheckpoint=True)
    status = lab.wait_until(name)["status"]
    assert status["phase"] == "Succeeded", status
    container_dir = LAB / "hosts" / "node2" / "docker" / "containers" / status["targetContainerID"]
    checkpoint = container_dir / "checkpoints" / status["checkpointName"]
    assert (
        checkpoint.is_dir() and "checkpointInMemory" not in status
    )  # kept: on the disk, where Docker keeps them
    for path in (checkpoint, checkpoint.parent):
        info = path.stat()
        assert info.st_uid == 0 and stat.S_IMODE(info.st_mode) & 0o077 == 0, f"{path} is {oct(info.st_mode)}"
    assert counter.assert_runs_once_and_continuous() == "node2"


def test_checkpoints_are_removed_after_success(lab: Lab, operator: OperatorProcess) -> None:
    counter, name = Counter(lab), unique("mig-clean")
    lab.migration(name, counter.name, target="node2")
    status = lab.wait_until(name)["status"]
    assert status["phase"] == "Succeeded", status
    checkpoints = (
        LAB / "hosts" / "node2" / "docker" / "containers" / status["targetContainerID"] / "checkpoints"
    )
    assert not checkpoints.exists() or not os.listdir(checkpoints)
    assert not (LAB / "hosts" / "node1" / "docker" / "containers" / status["sourceContainerID"]).exists()


def test_an_unknown_host_fails_before_anything_changes(lab: Lab, operator: OperatorProcess) -> None:
    counter, name = Counter(lab), unique("mig-unknown-host")
    before = lab.container_names("node2")
    lab.migration(name, counter.name, target="no-such-host")
    status = lab.wait_until(name)["status"]
    assert status["phase"] == "Failed"
    assert "DockerHost 'no-such-host', which does not exist" in status["message"]
    assert counter.assert_runs_once_and_continuous() == "node1"
    assert lab.container_names("node2") == before
