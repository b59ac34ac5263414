"""The fast path on one host: runc checkpoints and restores that skip Docker's checkpoint store.

Docker 20.10 pushes every checkpoint byte through containerd's content store (tar, fsync, untar,
twice per migration). A host that opts in (`DockerHost.spec.fastPath`) gets instead:
- checkpoints made by `runc checkpoint` straight into the container's Docker checkpoint directory
  (so Docker's own `start --checkpoint` can still restore the source on a rollback);
- restores made by ferry's runtime wrapper (`ferry-runtime.sh`, registered in daemon.json as the
  runtime `ferry`), which turns containerd's `create` of a prepared twin into `runc restore`, so
  that Docker owns, shows and stops the restored container as any other.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from ferry.hosts.docker_engine import DockerEngine
from ferry.hosts.ssh import CommandFailed, SSHSession
from ferry.hosts.streams import ArmedCommand

log = logging.getLogger(__name__)

RUNTIME_NAME = "ferry"
WRAPPER_VERSION = "2"  # 2: post-copy (a prepared restore with `lazy-pages`)
WRAPPER_PATH = f"/usr/local/lib/ferry/ferry-runtime-v{WRAPPER_VERSION}"
RESTORE_ROOT = "/var/lib/ferry/restore"  # the wrapper reads prepared restores here
WORK_ROOT = "/var/lib/ferry/work"  # CRIU work directories and per-migration files, root only
RUNTIME_READY_SECONDS = 10.0
# The target receives a checkpoint into memory (a tmpfs of its own, see `prepare_receive`) when what
# is left after it and the restored workload (each about the expected size) is at least this much.
RECEIVE_MEMORY_RESERVE = 512 << 20

# Dumps the container once "go" arrives, then marks the dump complete. Run detached from the SSH
# session's hang-up: a dump must finish (or fail) on its own even if the operator dies meanwhile,
# and the lock lets a resumed operator wait for it instead of taking a partial dump as finished.
CHECKPOINT_SCRIPT = r"""set -eu
trap '' HUP PIPE
root=$1 id=$2 images=$3 work=$4
exec 9>"$work/dump.lock"
echo ready
read -r _
flock 9
rm -f "$work/dumped"
runc --root "$root" checkpoint --image-path "$images" --work-path "$work" "$id"
: > "$work/dumped"
"""

# Post-copy (docs/postcopy.md): the dump writes every image but private memory, says `dumped` once
# CRIU's status fd gives its \0 (images written, page server listening) and then serves the memory
# until the target took the last page, holding the lock meanwhile; `served` gets runc's exit status.
# --leave-running: runc's end never decides the source's fate (CRIU's default kills it whenever its
# page client ends cleanly, a failed restore included); ferry stops it first (stop fence) and decides.
LAZY_CHECKPOINT_SCRIPT = r"""set -eu
trap '' HUP PIPE
root=$1 id=$2 images=$3 work=$4 address=$5 port=$6
exec 9>"$work/dump.lock"
echo ready
read -r _
flock 9
rm -f "$work/dumped" "$work/served" "$work/ready.fifo"
mkfifo "$work/ready.fifo"
runc --root "$root" checkpoint --lazy-pages --page-server "$address:$port" --status-fd 3 \
  --leave-running --image-path "$images" --work-path "$work" "$id" \
  3>"$work/ready.fifo" </dev/null >"$work/checkpoint.out" 2>&1 &
runc=$!
echo "$runc" > "$work/runc.pid"
status=$(head -c1 "$work/ready.fifo" | od -An -tx1 | tr -d ' \n')
rc=0
if [ "$status" != 00 ]; then
  wait "$runc" || rc=$?
  echo "$rc" > "$work/served"
  tail -n 5 "$work/checkpoint.out" "$work/dump.log" >&2 2>/dev/null || true
  exit $((rc ? rc : 1))
