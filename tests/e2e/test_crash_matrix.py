"""The operator dead right after one host call of a fast-path migration (of a counter container, of
one whose restore fails so that it rolls back, of a compose project of two, and of a post-copy move
while its pages are pulled), chosen where a crash could do the most harm, and the test's operator
taking over: each counter ends up on exactly one host (a project's both on the same one),
continuous, silent no longer than the downtime, with nothing of the migration left on either host.

The chosen calls are found in a census of the same migration, so they follow the code as it changes;
hack/crash-matrix crashes after every host call, of every kind of workload.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from tests.e2e.crash_matrix import WORKLOADS, Census, Row, count_calls, crash_after
from tests.e2e.lab import HostCall, Lab, OperatorProcess, report


def first_in(phase: str) -> Callable[[HostCall], bool]:
    return lambda call: call.phase == phase


def request_is(pattern: str) -> Callable[[HostCall], bool]:
    return lambda call: re.fullmatch(pattern, call.call) is not None


# Where a crash could do the most harm, for each workload of crash_matrix.WORKLOADS tried in CI.
POINTS = {
    "fast": {
        "preparing": first_in("Preparing"),  # the first look at the workload: nothing made yet
        "after-the-freeze": first_in("Checkpointing"),  # the dump's end
        "transferring": first_in("Transferring"),  # the first stream's end
        "restore": request_is(r"node2 docker POST /containers/\w+/start"),  # the twin runs from here
        "verifying": first_in("Verifying"),  # the first look at the restored twin
        "source-removal": request_is(r"node1 docker DELETE /containers/\w+"),  # the twin is the only copy now
    },
    "rollback": {
        # the restore on node2 failed: the first call of the rollback, the source still stopped
        "rolling-back": first_in("RollingBack"),
        # the source runs again from its checkpoint; the twin and the files are still to go
        "source-restarted": request_is(r"node1 docker POST /containers/\w+/start"),
    },
    "project": {
        # the first container frozen, the second still running
        "between-the-freezes": first_in("Checkpointing"),
        # the first container runs on node2, the second is still frozen on node1
        "between-the-restores": request_is(r"node2 docker POST /containers/\w+/start"),
        # the first source removed, the second not yet: the group is past the point of no return
        "between-the-removals": request_is(r"node1 docker DELETE /containers/\w+"),
    },
    "postcopy": {
        # the stop fence: the source stopped, the twin not started, lazy-pages listening on node2
        "stop-fence": request_is(r"node1 .*ferry-signal .* STOP"),
        # the twin runs while its pages are still being pulled from node1's page server
        "pulling": request_is(r"node2 docker POST /containers/\w+/start"),
    },
}


@pytest.fixture(scope="module")
def censuses(lab: Lab, operator: OperatorProcess) -> Callable[[str], Census]:
    """The census of a workload, counted once per module, when a test first needs it."""
    counted: dict[str, Census] = {}

    def census(key: str) -> Census:
        if key not in counted:
            with WORKLOADS[key].hosts(lab):
                counted[key] = count_calls(lab, WORKLOADS[key], resumer=operator)
        return counted[key]

    return census


def crash_at(
    lab: Lab, operator: OperatorProcess, census: Census, at: Callable[[HostCall], bool], what: str
) -> Row:
    """The operator dead right after the census's first call that is `at`, then taken over: the
    row, which passed."""
    n = census.first(at, what)
    with census.workload.hosts(lab):
        row = crash_after(lab, census, n, resumer=operator)
    assert row.passed, f"{row.problems} (log: {row.log})"
    return row


@pytest.mark.parametrize(
    ("workload", "point"), [(workload, point) for workload, points in POINTS.items() for point in points]
)
def test_operator_dead_right_after_a_host_call_is_taken_over_and_the_workload_runs_once(
    lab: Lab,
    operator: OperatorProcess,
    censuses: Callable[[str], Census],
    workload: str,
    point: str,
    request: pytest.FixtureRequest,
) -> None:
    """For a compose project (two containers), each point falls between the two containers' steps:
    the project must still end on one host."""
    row = crash_at(lab, operator, censuses(workload), POINTS[workload][point], point)
    report(request.config, f"crash of the {workload} workload after {point}: {row.markdown()}")
    assert row.crash is not None, f"the operator did not exit after host call {row.n} (log: {row.log})"


def test_a_process_whose_operator_died_once_its_stream_key_was_authorized_leaves_no_key(
    lab: Lab, operator: OperatorProcess, censuses: Callable[[str], Census], request: pytest.FixtureRequest
) -> None:
    """The key of a stream that never ran is withdrawn by the operator that ends the migration."""
    authorized = request_is(r"node2 ssh sh -c \.\.\. ferry-authorize .*")
    row = crash_at(lab, operator, censuses("process"), authorized, "the stream key authorized")
    report(request.config, f"crash after a process's stream key: {row.markdown()}")
