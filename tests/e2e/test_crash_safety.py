"""The operator killed (SIGKILL) at any point: after a restart the Migration resumes or rolls back,
and the workload ends up running exactly once with its counter continuous."""

from __future__ import annotations

import os
import random
import time

import pytest

from tests.e2e.lab import REPO, Counter, Lab, OperatorProcess, report, unique, wait_for

SOAK_RUNS = int(os.environ.get("FERRY_SOAK_RUNS", "20"))
RECOVERED = ("Succeeded", "RolledBack")


@pytest.mark.parametrize("phase", ["Preparing", "Checkpointing", "Transferring", "Restoring", "Verifying"])
def test_operator_killed_in_phase_resumes_and_the_workload_runs_once(
    lab: Lab, operator: OperatorProcess, phase: str
) -> None:
    counter, name = Counter(lab), unique(f"mig-crash-{phase.lower()}")
    lab.migration(name, counter.name, target="node2", pauses=f"{phase}=3")
    lab.wait_for_phase(name, phase)
    operator.kill()
    operator.start()
    status = lab.wait_until(name, timeout=180)["status"]
    assert status["phase"] in RECOVERED, status
    host = counter.assert_runs_once_and_continuous()
    assert host == ("node2" if status["phase"] == "Succeeded" else "node1")


def test_soak_of_kills_at_random_moments_loses_nothing_and_runs_nothing_twice(
    lab: Lab, operator: OperatorProcess, request: pytest.FixtureRequest
) -> None:
    rng = random.Random(int(os.environ.get("FERRY_SOAK_SEED", str(time.time_ns()))))
    lost = twice = broken = 0
    outcomes: dict[str, int] = {}
    for run in range(SOAK_RUNS):
        counter, name = Counter(lab, prefix="soak"), unique(f"mig-soak-{run}")
        lab.migration(name, counter.name, target="node2")
        time.sleep(rng.uniform(0.0, 3.5))
        operator.kill()
        operator.start()
        phase = lab.wait_until(name, timeout=180)["status"]["phase"]
        outcomes[phase] = outcomes.get(phase, 0) + 1
        running = counter.hosts_running()
        if not running:
            lost += 1
        elif len(running) > 1:
            twice += 1
        else:
            try:
                counter.assert_runs_once_and_continuous()
            except AssertionError:
                broken += 1
    report(
        request.config,
        f"soak: {SOAK_RUNS} runs with a SIGKILL at a random moment; outcomes {outcomes}; "
        f"lost {lost}, ran twice {twice}, counter broken {broken}",
    )
    assert (lost, twice, broken) == (0, 0, 0)
    assert set(outcomes) <= set(RECOVERED)


def test_second_replica_takes_over_when_the_active_one_dies(lab: Lab, operator: OperatorProcess) -> None:
    standby = OperatorProcess(REPO / ".lab" / "logs" / "operator-e2e-standby.log", priority=1)
    standby.start()
    try:
        wait_for(lambda: 1 in lab.peering_priorities(), 60, "the standby to join the peering")
        counter, name = Counter(lab), unique("mig-takeover")
        lab.migration(name, counter.name, target="node2", pauses="Transferring=4")
        lab.wait_for_phase(name, "Transferring")
        assert name not in standby.log(), "the standby acted while the active replica was alive"
        operator.kill()
        status = lab.wait_until(name, timeout=180)["status"]
        assert status["phase"] in RECOVERED, status
        assert name in standby.log()
        counter.assert_runs_once_and_continuous()
    finally:
        operator.keep_running()  # a test that failed before the kill must not start a second one
        standby.stop()
