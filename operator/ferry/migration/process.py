"""Live migration of a plain process (not a container) with CRIU: the step behind each phase.

The process keeps its PID, so the target must have that PID free; the executable and every open
file must exist at the same paths there. All of that is checked before the freeze.
"""

from __future__ import annotations

import logging
import time
from functools import partial

from ferry.api import SpecError
from ferry.hosts import processes, terminal
from ferry.hosts.criu import Criu, restore_argv
from ferry.hosts.docker_host import DockerHost
from ferry.hosts.errors import last_line
from ferry.hosts.files import HostFiles
from ferry.hosts.peer_stream import withdraw_stream_keys
from ferry.hosts.shell import RemoteShell
from ferry.hosts.ssh import Commands
from ferry.hosts.streams import Stream
from ferry.hosts.terminal import TerminalSession
from ferry.migration.context import MigrationContext
from ferry.migration.errors import HostError, Problem
from ferry.migration.phases import Outcome, Phase
from ferry.migration.state import Terminal, format_duration, milliseconds, now
from ferry.migration.steps import MigrationSteps, unfinished
from ferry.migration.workload_rules import process_problem

log = logging.getLogger(__name__)

IMAGES_ROOT = "/var/lib/ferry/images"
PID_RELEASE_SECONDS = 15.0  # on hosts sharing one kernel, the dumped PID is free once it is reaped
TERMINAL_RESTORE_SECONDS = 120.0


def terminal_status(session: TerminalSession) -> Terminal:
    return Terminal(host=session.host, session=session.name, attach=session.attach, log=session.log)


