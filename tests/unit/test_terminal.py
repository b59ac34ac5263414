"""A process that had a terminal is restored into a tmux session of ferry's own on the host."""

from __future__ import annotations

import shlex

from ferry.api import ProcessRef, Workload
from ferry.hosts import terminal
from ferry.hosts.docker_host import DockerHost
from ferry.hosts.terminal import TerminalSession
from ferry.migration.phases import Phase
from ferry.migration.process import ProcessMigration
from ferry.migration.state import Terminal
from tests.unit.fakes import (
    FakeCommands,
    FakeHosts,
    FakeProcess,
    container_spec,
    context,
    frozen_state,
    host_spec,
)
from tests.unit.test_workload_authorization import APP, hosts_running, migrate, process_spec, untouched

SESSION = TerminalSession("node2", "ferry-1a2b3c4d")
IN_A_TERMINAL = FakeProcess(fds=((0, "/dev/pts/3"), (1, "/dev/pts/3"), (2, "/dev/pts/3")))


def test_each_host_has_a_tmux_server_of_its_own_and_the_status_says_how_to_attach() -> None:
    assert SESSION.socket == "/run/ferry/tmux-node2.sock"
    assert TerminalSession("node1", SESSION.name).socket != SESSION.socket
    assert shlex.split(SESSION.attach) == ["tmux", "-S", SESSION.socket, "attach", "-t", "ferry-1a2b3c4d"]
    assert SESSION.log == "/var/log/ferry/ferry-1a2b3c4d.log"


def test_the_session_logs_its_output_from_the_same_tmux_command_that_starts_it() -> None:
    host = FakeCommands()

    terminal.start(host, SESSION, ["criu", "restore", "-D", "/var/lib/ferry/images/u 1/received"])

    [(argv, _)] = host.calls
    new_session, pipe_pane = argv[: argv.index(";")], argv[argv.index(";") + 1 :]
    assert new_session[:3] == ["tmux", "-S", SESSION.socket]
    assert new_session[-1] == "criu restore -D '/var/lib/ferry/images/u 1/received'"  # one quoted command
    assert pipe_pane == ["pipe-pane", "-t", SESSION.name, "-o", "cat >> /var/log/ferry/ferry-1a2b3c4d.log"]


def test_a_process_with_a_terminal_needs_tmux_on_both_hosts_and_says_where_it_lacks() -> None:
    hosts = hosts_running(IN_A_TERMINAL, workloads=(APP,))
    hosts.hosts["node2"].tmux = False

    state, sink = migrate(hosts, process_spec())

    assert (state.phase, state.reason) == (Phase.FAILED, "TmuxMissing")
    assert "has a terminal: ferry restores it into a tmux session" in state.message
    assert "tmux is not installed on node2; install tmux there" in state.message
    assert untouched(hosts, sink)


class TerminalProcessOnFakeHosts(ProcessMigration):
    """A process that had a terminal, in Restoring: where it runs is a set of host names."""

    def __init__(self, hosts: FakeHosts) -> None:
        spec = container_spec(workload=Workload(process=ProcessRef(pid=42)))
        state = frozen_state(Phase.RESTORING, target_container_id=None)
        state.terminal = Terminal(host="node2", session=SESSION.name, attach="", log="")
        ctx, _ = context(spec, state, hosts)
        super().__init__(ctx)
        self.running_on: set[str] = set()

    def _runs_on(self, host: DockerHost) -> bool:
        return host.name in self.running_on

    def _wait_for_pid_release(self, host: DockerHost) -> None:
        pass


def test_the_restore_starts_a_session_on_the_target_and_the_status_names_it() -> None:
    hosts = FakeHosts(host_spec("node1"), host_spec("node2"))
    steps = TerminalProcessOnFakeHosts(hosts)

    steps.restore()

    assert "node2:tmux new-session" in hosts.hosts["node2"].calls
    assert steps.state.terminal == Terminal(
        host="node2", session=SESSION.name, attach=SESSION.attach, log=SESSION.log
    )


def test_a_resumed_restore_adopts_the_session_a_run_that_died_started() -> None:
    hosts = FakeHosts(host_spec("node1"), host_spec("node2"))
    steps = TerminalProcessOnFakeHosts(hosts)
    node2 = hosts.hosts["node2"]
    node2.tmux_sessions.add(SESSION.name)
    node2.files.paths.add(f"{steps.received}.work/restored.pid")  # CRIU finished meanwhile

    steps.restore()

    assert "node2:tmux new-session" not in node2.calls
    assert steps.state.terminal is not None and steps.state.terminal.host == "node2"