fi
: > "$work/dumped"
echo dumped
exec >/dev/null 2>&1
wait "$runc" || rc=$?
echo "$rc" > "$work/served"
"""

# The target's `criu lazy-pages`, detached: it outlives this SSH command and an operator restart,
# under a lock while it runs, its exit status in lazy.exit. It listens on lazy-pages.socket in its
# work directory, where the wrapper's restore (the same work directory) finds it; -v4 logs the page
# counts ("UFFD transferred pages: (N/M)"). A run resumed after the operator died finds the daemon
# an earlier run started still listening (lazy.listening) and leaves it to serve the restore.
LAZY_PAGES_SCRIPT = r"""set -eu
trap '' HUP PIPE
images=$1 work=$2 address=$3 port=$4
exec 9>"$work/lazy.lock"
if ! flock -n 9; then
  [ -e "$work/lazy.listening" ] && exit 0
  echo "a lazy-pages daemon runs already in $work, and it does not listen" >&2
  exit 1
fi
rm -f "$work/lazy.exit" "$work/lazy.ready" "$work/lazy.listening"
mkfifo "$work/lazy.ready"
(
  criu lazy-pages --page-server --address "$address" --port "$port" -D "$images" -W "$work" \
    -o lazy.log -v4 --status-fd 3 3>"$work/lazy.ready" &
  echo "$!" > "$work/lazy.pid"
  rc=0
  wait "$!" || rc=$?
  echo "$rc" > "$work/lazy.exit"
) </dev/null >/dev/null 2>&1 &
exec 9>&-
status=$(head -c1 "$work/lazy.ready" | od -An -tx1 | tr -d ' \n')
if [ "$status" != 00 ]; then
  echo "criu lazy-pages ended before it was ready: $(tail -n 1 "$work/lazy.log" 2>/dev/null)" >&2
  exit 1
fi
: > "$work/lazy.listening"
"""

# The target's directory for a checkpoint's images: a tmpfs of its own sized $2 bytes when $2 is
# not 0 (root only; nothing in it runs), else the disk; kept as it is when a resumed run finds it
# mounted. Says which: "memory" or "disk" (a mount refused falls back to the disk).
PREPARE_RECEIVE_SCRIPT = r"""set -eu
directory=$1 size=$2
install -d -m 0700 -- "${directory%/*}" "$directory"
if mountpoint -q -- "$directory"; then echo memory; exit 0; fi
if [ "$size" -gt 0 ] && mount -t tmpfs -o "size=$size,mode=0700,nosuid,nodev,noexec" ferry-images "$directory"
then echo memory; else echo disk; fi
"""
RELEASE_RECEIVED_SCRIPT = 'if mountpoint -q -- "$1"; then umount -- "$1"; fi; rm -rf -- "$1"'

# Sends a signal to every process of a container, as runc's cgroup lists them (not `runc kill
# --all`: it freezes and then thaws the cgroup, which would thaw a container CRIU holds frozen).
SIGNAL_SCRIPT = r"""set -eu
pids=$(runc --root "$1" ps --format json "$2" | tr -c '0-9' ' ')
if [ -n "$pids" ]; then kill -s "$3" $pids; fi
"""

# lazy-pages' log, per task: "uffd: PID-FD: EXIT" when it ended during the pull, and at the end
# "uffd: PID-FD: UFFD transferred pages: (MOVED/TOTAL)" (FD is negative once the task exited).
TASK_LINES = r"uffd: [0-9]+-[-0-9]+: (EXIT|UFFD transferred pages: \([0-9]*/[0-9]*\))"  # for grep -E
TASK_LINE = re.compile(r"uffd: (\d+)-[-\d]+: (?:(EXIT)|UFFD transferred pages: \((\d+)/(\d+)\))")

# The dump log (runc asks CRIU for -v4) lists each socket CRIU dumps. With `tcp-close` (ferry's
# runc.conf) a connected TCP socket is dumped without its connection and restored closed: these
# lines are the connections the checkpoint cut (CRIU's sk-inet.c: the states it calls connected).
CUT_CONNECTION_LINES = (  # for grep -E
    r"Dumping: ino .* type SOCK_STREAM +port +[0-9]+ "
    r"state TCP_(ESTABLISHED|SYN_SENT|FIN_WAIT1|FIN_WAIT2|CLOSE_WAIT|LAST_ACK|CLOSING) "
)


class FastPathUnavailable(RuntimeError):
    """The host opted in but cannot do it; the message says why."""


@dataclass(frozen=True)
class FastPathConfig:
    exec_root: str  # dockerd's exec-root: runc's state lives in <exec-root>/runtime-<name>/<namespace>
    daemon_config: str  # dockerd's daemon.json, where the runtime wrapper is registered


def received_directory(uid: str) -> str:
    """On the target, what holds a fast-path migration's checkpoint images (`prepare_receive`)."""
    return f"{WORK_ROOT}/{uid}/received"


