"""Post-copy (spec.postCopy, docs/postcopy.md): the spec, the preflight's checks, the choice of the
mechanism, PostCopyCheckpoints' decisions with a stand-in runc on each host, and the host scripts
run with a stand-in runc and criu."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ferry.api import MigrationSpec, SpecError
from ferry.hosts.criu import CriuCheck
from ferry.hosts.runc import LAZY_CHECKPOINT_SCRIPT, LAZY_PAGES_SCRIPT, TASK_LINES, LazyPagesEnd
from ferry.migration import preflight
from ferry.migration.checkpoints import PostCopyCheckpoints, choose_mechanism
from ferry.migration.container import ContainerMigration
from ferry.migration.errors import Problem, Wait
from ferry.migration.phases import Phase
from ferry.migration.preflight import PostCopyFacts
from ferry.migration.runner import run_phase
from ferry.migration.state import PostCopy, now
from tests.unit.fakes import FakeHosts, container_spec, context, frozen_state, host_spec, preflight_facts

SPEC = {"workload": {"container": "web"}, "targetHost": "node2", "postCopy": True}


# -- the spec


def test_post_copy_is_off_unless_asked_for() -> None:
    assert not MigrationSpec.from_dict({**SPEC, "postCopy": False}).post_copy
    assert MigrationSpec.from_dict(SPEC).post_copy


@pytest.mark.parametrize(
    "spec",
    [
        {**SPEC, "strategy": "Cold"},
        {**SPEC, "workload": {"process": {"pid": 7}}, "sourceHost": "node1"},
    ],
)
def test_post_copy_is_refused_but_for_a_live_container(spec: dict[str, Any]) -> None:
    with pytest.raises(SpecError, match="postCopy applies to a single container workload with strategy Live"):
        MigrationSpec.from_dict(spec)


# -- preflight


def post_copy_facts(**overrides: Any) -> PostCopyFacts:
    values: dict[str, Any] = {
        "without_fast_path": [],
        "source_pipe_max_size": 4 << 20,
        "target_uffd": CriuCheck(0, "uffd-noncoop is supported"),
        "port": 27142,
        **overrides,
    }
    return PostCopyFacts(**values)


def test_the_post_copy_check_is_left_out_without_post_copy() -> None:
    assert preflight.post_copy_ready(preflight_facts()) is None


def test_the_post_copy_check_passes_with_everything_it_needs() -> None:
    check = preflight.post_copy_ready(preflight_facts(post_copy=post_copy_facts()))

    assert check is not None and check.passed
    assert "port 27142" in check.message


def test_the_post_copy_check_names_everything_missing_and_how_to_fix_it() -> None:
    lacking = post_copy_facts(
        without_fast_path=["node2"],
        source_pipe_max_size=1 << 20,
        target_uffd=CriuCheck(1, "UFFD is not supported"),
        port=None,
    )

    check = preflight.post_copy_ready(preflight_facts(post_copy=lacking))

    assert check is not None and not check.passed and check.reason == "PostCopyUnavailable"
    assert "without spec.fastPath: node2" in check.message
    assert "sysctl -w fs.pipe-max-size=4194304" in check.message
    assert "uffd-noncoop" in check.message and "UFFD is not supported" in check.message
    assert "no TCP port from 27100 to 27199 is free" in check.message


def test_the_preflight_gathers_the_post_copy_facts_and_picks_a_free_port() -> None:
    hosts = FakeHosts(host_spec("node1"), host_spec("node2"))
    node1, node2 = hosts.hosts["node1"], hosts.hosts["node2"]
    answers = {
        ("cat", "/proc/sys/fs/pipe-max-size"): "4194304\n",
        ("criu", "check", "--feature", "uffd-noncoop"): "uffd-noncoop is supported\n",
    }
    for host in (node1, node2):
        host.run = answering(host.run, answers)  # type: ignore[method-assign]
    for port in range(27100, 27200):
        if port != 27150:
            node1.listen("tcp", port)

    found = preflight._post_copy_facts(node1, node2, "uid-1")  # type: ignore[arg-type]

    assert found == post_copy_facts(without_fast_path=["node1", "node2"], port=27150)


def answering(run: Any, answers: dict[tuple[str, ...], str]) -> Any:
    def answer(argv: list[str], **kwargs: Any) -> Any:
        from ferry.hosts.ssh import CommandResult

        if tuple(argv) in answers:
            return CommandResult(0, answers[tuple(argv)].encode(), b"")
        return run(argv, **kwargs)

    return answer


# -- the mechanism's choice


def test_post_copy_without_the_fast_path_on_both_hosts_fails_rather_than_falling_back() -> None:
    hosts = FakeHosts(host_spec("node1"), host_spec("node2"))
    source, target = hosts.hosts["node1"], hosts.hosts["node2"]
    info = source.engine.add_source(running=True)

    with pytest.raises(Problem, match=r"without spec\.fastPath: node1, node2") as refused:
        choose_mechanism("web", source, target, info, live=True, post_copy=True)  # type: ignore[arg-type]
    assert refused.value.reason == "PostCopyUnavailable"
    assert choose_mechanism("web", source, target, info, live=True) == "docker"  # type: ignore[arg-type]


def test_post_copy_with_the_fast_path_is_its_own_mechanism() -> None:
    hosts = FakeHosts(host_spec("node1"), host_spec("node2"))
    source, target = hosts.hosts["node1"], hosts.hosts["node2"]
    for host in (source, target):
        host.runc = FakeRunc(host.name, [])  # type: ignore[assignment]
    info = source.engine.add_source(running=True)

    assert choose_mechanism("web", source, target, info, live=True, post_copy=True) == "runc-postcopy"  # type: ignore[arg-type]


# -- PostCopyCheckpoints, with a stand-in runc on each host


@dataclass
class FakeRunc:
    """Records the post-copy calls of RuncHost; `pulled` and `served` are how the pull ends."""

    host: str
    calls: list[str]
    pulled: LazyPagesEnd = field(default_factory=lambda: LazyPagesEnd("0", [(65545, 65545)]))
    served: str = "0"
    cut: int | None = 2  # the connections CRIU's dump log lists (None: no log)

    def install_runtime(self) -> None:
        pass

    def runc_root(self, container_id: str, runtime: str) -> str:
        return "/run/docker/runtime-runc/moby"

    def start_lazy_pages(self, images: str, work: str, address: str, port: int) -> None:
        self.calls.append(f"{self.host}:start_lazy_pages:{address}:{port}")

    def signal_container(self, root: str, container_id: str, signal: str) -> None:
        self.calls.append(f"{self.host}:signal:{container_id}:{signal}")

    def wait_for_lazy_pages(self, work: str, timeout: float) -> LazyPagesEnd:
        self.calls.append(f"{self.host}:wait_for_lazy_pages")
        return self.pulled

    def wait_for_lazy_dump(self, work: str, timeout: float) -> str:
        self.calls.append(f"{self.host}:wait_for_lazy_dump")
        return self.served

    def stop_lazy_pages(self, work: str) -> None:
        self.calls.append(f"{self.host}:stop_lazy_pages")

    def abort_lazy_dump(self, work: str) -> None:
        self.calls.append(f"{self.host}:abort_lazy_dump")

    def forget_restore(self, container_id: str) -> None:
        self.calls.append(f"{self.host}:forget_restore:{container_id}")

    def release_received(self, uid: str) -> None:
        self.calls.append(f"{self.host}:release_received")

    def connections_cut(self, work: str) -> int | None:
        return self.cut


@dataclass(frozen=True)
class Paths:
    target_checkpoint: str = "/var/lib/docker/containers/c-tgt/checkpoints/ferry-uid-1"


class Files:
    def paths(self) -> Paths:
        return Paths()


def mechanism(phase: Phase, *, ran: bool = False, arrived: bool = False) -> tuple[PostCopyCheckpoints, Any]:
    """A post-copy migration in `phase` (`ran`: Verifying was entered) and the calls made on its hosts."""
    hosts = FakeHosts(host_spec("node1"), host_spec("node2"))
    calls: list[str] = []
    for host in hosts.hosts.values():
        host.runc = FakeRunc(host.name, calls)  # type: ignore[assignment]
        host.calls = calls
        host.engine.calls = calls
    hosts.hosts["node1"].engine.add_source(running=True)
    hosts.hosts["node2"].engine.add_twin(running=ran)
    transitions = [(Phase.RESTORING, now())] + ([(Phase.VERIFYING, now())] if ran else [])
    state = frozen_state(
        phase,
        mechanism="runc-postcopy",
        post_copy=PostCopy(port=27142, pages_arrived=arrived),
        transitions=transitions,
    )
    state.metrics.downtime_ms = 400
    ctx, _ = context(container_spec(post_copy=True), state, hosts)
    source, target = hosts.hosts["node1"], hosts.hosts["node2"]
    return PostCopyCheckpoints(ctx, source, target, Files()), hosts  # type: ignore[arg-type]


def test_the_target_starts_after_lazy_pages_listens_and_the_source_is_fenced() -> None:
    checkpoints, hosts = mechanism(Phase.RESTORING)
    calls = hosts.hosts["node1"].calls

    checkpoints.start_target("c-tgt")

    assert [c for c in calls if "inspect" not in c] == [
        "node2:start_lazy_pages:10.0.0.5:27142",  # the source's spec.address: the page server's
        "node1:signal:c-src:STOP",
        "node2:start:c-tgt",
    ]


def test_the_source_may_go_only_once_every_page_arrived_and_the_page_server_ended_well() -> None:
    checkpoints, hosts = mechanism(Phase.VERIFYING, ran=True)

    checkpoints.wait_for_memory()

    state = checkpoints.state
    assert state.post_copy is not None and state.post_copy.pages_arrived
    assert state.metrics.lazy_pages == 65545
    assert state.metrics.post_copy_ms is not None
    assert hosts.hosts["node1"].calls == ["node2:wait_for_lazy_pages", "node1:wait_for_lazy_dump"]


@pytest.mark.parametrize(
    ("pulled", "served"),
    [
        (LazyPagesEnd("137", []), "0"),  # lazy-pages killed
        (LazyPagesEnd("0", [(100, 65545)]), "0"),  # ended without every page
        (LazyPagesEnd("timeout", []), "0"),
        (LazyPagesEnd("0", [(65545, 65545)]), "1"),  # the page server failed
    ],
)
def test_a_pull_that_failed_stops_both_ends_and_leads_to_the_rollback(
    pulled: LazyPagesEnd, served: str
) -> None:
    checkpoints, hosts = mechanism(Phase.VERIFYING, ran=True)
    hosts.hosts["node2"].runc.pulled = pulled
    hosts.hosts["node1"].runc.served = served

    with pytest.raises(Problem) as failed:
        checkpoints.wait_for_memory()

    assert failed.value.reason == "PostCopyInterrupted" and failed.value.frozen
    assert hosts.hosts["node1"].calls[-2:] == ["node2:stop_lazy_pages", "node1:abort_lazy_dump"]
    state = checkpoints.state
    assert state.post_copy is not None and not state.post_copy.pages_arrived


def test_a_rollback_before_the_target_ran_ends_both_criu_and_resumes_the_source() -> None:
    checkpoints, hosts = mechanism(Phase.ROLLING_BACK)
    calls = hosts.hosts["node1"].calls

    checkpoints.settle_source()

    assert [c for c in calls if "inspect" not in c] == [
        "node2:stop_lazy_pages",
        "node1:abort_lazy_dump",
        "node1:signal:c-src:CONT",
    ]


def test_a_rollback_after_every_page_arrived_resumes_the_source() -> None:
    checkpoints, hosts = mechanism(Phase.ROLLING_BACK, ran=True, arrived=True)

    checkpoints.settle_source()

    assert hosts.hosts["node1"].calls[-1] == "node1:signal:c-src:CONT"


def test_after_the_target_ran_with_pages_missing_the_stopped_source_is_left_to_the_user() -> None:
    checkpoints, hosts = mechanism(Phase.ROLLING_BACK, ran=True)
    hosts.hosts["node1"].stopped.add(42)

    with pytest.raises(Problem, match=r"kept stopped .* ferry does not resume it") as waiting:
        checkpoints.settle_source()

    assert waiting.value.reason == "PostCopyInterrupted"
    assert not [c for c in hosts.hosts["node1"].calls if c.endswith(":CONT")]


def test_once_the_user_resumed_the_source_by_hand_the_rollback_goes_on() -> None:
    checkpoints, hosts = mechanism(Phase.ROLLING_BACK, ran=True)

    checkpoints.settle_source()  # PID 42 runs (state S): nothing raised, nothing sent

    assert not [c for c in hosts.hosts["node1"].calls if c.endswith(":CONT")]


def test_a_source_that_no_longer_runs_cannot_come_back_from_a_post_copy_checkpoint() -> None:
    checkpoints, _ = mechanism(Phase.ROLLING_BACK)

    assert "holds no memory" in (checkpoints.missing_on_source() or "")


def test_verifying_removes_the_source_only_after_every_page_arrived() -> None:
    checkpoints, hosts = mechanism(Phase.VERIFYING, ran=True)
    steps = ContainerMigration(checkpoints.ctx)

    run_phase(steps.ctx, steps)

    calls = [c for c in hosts.hosts["node1"].calls if "wait" in c or "remove_container" in c]
    assert calls == ["node2:wait_for_lazy_pages", "node1:wait_for_lazy_dump", "node1:remove_container:c-src"]
    assert steps.state.phase is Phase.SUCCEEDED


def test_verifying_records_the_connections_the_checkpoint_cut_as_criu_logged_them() -> None:
    checkpoints, _ = mechanism(Phase.VERIFYING, ran=True)
    steps = ContainerMigration(checkpoints.ctx)

    run_phase(steps.ctx, steps)

    assert steps.state.metrics.connections_cut == 2


def test_a_resumed_run_whose_dump_log_is_gone_keeps_the_count_it_made() -> None:
    checkpoints, hosts = mechanism(Phase.VERIFYING, ran=True)
    checkpoints.state.metrics.connections_cut = 3
    hosts.hosts["node1"].runc.cut = None

    checkpoints.count_cut_connections()

    assert checkpoints.state.metrics.connections_cut == 3


def test_a_pull_that_failed_in_verifying_keeps_the_source_and_rolls_back() -> None:
    checkpoints, hosts = mechanism(Phase.VERIFYING, ran=True)
    hosts.hosts["node2"].runc.pulled = LazyPagesEnd("1", [(10, 65545)])
    hosts.hosts["node1"].stopped.add(42)  # the stop fence holds it
    steps = ContainerMigration(checkpoints.ctx)

    run_phase(steps.ctx, steps)
    assert steps.state.phase is Phase.ROLLING_BACK
    with pytest.raises(Wait):
        run_phase(steps.ctx, steps)  # the rollback: the twin goes, the stopped source stays

    calls = hosts.hosts["node1"].calls
    assert "node2:remove_container:c-tgt" in calls
    assert not [c for c in calls if c == "node1:remove_container:c-src" or c.endswith(":CONT")]
    assert "ferry does not resume it" in steps.state.waiting


def test_lazy_pages_end_is_complete_only_with_exit_zero_and_every_page_of_every_task() -> None:
    assert LazyPagesEnd("0", [(3, 3), (5, 5)]).complete
    assert LazyPagesEnd("0", [(3, 3), (5, 5)]).pages == 8
    assert not LazyPagesEnd("0", [(3, 3), (4, 5)]).complete
    assert not LazyPagesEnd("0", []).complete
    assert not LazyPagesEnd("1", [(3, 3)]).complete


# -- the host scripts, with a stand-in runc and criu


@pytest.fixture
def stand_ins(tmp_path: Path) -> dict[str, str]:
    """An environment whose runc and criu are stand-ins: runc checkpoint / criu lazy-pages write the
    status byte unless told to fail ($FAIL), then wait until $RELEASE exists and exit $RC."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("runc", "criu"):
        stand_in = bin_dir / name
        stand_in.write_text(
            "#!/bin/sh\n"
            f'printf "%s\\n" "$*" >> {tmp_path}/{name}-calls\n'
            '[ -n "${FAIL:-}" ] && { echo "stand-in failed" >&2; exit 1; }\n'
            "printf '\\0' >&3; exec 3>&-\n"
            'while [ ! -e "$RELEASE" ]; do sleep 0.05; done\n'
            'exit "${RC:-0}"\n'
        )
        stand_in.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "RELEASE": str(tmp_path / "release")}


