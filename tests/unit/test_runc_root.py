"""Where runc keeps a Docker container's state: the fast path checkpoints it with that --root."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import cast

import pytest

from ferry.hosts.docker_engine import DockerEngine
from ferry.hosts.runc import FastPathConfig, FastPathUnavailable, RuncHost
from ferry.hosts.ssh import CommandResult, SSHSession

CONTAINER = "c0ffee" * 10


class LocalShell:
    """Runs the commands on this machine: the script that looks runc's state up is the real one."""

    name = "node1"

    def run(self, argv: list[str], **_: object) -> CommandResult:
        done = subprocess.run(argv, capture_output=True, check=True, timeout=10)
        return CommandResult(done.returncode, done.stdout, done.stderr)


def runc_host(exec_root: Path) -> RuncHost:
    config = FastPathConfig(exec_root=str(exec_root), daemon_config="/etc/docker/daemon.json")
    return RuncHost("node1", cast(SSHSession, LocalShell()), cast(DockerEngine, None), config)


def state_of(exec_root: Path, runtime_dir: str) -> Path:
    directory = exec_root / runtime_dir / "moby" / CONTAINER
    directory.mkdir(parents=True)
    return directory.parent


@pytest.mark.parametrize(("runtime", "runtime_dir"), [("runc", "runtime-runc"), ("ferry", "runtime-ferry")])
def test_a_containers_state_is_under_its_runtimes_directory(
    tmp_path: Path, runtime: str, runtime_dir: str
) -> None:
    root = state_of(tmp_path, runtime_dir)

    assert runc_host(tmp_path).runc_root(CONTAINER, runtime) == str(root)


def test_docker_26_keeps_the_wrappers_containers_under_runcs_directory(tmp_path: Path) -> None:
    root = state_of(tmp_path, "runtime-runc")  # its options name runc's root

    assert runc_host(tmp_path).runc_root(CONTAINER, "ferry") == str(root)


def test_no_state_anywhere_says_the_fast_path_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(FastPathUnavailable, match="is not under"):
        runc_host(tmp_path).runc_root(CONTAINER, "runc")