def received_images(uid: str) -> str:
    return f"{received_directory(uid)}/images"


def memory_for_images(expected_bytes: int, available_bytes: int) -> int:
    """The size of the tmpfs a checkpoint of about `expected_bytes` is received into, given the
    target's MemAvailable; 0 (the disk) when the images, the restored workload (as much again) and
    RECEIVE_MEMORY_RESERVE do not fit. The tmpfs is half as big again as expected, plus 64 MiB: a
    workload may grow between the preflight and the freeze (a checkpoint bigger still fails to
    arrive, and the source runs again)."""
    if available_bytes < 2 * expected_bytes + RECEIVE_MEMORY_RESERVE:
        return 0
    return expected_bytes + expected_bytes // 2 + (64 << 20)


def wrapper_script() -> bytes:
    return resources.files("ferry.hosts").joinpath("ferry-runtime.sh").read_bytes()


class RuncHost:
    """runc and the runtime wrapper on one host (the host layer: no Kubernetes, no migration logic)."""

    def __init__(self, name: str, ssh: SSHSession, engine: DockerEngine, config: FastPathConfig) -> None:
        self.name = name
        self.ssh = ssh
        self.engine = engine
        self.config = config

    # -- the runtime wrapper

    def runtime_installed(self) -> bool:
        runtime = (self.engine.info().get("Runtimes") or {}).get(RUNTIME_NAME) or {}
        return bool(runtime.get("path") == WRAPPER_PATH)

    def describe(self) -> dict[str, Any]:
        """What the DockerHost's status shows of the fast path on this host."""
        installed = self.runtime_installed()
        return {
            "runtime": RUNTIME_NAME,
            "version": WRAPPER_VERSION,
            "path": WRAPPER_PATH,
            "installed": installed,
            "message": "registered with dockerd"
            if installed
            else "installed by the first migration that uses this host",
        }

    def missing(self) -> list[str]:
        """What the fast path needs on this host and does not find there (the runtime wrapper is not
        among it: the first migration that uses the host installs it)."""
        lacking = []
        if self.ssh.run(["runc", "--version"], check=False, timeout=30).exit_code != 0:
            lacking.append("runc is not on the PATH")
        if self.ssh.run(["test", "-d", self.config.exec_root], check=False, timeout=30).exit_code != 0:
            lacking.append(
                f"{self.config.exec_root} is not a directory (is spec.fastPath.execRoot dockerd's exec-root?)"
            )
        try:
            self._daemon_config()
        except FastPathUnavailable as error:
            lacking.append(str(error))
        return lacking

    def install_runtime(self) -> None:
        """Installs the wrapper and registers it with dockerd (idempotent, versioned, reloaded by SIGHUP)."""
        if self.runtime_installed():
            return
        log.info("installing ferry's runtime wrapper v%s on %s", WRAPPER_VERSION, self.name)
        install = 'install -d -m 0755 "${1%/*}" && cat > "$1.new" && chmod 0755 "$1.new" && mv "$1.new" "$1"'
        self.ssh.run(["sh", "-c", install, "ferry-install", WRAPPER_PATH], input=wrapper_script(), timeout=30)
        config = self._daemon_config()
        config.setdefault("runtimes", {})[RUNTIME_NAME] = {"path": WRAPPER_PATH}
        self._write_daemon_config(config)
        self._reload_dockerd(config)

    def uninstall_runtime(self) -> None:
        """Unregisters the wrapper (dockerd lists it until its next restart) and removes its files."""
        config = self._daemon_config()
        if RUNTIME_NAME in (config.get("runtimes") or {}):
            del config["runtimes"][RUNTIME_NAME]
            if not config["runtimes"]:
                del config["runtimes"]
            self._write_daemon_config(config)
            self._reload_dockerd(config)
        self.ssh.run(["rm", "-rf", "--", WRAPPER_PATH.rsplit("/", 1)[0]], timeout=30)

    def _daemon_config(self) -> dict[str, Any]:
        found = self.ssh.run(["cat", "--", self.config.daemon_config], check=False, timeout=30)
        if found.exit_code != 0 or not found.text.strip():
            return {}
        try:
            config = json.loads(found.text)
        except json.JSONDecodeError as error:
            raise FastPathUnavailable(
                f"{self.config.daemon_config} on {self.name} is not JSON: {error}"
            ) from None
        if not isinstance(config, dict):
            raise FastPathUnavailable(f"{self.config.daemon_config} on {self.name} is not a JSON object")
        return config

    def _write_daemon_config(self, config: dict[str, Any]) -> None:
        write = 'cat > "$1.ferry-new" && mv "$1.ferry-new" "$1"'
        text = json.dumps(config, indent=2) + "\n"
        self.ssh.run(
            ["sh", "-c", write, "ferry-config", self.config.daemon_config], input=text.encode(), timeout=30
        )

    def _reload_dockerd(self, config: dict[str, Any]) -> None:
        pidfile = str(config.get("pidfile", "/var/run/docker.pid"))
        self.ssh.run(["sh", "-c", 'kill -HUP "$(cat -- "$1")"', "ferry-reload", pidfile], timeout=30)
        deadline = time.monotonic() + RUNTIME_READY_SECONDS
        wanted = RUNTIME_NAME in (config.get("runtimes") or {})
        while (RUNTIME_NAME in (self.engine.info().get("Runtimes") or {})) != wanted:
            if not wanted or time.monotonic() > deadline:
                return  # a removed runtime stays listed until dockerd restarts
            time.sleep(0.2)

    # -- checkpoint and restore

    def runc_root(self, container_id: str, runtime: str) -> str:
        """runc's --root for a container: <exec-root>/runtime-<runtime>/<containerd namespace>, or,
        for a runtime whose options name runc's root (ferry's wrapper on Docker 26.1), runtime-runc."""
        script = (
            'for d in "$1"/runtime-"$2"/*/"$3" "$1"/runtime-runc/*/"$3"; do [ -d "$d" ] && echo "${d%/*}"; '
            "done | sort -u"
        )
        found = self.ssh.run(
            ["sh", "-c", script, "ferry-runc-root", self.config.exec_root, runtime, container_id], timeout=30
        ).text.split()
        if len(found) != 1:
            raise FastPathUnavailable(
                f"runc's state for container {container_id[:12]} is not under {self.config.exec_root}/"
                f"runtime-{runtime} on {self.name} (is spec.fastPath.execRoot dockerd's exec-root?)"
            )
        return found[0]

    def prepare_dump(self, work: str, images: str) -> None:
        """Empty, root-only directories for the dump; before the freeze."""
        script = 'rm -rf -- "$2" && install -d -m 0700 -- "$1" "$2"'
        self.ssh.run(["sh", "-c", script, "ferry-prepare-dump", work, images], timeout=30)

    def armed_checkpoint(self, root: str, container_id: str, images: str, work: str) -> ArmedDump:
        return ArmedDump(
            ArmedCommand(
                self.ssh,
                ["sh", "-c", CHECKPOINT_SCRIPT, "ferry-checkpoint", root, container_id, images, work],
            )
        )

    def dump_state(self, work: str) -> str:
        """'complete', 'running' (a dump still holds the lock) or 'absent'."""
        script = (
            'if [ -e "$1/dumped" ]; then echo complete; '
            'elif [ -e "$1/dump.lock" ] && ! flock -n "$1/dump.lock" true; then echo running; '
            "else echo absent; fi"
        )
        return self.ssh.run(["sh", "-c", script, "ferry-dump-state", work], timeout=30).text.strip()

    def wait_for_dump(self, work: str, timeout: float) -> None:
        self.ssh.run(["flock", "-w", str(int(timeout)), f"{work}/dump.lock", "true"], timeout=timeout + 30)

    def connections_cut(self, work: str) -> int | None:
        """The TCP connections the dump in `work` cut, as CRIU's log lists them; None without a log."""
        script = '[ -f "$1/dump.log" ] || exit 0; grep -cE -- "$2" "$1/dump.log" || true'
        argv = ["sh", "-c", script, "ferry-connections-cut", work, CUT_CONNECTION_LINES]
        counted = self.ssh.run(argv, timeout=30).text.strip()
        return int(counted) if counted else None

    def prepare_receive(self, uid: str, size: int) -> bool:
        """The directory `received_images(uid)` is received into: in memory (a tmpfs of `size`
        bytes) unless `size` is 0 or the mount is refused. True when in memory."""
        directory = received_directory(uid)
        argv = ["sh", "-c", PREPARE_RECEIVE_SCRIPT, "ferry-prepare-receive", directory, str(int(size))]
        return self.ssh.run(argv, timeout=30).text.strip() == "memory"

    def release_received(self, uid: str) -> None:
        """Removes the received images, and their tmpfs if they were in memory."""
        argv = ["sh", "-c", RELEASE_RECEIVED_SCRIPT, "ferry-release-received", received_directory(uid)]
        self.ssh.run(argv, timeout=60)

    def prepare_restore(self, container_id: str, images: str) -> None:
        """Tells the wrapper that the next create of this container restores from `images`."""
        prepared = f"{RESTORE_ROOT}/{container_id}"
        script = 'rm -rf -- "$1" && install -d -m 0700 -- "$1" "$1/work" && ln -s -- "$2" "$1/images"'
        self.ssh.run(["sh", "-c", script, "ferry-prepare-restore", prepared, images], timeout=30)

    def prepare_lazy_restore(self, container_id: str, images: str, work: str) -> None:
        """A post-copy restore: the `lazy-pages` marker, and `work` a link to the lazy-pages daemon's
        work directory (the wrapper removes the prepared restore at start; the daemon and its logs stay)."""
        prepared = f"{RESTORE_ROOT}/{container_id}"
        script = (
            'rm -rf -- "$1" "$3" && install -d -m 0700 -- "$1" "$3" && ln -s -- "$2" "$1/images" && '
            'ln -s -- "$3" "$1/work" && : > "$1/lazy-pages"'
        )
        self.ssh.run(["sh", "-c", script, "ferry-prepare-lazy-restore", prepared, images, work], timeout=30)

    def armed_lazy_checkpoint(
        self, root: str, container_id: str, images: str, work: str, address: str, port: int
    ) -> ArmedLazyDump:
        argv = [
            "sh",
            "-c",
            LAZY_CHECKPOINT_SCRIPT,
            "ferry-lazy-checkpoint",
            root,
            container_id,
            images,
            work,
            address,
            str(int(port)),
        ]
        return ArmedLazyDump(ArmedCommand(self.ssh, argv))

    def start_lazy_pages(self, images: str, work: str, address: str, port: int) -> None:
        """Starts `criu lazy-pages` (detached) against the source's page server; returns once its
        socket listens, or at once when one an earlier run started listens already."""
        argv = ["sh", "-c", LAZY_PAGES_SCRIPT, "ferry-lazy-pages", images, work, address, str(int(port))]
        self.ssh.run(argv, timeout=60)

    def signal_container(self, root: str, container_id: str, signal: str) -> None:
        """STOP or CONT to every process of the container (the post-copy stop fence and its end)."""
        argv = ["sh", "-c", SIGNAL_SCRIPT, "ferry-signal", root, container_id, signal]
        self.ssh.run(argv, timeout=30)

    def abort_lazy_dump(self, work: str) -> None:
        """Ends a lazy dump that still serves (SIGKILL to runc's CRIU: runc then thaws the container;
        never SIGTERM to runc, which leaves it frozen) and waits until its script ended."""
        script = (
            'if [ -e "$1/dump.lock" ] && ! flock -n "$1/dump.lock" true && [ -s "$1/runc.pid" ]; then '
            'pkill -KILL -x criu -P "$(cat "$1/runc.pid")" || true; fi; '
            'flock -w 60 "$1/dump.lock" true'
        )
        self.ssh.run(["sh", "-c", script, "ferry-abort-lazy-dump", work], timeout=90)

    def stop_lazy_pages(self, work: str) -> None:
        """SIGKILL to a lazy-pages daemon that still runs; waits until it ended."""
        script = (
            'if [ -e "$1/lazy.lock" ] && ! flock -n "$1/lazy.lock" true && [ -s "$1/lazy.pid" ]; then '
            'kill -KILL "$(cat "$1/lazy.pid")" || true; fi; '
            '[ ! -e "$1/lazy.lock" ] || flock -w 30 "$1/lazy.lock" true'
        )
        self.ssh.run(["sh", "-c", script, "ferry-stop-lazy-pages", work], timeout=60)

    def wait_for_lazy_pages(self, work: str, timeout: float) -> LazyPagesEnd:
        """Waits until the lazy-pages daemon ended; its exit status and the pages it moved."""
        script = (
            'flock -w "$2" "$1/lazy.lock" true || { echo timeout; exit 0; }; '
            'cat "$1/lazy.exit" 2>/dev/null || echo missing; '
            'grep -hoE -- "$3" "$1/lazy.log" || true'
        )
        argv = ["sh", "-c", script, "ferry-wait-lazy-pages", work, str(int(timeout)), TASK_LINES]
        found = self.ssh.run(argv, timeout=timeout + 30).text
        first, _, rest = found.partition("\n")
        return LazyPagesEnd.from_log(first.strip(), rest)

    def wait_for_lazy_dump(self, work: str, timeout: float) -> str:
        """Waits until a lazy dump's runc ended: its exit status, "timeout" or "missing"."""
        script = (
            'flock -w "$2" "$1/dump.lock" true || { echo timeout; exit 0; }; '
            'cat "$1/served" 2>/dev/null || echo missing'
        )
        argv = ["sh", "-c", script, "ferry-wait-lazy-dump", work, str(int(timeout))]
        return self.ssh.run(argv, timeout=timeout + 30).text.strip()

    def forget_restore(self, container_id: str) -> None:
        self.ssh.run(["rm", "-rf", "--", f"{RESTORE_ROOT}/{container_id}"], timeout=30)

    def restore_log(self, container_id: str) -> str:
        found = self.ssh.run(
            ["tail", "-n", "5", f"{RESTORE_ROOT}/{container_id}/work/restore.log"], check=False, timeout=30
        )
        return found.text.strip()


