"""Directory trees copied with tar: from a directory of one host into a directory of another (a stream,
direct or through the operator), or between two directories of one host.

Every command is an argument list, or a script given its paths as arguments: no path reaches a shell
unquoted.
"""

from __future__ import annotations

import ipaddress
import shlex

from ferry.hosts.peer_stream import PeerEndpoint, PeerStream
from ferry.hosts.ssh import SSHSession
from ferry.hosts.streams import Pipe, Relay, Stream

# Overlay whiteouts and opaque directories are xattrs/devices: keep them, and numeric owners.
TAR_OPTIONS = (
    "--xattrs",
    "--xattrs-include=trusted.*",
    "--xattrs-include=security.capability",
    "--numeric-owner",
    "--totals",
)
MTIME_MARGIN_SECONDS = 1.0


class TreeCopy:
    """Copies of directories from one host. `peer` is set when other hosts may stream to it directly."""

    def __init__(self, session: SSHSession, peer: PeerEndpoint | None) -> None:
        self.ssh = session
        self.peer = peer
        self._has_lz4: bool | None = None

    def clock(self) -> str:
        """Now, by this host's clock: what `relay` takes as `changed_since`."""
        return self.ssh.run(["date", "+%s.%N"], timeout=30).text.strip()

    def relay(
        self,
        source_dir: str,
        target: TreeCopy,
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
        pipe = Pipe(self.ssh, _pack(source_dir, changed_since), target.ssh, _unpack(target_dir, fresh=fresh))
        if target.peer is not None:
            sample = source_dir if self.has_lz4() and target.has_lz4() else None
            return PeerStream(pipe, target.peer, self._address(), tag, compress_sample=sample)
        return Relay(pipe, armed=armed)

    def copy_local(self, source_dir: str, target_dir: str, *, fresh: bool) -> None:
        """Copies a directory's content into another directory of the same host (or a shared mount)."""
        pack, unpack = shlex.join(_pack(source_dir, None)), shlex.join(_unpack(target_dir, fresh=fresh))
        self.ssh.run(["sh", "-c", f"{pack} | {unpack}"], timeout=900)

    def has_lz4(self) -> bool:
        """Direct streams may go through lz4 when both hosts have it (when a sample compresses)."""
        if self._has_lz4 is None:
            self._has_lz4 = self.ssh.run(["lz4", "--version"], check=False, timeout=30).exit_code == 0
        return self._has_lz4

    def _address(self) -> str | None:
        """This host's own IP address as its peers see it, when its SSH address is one."""
        try:
            return str(ipaddress.ip_address(self.ssh.endpoint.address))
        except ValueError:
            return None


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
