"""The real lab (hack/lab up) and the operator process for the end-to-end session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.lab import HOSTS, REPO, Lab, OperatorProcess, stop_demo_operator, unused_local_port


@pytest.fixture(scope="session")
def lab() -> Lab:
    lab = Lab()
    lab.lab("up", timeout=600)
    return lab


@pytest.fixture(autouse=True)
def remove_new_containers(request: pytest.FixtureRequest) -> Iterator[None]:
    """Containers a test starts, then the volumes and networks it makes, are removed after it, so
    that later tests run on a quiet lab."""
    if "lab" not in request.fixturenames:
        yield
        return
    lab: Lab = request.getfixturevalue("lab")
    before = {
        host: (lab.container_names(host), lab.volume_names(host), lab.network_names(host)) for host in HOSTS
    }
    yield
    for host in HOSTS:
        new = sorted(lab.container_names(host) - before[host][0])
        if new:
            lab.docker(host, "rm", "-f", *new, check=False)
        made = sorted(lab.volume_names(host) - before[host][1])
        if made:
            lab.docker(host, "volume", "rm", "-f", *made, check=False)
        networks = sorted(lab.network_names(host) - before[host][2])
        if networks:
            lab.docker(host, "network", "rm", *networks, check=False)


@pytest.fixture(scope="session")
def operator(lab: Lab) -> Iterator[OperatorProcess]:
    """`ferry run` against the lab's API server, serving its metrics; its log is
    .lab/logs/operator-e2e-*.log."""
    stop_demo_operator()
    log = REPO / ".lab" / "logs" / "operator-e2e-main.log"
    process = OperatorProcess(log, priority=100, metrics_port=unused_local_port())
    process.start()
    yield process
    process.stop()
