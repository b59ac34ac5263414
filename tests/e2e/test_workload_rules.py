"""Which workloads a namespace may move (DockerHost.spec.workloads) and what a twin may be on its
target (allowPrivileged, allowHostPaths, allowDevices), on the real lab: what is refused stays where it
was, untouched, and a status patched past Preparing widens nothing.

Most tests move to a DockerHost of their own that reaches node2 (its address, key, socket, fast path)
with other rules, so that the lab's node1 and node2 keep theirs.

NOT RUN YET: written while the lab was in use by another session; run with
`.venv/bin/pytest tests/e2e/test_workload_rules.py` on a lab of its own before relying on it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.lab import REPO, Counter, Helloer, Lab, OperatorProcess, unique, wait_for
from tests.e2e.test_trust_model import created_with_status, reason

MOVABLE = {"containers": {"matchLabels": {"ferry.dev/movable": "true"}}}
EVERY_PROCESS = {"processes": {"users": ["*"], "executables": ["/"]}}
PIDS = REPO / ".lab" / "pids"

Alias = Callable[..., str]


@pytest.fixture
def alias(lab: Lab) -> Iterator[Alias]:
    """alias(host, **spec): a DockerHost that reaches the lab host `host` with `spec` instead of its
    rules; removed after the test."""
    created: list[str] = []

    def register(host: str, **spec: Any) -> str:
        name = unique(f"{host}-as")
        lab_spec = json.loads(lab.kubectl("get", "dockerhost", host, "-o", "json").stdout)["spec"]
        body = {
            "apiVersion": "ferry.dev/v1alpha1",
            "kind": "DockerHost",
            "metadata": {"name": name},
            "spec": {**lab_spec, **spec},
        }
        lab.kubectl("apply", "-f", "-", input=yaml.safe_dump(body))
        created.append(name)
        wait_for(lambda: probed(lab, name), 90, f"the operator to see DockerHost {name}")
        return name

    yield register
    for name in created:
        lab.kubectl("delete", "dockerhost", name, "--ignore-not-found")


def probed(lab: Lab, host: str) -> bool:
    found = lab.kubectl("get", "dockerhost", host, "-o", "jsonpath={.status.lastProbeTime}", check=False)
    return bool(found.stdout)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    tmp_path.chmod(0o755)  # the helloer is built here; its path is under /tmp, which the lab's rules allow
    return tmp_path


def checkpoints(lab: Lab, host: str, container: str) -> list[str]:
    return lab.docker(host, "checkpoint", "ls", container).stdout.splitlines()[1:]


def refused(lab: Lab, name: str, why: str) -> dict[str, Any]:
    status: dict[str, Any] = lab.wait_until(name)["status"]
    assert status["phase"] == "Failed", status
    assert reason(status) == why, status
    return status


def assert_untouched(lab: Lab, counter: Counter, node2_before: set[str]) -> None:
    """The counter still runs on node1, never stopped, never checkpointed; nothing was made on node2."""
    assert counter.assert_runs_once_and_continuous() == "node1"
    assert checkpoints(lab, "node1", counter.name) == []
    assert lab.container_names("node2") == node2_before


# -- containers: the selectors


def test_a_container_outside_the_targets_selector_is_refused_and_untouched(
    lab: Lab, operator: OperatorProcess, alias: Alias
) -> None:
    strict = alias("node2", workloads=[MOVABLE])
    counter, name, before = Counter(lab), unique("mig-unselected"), lab.container_names("node2")
    lab.migration(name, counter.name, target=strict)
    status = refused(lab, name, "WorkloadNotAllowed")
    assert f"container '{counter.name}' is selected by no rule of DockerHost '{strict}'" in status["message"]
    assert "ferry.dev/movable=true" in status["message"]
    assert_untouched(lab, counter, before)


def test_a_container_the_targets_selector_selects_moves(
    lab: Lab, operator: OperatorProcess, alias: Alias
) -> None:
    strict = alias("node2", workloads=[MOVABLE])
    counter, name = Counter(lab, docker_args=["--label", "ferry.dev/movable=true"]), unique("mig-selected")
    lab.migration(name, counter.name, target=strict)
    status = lab.wait_until(name)["status"]
    assert status["phase"] == "Succeeded", status
    assert counter.assert_runs_once_and_continuous() == "node2"


# -- containers: what the twin would be on the target


@pytest.mark.parametrize(
    "flags",
    # `--privileged` itself cannot start here: this machine's root lacks capabilities a privileged
    # container asks for (runc: "unable to apply caps"); `--cap-add` is the same rule's other branch.
    [["--cap-add", "SYS_ADMIN"], ["--pid", "host"]],
    ids=["cap-add", "host-pid"],
)
def test_a_privileged_container_is_refused_without_the_targets_allowance_and_untouched(
    lab: Lab, operator: OperatorProcess, flags: list[str]
) -> None:
    counter, name, before = (
        Counter(lab, docker_args=flags),
        unique("mig-privileged"),
        lab.container_names("node2"),
    )
    lab.migration(name, counter.name, target="node2")  # the lab's node2 does not allow privileges
    status = refused(lab, name, "PrivilegedNotAllowed")
    assert "DockerHost 'node2' does not allow: set its spec.allowPrivileged: true" in status["message"]
    assert_untouched(lab, counter, before)


def test_a_privileged_container_moves_to_a_target_that_allows_it(
    lab: Lab, operator: OperatorProcess, alias: Alias
) -> None:
    """Cold: what is tested is the allowance, not how CRIU fares with a privileged container's /dev."""
    allowing = alias("node2", allowPrivileged=True)
    counter, name = Counter(lab, docker_args=["--cap-add", "SYS_ADMIN"]), unique("mig-privileged-allowed")
    lab.migration(name, counter.name, target=allowing, strategy="Cold")
    status = lab.wait_until(name)["status"]
    assert status["phase"] == "Succeeded", status
    assert counter.hosts_running() == ["node2"]
    assert (
        lab.docker("node2", "inspect", "-f", "{{.HostConfig.CapAdd}}", counter.name).stdout.strip()
        == "[SYS_ADMIN]"
    )


