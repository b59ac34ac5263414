"""The fast path (runc checkpoint, ferry's runtime wrapper, direct host-to-host streams) on the real lab.

The lab's hosts opt in (spec.fastPath and spec.peerTransfer), so every other end-to-end test runs on
it too; these tests check what is particular to it: memory of every size arrives intact, nothing of
it is left on the hosts, restart policies cannot make a workload run twice, and hosts that do not
opt in still move through Docker's own checkpoint API.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.lab import MEMHOG, Counter, Lab, OperatorProcess, ferry_files_left, unique, wait_for
from tests.e2e.test_faults import FAILING_RESTORE, fake_criu


def restart_policy(lab: Lab, host: str, container: str) -> str:
    return lab.docker(host, "inspect", "-f", "{{.HostConfig.RestartPolicy.Name}}", container).stdout.strip()


def status_of(lab: Lab, name: str) -> dict[str, Any]:
    status: dict[str, Any] = lab.wait_until(name, timeout=300)["status"]
    return status


def assert_nothing_left(uid: str, target_container_id: str | None) -> None:
    """No stream key, dump work directory or prepared restore outlives the migration."""
    assert ferry_files_left(uid, target_container_id) == []


@pytest.mark.parametrize("mib", [64, 256])
def test_memory_of_every_size_arrives_intact_and_counting_goes_on(
    lab: Lab, operator: OperatorProcess, mib: int
) -> None:
    counter = Counter(lab, prefix=f"memhog{mib}", image=MEMHOG, command=[str(mib)])
    name = unique(f"mig-fast-{mib}")
    lab.migration(name, counter.name, target="node2")
    status = status_of(lab, name)
    assert status["phase"] == "Succeeded", status
    assert status["mechanism"] == "runc"
    assert status["checkpointInMemory"] is True  # node2 had room: the images went into a tmpfs
    assert status["metrics"]["checkpointBytes"] >= mib * 1024 * 1024
    # memhog re-reads its whole buffer every 100 lines and stops with CORRUPT on a mismatch.
    wait_for(lambda: len(lab.logs("node2", counter.name)) > 250, 60, "two memory checks on node2")
    assert counter.assert_runs_once_and_continuous() == "node2"


def test_nothing_of_the_fast_path_is_left_on_either_host(lab: Lab, operator: OperatorProcess) -> None:
    counter, name = Counter(lab), unique("mig-fast-clean")
    lab.migration(name, counter.name, target="node2")
    status = status_of(lab, name)
    assert status["phase"] == "Succeeded", status
    uid = lab.get_migration(name)["metadata"]["uid"]
    assert lab.leftovers(uid, status["targetContainerID"]) == []  # the received images' tmpfs too
    checkpoints = lab.docker("node2", "checkpoint", "ls", counter.name).stdout.splitlines()[1:]
    assert checkpoints == []


def test_restarted_twin_runs_through_the_wrapper_like_any_container(
    lab: Lab, operator: OperatorProcess
) -> None:
    counter, name = Counter(lab), unique("mig-fast-restart")
    lab.migration(name, counter.name, target="node2")
    assert status_of(lab, name)["phase"] == "Succeeded"
    lab.docker("node2", "restart", "-t", "1", counter.name)
    assert lab.running("node2", counter.name)
    wait_for(
        lambda: counted_afresh(lab.logs("node2", counter.name)), 30, "the restarted twin to count afresh"
    )


def counted_afresh(lines: list[str]) -> bool:
    """The log shows a second count from 0, up to 5 at least (the first began the log)."""
    restarted = max((index for index, line in enumerate(lines) if line == "0"), default=0)
    return restarted > 0 and "5" in lines[restarted:]


def test_restart_policy_cannot_start_the_source_again(lab: Lab, operator: OperatorProcess) -> None:
    counter = Counter(lab, prefix="always", docker_args=["--restart", "always"])
    name = unique("mig-fast-always")
    lab.migration(name, counter.name, target="node2")
    status = status_of(lab, name)
    assert status["phase"] == "Succeeded", status
    assert status["restartPolicy"]["Name"] == "always"
    assert counter.assert_runs_once_and_continuous() == "node2"
    assert restart_policy(lab, "node2", counter.name) == "always"


def test_rollback_from_the_fast_path_gives_back_the_restart_policy(
    lab: Lab, operator: OperatorProcess
) -> None:
    counter = Counter(lab, prefix="always-back", docker_args=["--restart", "always"])
    name = unique("mig-fast-rollback")
    with fake_criu(lab, "node2", FAILING_RESTORE):
        lab.migration(name, counter.name, target="node2")
        status = status_of(lab, name)
    assert status["phase"] == "RolledBack", status
    assert status["mechanism"] == "runc"
    assert counter.assert_runs_once_and_continuous() == "node1"
    assert restart_policy(lab, "node1", counter.name) == "always"
    assert counter.name not in lab.container_names("node2")
    assert_nothing_left(lab.get_migration(name)["metadata"]["uid"], status.get("targetContainerID"))


def test_host_without_the_fast_path_moves_through_dockers_checkpoint_api(
    lab: Lab, operator: OperatorProcess
) -> None:
    counter, name = Counter(lab), unique("mig-docker-path")
    with lab.without_fast_path("node2"):
        lab.migration(name, counter.name, target="node2")
        status = status_of(lab, name)
    assert status["phase"] == "Succeeded", status
    assert status["mechanism"] == "docker"
    assert counter.assert_runs_once_and_continuous() == "node2"


def test_operator_killed_while_streaming_resumes_and_runs_once(lab: Lab, operator: OperatorProcess) -> None:
    counter = Counter(lab, prefix="memhog-crash", image=MEMHOG, command=["64"])
    name = unique("mig-fast-crash")
    lab.migration(name, counter.name, target="node2", pauses="Transferring=3")
    lab.wait_for_phase(name, "Transferring")
    operator.kill()
    operator.start()
    status = status_of(lab, name)
    assert status["phase"] in ("Succeeded", "RolledBack"), status
    expected = "node2" if status["phase"] == "Succeeded" else "node1"
    assert counter.assert_runs_once_and_continuous() == expected


def test_operator_killed_while_checkpointing_never_takes_a_partial_dump(
    lab: Lab, operator: OperatorProcess
) -> None:
    counter = Counter(lab, prefix="memhog-dump", image=MEMHOG, command=["256"])
    name = unique("mig-fast-dump-crash")
    lab.migration(name, counter.name, target="node2")
    lab.wait_for_phase(name, "Checkpointing", timeout=120)
    operator.kill()  # most likely while runc is still writing the 256 MiB
    operator.start()
    status = status_of(lab, name)
    assert status["phase"] in ("Succeeded", "RolledBack"), status
    expected = "node2" if status["phase"] == "Succeeded" else "node1"
    wait_for(lambda: len(lab.logs(expected, counter.name)) > 250, 60, "a memory check after the move")
    assert counter.assert_runs_once_and_continuous() == expected


def test_a_dump_that_fails_leaves_the_source_running_with_its_restart_policy(
    lab: Lab, operator: OperatorProcess
) -> None:
    counter = Counter(lab, prefix="always-dump", docker_args=["--restart", "always"])
    name = unique("mig-fast-dump-fails")
    with fake_criu(lab, "node1", FAILING_RESTORE):  # runc reaches CRIU through `criu swrk` for dumps too
        lab.migration(name, counter.name, target="node2")
        status = status_of(lab, name)
    assert status["phase"] == "Failed", status
    assert counter.assert_runs_once_and_continuous() == "node1"
    assert restart_policy(lab, "node1", counter.name) == "always"
    assert counter.name not in lab.container_names("node2")
