"""Before the freeze, on the real lab: a port held on the target by a plain process fails the
migration untouched, a dry run reports and changes nothing, and a stopped container moves Cold and
stays stopped (Live refuses it, pointing at Cold)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from typing import Any

from tests.e2e.lab import LAB_SCRIPT, Counter, Lab, OperatorProcess, free_port, unique, wait_for
from tests.e2e.test_faults import fake_criu

CHECKS = [
    "PortsFree",
    "TargetDiskSpace",
    "SourceDiskSpace",
    "TargetMemory",
    "CRIUCheck",
    "CPU",
    "Architecture",
    "Networks",
]


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == kind)


def phases(status: dict[str, Any]) -> list[str]:
    return [entry["phase"] for entry in status["phaseTransitions"]]


def listening(lab: Lab, host: str, port: int) -> bool:
    sockets = lab.lab("exec", host, "ss", "-H", "-ltn").stdout
    return re.search(rf":{port}\s", sockets) is not None


@contextlib.contextmanager
def host_process_listening(lab: Lab, host: str, port: int) -> Iterator[None]:
    """A plain process (not a container) listening on `port` in the host's network namespace."""
    holder = subprocess.Popen(
        [str(LAB_SCRIPT), "exec", host, "busybox", "httpd", "-f", "-p", str(port), "-h", "/srv"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: nsenter and python end with it
    )
    try:
        wait_for(lambda: listening(lab, host, port), 30, f"a process to listen on {host}:{port}")
        yield
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)


def stopped_container(lab: Lab, prefix: str, content: str | None = None) -> str:
    """A container on node1, stopped; with `content` written to /kept.txt before it stopped."""
    name = unique(prefix)
    lab.run_container("node1", name, "sleep 3600")
    if content is not None:
        lab.docker("node1", "exec", name, "sh", "-c", f"echo {content} > /kept.txt")
    lab.docker("node1", "stop", "-t", "1", name)
    return name


def test_a_port_a_host_process_holds_on_the_target_fails_before_the_freeze(
    lab: Lab, operator: OperatorProcess
) -> None:
    port = free_port(lab)
    counter, name = Counter(lab, docker_args=("-p", f"{port}:8080")), unique("mig-port-held")
    with host_process_listening(lab, "node2", port):
        lab.migration(name, counter.name, target="node2")
        status = lab.wait_until(name)["status"]

    assert status["phase"] == "Failed", status
    assert condition(status, "Failed")["reason"] == "PortTaken"
    assert f"{port}/tcp is in use on node2 by a process there" in status["message"]
    assert "Checkpointing" not in phases(status)
    assert counter.assert_runs_once_and_continuous() == "node1"
    assert counter.name not in lab.container_names("node2")


# node2's CRIU, as on a host whose CPU lacks a feature node1's has (both lab hosts share one CPU).
CPU_LACKING = """#!/bin/sh
if [ "$1" = cpuinfo ] && [ "$2" = check ]; then echo "Error (criu/cpu.c): CPU has no avx512f" >&2; exit 1; fi
exec /usr/local/sbin/criu "$@"
"""


def test_a_target_whose_cpu_criu_finds_lacking_fails_before_the_freeze(
    lab: Lab, operator: OperatorProcess
) -> None:
    counter, name = Counter(lab), unique("mig-cpu")
    with fake_criu(lab, "node2", CPU_LACKING):
        lab.migration(name, counter.name, target="node2")
        status = lab.wait_until(name)["status"]

    assert status["phase"] == "Failed", status
    assert condition(status, "Failed")["reason"] == "CPUMismatch"
    assert "the CPU of node2 lacks what the workload may use on node1's" in status["message"]
    assert "CPU has no avx512f" in status["message"]
    assert "Checkpointing" not in phases(status)
    assert counter.assert_runs_once_and_continuous() == "node1"
    assert counter.name not in lab.container_names("node2")


def test_a_dry_run_reports_its_checks_and_changes_nothing(lab: Lab, operator: OperatorProcess) -> None:
    counter, name = Counter(lab), unique("mig-dry-run")
    images_before = lab.image_ids("node2")

    lab.migration(name, counter.name, target="node2", dryRun=True)
    status = lab.wait_until(name)["status"]

    assert status["phase"] == "Succeeded", status
    assert condition(status, "Succeeded")["reason"] == "DryRunPassed"
    report = status["preflight"]
    assert [(c["name"], c["passed"]) for c in report["checks"]] == [(check, True) for check in CHECKS]
    assert report["expectedCheckpointBytes"] > 0 and report["rootfsBytes"] >= 0
    assert "Checkpointing" not in phases(status)
    assert counter.name not in lab.container_names("node2")
    assert lab.image_ids("node2") == images_before
    assert counter.assert_runs_once_and_continuous() == "node1"


def test_a_stopped_container_moves_cold_and_stays_stopped_with_its_files(
    lab: Lab, operator: OperatorProcess
) -> None:
    container, name = stopped_container(lab, "stopped", content="kept-before-the-stop"), unique("mig-stopped")

    lab.migration(name, container, target="node2", strategy="Cold")
    status = lab.wait_until(name)["status"]

    assert status["phase"] == "Succeeded", status
    assert status["sourceWasRunning"] is False
    assert container not in lab.container_names("node1")
    assert not lab.running("node2", container)
    lab.docker("node2", "start", container)
    assert lab.docker("node2", "exec", container, "cat", "/kept.txt").stdout.strip() == "kept-before-the-stop"


def test_live_refuses_a_stopped_container_pointing_at_cold(lab: Lab, operator: OperatorProcess) -> None:
    container, name = stopped_container(lab, "stopped-live"), unique("mig-stopped-live")

    lab.migration(name, container, target="node2")
    status = lab.wait_until(name)["status"]

    assert status["phase"] == "Failed", status
    assert condition(status, "Failed")["reason"] == "ContainerNotRunning"
    assert "strategy: Cold" in status["message"]
    assert container in lab.container_names("node1")
    assert container not in lab.container_names("node2")


def test_a_port_published_on_a_range_of_host_ports_fails_before_the_freeze_naming_it(
    lab: Lab, operator: OperatorProcess
) -> None:
    first = free_port(lab)
    ports = f"{first}-{first + 2}"
    counter, name = Counter(lab, docker_args=("-p", f"{ports}:80")), unique("mig-port-range")
    volumes = lab.volume_names("node2")

    lab.migration(name, counter.name, target="node2")
    status = lab.wait_until(name)["status"]

    assert status["phase"] == "Failed", status
    assert condition(status, "Failed")["reason"] == "PortRange"
    assert status["message"].startswith(f"the container publishes 80/tcp on {ports} (a range of host ports)")
    assert "Checkpointing" not in phases(status)
    assert counter.assert_runs_once_and_continuous() == "node1"
    assert counter.name not in lab.container_names("node2")
    assert lab.volume_names("node2") == volumes
