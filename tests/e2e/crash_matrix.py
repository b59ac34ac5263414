"""The operator dead right after one host call of a migration (`ferry run --test-hooks
--test-crash-after-host-calls N`, an exit as abrupt as SIGKILL), then a normal operator taking over:
the workload must end up on exactly one host, counting on from where it was, silent no longer than
the downtime, with nothing of the migration left on either host.

Shared by hack/crash-matrix (after every host call of a migration) and test_crash_matrix.py (a few).
An operator numbers the host calls of its process, and it probes every DockerHost as it starts: so
each run waits for those probes before the Migration exists, and numbers the migration's calls from
there. A census (a migration under an operator whose hook never fires) says how many there are.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ferry.migration.container_group import member_uid
from tests.e2e.lab import (
    MEMHOG,
    REPO,
    TERMINAL_PHASES,
    Counter,
    Helloer,
    HostCall,
    Lab,
    OperatorProcess,
    longest_gap_ms,
    unique,
    wait_for,
    work_processes,
)
from tests.e2e.test_faults import FAILING_RESTORE, fake_criu

LOGS = REPO / ".lab" / "logs" / "crash-matrix"  # one operator log per run
HELLOERS = REPO / ".lab" / "crash-matrix"  # where the process workload is built (hosts allow .lab)
CRASHER_PRIORITY = 10  # below every resuming operator's: the peering record a crash leaves stops none
COUNT_ONLY = 1_000_000_000  # a crash hook that never fires: the operator only logs its host calls
RECOVERED = ("Succeeded", "RolledBack")
GAP_MARGIN_MS = 1000.0  # a workload prints every 0.1 s, and its log lags: its silence may pass the downtime
PROBE_SECONDS = 60.0
CRASH_SECONDS = 120.0
END_SECONDS = 240.0
CLEANUP_SECONDS = 10.0  # an ended migration still removes files after its last status write
FAILURES = (AssertionError, subprocess.SubprocessError, OSError, KeyError, json.JSONDecodeError)


def crashing_options(after: int) -> tuple[str, ...]:
    """`ferry run` options of an operator that exits right after its host call `after`. It probes the
    hosts once, as it starts, so that no probe falls among the migration's calls; its Leases expire
    3 s after it dies, about when the next operator is up to take them."""
    return (
        *("--test-hooks", "--lease-seconds", "3", "--host-probe-seconds", "3600"),
        *("--test-crash-after-host-calls", str(after)),
    )


class Subject(Protocol):
    """A workload moved node1 -> node2, as a crash run checks it."""

    def apply(self, migration: str) -> None: ...

    def assert_runs_once_and_continuous(self) -> str:
        """The host it runs on, once, counting on with no number missing or repeated."""
        ...

    def longest_gap_ms(self, host: str) -> float: ...

    def left_on(self, host: str) -> list[str]:
        """What of it is on `host`, which lost it."""
        ...

    def remove(self) -> None: ...


class ContainerSubject:
    """The lab's counter container, on node1 (or the counter given)."""

    def __init__(self, lab: Lab, counter: Counter | None = None) -> None:
        self.lab = lab
        self.counter = counter or Counter(lab, prefix="crash")

    def apply(self, migration: str) -> None:
        self.lab.migration(migration, self.counter.name, target="node2")

    def assert_runs_once_and_continuous(self) -> str:
        return self.counter.assert_runs_once_and_continuous()

    def longest_gap_ms(self, host: str) -> float:
        return self.counter.longest_gap_ms(host)

    def left_on(self, host: str) -> list[str]:
        twin = self.counter.name
        return [f"container {twin} on {host}"] if twin in self.lab.container_names(host) else []

    def remove(self) -> None:
        self.counter.remove()


class PostCopySubject(ContainerSubject):
    """memhog holding 64 MiB on node1, moved with spec.postCopy: its memory follows the restore,
    pulled by node2's lazy-pages daemon from node1's page server (both detached from the operator)."""

    def __init__(self, lab: Lab) -> None:
        super().__init__(lab, Counter(lab, prefix="crash-postcopy", image=MEMHOG, command=["64"]))

    def apply(self, migration: str) -> None:
        self.lab.migration(migration, self.counter.name, target="node2", postCopy=True)

    def left_on(self, host: str) -> list[str]:
        """Also a page server or lazy-pages daemon still running (the hosts share one kernel)."""
        return super().left_on(host) + [f"process {line}" for line in work_processes()]


