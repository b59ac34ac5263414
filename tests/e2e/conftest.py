"""The real lab (hack/lab up) and the operator process for the end-to-end session."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.e2e.lab import (
    HOST_COUNT,
    REPO,
    SHARED_TMP,
    Lab,
    OperatorProcess,
    stop_demo_operator,
    unique,
    unused_local_port,
)

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
def tmp_path() -> Path:
    """A test's temporary directory, under .lab, which every lab host sees as a network file system
    would be shared (each host's /tmp is its own: hack/lab's PRIVATE_DIRS)."""
    path = SHARED_TMP / unique("test")
    path.mkdir(parents=True)
    return path


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
    that later tests run on a quiet lab. Migrations the test left running end first (up to a
    minute): a twin they would start after the look would be left. Hosts are looked at side by side."""
    if "lab" not in request.fixturenames:
        yield
        return
    lab: Lab = request.getfixturevalue("lab")
    with ThreadPoolExecutor(max_workers=len(lab.hosts)) as pool:
        before = dict(zip(lab.hosts, pool.map(lab.docker_objects, lab.hosts), strict=True))
        started = time.time()
        yield
        lab.wait_for_migrations_since(started, timeout=60)
        list(pool.map(lambda host: lab.remove_docker_objects(host, keep=before[host]), before))


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
