"""The operator dead right after one host call of a fast-path migration, chosen where a crash could do
the most harm, and the test's operator taking over: the counter ends up on exactly one host,
continuous, silent no longer than the downtime, with nothing of the migration left on either host.

The chosen calls are found in a census of the same migration, so they follow the code as it changes;
hack/crash-matrix crashes after every host call, of every kind of workload.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from tests.e2e.crash_matrix import WORKLOADS, Census, count_calls, crash_after
from tests.e2e.lab import HostCall, Lab, OperatorProcess, report


def first_in(phase: str) -> Callable[[HostCall], bool]:
    return lambda call: call.phase == phase


def request_is(pattern: str) -> Callable[[HostCall], bool]:
    return lambda call: re.fullmatch(pattern, call.call) is not None


POINTS = {
    "preparing": first_in("Preparing"),  # the first look at the workload: nothing made yet
    "after-the-freeze": first_in("Checkpointing"),  # the dump's end
    "transferring": first_in("Transferring"),  # the first stream's end
    "restore": request_is(r"node2 docker POST /containers/\w+/start"),  # the twin runs from here
    "verifying": first_in("Verifying"),  # the first look at the restored twin
    "source-removal": request_is(r"node1 docker DELETE /containers/\w+"),  # the twin is the only copy now
}


@pytest.fixture(scope="module")
def census(lab: Lab, operator: OperatorProcess) -> Census:
    return count_calls(lab, WORKLOADS["fast"], resumer=operator)


@pytest.mark.parametrize("point", POINTS)
def test_operator_dead_right_after_a_host_call_is_taken_over_and_the_workload_runs_once(
    lab: Lab, operator: OperatorProcess, census: Census, point: str, request: pytest.FixtureRequest
) -> None:
    n = census.first(POINTS[point], point)
    row = crash_after(lab, census, n, resumer=operator)
    report(request.config, f"crash after {point}: {row.markdown()}")
    assert row.passed, f"{row.problems} (log: {row.log})"
    assert row.crash is not None, f"the operator did not exit after host call {n} (log: {row.log})"


@pytest.fixture(scope="module")
def process_census(lab: Lab, operator: OperatorProcess) -> Census:
    return count_calls(lab, WORKLOADS["process"], resumer=operator)


def test_a_process_whose_operator_died_once_its_stream_key_was_authorized_leaves_no_key(
    lab: Lab, operator: OperatorProcess, process_census: Census, request: pytest.FixtureRequest
) -> None:
    """The key of a stream that never ran is withdrawn by the operator that ends the migration."""
    authorized = request_is(r"node2 ssh sh -c \.\.\. ferry-authorize .*")
    n = process_census.first(authorized, "the stream key authorized")
    row = crash_after(lab, process_census, n, resumer=operator)
    report(request.config, f"crash after a process's stream key: {row.markdown()}")
    assert row.passed, f"{row.problems} (log: {row.log})"