@dataclass(frozen=True)
class LazyPagesEnd:
    """How a lazy-pages daemon ended: its exit status ("0", ..., "timeout", "missing") and, per
    task, the pages it moved of those it had to: `counts` for the tasks that ran on, `exited` for
    those that ended during the pull (a shell's short-lived child), whose other pages nobody needs."""

    status: str
    counts: list[tuple[int, int]]
    exited: list[tuple[int, int]] = field(default_factory=list)

    @classmethod
    def from_log(cls, status: str, lines: str) -> LazyPagesEnd:
        found = TASK_LINE.findall(lines)
        ended = {pid for pid, exit, _, _ in found if exit}
        counted = [(pid, int(moved), int(total)) for pid, exit, moved, total in found if not exit]
        return cls(
            status,
            [(moved, total) for pid, moved, total in counted if pid not in ended],
            [(moved, total) for pid, moved, total in counted if pid in ended],
        )

    @property
    def complete(self) -> bool:
        return (
            self.status == "0"
            and bool(self.counts or self.exited)
            and all(moved == total for moved, total in self.counts)
        )

    @property
    def pages(self) -> int:
        return sum(moved for moved, _ in [*self.counts, *self.exited])


class ArmedDump:
    """runc's checkpoint of one container, started before the freeze, dumping when fired."""

    def __init__(self, command: ArmedCommand) -> None:
        self.command = command

    def fire(self) -> None:
        argv, host = self.command.argv, self.command.ssh.name
        try:
            ended = self.command.fire()
        except (OSError, EOFError) as error:
            raise CommandFailed(host, argv, -1, f"lost the session: {error}") from None
        if ended.status != 0:
            raise CommandFailed(
                host, argv, ended.status, (ended.stderr or ended.stdout).decode(errors="replace")
            )

    def close(self) -> None:
        self.command.close()


class ArmedLazyDump(ArmedDump):
    """A lazy dump: fired, it returns once the images are written and the page server listens; the
    script goes on serving the memory, detached (`RuncHost.wait_for_lazy_dump`)."""

    def fire(self) -> None:
        argv, host = self.command.argv, self.command.ssh.name
        try:
            ended = self.command.fire_until(b"dumped\n")
        except (OSError, EOFError) as error:
            raise CommandFailed(host, argv, -1, f"lost the session: {error}") from None
        if ended is not None:
            raise CommandFailed(
                host, argv, ended.status, (ended.stderr or ended.stdout).decode(errors="replace")
            )