# A counter that keeps its next number in its volume and ends at a loop's end on SIGTERM: stopped
# (strategy Cold) and started again, it counts on from where it stopped, in whichever copy runs.
PERSISTENT_COUNTER = (
    "trap 'exit 0' TERM; i=$(cat /data/next 2>/dev/null || echo 0); "
    "while true; do echo $i; i=$((i+1)); echo $i > /data/next; sleep 0.1; done"
)


class ColdSubject(ContainerSubject):
    """A counter container on node1 whose count lives in a named volume, moved Cold: stopped, its
    writable layer and volume copied, started on node2 (or again on node1 after a rollback)."""

    def __init__(self, lab: Lab) -> None:
        self.volume = unique("crash-cold")
        counter = Counter(
            lab,
            prefix="crash-cold",
            command=["sh", "-c", PERSISTENT_COUNTER],
            docker_args=["-v", f"{self.volume}:/data"],
        )
        super().__init__(lab, counter)

    def apply(self, migration: str) -> None:
        self.lab.migration(migration, self.counter.name, target="node2", strategy="Cold")

    def left_on(self, host: str) -> list[str]:
        """Also the volume's copy on node2 after a rollback (node1 keeps its own after a move)."""
        left = super().left_on(host)
        if host == "node2" and self.volume in self.lab.docker(host, "volume", "ls", "-q").stdout.split():
            left.append(f"volume {self.volume} on {host}")
        return left

    def remove(self) -> None:
        super().remove()
        for host in self.lab.hosts:
            self.lab.docker(host, "volume", "rm", "-f", self.volume, check=False)


class ProcessSubject:
    """The helloer, a plain process on node1."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        HELLOERS.mkdir(parents=True, exist_ok=True)
        HELLOERS.chmod(0o755)
        self.helloer = Helloer(HELLOERS)

    def apply(self, migration: str) -> None:
        self.lab.migration(migration, "", target="node2", process={"pid": self.helloer.pid})

    def assert_runs_once_and_continuous(self) -> str:
        return self.helloer.assert_runs_once_and_continuous(self.lab)

    def longest_gap_ms(self, host: str) -> float:
        return longest_gap_ms(self.helloer.times())

    def left_on(self, host: str) -> list[str]:
        return []  # one kernel for both lab hosts: a second copy would have shown as running twice

    def remove(self) -> None:
        self.helloer.stop()


class ProjectSubject:
    """Two counter containers of one compose project on node1, the second depending on the first,
    moved as one Migration: each must count on, and both on the same host."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.project = unique("crash-project")
        project = f"com.docker.compose.project={self.project}"
        self.counters = [
            Counter(lab, prefix=f"{self.project}-{service}", docker_args=("--label", project, *labels))
            for service, labels in (
                ("cache", ("--label", "com.docker.compose.service=cache")),
                (
                    "front",
                    ("--label", "com.docker.compose.service=front", "--label",
                     "com.docker.compose.depends_on=cache:service_started:false"),
                ),
            )
        ]  # fmt: skip

    def apply(self, migration: str) -> None:
        self.lab.migration(migration, "", target="node2", workload={"composeProject": self.project})

    def assert_runs_once_and_continuous(self) -> str:
        hosts = {counter.assert_runs_once_and_continuous() for counter in self.counters}
        assert len(hosts) == 1, f"the project is split: its containers run on {sorted(hosts)}"
        return hosts.pop()

    def longest_gap_ms(self, host: str) -> float:
        return max(counter.longest_gap_ms(host) for counter in self.counters)

    def left_on(self, host: str) -> list[str]:
        there = self.lab.container_names(host)
        return [f"container {c.name} on {host}" for c in self.counters if c.name in there]

    def remove(self) -> None:
        for counter in self.counters:
            counter.remove()


@dataclass(frozen=True)
class Workload:
    key: str
    label: str
    subject: Callable[[Lab], Subject]
    mechanism: str | None  # what the Migration's status.mechanism says of its move
    hosts: Callable[[Lab], AbstractContextManager[None]] = lambda lab: nullcontext()  # the lab set for it


WORKLOADS = {
    workload.key: workload
    for workload in (
        Workload(
            "fast", "a counter container on the fast path, as the lab's hosts are", ContainerSubject, "runc"
        ),
        Workload(
            "container",
            "a counter container through Docker's checkpoint API, node2 without spec.fastPath",
            ContainerSubject,
            "docker",
            lambda lab: lab.without_fast_path("node2"),
        ),
        Workload(
            "cold", "a counter container moved Cold, its count kept in a named volume", ColdSubject, "docker"
        ),
        Workload(
            "rollback",
            "a counter container on the fast path whose restore on node2 fails (its CRIU): it rolls back",
            ContainerSubject,
            "runc",
            lambda lab: fake_criu(lab, "node2", FAILING_RESTORE),
        ),
        Workload("process", "a plain process, the helloer", ProcessSubject, None),
        Workload(
            "project", "a compose project of two counter containers, on the fast path", ProjectSubject, "runc"
        ),
        Workload(
            "postcopy",
            "memhog holding 64 MiB on the fast path with spec.postCopy: its pages follow the restore",
            PostCopySubject,
            "runc-postcopy",
        ),
    )
}


