"""CRIU on one host: its version, `criu check`, the options runc hands it when Docker or the fast path
checkpoints a container, and the dumps and restores of plain processes.

It runs through what runs commands on the host: its SSH session, or a shell kept open there for the
freeze window.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ferry.hosts.ssh import Commands

VERSION_LINE = re.compile(r"^Version:\s*(\S+)", re.MULTILINE)
RUNC_CONFIG = "/etc/criu/runc.conf"  # runc hands these options to CRIU; Docker's API cannot
# A service under load has connections in flight and established at the freeze: dump them as closed
# (their clients retry) instead of failing the checkpoint ("criu failed: type NOTIFY").
OPTIONS = ("tcp-close", "skip-in-flight")
NOT_INSTALLED = 127  # the shell's exit code for a command not on the PATH
# CRIU's description of this host's CPU (cpuinfo.img, about 100 bytes) on stdout, and its check of
# such a description from another host against this one's CPU: what a restore here would find.
CPUINFO_DUMP = (
    'd=$(mktemp -d) || exit 1; criu cpuinfo dump -D "$d" >&2 && cat -- "$d/cpuinfo.img"; '
    'status=$?; rm -rf -- "$d"; exit "$status"'
)
CPUINFO_CHECK = (
    'd=$(mktemp -d) || exit 1; cat > "$d/cpuinfo.img" && criu cpuinfo check -D "$d"; '
    'status=$?; rm -rf -- "$d"; exit "$status"'
)


@dataclass(frozen=True)
class CriuCheck:
    """`criu check`: exit 0 when CRIU finds what it needs in the kernel; `output` says what is missing."""

    exit_code: int
    output: str

    @property
    def passed(self) -> bool:
        return self.exit_code == 0

    @property
    def installed(self) -> bool:
        return self.exit_code != NOT_INSTALLED

    @property
    def last_line(self) -> str:
        """What CRIU said last: on a failure, what it lacks."""
        lines = [line for line in self.output.splitlines() if line.strip()]
        return lines[-1] if lines else "no output"


class Criu:
    def __init__(self, commands: Commands) -> None:
        self._commands = commands

    def version(self) -> str | None:
        result = self._commands.run(["criu", "--version"], check=False, timeout=30)
        match = VERSION_LINE.search(result.text)
        return match.group(1) if result.exit_code == 0 and match else None

    def check(self) -> CriuCheck:
        result = self._commands.run(["criu", "check"], check=False, timeout=60)
        output = (result.stdout + result.stderr).decode(errors="replace").strip()
        return CriuCheck(result.exit_code, output)

    def check_feature(self, feature: str) -> CriuCheck:
        """`criu check --feature FEATURE` (e.g. uffd-noncoop, which lazy pages need)."""
        result = self._commands.run(["criu", "check", "--feature", feature], check=False, timeout=60)
        return CriuCheck(result.exit_code, (result.stdout + result.stderr).decode(errors="replace").strip())

    def cpuinfo(self) -> bytes:
        """This host's CPU as CRIU describes it in a dump (`criu cpuinfo dump`)."""
        return self._commands.run(["sh", "-c", CPUINFO_DUMP, "ferry-cpuinfo"], timeout=60).stdout

    def cpuinfo_check(self, cpuinfo: bytes) -> CriuCheck:
        """Whether a process dumped on the CPU `cpuinfo` describes can be restored on this one."""
        result = self._commands.run(
            ["sh", "-c", CPUINFO_CHECK, "ferry-cpuinfo-check"], input=cpuinfo, check=False, timeout=60
        )
        return CriuCheck(result.exit_code, (result.stdout + result.stderr).decode(errors="replace").strip())

    def ensure_options(self) -> None:
        """Writes OPTIONS into RUNC_CONFIG, each once."""
        script = (
            'mkdir -p "${1%/*}" && f=$1 && shift && '
            'for o; do grep -qx "$o" "$f" 2>/dev/null || echo "$o" >> "$f"; done'
        )
        self._commands.run(["sh", "-c", script, "ferry-criu-options", RUNC_CONFIG, *OPTIONS], timeout=30)

    def dump(self, pid: int, images: str, *, shell_job: bool) -> None:
        """Dumps (and ends) a plain process; CRIU's log goes beside the images, not among them."""
        argv = ["criu", "dump", "-t", str(int(pid)), "-D", images, "-W", f"{images}.work", "-o", "dump.log"]
        self._commands.run([*argv, "--shell-job"] if shell_job else argv, timeout=900)

    def restore(self, images: str, *, shell_job: bool) -> None:
        """Restores a plain process, detached: CRIU ends once it runs."""
        self._commands.run([*restore_argv(images, shell_job=shell_job), "--restore-detached"], timeout=900)


def restore_argv(images: str, *, shell_job: bool, pidfile: str | None = None) -> list[str]:
    """`criu restore` of a plain process's images; with `pidfile`, CRIU writes the process's PID there
    once it restored it."""
    argv = ["criu", "restore", "-D", images, "-W", f"{images}.work", "-o", "restore.log"]
    if pidfile is not None:
        argv += ["--pidfile", pidfile]
    return [*argv, "--shell-job"] if shell_job else argv
