"""A DockerHost's health: what the probe checks (SSH, Docker and its experimental features, CRIU's
version and `criu check`, the fast path's parts), the Ready condition it writes, and its reason."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import pytest

from ferry.hosts import health
from ferry.hosts.docker_engine import DockerEngine, DockerError
from ferry.hosts.docker_host import DockerHost
from ferry.hosts.health import Part
from ferry.hosts.runc import FastPathConfig, RuncHost
from ferry.hosts.ssh import CommandResult, SSHSession
from ferry.reconcile import HostPool, probe_docker_host
from tests.unit.fakes import FakeHost, FakeHosts, host_spec
from tests.unit.test_crds import schema, undeclared


def probed(host: FakeHost) -> health.Health:
    return health.probe(cast(DockerHost, host))


def reasons(found: health.Health) -> list[str]:
    return [fault.reason for fault in found.faults]


def test_a_healthy_host_is_ready_and_says_what_it_runs() -> None:
    found = probed(FakeHost("node1", []))

    assert found.ready
    assert (found.kernel, found.docker_version, found.criu_version) == ("6.1.0", "20.10.24", "4.2")
    assert "Docker 20.10.24" in found.message and "CRIU 4.2" in found.message


def test_a_host_without_ssh_is_unreachable_and_nothing_else_is_asked() -> None:
    host = FakeHost("node1", [])
    host.reachable = False

    found = probed(host)

    assert reasons(found) == ["Unreachable"]
    assert "cannot reach host node1 over SSH" in found.message
    assert found.kernel == ""


def test_a_host_whose_dockerd_is_down_says_so_and_its_criu_is_still_checked() -> None:
    host = FakeHost("node1", [])
    host.engine.failing["version"] = DockerError("docker version on node1: cannot reach the Docker Engine")
    host.criu_check = (1, "Error: no tun")

    found = probed(host)

    assert reasons(found) == ["DockerUnavailable", "CRIUCheckFailed"]
    assert found.faults[0].part is Part.DOCKER
    assert "Docker does not answer: docker version on node1" in found.message


def test_docker_without_experimental_features_cannot_checkpoint() -> None:
    host = FakeHost("node1", [])
    host.engine.experimental = False

    found = probed(host)

    assert [(fault.part, fault.reason) for fault in found.faults] == [
        (Part.CHECKPOINTS, "DockerNotExperimental")
    ]
    assert '"experimental": true' in found.message


@pytest.mark.parametrize(
    ("version", "check", "reason"),
    [
        ("4.2", (127, "criu: not found"), "CRIUMissing"),
        ("4.1.1", (0, "Looks good."), "CRIUTooOld"),
        ("3.17", (0, "Looks good."), "CRIUTooOld"),
        ("4.2", (1, "Warn: no userfaultfd\nError: no tun"), "CRIUCheckFailed"),
    ],
)
def test_criu_must_be_installed_recent_and_pass_its_check(
    version: str, check: tuple[int, str], reason: str
) -> None:
    host = FakeHost("node1", [])
    host.criu_version, host.criu_check = version, check

    found = probed(host)

    assert reasons(found) == [reason]
    assert found.faults[0].part is Part.CRIU


def test_a_failing_criu_check_names_what_criu_said_last() -> None:
    host = FakeHost("node1", [])
    host.criu_check = (1, "Warn: no userfaultfd\nError: no tun")

    assert "`criu check` fails (Error: no tun)" in probed(host).message


class FastPathSession:
    """What RuncHost.missing asks of a host: runc, its exec-root, dockerd's daemon.json."""

    def __init__(self, *, runc: bool = True, exec_root: bool = True, daemon_json: str = "{}") -> None:
        self.answers = {"runc": runc, "test": exec_root}
        self.daemon_json = daemon_json
        self.name = "node1"

    def run(self, argv: Sequence[str], *, check: bool = True, timeout: float = 120.0) -> CommandResult:
        if argv[0] == "cat":
            return CommandResult(0, self.daemon_json.encode(), b"")
        return CommandResult(0 if self.answers[argv[0]] else 1, b"", b"")


class InstalledEngine:
    def info(self) -> dict[str, Any]:
        return {"Runtimes": {}}


def runc_host(session: FastPathSession) -> RuncHost:
    config = FastPathConfig(exec_root="/run/docker", daemon_config="/etc/docker/daemon.json")
    return RuncHost("node1", cast(SSHSession, session), cast(DockerEngine, InstalledEngine()), config)


def test_the_fast_path_lacks_nothing_on_a_host_that_has_its_parts() -> None:
    assert runc_host(FastPathSession()).missing() == []


def test_the_fast_path_names_each_part_a_host_lacks() -> None:
    lacking = runc_host(FastPathSession(runc=False, exec_root=False, daemon_json="[")).missing()

    assert lacking[0] == "runc is not on the PATH"
    assert lacking[1].startswith("/run/docker is not a directory")
    assert "daemon.json on node1 is not JSON" in lacking[2]


def test_a_host_that_opted_into_a_fast_path_it_lacks_is_not_ready_for_it() -> None:
    host = FakeHost("node1", [])
    host.runc = runc_host(FastPathSession(runc=False))  # type: ignore[assignment]

    found = probed(host)

    assert [(fault.part, fault.reason) for fault in found.faults] == [(Part.FAST_PATH, "FastPathUnavailable")]
    assert found.fast_path is not None and found.fast_path["installed"] is False


def test_the_wrapper_not_installed_yet_is_no_fault() -> None:
    host = FakeHost("node1", [])
    host.runc = runc_host(FastPathSession())  # type: ignore[assignment]

    assert probed(host).ready


def status_of(host: FakeHost) -> dict[str, Any]:
    hosts = FakeHosts(host_spec("node1"))
    hosts.hosts["node1"] = host
    return probe_docker_host(cast(HostPool, hosts), "node1")


def ready_condition(status: dict[str, Any]) -> dict[str, Any]:
    [condition] = status["conditions"]
    assert condition["type"] == "Ready"
    return cast(dict[str, Any], condition)


def test_the_status_of_a_ready_host_has_its_versions_and_a_true_ready_condition() -> None:
    status = status_of(FakeHost("node1", []))

    assert (status["dockerVersion"], status["criuVersion"], status["kernel"]) == ("20.10.24", "4.2", "6.1.0")
    assert (ready_condition(status)["status"], ready_condition(status)["reason"]) == ("True", "Reachable")


def test_the_ready_condition_of_a_host_not_ready_has_the_first_faults_reason_and_every_message() -> None:
    host = FakeHost("node1", [])
    host.engine.failing["version"] = DockerError("docker version on node1: cannot reach the Docker Engine")
    host.criu_check = (127, "criu: not found")

    condition = ready_condition(status_of(host))

    assert (condition["status"], condition["reason"]) == ("False", "DockerUnavailable")
    assert (
        "Docker does not answer" in condition["message"] and "CRIU is not installed" in condition["message"]
    )


def test_a_host_docker_does_not_answer_on_shows_no_docker_version() -> None:
    host = FakeHost("node1", [])
    host.engine.failing["version"] = DockerError("docker version on node1: cannot reach the Docker Engine")

    assert status_of(host)["dockerVersion"] == ""


def test_every_status_field_the_probe_writes_is_in_the_dockerhost_schema() -> None:
    host = FakeHost("node1", [])
    host.runc = runc_host(FastPathSession())  # type: ignore[assignment]

    status = status_of(host)

    assert undeclared(status, schema("ferry.dev_dockerhosts.yaml")["properties"]["status"], "status") == []
