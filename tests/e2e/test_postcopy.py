"""Post-copy (spec.postCopy, docs/postcopy.md) on the real lab: the workload runs on the target
before its memory arrived, which the target pulls from the source's page server afterwards; the
source goes only once every page arrived. hack/lab sets fs.pipe-max-size to 4 MiB, which the
source's page server needs."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.lab import MEMHOG, Counter, Lab, OperatorProcess, unique, wait_for, work_processes
from tests.e2e.test_fast_path import assert_nothing_left, status_of
from tests.e2e.test_faults import fake_criu

PAGE = 4096
PIPE_MAX_SIZE = Path("/proc/sys/fs/pipe-max-size")
# lazy-pages on the target never gets ready: the twin must not start, the source must run on.
FAILING_LAZY_PAGES = """#!/bin/sh
if [ "$1" = lazy-pages ]; then echo "criu: injected lazy-pages failure" >&2; exit 1; fi
exec /usr/local/sbin/criu "$@"
"""


def no_post_copy_process_left(uid: str) -> None:
    """No lazy-pages daemon nor lazy dump of this migration runs on any host."""
    assert work_processes(uid) == []


def test_post_copy_moves_256_mib_and_the_source_goes_only_after_every_page(
    lab: Lab, operator: OperatorProcess
) -> None:
    counter = Counter(lab, prefix="memhog-postcopy", image=MEMHOG, command=["256"])
    name = unique("mig-postcopy")
    lab.migration(name, counter.name, target="node2", postCopy=True)
    status = status_of(lab, name)
    assert status["phase"] == "Succeeded", status
    assert status["mechanism"] == "runc-postcopy"
    metrics = status["metrics"]
    assert metrics["downtimeMs"] > 0
    assert metrics["checkpointBytes"] < 16 << 20  # the memory was not in the images
    assert metrics["lazyPages"] >= 256 * (1 << 20) // PAGE  # it came through the page server
    assert metrics["postCopyMs"] >= 0
    assert status["postCopy"]["pagesArrived"] is True
    # memhog re-reads its whole buffer every 100 lines and stops with CORRUPT on a mismatch.
    wait_for(lambda: len(lab.logs("node2", counter.name)) > 250, 60, "two memory checks on node2")
    assert "CORRUPT" not in lab.logs("node2", counter.name)
    assert counter.assert_runs_once_and_continuous() == "node2"
    uid = lab.get_migration(name)["metadata"]["uid"]
    assert_nothing_left(uid, status["targetContainerID"])
    no_post_copy_process_left(uid)


def test_post_copy_whose_lazy_pages_never_gets_ready_leaves_the_source_running(
    lab: Lab, operator: OperatorProcess
) -> None:
    counter = Counter(lab, prefix="memhog-postcopy-back", image=MEMHOG, command=["64"])
    name = unique("mig-postcopy-back")
    with fake_criu(lab, "node2", FAILING_LAZY_PAGES):
        lab.migration(name, counter.name, target="node2", postCopy=True)
        status = status_of(lab, name)
    assert status["phase"] == "RolledBack", status
    assert "criu lazy-pages ended before it was ready" in status["message"]
    assert counter.name not in lab.container_names("node2")
    wait_for(lambda: len(lab.logs("node1", counter.name)) > 250, 60, "a memory check on node1")
    assert "CORRUPT" not in lab.logs("node1", counter.name)
    assert counter.assert_runs_once_and_continuous() == "node1"
    uid = lab.get_migration(name)["metadata"]["uid"]
    assert_nothing_left(uid, status.get("targetContainerID"))
    no_post_copy_process_left(uid)


def test_post_copy_is_refused_in_preflight_without_its_kernel_setting(
    lab: Lab, operator: OperatorProcess
) -> None:
    counter = Counter(lab, prefix="postcopy-pipe")
    name = unique("mig-postcopy-pipe")
    before = PIPE_MAX_SIZE.read_text()
    PIPE_MAX_SIZE.write_text("1048576")  # kernel-wide: every lab host sees it
    try:
        lab.migration(name, counter.name, target="node2", postCopy=True)
        status = status_of(lab, name)
    finally:
        PIPE_MAX_SIZE.write_text(before)
    assert status["phase"] == "Failed", status
    assert "sysctl -w fs.pipe-max-size=4194304" in status["message"]
    assert counter.assert_runs_once_and_continuous() == "node1"