@dataclass(frozen=True)
class Census:
    """The host calls of one whole migration of a workload, by an operator that only counted them."""

    workload: Workload
    before: int  # those the operator made before the Migration existed: its first probes
    calls: list[HostCall]  # the migration's, in order: call n is the operator's call before + n

    def first(self, matches: Callable[[HostCall], bool], what: str) -> int:
        """The number, counted from the migration's first, of the first call that `matches`."""
        found = next((n for n, call in enumerate(self.calls, 1) if matches(call)), None)
        listed = "\n".join(f"{n}: [{call.phase}] {call.call}" for n, call in enumerate(self.calls, 1))
        assert found is not None, f"no host call is {what}; the migration's:\n{listed}"
        return found


@dataclass(frozen=True)
class Row:
    """What came of one crash: after which host call (None: the migration made fewer), in which phase
    the status was then, how it ended, and why that is wrong (nothing: it passed)."""

    n: int
    crash: HostCall | None
    crashed_in: str
    ended: str
    downtime_ms: float | None
    problems: list[str]
    log: Path

    @property
    def passed(self) -> bool:
        return not self.problems

    def markdown(self) -> str:
        if self.crash is not None:
            call = f"`{cell(self.crash.call)}`"
        else:  # the run failed before the Migration could end, or it ended with fewer calls
            call = "-" if self.ended == "-" else "none: the migration made fewer calls"
        downtime = "-" if self.downtime_ms is None else f"{self.downtime_ms / 1000:.2f}s"
        outcome = "pass" if self.passed else f"FAIL: {cell('; '.join(self.problems))}"
        return f"| {self.n} | {call} | {self.crashed_in} | {self.ended} | {downtime} | {outcome} |"


TABLE_HEADER = (
    "| N | the host call it died right after | phase then | ended | downtime | outcome |\n"
    "|---|---|---|---|---|---|"
)


def cell(text: str) -> str:
    """Text for a Markdown table cell: one line, no column break, container IDs short."""
    short = re.sub(r"\b([0-9a-f]{12})[0-9a-f]{52}\b", r"\1", " ".join(text.split()))
    return short.replace("|", "\\|").replace("`", "'")


@dataclass(frozen=True)
class Run:
    operator: OperatorProcess  # the one that crashes (or only counts)
    subject: Subject
    migration: str


@contextmanager
def one_run(lab: Lab, workload: Workload, resumer: OperatorProcess, after: int, log: Path) -> Iterator[Run]:
    """A fresh workload and, with `resumer` stopped, an operator that exits after its host call
    `after`, done with its first probes. Afterwards the crashed operator is gone, `resumer` runs (it
    removes the Migration), and so does the workload."""
    subject = workload.subject(lab)
    operator = OperatorProcess(log, priority=CRASHER_PRIORITY, options=crashing_options(after))
    migration = unique(f"crash-{workload.key}")
    try:
        resumer.stop()
        log.unlink(missing_ok=True)
        since = time.time()
        operator.start()
        wait_for(
            lambda: not operator.alive or lab.probed_since(since),
            PROBE_SECONDS,
            "the operator's first probe of every DockerHost",
        )
        assert operator.alive, f"the operator exited before the Migration existed (log: {log})"
        yield Run(operator, subject, migration)
    finally:
        operator.stop()
        resumer.keep_running()
        lab.forget_migration(migration)
        subject.remove()


def count_calls(lab: Lab, workload: Workload, resumer: OperatorProcess) -> Census:
    """The census: one whole migration of `workload` under an operator that only counts; it must
    pass the same checks as a crash run. A migration by `resumer` comes first, so that the census
    counts what every crash run does, not what only a first migration does (copy the image to
    node2, install the fast path's runtime wrapper)."""
    unfinished = lab.unfinished_migrations()
    assert not unfinished, f"Migrations not ended would make host calls of their own: {unfinished}"
    resumer.keep_running()
    warm_up, migration = workload.subject(lab), unique(f"crash-{workload.key}-warm-up")
    try:
        warm_up.apply(migration)
        wait_for_the_end(lab, migration)
    finally:
        lab.forget_migration(migration)
        warm_up.remove()
    with one_run(lab, workload, resumer, COUNT_ONLY, LOGS / f"{workload.key}-census.log") as run:
        before = len(run.operator.host_calls(run.migration))
        run.subject.apply(run.migration)
        resource = wait_for_the_end(lab, run.migration)
        run.operator.settle(run.migration)
        problems = outcome_problems(lab, run.subject, resource)
        moves = resource["status"].get("members") or [resource["status"]]  # a group's: its members'
        mechanisms = {move.get("mechanism") for move in moves}
        if mechanisms != {workload.mechanism}:
            problems.append(f"moved by {sorted(map(str, mechanisms))}, not {workload.mechanism}")
        assert not problems, (
            f"{workload.label}, not crashed: {'; '.join(problems)} (log: {run.operator.log_path})"
        )
        return Census(workload, before, run.operator.host_calls(run.migration)[before:])


