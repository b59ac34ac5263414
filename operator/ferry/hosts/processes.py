"""Plain processes on a host: what /proc says about them, and killing one (CRIU dumps and restores
them: ferry.hosts.criu).

Each call takes what runs commands on the host: its SSH session, or a shell kept open there for the
freeze window.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from ferry.hosts.ssh import Commands

# Prints: exe (empty for a kernel thread), comm, session id and flags, the UIDs (real, effective,
# saved, filesystem), the mount namespace of the process and of this shell (the host's), then one
# line per open fd ("N -> target"). $1 is a PID (an int).
INSPECT = r"""cd "/proc/$1" || exit 3
readlink exe || echo
cat comm
sed 's/.*) //' stat | cut -d' ' -f4,7
sed -n 's/^Uid:[[:space:]]*//p' status
readlink ns/mnt "/proc/$$/ns/mnt"
for fd in fd/*; do echo "${fd#fd/} -> $(readlink "$fd")"; done
"""
FIXED_LINES = 6  # the lines before the open fds
TERMINALS = ("/dev/pts/", "/dev/tty", "/dev/console")
KERNEL_THREAD = 0x00200000  # PF_KTHREAD in /proc/PID/stat's flags
DELETED = " (deleted)"  # what readlink adds to the path of a file removed since it was opened


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    executable: str  # as /proc/PID/exe reads: symbolic links resolved; "" for a kernel thread
    command: str
    session: int
    open_fds: dict[int, str]
    uids: tuple[int, int, int, int]  # real, effective, saved, filesystem
    flags: int = 0
    in_host_mount_namespace: bool = True  # False: it runs in a container

    @property
    def shell_job(self) -> bool:
        """Not a session leader: CRIU needs --shell-job to dump it from someone else's session."""
        return self.session != self.pid

    @property
    def program(self) -> str:
        """The executable's path, without the mark of a file deleted since."""
        return self.executable.removesuffix(DELETED)

    @property
    def kernel_thread(self) -> bool:
        return bool(self.flags & KERNEL_THREAD) or not self.executable

    def terminal_fd(self) -> tuple[int, str] | None:
        return next(((fd, path) for fd, path in self.open_fds.items() if path.startswith(TERMINALS)), None)

    def open_files(self) -> list[str]:
        """Paths of open regular files (which must exist on the target too)."""
        return sorted(
            {path for path in self.open_fds.values() if path.startswith("/") and not path.endswith(DELETED)}
            - {"/dev/null"}
        )


def inspect_process(host: Commands, pid: int) -> ProcessInfo | None:
    result = host.run(["sh", "-c", INSPECT, "ferry-inspect", str(int(pid))], check=False, timeout=30)
    lines = result.text.splitlines()
    if result.exit_code != 0 or len(lines) < FIXED_LINES:
        return None
    executable, command, session_flags, uid_line, namespace, host_namespace = lines[:FIXED_LINES]
    numbers = session_flags.split() + uid_line.split()
    if len(numbers) != 6 or not all(number.isdigit() for number in numbers):
        return None  # it ended while it was read
    session, flags, real, effective, saved, filesystem = map(int, numbers)
    fds = {}
    for line in lines[FIXED_LINES:]:
        number, _, target = line.partition(" -> ")
        if number.isdigit():
            fds[int(number)] = target
    return ProcessInfo(
        int(pid),
        executable,
        command,
        session,
        fds,
        (real, effective, saved, filesystem),
        flags=flags,
        in_host_mount_namespace=namespace == host_namespace,
    )


def user_names(host: Commands, uids: Iterable[int]) -> dict[int, str]:
    """The names of the users with these UIDs on the host (a UID without a name is left out)."""
    keys = [str(int(uid)) for uid in sorted(set(uids))]
    result = host.run(["getent", "passwd", *keys], check=False, timeout=30)
    entries = (line.split(":") for line in result.text.splitlines())
    return {int(entry[2]): entry[0] for entry in entries if len(entry) > 2 and entry[2].isdigit()}


def is_this_process(host: Commands, pid: int) -> bool:
    """`pid` on the host is the process running this code (the same kernel and PID namespace)."""
    return pid == os.getpid() and _pid_space(host) == _local_pid_space()


def _pid_space(host: Commands) -> str:
    return f"{kernel_id(host)} {host.run(['readlink', '/proc/self/ns/pid'], timeout=30).text.strip()}"


def _local_pid_space() -> str:
    with open("/proc/sys/kernel/random/boot_id") as boot_id:
        return f"{boot_id.read().strip()} {os.readlink('/proc/self/ns/pid')}"


def pids_named(host: Commands, name: str) -> list[int]:
    result = host.run(["pgrep", "-x", "--", name], check=False, timeout=30)
    return [int(pid) for pid in result.text.split()]


def is_alive(host: Commands, pid: int) -> bool:
    return host.run(["test", "-d", f"/proc/{int(pid)}"], check=False, timeout=30).exit_code == 0


def is_stopped(host: Commands, pid: int) -> bool:
    """The process is stopped by a signal (state T in /proc/PID/stat)."""
    stat = host.run(["cat", f"/proc/{int(pid)}/stat"], check=False, timeout=30).text
    return stat.rpartition(")")[2].split()[:1] == ["T"]


def missing_paths(host: Commands, paths: list[str]) -> list[str]:
    if not paths:
        return []
    script = 'for path in "$@"; do [ -e "$path" ] || echo "$path"; done'
    return host.run(["sh", "-c", script, "ferry-check", *paths], timeout=30).text.splitlines()


def kernel_id(host: Commands) -> str:
    """Hosts with the same boot id share one kernel (and one PID space)."""
    return host.run(["cat", "/proc/sys/kernel/random/boot_id"], timeout=30).text.strip()


def network_namespace(host: Commands, pid: int | None = None) -> str:
    """The network namespace of a process, or of the host's own SSH sessions."""
    path = f"/proc/{int(pid)}/ns/net" if pid is not None else "/proc/self/ns/net"
    return host.run(["readlink", path], timeout=30).text.strip()


def stack_address(host: Commands, pid: int) -> str | None:
    """The start of a process's stack mapping: randomised per exec, kept by a CRIU restore."""
    result = host.run(["cat", f"/proc/{int(pid)}/maps"], check=False, timeout=30)
    for line in result.text.splitlines():
        if line.endswith("[stack]"):
            return line.split("-", 1)[0]
    return None


def kill(host: Commands, pid: int) -> None:
    host.run(["kill", "-KILL", str(int(pid))], check=False, timeout=30)
