"""The crash-after-host-calls test hook: every call to a host, counted in one place, and the operator
gone at once after the Nth. Driven through an SSHSession and a DockerEngine whose connections are
fakes: nothing touches the network, and the exit is a fake too."""

from __future__ import annotations

import io
import itertools
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, cast

import paramiko
import pytest
import requests
import requests.adapters

from ferry.cli import LOG_FORMAT
from ferry.hosts.docker_engine import DockerEngine
from ferry.hosts.host_calls import (
    CRASH_EXIT_CODE,
    HOST_CALLS,
    ContextExecutor,
    HostCalls,
    command_text,
    fenced,
)
from ferry.hosts.ssh import SSHEndpoint, SSHSession
from ferry.hosts.streams import WAIT_FOR_GO
from ferry.migration.phases import Outcome
from ferry.migration.state import MigrationState
from tests.e2e.lab import OperatorProcess
from tests.unit.test_runner import ScriptedSteps, run_until_it_ends, scripted


class Crashed(BaseException):
    """What the fake exit raises instead of ending pytest (as no `except Exception` stops an exit)."""


def crash(code: int) -> NoReturn:
    raise Crashed(code)


class EndedChannel:
    """A paramiko channel whose command ended at once with `exit_code`, printing nothing."""

    def __init__(self, exit_code: int, commands: list[str]) -> None:
        self.exit_code = exit_code
        self.commands = commands
        self.status_event = threading.Event()
        self.status_event.set()

    def settimeout(self, timeout: float | None) -> None:
        pass

    def exec_command(self, command: str) -> None:
        self.commands.append(command)

    def sendall(self, data: bytes) -> None:
        pass

    def shutdown_write(self) -> None:
        pass

    def makefile(self, mode: str) -> io.BytesIO:
        return io.BytesIO(b"")

    makefile_stderr = makefile

    def recv_exit_status(self) -> int:
        return self.exit_code

    def close(self) -> None:
        pass


class FakeTransport:
    def __init__(self, exit_code: int) -> None:
        self.exit_code = exit_code
        self.commands: list[str] = []

    def open_session(self, timeout: float | None = None) -> EndedChannel:
        return EndedChannel(self.exit_code, self.commands)


class FakeSession(SSHSession):
    """An SSHSession to "node-a" whose every command ends at once with `exit_code`."""

    def __init__(self, exit_code: int = 0) -> None:
        super().__init__(SSHEndpoint("node-a", "192.0.2.10", 22, "root", "ssh-ed25519 AAAA", "no key"))
        self.fake = FakeTransport(exit_code)

    def transport(self) -> paramiko.Transport:
        return cast(paramiko.Transport, self.fake)


class AnsweringAdapter(requests.adapters.BaseAdapter):
    """Answers every Docker Engine request with 200 and a JSON object."""

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        response = requests.Response()
        response.status_code = 200
        response.headers["Content-Type"] = "application/json"
        response._content = b'{"Version": "20.10.24"}'
        response.request = request
        return response

    def close(self) -> None:
        pass


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> Iterator[HostCalls]:
    """The process's one counter, unset and from zero, with an exit that raises Crashed; what it
    logs is captured. All of it is as it was after the test."""
    for name, value in (("crash_after", None), ("count", 0), ("exit", crash)):
        monkeypatch.setattr(HOST_CALLS, name, value)
    caplog.set_level(logging.DEBUG, logger="ferry.hosts.host_calls")
    yield HOST_CALLS


def logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "ferry.hosts.host_calls"]


def test_without_the_hook_nothing_is_counted_or_logged(
    hook: HostCalls, caplog: pytest.LogCaptureFixture
) -> None:
    session = FakeSession()
    for _ in range(3):
        session.run(["true"])
    session.open(["cat"])

    assert (hook.count, logged(caplog)) == (0, [])


def test_the_operator_exits_right_after_the_nth_call_completes(
    hook: HostCalls, caplog: pytest.LogCaptureFixture
) -> None:
    hook.crash_after = 3
    session = FakeSession()
    session.run(["true"])
    session.run(["uname", "-r"])
    with pytest.raises(Crashed) as crashed:
        session.run(["docker", "rm", "-f", "counter one"])

    assert crashed.value.args == (CRASH_EXIT_CODE,)
    assert session.fake.commands[-1] == "docker rm -f 'counter one'"  # it ran before the exit
    assert logged(caplog) == [
        "host call 1: node-a ssh true",
        "host call 2: node-a ssh uname -r",
        "crash after host call 3: node-a ssh docker rm -f 'counter one'",
    ]


