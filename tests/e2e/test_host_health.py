"""DockerHost health on the real lab: a host whose dockerd stops turns Ready=False with the reason
(kubectl shows it, the readiness gauge too), a Migration to it fails before anything is made, and
it turns Ready=True once dockerd is back. `ferry hosts add` registers another name for a lab host,
which turns Ready."""

from __future__ import annotations

from typing import Any

from tests.e2e.lab import REPO, Counter, Lab, OperatorProcess, ferry, unique, wait_for


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == kind)


def test_a_host_whose_dockerd_stopped_is_not_ready_refuses_migrations_and_is_ready_again_after(
    lab: Lab, operator: OperatorProcess
) -> None:
    counter, name = Counter(lab), unique("mig-to-unready")
    lab.stop_dockerd("node2")
    try:
        down = lab.wait_for_readiness("node2", "False")
        wide = lab.kubectl("get", "dockerhost", "node2", "-o", "wide").stdout.splitlines()
        wait_for(
            lambda: operator.metrics().value("ferry_host_ready", host="node2") == 0, 30, "the gauge at 0"
        )
        lab.migration(name, counter.name, target="node2")
        status = lab.wait_until(name)["status"]
    finally:
        lab.start_dockerd("node2")

    assert down["reason"] == "DockerUnavailable", down
    assert "Docker does not answer" in down["message"]
    assert wide[0].split() == ["NAME", "ADDRESS", "READY", "DOCKER", "CRIU", "AGE", "REASON"]
    assert "False" in wide[1].split() and wide[1].split()[-1] == "DockerUnavailable"
    assert status["phase"] == "Failed", status
    assert condition(status, "Failed")["reason"] == "DockerUnavailable"
    assert status["message"].startswith("DockerHost node2 is not Ready: Docker does not answer")
    assert [entry["phase"] for entry in status["phaseTransitions"]] == ["Pending", "Failed"]
    assert counter.assert_runs_once_and_continuous() == "node1"
    up = lab.wait_for_readiness("node2", "True")
    assert up["reason"] == "Reachable"
    wait_for(lambda: operator.metrics().value("ferry_host_ready", host="node2") == 1, 30, "the gauge at 1")


def test_hosts_add_registers_another_name_for_a_lab_host_which_turns_ready(
    lab: Lab, operator: OperatorProcess
) -> None:
    name, node1 = unique("node1-alias"), lab.docker_host("node1")["spec"]
    secret = f"ferry-ssh-{name}"
    try:
        added = ferry(
            "hosts",
            "add",
            name,
            "--address",
            lab.address("node1"),
            "--ssh-key",
            str(REPO / ".lab" / "ssh" / "id_ed25519"),
            "--docker-socket",
            node1["dockerSocket"],
            "--host-key",
            node1["hostKey"],  # what ssh-keyscan reads must be the key hack/lab pinned
        )
        assert added.returncode == 0, added.stdout + added.stderr
        assert added.stdout.splitlines() == [
            f"secret/{secret} created",
            f"dockerhost.ferry.dev/{name} created",
        ]
        ready = lab.wait_for_readiness(name, "True")
        pinned = lab.docker_host(name)["spec"]["hostKey"]
        listed = {line.split()[0]: line.split()[1:3] for line in ferry("hosts").stdout.splitlines()[1:]}
    finally:
        lab.kubectl("delete", "dockerhost", name, "--ignore-not-found", check=False)
        lab.kubectl("delete", "secret", secret, "-n", "ferry-system", "--ignore-not-found", check=False)

    assert ready["reason"] == "Reachable"
    assert listed[name] == [lab.address("node1"), "True"]
    assert pinned.split() == node1["hostKey"].split()[:2]
