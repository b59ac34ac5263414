"""Everything ferry does on one Docker host: its engine, and the files and tools beside it."""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Sequence

from ferry.hosts.docker_engine import DockerEngine
from ferry.hosts.peer_stream import PeerEndpoint, PeerStream
from ferry.hosts.runc import FastPathConfig, RuncHost
from ferry.hosts.ssh import CommandResult, SSHSession
from ferry.hosts.streams import Relay, Stream

# Overlay whiteouts and opaque directories are xattrs/devices: keep them, and numeric owners.
TAR_OPTIONS = (
    "--xattrs",
    "--xattrs-include=trusted.*",
    "--xattrs-include=security.capability",
    "--numeric-owner",
    "--totals",
)
MTIME_MARGIN_SECONDS = 1.0
CRIU_VERSION = re.compile(r"^Version:\s*(\S+)", re.MULTILINE)
RUNC_CRIU_CONFIG = "/etc/criu/runc.conf"  # runc hands these options to CRIU; Docker's API cannot
# A service under load has connections in flight and established at the freeze: dump them as closed
# (their clients retry) instead of failing the checkpoint ("criu failed: type NOTIFY").
CRIU_OPTIONS = ("tcp-close", "skip-in-flight")


class DockerHost:
    """One host. `runc` is set when it opted into the fast path; `peer` when other hosts may stream
    to it directly (how they reach its sshd, where it keeps authorized keys)."""

    def __init__(
        self,
        name: str,
        session: SSHSession,
        docker_socket: str,
        *,
        fast_path: FastPathConfig | None = None,
        peer: PeerEndpoint | None = None,
    ) -> None:
        self.name = name
        self.ssh = session
        self.engine = DockerEngine(session, docker_socket)
        self.runc = RuncHost(name, session, self.engine, fast_path) if fast_path is not None else None
        self.peer = peer
        self._root_dir: str | None = None
        self._has_lz4: bool | None = None

    def run(
        self, argv: Sequence[str], *, input: bytes | None = None, timeout: float = 120.0, check: bool = True
    ) -> CommandResult:
        """Runs a command on the host over its SSH session."""
        return self.ssh.run(argv, input=input, timeout=timeout, check=check)

    def docker_root_dir(self) -> str:
        if self._root_dir is None:
            self._root_dir = str(self.engine.info()["DockerRootDir"])
        return self._root_dir

    def checkpoint_dir(self, container_id: str, checkpoint: str) -> str:
        """Where `docker checkpoint create` writes, and where `docker start --checkpoint` reads."""
        return f"{self.docker_root_dir()}/containers/{container_id}/checkpoints/{checkpoint}"

    def criu_version(self) -> str | None:
        result = self.ssh.run(["criu", "--version"], check=False, timeout=30)
        match = CRIU_VERSION.search(result.text)
        return match.group(1) if result.exit_code == 0 and match else None

    def ensure_criu_options(self) -> None:
        script = (
            'mkdir -p "${1%/*}" && f=$1 && shift && '
            'for o; do grep -qx "$o" "$f" 2>/dev/null || echo "$o" >> "$f"; done'
        )
        self.ssh.run(["sh", "-c", script, "ferry-criu-options", RUNC_CRIU_CONFIG, *CRIU_OPTIONS], timeout=30)

    def kernel(self) -> str:
        return self.ssh.run(["uname", "-r"], timeout=30).text.strip()

    def directory_bytes(self, path: str) -> int:
        return int(self.ssh.run(["du", "-sb", "--", path], timeout=120).text.split()[0])

    def make_private_directory(self, path: str) -> None:
        self.ssh.run(["install", "-d", "-m", "0700", "--", path], timeout=30)

    def remove_tree(self, path: str) -> None:
        self.ssh.run(["rm", "-rf", "--", path], timeout=120)

    def tree_relay(
        self,
        source_dir: str,
        target: DockerHost,
        target_dir: str,
        *,
        fresh: bool,
        armed: bool,
        changed_since: str | None = None,
        tag: str = "ferry",
    ) -> Stream:
        """A stream that copies a directory's content into a directory on another host.

        It goes straight to the target when the target accepts direct streams (`peer`), else through
        the operator. With `fresh`, the target directory is first emptied and made readable by root
        only. With `changed_since` (seconds since the epoch, as the source host's `date +%s.%N`
        printed them), only what was modified after that moment is sent. `tag` names the direct
        stream's key, so that what a migration left can be found and withdrawn.
        """
        producer, consumer = _pack(source_dir, changed_since), _unpack(target_dir, fresh=fresh)
        if target.peer is not None:
            sample = source_dir if self.has_lz4() and target.has_lz4() else None
            return PeerStream(
                self.ssh,
                producer,
                target.ssh,
                consumer,
                target.peer,
                self.address(),
                tag,
                compress_sample=sample,
            )
        return Relay(self.ssh, producer, target.ssh, consumer, armed=armed)

    def has_lz4(self) -> bool:
        """Direct streams may go through lz4 when both hosts have it (when a sample compresses)."""
        if self._has_lz4 is None:
            self._has_lz4 = self.ssh.run(["lz4", "--version"], check=False, timeout=30).exit_code == 0
        return self._has_lz4

    def address(self) -> str | None:
        """This host's own IP address as its peers see it, when its SSH address is one."""
        try:
            return str(ipaddress.ip_address(self.ssh.endpoint.address))
        except ValueError:
            return None

    def copy_local(self, source_dir: str, target_dir: str, *, fresh: bool) -> None:
        """Copies a directory's content into another directory of the same host (or a shared mount)."""
        pack, unpack = shlex.join(_pack(source_dir, None)), shlex.join(_unpack(target_dir, fresh=fresh))
        self.ssh.run(["sh", "-c", f"{pack} | {unpack}"], timeout=900)

    def clock(self) -> str:
        return self.ssh.run(["date", "+%s.%N"], timeout=30).text.strip()

    def path_exists(self, path: str) -> bool:
        return self.ssh.run(["test", "-e", path], check=False, timeout=30).exit_code == 0

    def write_file(self, path: str, content: str) -> None:
        script = 'install -d -m 0700 -- "${1%/*}" && cat > "$1"'
        self.ssh.run(["sh", "-c", script, "ferry-write", path], input=content.encode(), timeout=30)

    def read_file(self, path: str) -> str | None:
        result = self.ssh.run(["cat", "--", path], check=False, timeout=30)
        return result.text if result.exit_code == 0 else None

    def forward_ports(self, ports: Sequence[tuple[str, int]], to_address: str, tag: str) -> None:
        """Sends connections to these ports of this host on to another host (kernel NAT, tagged)."""
        to = self.resolve(to_address)
        nat, forward = [], []
        for protocol, port in ports:
            match = f"-p {protocol} -m comment --comment {tag}"
            dnat = f"--dport {port} -j DNAT --to-destination {to}:{port}"
            nat += [
                f"-I PREROUTING 1 {match} {dnat}",
                f"-I OUTPUT 1 {match} -m addrtype --dst-type LOCAL {dnat}",
                f"-I POSTROUTING 1 {match} -d {to} --dport {port} -j MASQUERADE",
            ]
            forward += [
                f"-I FORWARD 1 {match} -d {to} --dport {port} -j ACCEPT",
                f"-I FORWARD 1 {match} -s {to} --sport {port} -j ACCEPT",
            ]
        self.ssh.run(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"], timeout=30)
        self._restore_rules({"nat": nat, "filter": forward})

    def remove_forwards(self, tag: str) -> None:
        rules: dict[str, list[str]] = {}
        for table in ("nat", "filter"):
            listed = self.ssh.run(["iptables", "-t", table, "-S"], timeout=30).text.splitlines()
            rules[table] = [
                "-D" + line[2:] for line in listed if line.startswith("-A ") and _tagged(line, tag)
            ]
        self._restore_rules(rules)

    def resolve(self, address: str) -> str:
        try:
            return str(ipaddress.ip_address(address))
        except ValueError:
            found = self.ssh.run(["getent", "ahostsv4", address], timeout=30).text.split()
            return str(ipaddress.ip_address(found[0]))

    def _restore_rules(self, rules: dict[str, list[str]]) -> None:
        """Applies rule changes in one iptables-restore call (no shell: the rules go on stdin)."""
        text = "".join(
            f"*{table}\n" + "".join(f"{rule}\n" for rule in lines) + "COMMIT\n"
            for table, lines in rules.items()
            if lines
        )
        if text:
            self.ssh.run(["iptables-restore", "--noflush"], input=text.encode(), timeout=30)

    def close(self) -> None:
        self.engine.close()
        self.ssh.close()


def _pack(directory: str, changed_since: str | None) -> list[str]:
    if changed_since is None:
        return ["tar", "-C", directory, *TAR_OPTIONS, "-cf", "-", "."]
    # Every directory goes too, changed or not: a directory entry makes the receiving tar replace a link
    # the bulk copy left at that path instead of following it out of the target directory.
    script = (
        'directory=$1 since=$2 && shift 2 && cd "$directory" && '
        'find . \\( -type d -o -newermt "@$since" \\) -print0 | tar --null --no-recursion -T - "$@" -cf -'
    )
    # File times come from the kernel's coarse clock (a tick behind `date`): a second of margin.
    since = f"{float(changed_since) - MTIME_MARGIN_SECONDS:.9f}"
    return ["sh", "-c", script, "ferry-delta", directory, since, *TAR_OPTIONS]


def _unpack(directory: str, *, fresh: bool) -> list[str]:
    untar = ["tar", "-C", directory, *TAR_OPTIONS, "-xpf", "-"]
    if not fresh:
        return untar
    script = 'rm -rf -- "$1" && install -d -m 0700 -- "${1%/*}" "$1" && shift && exec "$@"'
    return ["sh", "-c", script, "ferry-receive", directory, *untar]


def _tagged(rule: str, tag: str) -> bool:
    """iptables -S prints a comment quoted when it has a colon."""
    return f'--comment "{tag}"' in rule or f"--comment {tag} " in rule
