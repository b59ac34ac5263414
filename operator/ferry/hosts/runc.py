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
import time
from dataclasses import dataclass
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


class FastPathUnavailable(RuntimeError):
    """The host opted in but cannot do it; the message says why."""


@dataclass(frozen=True)
class FastPathConfig:
    exec_root: str  # dockerd's exec-root: runc's state lives in <exec-root>/runtime-<name>/<namespace>
    daemon_config: str  # dockerd's daemon.json, where the runtime wrapper is registered


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
        """runc's --root for a container: <exec-root>/runtime-<runtime>/<containerd namespace>."""
        script = 'for d in "$1"/runtime-"$2"/*/"$3"; do [ -d "$d" ] && echo "${d%/*}"; done; true'
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

    def prepare_restore(self, container_id: str, images: str) -> None:
        """Tells the wrapper that the next create of this container restores from `images`."""
        prepared = f"{RESTORE_ROOT}/{container_id}"
        script = 'rm -rf -- "$1" && install -d -m 0700 -- "$1" "$1/work" && ln -s -- "$2" "$1/images"'
        self.ssh.run(["sh", "-c", script, "ferry-prepare-restore", prepared, images], timeout=30)

    def forget_restore(self, container_id: str) -> None:
        self.ssh.run(["rm", "-rf", "--", f"{RESTORE_ROOT}/{container_id}"], timeout=30)

    def restore_log(self, container_id: str) -> str:
        found = self.ssh.run(
            ["tail", "-n", "5", f"{RESTORE_ROOT}/{container_id}/work/restore.log"], check=False, timeout=30
        )
        return found.text.strip()


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
