"""Plain processes on a host: what /proc says about them, and killing one (CRIU dumps and restores
them: ferry.hosts.criu).

Each call takes what runs commands on the host: its SSH session, or a shell kept open there for the
freeze window.
"""

from __future__ import annotations

from dataclasses import dataclass

from ferry.hosts.ssh import Commands

# Prints: exe, comm, session id, then one line per open fd ("N -> target"). $1 is a PID (an int).
INSPECT = r"""cd "/proc/$1" || exit 3
readlink exe
cat comm
sed 's/.*) //' stat | cut -d' ' -f4
for fd in fd/*; do echo "${fd#fd/} -> $(readlink "$fd")"; done
"""
TERMINALS = ("/dev/pts/", "/dev/tty", "/dev/console")


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    executable: str
    command: str
    session: int
    open_fds: dict[int, str]

    @property
    def shell_job(self) -> bool:
        """Not a session leader: CRIU needs --shell-job to dump it from someone else's session."""
        return self.session != self.pid

    def terminal_fd(self) -> tuple[int, str] | None:
        return next(((fd, path) for fd, path in self.open_fds.items() if path.startswith(TERMINALS)), None)

    def open_files(self) -> list[str]:
        """Paths of open regular files (which must exist on the target too)."""
        return sorted(
            {
                path
                for path in self.open_fds.values()
                if path.startswith("/") and not path.endswith(" (deleted)")
            }
            - {"/dev/null"}
        )


def inspect_process(host: Commands, pid: int) -> ProcessInfo | None:
    result = host.run(["sh", "-c", INSPECT, "ferry-inspect", str(int(pid))], check=False, timeout=30)
    lines = result.text.splitlines()
    if result.exit_code != 0 or len(lines) < 3:
        return None
    fds = {}
    for line in lines[3:]:
        number, _, target = line.partition(" -> ")
        if number.isdigit():
            fds[int(number)] = target
    return ProcessInfo(int(pid), lines[0], lines[1], int(lines[2]), fds)


def pids_named(host: Commands, name: str) -> list[int]:
    result = host.run(["pgrep", "-x", "--", name], check=False, timeout=30)
    return [int(pid) for pid in result.text.split()]


def is_alive(host: Commands, pid: int) -> bool:
    return host.run(["test", "-d", f"/proc/{int(pid)}"], check=False, timeout=30).exit_code == 0


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