def test_a_bind_mount_outside_the_targets_allowed_host_paths_is_refused_and_untouched(
    lab: Lab, operator: OperatorProcess, alias: Alias, tmp_path: Path
) -> None:
    narrow = alias("node2", allowHostPaths=["/srv/ferry-nothing-here"])
    (tmp_path / "bound").mkdir()
    counter = Counter(lab, docker_args=["-v", f"{tmp_path / 'bound'}:/bound"])
    name, before = unique("mig-host-path"), lab.container_names("node2")
    lab.migration(name, counter.name, target=narrow)
    status = refused(lab, name, "HostPathNotAllowed")
    assert (
        f"mounts host path {tmp_path / 'bound'}, outside DockerHost '{narrow}''s spec.allowHostPaths"
        in (status["message"])
    )
    assert_untouched(lab, counter, before)


def test_a_bind_mount_through_a_link_that_leads_outside_the_allowed_host_paths_is_refused(
    lab: Lab, operator: OperatorProcess, alias: Alias, tmp_path: Path
) -> None:
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    (allowed / "link").symlink_to(outside)
    narrow = alias("node2", allowHostPaths=[str(allowed)])
    counter = Counter(lab, docker_args=["-v", f"{allowed / 'link'}:/bound"])
    name, before = unique("mig-host-path-link"), lab.container_names("node2")
    lab.migration(name, counter.name, target=narrow)
    refused(lab, name, "HostPathNotAllowed")
    assert_untouched(lab, counter, before)


def test_a_bind_mount_moves_to_a_target_that_allows_its_path(
    lab: Lab, operator: OperatorProcess, tmp_path: Path
) -> None:
    bound = tmp_path / "bound"
    bound.mkdir()
    (bound / "greeting").write_text("hello")
    counter = Counter(lab, docker_args=["-v", f"{bound}:/bound"])
    name = unique("mig-host-path-allowed")
    lab.migration(name, counter.name, target="node2")  # the lab's node2 allows /tmp
    status = lab.wait_until(name)["status"]
    assert status["phase"] == "Succeeded", status
    assert counter.assert_runs_once_and_continuous() == "node2"
    assert lab.docker("node2", "exec", counter.name, "cat", "/bound/greeting").stdout == "hello"


# -- processes


@pytest.fixture
def helloer(workdir: Path) -> Iterator[Helloer]:
    """The helloer, counting on node1 (as root, from pytest's tmp_path under /tmp)."""
    started = Helloer(workdir)
    yield started
    started.stop()


def refused_helloer(lab: Lab, helloer: Helloer, target: str) -> str:
    """Moves the helloer to `target`, which refuses it: it stays on node1, counting. The message."""
    name = unique("mig-process-refused")
    lab.migration(name, "", target=target, process={"pid": helloer.pid})
    message = str(refused(lab, name, "WorkloadNotAllowed")["message"])
    assert helloer.network_namespace() == lab.network_namespace("node1")
    helloer.assert_continuous_and_counting()
    return message


