"""The real lab (hack/lab up) and the operator process for the end-to-end session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.lab import HOST_COUNT, REPO, Lab, OperatorProcess, stop_demo_operator, unused_local_port

THREE_HOSTS = "three_hosts"


@pytest.fixture(scope="session")
def lab(request: pytest.FixtureRequest) -> Lab:
    """The lab, brought up if it is not (idempotent: a lab that runs keeps its hosts); one that is
    not up yet comes up with three hosts if a test collected needs them."""
    lab = Lab()
    needs_three = any(THREE_HOSTS in getattr(item, "fixturenames", ()) for item in request.session.items)
    lab.lab("up", *(["--hosts", "3"] if needs_three and not HOST_COUNT.exists() else []), timeout=600)
    return lab


@pytest.fixture
def three_hosts(lab: Lab) -> None:
    """For a test that needs node3 (e.g. an Evacuation of node1 onto two others): fails, never
    skips (the suite runs with nothing skipped), on a lab of fewer hosts."""
    hosts = lab.hosts
    if len(hosts) < 3:
        pytest.fail(
            f"this test needs a lab of three hosts, and the lab has {len(hosts)} ({', '.join(hosts)}): "
            "hack/lab down; hack/lab up --hosts 3 (hack/test does)",
            pytrace=False,
        )


@pytest.fixture(autouse=True)
def remove_new_containers(request: pytest.FixtureRequest) -> Iterator[None]:
    """Containers a test starts, then the volumes and networks it makes, are removed after it, so
    that later tests run on a quiet lab."""
    if "lab" not in request.fixturenames:
        yield
        return
    lab: Lab = request.getfixturevalue("lab")
    before = {
        host: (lab.container_names(host), lab.volume_names(host), lab.network_names(host))
        for host in lab.hosts
    }
    yield
    for host in before:
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