def wait_for_file(path: Path) -> str:
    deadline = time.monotonic() + 10
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)
    return path.read_text().strip()


def test_the_lazy_dump_says_dumped_at_the_status_byte_and_records_runc_s_end(
    tmp_path: Path, stand_ins: dict[str, str]
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    argv = ["sh", "-c", LAZY_CHECKPOINT_SCRIPT, "x", "/root", "c-src", str(tmp_path / "img"), str(work)]
    dump = subprocess.Popen(
        [*argv, "10.0.0.5", "27142"], env=stand_ins, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert dump.stdout is not None and dump.stdin is not None
    assert dump.stdout.readline() == b"ready\n"
    dump.stdin.write(b"go\n")
    dump.stdin.close()

    assert dump.stdout.readline() == b"dumped\n"  # while runc still serves the memory
    assert (work / "dumped").exists() and not (work / "served").exists()
    Path(stand_ins["RELEASE"]).touch()
    assert wait_for_file(work / "served") == "0"
    assert dump.wait(10) == 0
    called = (tmp_path / "runc-calls").read_text()
    assert "checkpoint --lazy-pages --page-server 10.0.0.5:27142 --status-fd 3 --leave-running" in called


def test_a_lazy_dump_that_fails_before_its_status_byte_fails_with_its_output(
    tmp_path: Path, stand_ins: dict[str, str]
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    argv = ["sh", "-c", LAZY_CHECKPOINT_SCRIPT, "x", "/root", "c-src", str(tmp_path / "img"), str(work)]

    ended = subprocess.run(
        [*argv, "10.0.0.5", "27142"], env={**stand_ins, "FAIL": "1"}, input=b"go\n", capture_output=True
    )

    assert ended.returncode == 1
    assert ended.stdout == b"ready\n" and b"stand-in failed" in ended.stderr
    assert not (work / "dumped").exists()


def lazy_pages_command(tmp_path: Path) -> tuple[Path, list[str]]:
    """The lazy-pages script's work directory (made) and its command, against a page server at
    10.0.0.5:27142."""
    work = tmp_path / "lazy"
    work.mkdir()
    return work, ["sh", "-c", LAZY_PAGES_SCRIPT, "x", str(tmp_path / "img"), str(work), "10.0.0.5", "27142"]


def test_lazy_pages_returns_once_it_listens_and_records_its_end(
    tmp_path: Path, stand_ins: dict[str, str]
) -> None:
    work, argv = lazy_pages_command(tmp_path)

    subprocess.run(argv, env={**stand_ins, "RC": "0"}, check=True, timeout=10)

    assert not (work / "lazy.exit").exists()  # it runs on, detached
    Path(stand_ins["RELEASE"]).touch()
    assert wait_for_file(work / "lazy.exit") == "0"
    called = (tmp_path / "criu-calls").read_text()
    assert "lazy-pages --page-server --address 10.0.0.5 --port 27142" in called
    assert f"-W {work} -o lazy.log -v4" in called


def test_lazy_pages_started_again_after_a_crash_leaves_the_listening_daemon_to_serve(
    tmp_path: Path, stand_ins: dict[str, str]
) -> None:
    work, argv = lazy_pages_command(tmp_path)
    subprocess.run(argv, env=stand_ins, check=True, timeout=10)

    again = subprocess.run(argv, env=stand_ins, capture_output=True, timeout=10)

    assert again.returncode == 0, again.stderr
    assert len((tmp_path / "criu-calls").read_text().splitlines()) == 1
    assert not (work / "lazy.exit").exists()
    Path(stand_ins["RELEASE"]).touch()
    assert wait_for_file(work / "lazy.exit") == "0"


def test_lazy_pages_that_never_listens_fails(tmp_path: Path, stand_ins: dict[str, str]) -> None:
    work, argv = lazy_pages_command(tmp_path)

    ended = subprocess.run(argv, env={**stand_ins, "FAIL": "1"}, capture_output=True, timeout=10)

    assert ended.returncode == 1
    assert b"criu lazy-pages ended before it was ready" in ended.stderr
    assert wait_for_file(work / "lazy.exit") == "1"


# -- what lazy-pages' log says of each task

LAZY_LOG_END = """uffd: 159-13: EXIT
uffd: 159--13: UFFD transferred pages: (6/9)
uffd: 1-12: UFFD transferred pages: (10/10)
"""


def test_a_task_that_ended_during_the_pull_does_not_make_it_incomplete() -> None:
    pulled = LazyPagesEnd.from_log("0", LAZY_LOG_END)

    assert pulled.counts == [(10, 10)] and pulled.exited == [(6, 9)]
    assert pulled.complete and pulled.pages == 16


def test_a_task_still_running_with_pages_missing_makes_the_pull_incomplete() -> None:
    pulled = LazyPagesEnd.from_log("0", "uffd: 1-12: UFFD transferred pages: (10/12)\n")

    assert not pulled.complete


def test_a_log_without_any_count_is_no_complete_pull() -> None:
    assert not LazyPagesEnd.from_log("0", "").complete


def test_the_lines_the_host_greps_from_the_log_are_those_the_parser_reads(tmp_path: Path) -> None:
    log = tmp_path / "lazy.log"
    log.write_text(
        "(00.402858) uffd: 159-13: uffd_copy: 0x5ea000/4096\n"
        "(00.421472) uffd: 159-13: EXIT\n"
        "(00.421491) uffd: 159--13: UFFD transferred pages: (6/9)\n"
        "(00.423769) uffd: 1-12: uffd_copy: 0x7/4096\n"
        "(00.423892) uffd: 1-12: UFFD transferred pages: (10/10)\n"
        "(00.423909) page-xfer: Disconnect\n"
    )
    grepped = subprocess.run(
        ["grep", "-hoE", "--", TASK_LINES, str(log)], capture_output=True, text=True
    ).stdout

    assert grepped == LAZY_LOG_END