def crash_after(lab: Lab, census: Census, n: int, resumer: OperatorProcess) -> Row:
    """The workload's migration with the operator dead right after its nth host call, then resumed
    by `resumer` (left running); each run starts afresh, whatever the one before left."""
    log = LOGS / f"{census.workload.key}-{n}.log"
    try:
        with one_run(lab, census.workload, resumer, census.before + n, log) as run:
            return crash_and_resume(lab, census, n, run, resumer)
    except FAILURES as error:
        return Row(n, None, "-", "-", None, [f"{type(error).__name__}: {error}"], log)


def crash_and_resume(lab: Lab, census: Census, n: int, run: Run, resumer: OperatorProcess) -> Row:
    crasher, migration = run.operator, run.migration
    before = len(crasher.host_calls(migration))
    if before != census.before:  # its probes differ: call n would not be the migration's nth
        problem = f"the operator made {before} host calls before the Migration, not {census.before}"
        return Row(n, None, "-", "-", None, [problem], crasher.log_path)
    run.subject.apply(migration)
    wait_for(
        lambda: not crasher.alive or lab.phase(migration) in TERMINAL_PHASES,
        CRASH_SECONDS,
        f"the operator to exit after host call {census.before + n}, or {migration} to end",
    )
    crasher.settle(migration)
    crashed_in = lab.phase(migration) or "-"  # its last status write: nothing else writes it meanwhile
    crasher.stop()
    crash = next((call for call in crasher.host_calls(migration) if call.crashed), None)
    resumer.start()
    resource = wait_for_the_end(lab, migration)
    status = resource["status"]
    downtime = status.get("metrics", {}).get("downtimeMs")
    problems = outcome_problems(lab, run.subject, resource)
    return Row(n, crash, crashed_in, status["phase"], downtime, problems, crasher.log_path)


def wait_for_the_end(lab: Lab, migration: str) -> dict[str, Any]:
    try:
        return lab.wait_until(migration, timeout=END_SECONDS)
    except AssertionError:
        status = lab.get_migration(migration).get("status", {})
        raise AssertionError(
            f"not ended within {END_SECONDS:.0f}s: {status.get('phase')}: {status.get('message')}"
        ) from None


def outcome_problems(lab: Lab, subject: Subject, resource: dict[str, Any]) -> list[str]:
    """Why the outcome is wrong: the Migration neither moved the workload nor rolled it back; it runs
    elsewhere than that says, or not exactly once, or not continuously; it was silent longer than
    the downtime; or something of the migration is left."""
    status = resource["status"]
    phase = status["phase"]
    problems = [] if phase in RECOVERED else [f"ended {phase}: {status.get('message', '')}"]
    host = "node2" if phase == "Succeeded" else "node1"
    try:
        running = subject.assert_runs_once_and_continuous()
    except AssertionError as error:
        problems.append(str(error))
    else:
        if running != host:
            problems.append(f"runs on {running} after {phase}")
        downtime = status.get("metrics", {}).get("downtimeMs") or 0
        gap = subject.longest_gap_ms(running)
        if gap > downtime + GAP_MARGIN_MS:
            problems.append(f"silent for {gap:.0f} ms, downtime {downtime:.0f} ms")
        host = running
    loser = "node1" if host == "node2" else "node2"  # the other end of the move (node1 -> node2)

    def left() -> list[str]:
        uid = resource["metadata"]["uid"]
        moves = [(uid, status.get("targetContainerID"))] + [
            (member_uid(uid, n), member.get("targetContainerID"))
            for n, member in enumerate(status.get("members", []))
        ]
        return [left for move in moves for left in lab.leftovers(*move)] + subject.left_on(loser)

    deadline = time.monotonic() + CLEANUP_SECONDS
    while (found := left()) and time.monotonic() < deadline:
        time.sleep(1)
    return problems + ([f"left: {', '.join(found)}"] if found else [])