def test_a_command_that_failed_completed_too(hook: HostCalls) -> None:
    hook.crash_after = 1

    with pytest.raises(Crashed):  # not CommandFailed: the host answered, then the operator died
        FakeSession(exit_code=1).run(["false"])


def test_a_command_run_is_one_call_and_a_channel_started_is_one(
    hook: HostCalls, caplog: pytest.LogCaptureFixture
) -> None:
    hook.crash_after = 100
    session = FakeSession()
    session.run(["true"])
    session.open(["tar", "-xf", "-"])
    session.open(["docker", "system", "dial-stdio"], counted=False)  # its requests are counted

    assert logged(caplog) == ["host call 1: node-a ssh true", "host call 2: node-a ssh started tar -xf -"]


def test_each_docker_engine_request_is_one_call_named_by_its_method_and_path(
    hook: HostCalls, caplog: pytest.LogCaptureFixture
) -> None:
    hook.crash_after = 2
    engine = DockerEngine(FakeSession(), "/run/docker.sock")
    engine.api.mount("http+docker://ssh", AnsweringAdapter())
    engine.version()
    with pytest.raises(Crashed):
        engine.inspect_container("counter")

    assert logged(caplog) == [
        "host call 1: node-a docker GET /version",
        "crash after host call 2: node-a docker GET /containers/counter/json",
    ]


class Lapsed(Exception):
    """What the fence of a driver whose lease lapsed raises."""


def lapsing_after(allowed: int) -> Callable[[], None]:
    """A fence that lets `allowed` calls start, then stops every other."""
    started = itertools.count()

    def check() -> None:
        if next(started) >= allowed:
            raise Lapsed

    return check


def test_a_fence_stops_a_host_call_before_it_is_made() -> None:
    session = FakeSession()
    engine = DockerEngine(session, "/run/docker.sock")
    engine.api.mount("http+docker://ssh", AnsweringAdapter())

    with fenced(lapsing_after(1)):
        session.run(["true"])
        with pytest.raises(Lapsed):
            session.run(["docker", "rm", "-f", "counter"])
        with pytest.raises(Lapsed):
            engine.inspect_container("counter")

    assert session.fake.commands == ["true"]  # the removal never reached the host


def test_a_fence_holds_in_the_tasks_its_block_gives_a_pool_and_ends_with_the_block() -> None:
    session = FakeSession()

    with fenced(lapsing_after(0)), ContextExecutor(max_workers=2) as pool:
        stopped = pool.submit(session.run, ["docker", "start", "twin"])
        with pytest.raises(Lapsed):
            stopped.result()
    session.run(["true"])  # outside the block: no fence

    assert session.fake.commands == ["true"]


def test_scripts_are_left_out_of_the_logged_command_and_long_ones_cut() -> None:
    armed = [*WAIT_FOR_GO, "sh", "-c", "runc checkpoint ...", "ferry-checkpoint", "/a b"]

    assert command_text(armed) == "sh -c ... ferry-armed sh -c ... ferry-checkpoint '/a b'"
    assert command_text(["echo", "x" * 500]).endswith("xxx...")
    assert len(command_text(["echo", "x" * 500])) == 200


class CallingSteps(ScriptedSteps):
    """Steps that each run one command on a host, named after the step."""

    session = FakeSession()

    def _step(self, name: str) -> Outcome | None:
        self.session.run([name])
        return super()._step(name)


def test_an_operator_log_reads_back_as_its_host_calls_each_in_the_phase_it_fell_in(
    hook: HostCalls, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """What the e2e crash runs read of an operator's log: the runner's phase lines and the hook's."""
    log = tmp_path / "operator.log"
    handler = logging.FileHandler(log)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.getLogger().addHandler(handler)
    caplog.set_level(logging.INFO, logger="ferry")
    hook.crash_after = 4
    steps = CallingSteps(scripted(MigrationState())[0].ctx)
    try:
        with pytest.raises(Crashed):
            run_until_it_ends(steps)
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()

    calls = OperatorProcess(log).host_calls("move-web", namespace="team-a")
    assert [(call.number, call.call, call.phase, call.crashed) for call in calls] == [
        (1, "node-a ssh admit", "Pending", False),
        (2, "node-a ssh prepare", "Preparing", False),
        (3, "node-a ssh checkpoint", "Checkpointing", False),
        (4, "node-a ssh transfer", "Transferring", True),
    ]
