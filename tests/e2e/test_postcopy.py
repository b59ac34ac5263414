"""Post-copy (spec.postCopy, docs/postcopy.md) on the real lab: the workload runs on the target
before its memory arrived, which the target pulls from the source's page server afterwards; the
source goes only once every page arrived. hack/lab sets fs.pipe-max-size to 4 MiB, which the
source's page server needs."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from tests.e2e.lab import MEMHOG, Counter, Lab, OperatorProcess, unique, wait_for
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
    """No lazy-pages daemon nor lazy dump of this migration runs on any host (one kernel here)."""
    processes = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert not [line for line in processes.splitlines() if f"/var/lib/ferry/work/{uid}" in line]


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


def waiting_message(lab: Lab, name: str) -> str:
    conditions = lab.get_migration(name).get("status", {}).get("conditions", [])
    return next((c["message"] for c in conditions if c["type"] == "RollbackWaiting"), "")


def test_a_pull_cut_after_the_target_ran_keeps_the_source_stopped_until_the_user_resumes_it(
    lab: Lab, operator: OperatorProcess
) -> None:
    """1.5 GiB take seconds to pull (512 MiB were pulled before the test could cut it), so
    lazy-pages is killed while it pulls: the twin goes, the source stays stopped at the freeze (never
    two copies) until resumed by hand, then the Migration ends RolledBack and the source counts on
    from the freeze."""
    counter = Counter(lab, prefix="memhog-postcopy-cut", image=MEMHOG, command=["1536"])
    name = unique("mig-postcopy-cut")
    lab.migration(name, counter.name, target="node2", postCopy=True, pauses="Verifying=5")
    try:
        cut_the_pull_and_resume_by_hand(lab, counter, name)
    finally:  # whatever failed: the source runs again and the Migration ends, for the tests after
        subprocess.run(["kill", "-CONT", *source_pids(lab, counter.name)], check=False)
        lab.delete_migration(name)


def source_pids(lab: Lab, container: str) -> list[str]:
    return lab.docker("node1", "top", container, "-o", "pid", check=False).stdout.split()[1:]


def cut_the_pull_and_resume_by_hand(lab: Lab, counter: Counter, name: str) -> None:
    lab.wait_for_phase(name, "Verifying", timeout=120)  # the twin runs; its memory is being pulled
    uid = lab.get_migration(name)["metadata"]["uid"]
    killed = kill_lazy_pages(uid)
    assert killed, "lazy-pages had ended already: the pull was faster than this test assumes"
    wait_for(lambda: "ferry does not resume it" in waiting_message(lab, name), 120, "the rollback to wait")
    assert lab.phase(name) == "RollingBack"
    assert counter.name not in lab.container_names("node2")
    stopped = len(lab.logs("node1", counter.name))
    time.sleep(2)
    assert len(lab.logs("node1", counter.name)) == stopped, "the source ran while it should be stopped"
    subprocess.run(["kill", "-CONT", *source_pids(lab, counter.name)], check=True)
    status = status_of(lab, name)
    assert status["phase"] == "RolledBack", status
    wait_for(lambda: len(lab.logs("node1", counter.name)) > stopped + 250, 60, "a memory check on node1")
    assert "CORRUPT" not in lab.logs("node1", counter.name)
    assert counter.assert_runs_once_and_continuous() == "node1"
    no_post_copy_process_left(uid)


def kill_lazy_pages(uid: str) -> list[str]:
    """SIGKILL to the target's `criu lazy-pages` of this migration; the PIDs it was sent to."""
    processes = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True, check=True).stdout
    pids = [
        line.split()[0]
        for line in processes.splitlines()
        if "criu lazy-pages" in line and f"/var/lib/ferry/work/{uid}/lazy" in line
    ]
    if pids:
        subprocess.run(["kill", "-KILL", *pids], check=True)
    return pids


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
