"""Terminal sessions in which ferry restores a process that had a terminal (started from an
interactive shell, say): CRIU restores such a process onto its own terminal (`--shell-job`), so ferry
runs the restore inside a tmux session of its own on the host. A user attaches to it afterwards
(`attach`), and what the process writes is appended to a log whether or not anyone is attached.

Each host has its own tmux server (a socket named after the host): hosts that share a filesystem
(the lab's) must not share one, as a process restored from the wrong server would run in the wrong
host's namespaces.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from ferry.hosts.ssh import Commands

SOCKET_DIR = "/run/ferry"
LOG_DIR = "/var/log/ferry"  # root only: a process's output may hold what its memory holds
COLUMNS, LINES = 120, 40


@dataclass(frozen=True)
class TerminalSession:
    host: str
    name: str

    @property
    def socket(self) -> str:
        return f"{SOCKET_DIR}/tmux-{self.host}.sock"

    @property
    def log(self) -> str:
        return f"{LOG_DIR}/{self.name}.log"

    @property
    def attach(self) -> str:
        """The command that attaches to it, run as root on the host."""
        return shlex.join(["tmux", "-S", self.socket, "attach", "-t", self.name])

    def tmux(self, *arguments: str) -> list[str]:
        return ["tmux", "-S", self.socket, *arguments]


def installed(host: Commands) -> bool:
    return host.run(["tmux", "-V"], check=False, timeout=30).exit_code == 0


def make_directories(host: Commands) -> None:
    host.run(["install", "-d", "-m", "0700", "--", SOCKET_DIR, LOG_DIR], timeout=30)


def start(host: Commands, session: TerminalSession, command: Sequence[str]) -> None:
    """Runs `command` in a new detached session, its output appended to the session's log from the
    start (one tmux command: the pipe is in place before the command can print)."""
    host.run(
        session.tmux(
            "new-session",
            "-d",
            "-s",
            session.name,
            "-x",
            str(COLUMNS),
            "-y",
            str(LINES),
            shlex.join(command),
            ";",
            "pipe-pane",
            "-t",
            session.name,
            "-o",
            f"cat >> {shlex.quote(session.log)}",
        ),
        timeout=30,
    )


def running(host: Commands, session: TerminalSession) -> bool:
    return host.run(session.tmux("has-session", "-t", session.name), check=False, timeout=30).exit_code == 0