class ProcessMigration(MigrationSteps):
    def __init__(self, context: MigrationContext) -> None:
        super().__init__(context)
        process = context.request.spec.workload.process
        assert process is not None
        self.process = process
        # Separate paths on each side: hosts that share a filesystem (the lab) must not clobber each other.
        self.workdir = f"{IMAGES_ROOT}/{context.request.uid}"
        self.dumped = f"{self.workdir}/dumped"  # on the source
        self.received = f"{self.workdir}/received"  # on the target
        self._relay: Stream | None = None
        self._shells: dict[str, RemoteShell] = {}  # by host name: open from before the freeze

    def prepare(self) -> None:
        source, target = self.source, self.target
        pid = self._resolve_pid()
        info = processes.inspect_process(source.ssh, pid)
        if info is None:
            raise Problem("ProcessNotFound", f"process {pid} does not exist on host {source.name}")
        if (refused := self._rules_problem(source, info)) is not None:
            raise refused
        has_terminal = info.terminal_fd() is not None
        if has_terminal:
            self._check_terminals(pid, info.command)
        missing = processes.missing_paths(target.ssh, [info.executable, *info.open_files()])
        if missing:
            raise Problem(
                "MissingOnTarget",
                f"{', '.join(missing)} (used by process {pid}) do not exist on {target.name}; "
                "a restored process needs its executable and open files at the same paths",
            )
        same_kernel = processes.kernel_id(source.ssh) == processes.kernel_id(target.ssh)
        if not same_kernel and processes.is_alive(target.ssh, pid):
            raise Problem(
                "PIDTaken", f"PID {pid} is taken on {target.name}; the restored process must keep it"
            )
        for host in (source, target):
            if host.criu.version() is None:
                raise Problem(
                    "CRIUMissing", f"CRIU is not installed on host {host.name} (criu --version failed)"
                )
        self.state.fingerprint_pid = pid
        self.state.fingerprint_stack = processes.stack_address(source.ssh, pid)
        # A terminal is restored as CRIU restores a shell job's: onto a terminal of its own.
        self.state.shell_job = info.shell_job or has_terminal
        if has_terminal:
            session = TerminalSession(target.name, f"ferry-{self.ctx.request.uid[:8]}")
            self.state.terminal = terminal_status(session)
            for host in (source, target):
                terminal.make_directories(host.ssh)
        self.state.checkpoint_name = self.dumped
        for host, images in ((source, self.dumped), (target, self.received)):
            host.files.remove_tree(images)
            host.files.make_private_directory(images)
            host.files.make_private_directory(f"{images}.work")
        self._relay = source.trees.relay(
            self.dumped, target.trees, self.received, fresh=True, armed=True, tag=self.ctx.request.uid
        )
        self._shells = {host.name: RemoteShell(host.ssh) for host in (source, target)}

    def _check_terminals(self, pid: int, command: str) -> None:
        """tmux on both hosts: the restore runs in a session of it (a rollback's on the source)."""
        lacking = [host.name for host in (self.source, self.target) if not terminal.installed(host.ssh)]
        if lacking:
            raise Problem(
                "TmuxMissing",
                f"process {pid} ({command}) has a terminal: ferry restores it into a tmux session, and "
                f"tmux is not installed on {' and '.join(lacking)}; install tmux there",
            )

    def workload_problem(self) -> Problem | None:
        """The rules, on the process this run may act on: the one with the status's PID and stack
        (on the source before the dump, on the target after the restore)."""
        pid, stack = self.state.fingerprint_pid, self.state.fingerprint_stack
        if pid is None or stack is None:
            return None
        for host in (self.source, self.target):
            if processes.stack_address(host.ssh, pid) != stack:
                continue
            info = processes.inspect_process(host.ssh, pid)
            if info is not None and (problem := self._rules_problem(host, info)) is not None:
                return problem
        return None

    def _rules_problem(self, host: DockerHost, info: processes.ProcessInfo) -> Problem | None:
        return process_problem(
            self.ctx.request.namespace,
            info,
            processes.user_names(host.ssh, info.uids),
            self.host_specs(),
            is_operator=processes.is_this_process(host.ssh, info.pid),
        )

    def _resolve_pid(self) -> int:
        if self.process.pid is not None:
            return self.process.pid
        assert self.process.name is not None
        found = processes.pids_named(self.source.ssh, self.process.name)
        if len(found) != 1:
            matches = f"{len(found)} processes ({', '.join(map(str, found))})" if found else "no process"
            raise Problem(
                "ProcessNotFound" if not found else "AmbiguousProcess",
                f"{matches} named '{self.process.name}' on {self.source.name}; "
                "workload.process.name must match exactly one (or give its pid)",
            )
        return found[0]

    def checkpoint(self) -> None:
        pid = self._pid()
        source = self._on(self.source)
        if (
            processes.is_alive(source, pid)
            and processes.stack_address(source, pid) == self.state.fingerprint_stack
        ):
            try:
                Criu(source).dump(pid, self.dumped, shell_job=self._shell_job())
            except HostError as error:
                # CRIU resumes the process when a dump fails: nothing stays frozen.
                frozen = not processes.is_alive(source, pid)
                raise Problem("CheckpointFailed", str(error), frozen=frozen) from None
        self.progress.start("transfer", None, phase=Phase.TRANSFERRING)

    def transfer(self) -> None:
        if self._relay is None:  # resumed after a restart: nothing was armed
            self._relay = self.source.trees.relay(
                self.dumped,
                self.target.trees,
                self.received,
                fresh=True,
                armed=False,
                tag=self.ctx.request.uid,
            )
        # Kept until release(): closing a direct stream withdraws its key, a remote call the freeze
        # window need not pay for.
        self.state.metrics.checkpoint_bytes = self._relay.fire()
        self.progress.moved(self.state.metrics.checkpoint_bytes)
        self.state.transfer = "Stream"

    def restore(self) -> None:
        if not self._runs_on(self.target):
            self._wait_for_pid_release(self.target)
            self.state.restore_requested = True
            self.ctx.save()
            self._restore_on(self.target, self.received)

    def verify(self) -> Outcome:
        if not self._runs_on(self.target):
            raise Problem(
                "NotRunning", f"process {self._pid()} does not run its restored memory on {self.target.name}"
            )
        # From here the target is the only copy: a failure to clean up is reported, never rolled back.
        not_done = [] if self.ctx.request.spec.keep_checkpoint else self._remove_images()
        downtime = self.state.metrics.downtime_ms or 0
        return Outcome(
            f"{self.state.workload} runs on {self.target.name} with PID {self._pid()}; "
            f"downtime {format_duration(downtime)}" + unfinished(not_done),
            reason="Migrated",
        )

    def roll_back(self) -> Outcome:
        """The target is stopped only when the source can come back (it runs, or its images exist)."""
        cause = self.state.message
        if not self._runs_on(self.source) and not self.source.files.exists(f"{self.dumped}/inventory.img"):
            return self._keep_the_target(cause)
        if self.state.restore_requested and self._runs_on(self.target):
            processes.kill(self.target.ssh, self._pid())
        if not self._runs_on(self.source):
            self._wait_for_pid_release(self.source)
            self._restore_on(self.source, self.dumped)
        if not self._runs_on(self.source):
            raise Problem("RestoreFailed", f"process {self._pid()} did not come back on {self.source.name}")
        assert self.state.frozen_at is not None
        self.state.metrics.downtime_ms = milliseconds(self.state.frozen_at, now())
        return self.rolled_back(cause, self._remove_images())

    def target_cleanup(self) -> None:
        self.target.files.remove_tree(self.received)

    def release(self) -> None:
        """Closes what was opened for a step that will not run; once the Migration ended, withdraws
        the stream keys a run that died left."""
        if self._relay is not None:
            self._relay.close()
            self._relay = None
        for shell in self._shells.values():
            shell.close()
        self._shells = {}
        if self.state.phase.is_terminal and self.state.target_host is not None:
            try:
                target = self.target
                if target.peer is not None:
                    withdraw_stream_keys(self.source.ssh, target.ssh, target.peer, self.ctx.request.uid)
            except (HostError, SpecError) as error:  # a host unreachable, or its DockerHost gone
                log.warning("could not withdraw the stream keys of %s: %s", self.ctx.request.uid, error)

    def _restore_on(self, host: DockerHost, images: str) -> None:
        try:
            if self.state.terminal is None:
                Criu(self._on(host)).restore(images, shell_job=self._shell_job())
            else:
                self._restore_in_terminal(host, images)
        except HostError as error:
            raise Problem("RestoreFailed", str(error)) from None

    def _restore_in_terminal(self, host: DockerHost, images: str) -> None:
        """Restores into a tmux session on `host`, where CRIU stays as the process's parent; done once
        CRIU wrote the PID file, failed if the session ended first. The session's name is the
        migration's: one found running was started by this migration before the operator restarted."""
        assert self.state.terminal is not None
        on, session = self._on(host), TerminalSession(host.name, self.state.terminal.session)
        pidfile = f"{images}.work/restored.pid"
        if not terminal.running(on, session):  # else a run that died after starting it: adopted
            on.run(["rm", "-f", "--", pidfile], timeout=30)
            terminal.start(on, session, restore_argv(images, shell_job=True, pidfile=pidfile))
        deadline = time.monotonic() + TERMINAL_RESTORE_SECONDS
        files = HostFiles(on)  # the shell kept open: each look inside the freeze costs no SSH exec
        while not files.exists(pidfile):
            if not terminal.running(on, session):
                # CRIU's own errors are in its log; what kept it from starting, in the session's.
                logs = [f"{images}.work/restore.log", session.log]
                said = on.run(["tail", "-q", "-n", "1", "--", *logs], check=False, timeout=30)
                raise Problem("RestoreFailed", f"criu restore on {host.name} failed: {last_line(said.text)}")
            if time.monotonic() > deadline:
                raise Problem(
                    "RestoreFailed",
                    f"criu restore on {host.name} did not finish within {TERMINAL_RESTORE_SECONDS:.0f}s",
                )
            time.sleep(0.05)
        self.state.terminal = terminal_status(session)

    def _runs_on(self, host: DockerHost) -> bool:
        """The process runs its checkpointed memory in this host's network namespace."""
        pid, on = self._pid(), self._on(host)
        if (
            not processes.is_alive(on, pid)
            or processes.stack_address(on, pid) != self.state.fingerprint_stack
        ):
            return False
        return processes.network_namespace(on, pid) == processes.network_namespace(on)

    def _wait_for_pid_release(self, host: DockerHost) -> None:
        deadline = time.monotonic() + PID_RELEASE_SECONDS
        while processes.is_alive(self._on(host), self._pid()) and time.monotonic() < deadline:
            time.sleep(0.05)

    def _on(self, host: DockerHost) -> Commands:
        """The shell kept open on the host since before the freeze, else its SSH session."""
        return self._shells.get(host.name) or host.ssh

    def _pid(self) -> int:
        assert self.state.fingerprint_pid is not None
        return self.state.fingerprint_pid

    def _shell_job(self) -> bool:
        return bool(self.state.shell_job)

    def _remove_images(self) -> list[str]:
        """Removes the images on the target, then on the source; returns what could not be removed."""
        not_done = []
        for host in (self.target, self.source):
            not_done += self.attempt(
                f"removing {self.workdir} on {host.name}", partial(host.files.remove_tree, self.workdir)
            )
        return not_done

    def _keep_the_target(self, cause: str) -> Outcome:
        """The source can no longer come back: the target is the only copy. Kept if it runs."""
        if not self._runs_on(self.target):
            raise Problem(
                "NowhereToRun",
                f"process {self._pid()} runs neither on {self.source.name}, whose images are gone, "
                f"nor on {self.target.name}",
            )
        return self.target_kept(cause, f"its images are gone from {self.source.name}")