def test_a_process_migration_to_a_host_without_a_process_rule_is_refused_naming_the_field(
    lab: Lab, operator: OperatorProcess, alias: Alias, helloer: Helloer
) -> None:
    containers_only = alias("node2", workloads=[{"containers": {}}])
    message = refused_helloer(lab, helloer, containers_only)
    assert f"DockerHost '{containers_only}' lets Migrations from namespace 'default' move no plain" in message
    assert "spec.workloads" in message


def test_a_process_the_process_selector_does_not_select_is_refused_and_untouched(
    lab: Lab, operator: OperatorProcess, alias: Alias, helloer: Helloer
) -> None:
    narrow = alias(
        "node2", workloads=[{"processes": {"users": ["root"], "executables": ["/opt/ferry-none"]}}]
    )
    message = refused_helloer(lab, helloer, narrow)
    assert (
        f"process {helloer.pid} ({helloer.binary}, user root) is selected by no rule of DockerHost" in message
    )
    assert f"'{narrow}'" in message


@pytest.mark.parametrize("daemon", ["sshd", "dockerd"])
def test_a_daemon_of_the_host_is_refused_even_by_the_widest_selector(
    lab: Lab, operator: OperatorProcess, alias: Alias, daemon: str
) -> None:
    pid = int((PIDS / f"{daemon}-node1.pid").read_text())
    assert Path(f"/proc/{pid}/comm").read_text().strip() == daemon
    started = process_start(pid)
    source, target = alias("node1", workloads=[EVERY_PROCESS]), alias("node2", workloads=[EVERY_PROCESS])
    name = unique(f"mig-{daemon}")
    lab.migration(name, "", target=target, source=source, process={"pid": pid})
    status = refused(lab, name, "ProtectedProcess")
    assert f"process {pid} ({daemon}) is never moved, whatever spec.workloads says" in status["message"]
    assert process_start(pid) == started, f"{daemon} was restarted"


def test_the_operator_itself_is_refused_even_by_the_widest_selector(
    lab: Lab, operator: OperatorProcess, alias: Alias
) -> None:
    """The lab's hosts share the operator's kernel and PID namespace: its PID there is its own."""
    source, target = alias("node1", workloads=[EVERY_PROCESS]), alias("node2", workloads=[EVERY_PROCESS])
    name = unique("mig-operator")
    lab.migration(name, "", target=target, source=source, process={"pid": operator.pid})
    status = refused(lab, name, "ProtectedProcess")
    assert "it is the ferry operator itself" in status["message"]


def process_start(pid: int) -> str:
    """Its start time (field 22 of /proc/PID/stat): another process with the same PID has another."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]


# -- a tenant who patches the status


def forged(lab: Lab, operator: OperatorProcess, counter: Counter, target: str, phase: str) -> str:
    """A Migration of the counter to `target` whose status a tenant patched to `phase`, with the
    counter as its source container, before the operator saw it; its name."""
    name = unique("mig-forged")
    status = {
        "phase": phase,
        "sourceHost": "node1",
        "targetHost": target,
        "sourceContainerID": lab.docker("node1", "inspect", "-f", "{{.Id}}", counter.name).stdout.strip(),
        "targetContainerID": "1" * 64,
        "checkpointName": "ferry-forged",
    }
    created_with_status(lab, operator, name, counter, target=target, **status)
    return name


def test_a_status_patched_past_preparing_does_not_freeze_a_container_outside_the_selector(
    lab: Lab, operator: OperatorProcess, alias: Alias
) -> None:
    strict = alias("node2", workloads=[MOVABLE])
    counter, before = Counter(lab), lab.container_names("node2")
    status = refused(lab, forged(lab, operator, counter, strict, "Checkpointing"), "WorkloadNotAllowed")
    assert "stopped in Checkpointing without touching any host" in status["message"]
    assert_untouched(lab, counter, before)


def test_a_status_patched_to_restoring_does_not_move_a_privileged_container(
    lab: Lab, operator: OperatorProcess
) -> None:
    counter, before = Counter(lab, docker_args=["--cap-add", "SYS_ADMIN"]), lab.container_names("node2")
    status = refused(lab, forged(lab, operator, counter, "node2", "Restoring"), "PrivilegedNotAllowed")
    assert "stopped in Restoring without touching any host" in status["message"]
    assert_untouched(lab, counter, before)
