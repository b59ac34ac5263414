"""Directory trees copied with tar: from a directory of one host into a directory of another (a stream,
direct or through the operator), or between two directories of one host.

A directory that changes while it is copied (a volume of a running container) is mirrored in two
rounds: a bulk round while it changes, then, once it no longer does, a final round that sends what
changed and deletes on the target what went (see `mirror_bulk` and `mirror_final`).

Every command is an argument list, or a script given its paths as arguments: no path reaches a shell
unquoted.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ferry.hosts.peer_stream import PeerEndpoint, PeerStream
from ferry.hosts.ssh import SSHSession
from ferry.hosts.streams import Moved, Pipe, Relay, Stream

# Overlay whiteouts and opaque directories are xattrs/devices: keep them, and numeric owners.
TAR_OPTIONS = (
    "--xattrs",
    "--xattrs-include=trusted.*",
    "--xattrs-include=security.capability",
    "--numeric-owner",
)
# The sending tar reports what it wrote (a direct stream's byte count); the receiving one says nothing.
PACK_OPTIONS = (*TAR_OPTIONS, "--totals")
CHANGE_TIME_MARGIN_SECONDS = 1.0

# GNU tar exits 1 when a file changed, shrank or went while it read it: expected of a directory in
# use, and harmless, as the final round sends every such file again.
PACK_CHANGING = '"$@"; status=$?; [ "$status" -eq 1 ] && exit 0; exit "$status"'
EMPTY_THEN_UNPACK = 'cd -- "$1" && find . -mindepth 1 -delete && shift && exec "$@"'
LIST = 'cd -- "$1" && exec find . -print0'
STORE_LISTING = 'umask 077 && install -d -m 0700 -- "${1%/*}" && LC_ALL=C sort -z -o "$1"'
# The final round on the source, which no longer changes. $3 lists (sorted, NUL-separated) what the
# target holds. Sent: the number of bytes of the list of what went, that list, then a tar of what
# changed since $2 (its inode's change time: a rename or `touch -d` cannot hide a change), of what
# the target lacks (the content of a renamed directory), and of every directory: a directory entry
# makes the receiving tar replace a link the bulk round left at that path instead of following it.
PACK_CHANGES = r"""set -e
directory=$1 since=$2 listing=$3; shift 3
cd -- "$directory"
export LC_ALL=C
find . -print0 \( -type d -o -newerct "@$since" \) -fprint0 "$listing.send" > "$listing.now"
sort -z -o "$listing.now" "$listing.now"
comm -z -23 "$listing" "$listing.now" > "$listing.gone"
comm -z -13 "$listing" "$listing.now" >> "$listing.send"
sort -z -u -o "$listing.send" "$listing.send"
wc -c < "$listing.gone"
cat -- "$listing.gone"
exec tar --null --no-recursion -T "$listing.send" "$@" -cf -
"""
# The final round on the target: deletes what went, then unpacks. Every path deleted is one the
# target's own listing found after the bulk round (`find` does not descend into links), and nothing
# changes the target between that listing and this, so every directory on the way is a real one:
# `rm` follows no link out of the directory. One line: a direct stream's key forces it.
UNPACK_CHANGES = (
    'set -e; cd -- "$1"; shift; read -r size; gone=$(mktemp); trap \'rm -f -- "$gone"\' EXIT; '
    'head -c "$size" > "$gone"; [ "$(wc -c < "$gone")" = "$size" ] || '
    '{ echo "ferry: the list of deletions was cut short" >&2; exit 1; }; '
    'xargs -0 -r rm -rf -- < "$gone"; "$@"'
)


# A staging directory in a shared directory (which others may write to) is ferry's own: made afresh
# (a link planted at its path is removed, not followed), 0700, owned by the user ferry logs in as.
# Each script that uses it first enters it and checks that it is that directory, then works in it by
# relative paths, so that swapping its path for a link afterwards changes nothing.
MAKE_STAGING = 'rm -rf -- "$1" && mkdir -m 0700 -- "$1"'
ENTER_STAGING = r"""set -e
staging=$1
refuse() { echo "ferry: refusing the staging directory $staging: $1" >&2; exit 1; }
[ -d "$staging" ] && [ ! -L "$staging" ] || refuse "it is not a directory (a link?)"
expected="$(cd -P -- "${staging%/*}" && pwd -P)/${staging##*/}"
cd -P -- "$staging"
[ "$(pwd -P)" = "$expected" ] || refuse "it leads to $(pwd -P)"
[ "$(stat -c %u:%a .)" = "$(id -u):700" ] || refuse "it is not private to $(id -un) (mode 0700)"
"""
# Writes the archive of a directory into the staging directory; prints its sha256.
STAGE = (
    ENTER_STAGING
    + r"""name=$2; shift 2
"$@" > "$name.tar"
echo "$(sha256sum < "$name.tar" | cut -d " " -f 1) $(wc -c < "$name.tar")"
"""
)
# Unpacks an archive from the staging directory once its sha256 is the one the source printed.
UNSTAGE = (
    ENTER_STAGING
    + r"""name=$2 sum=$3; shift 3
[ -f "$name.tar" ] && [ ! -L "$name.tar" ] || refuse "$name.tar is not a plain file"
echo "$sum  $name.tar" | sha256sum -c --status \
  || refuse "$name.tar is not what the source wrote (its sha256 differs)"
exec "$@" < "$name.tar"
"""
)


@dataclass(frozen=True)
class Baseline:
    """What a bulk round left on the target: when it began (by the source's clock, as `date
    +%s.%N` prints it) and the file on the source listing every path the target holds."""

    since: str
    listing: str


@dataclass(frozen=True)
class Staged:
    """An archive `stage` wrote: its sha256 and its size in bytes."""

    sha256: str
    size: int


@dataclass(frozen=True)
class CopyCommands:
    """A producer to run on the source and the consumer that receives its output on the target."""

    producer: list[str]
    consumer: list[str]


class TreeCopy:
    """Copies of directories from one host. `peer` is set when other hosts may stream to it directly."""

    def __init__(self, session: SSHSession, peer: PeerEndpoint | None) -> None:
        self.ssh = session
        self.peer = peer
        self._has_lz4: bool | None = None

    def clock(self) -> str:
        """Now, by this host's clock, as `date +%s.%N` prints it."""
        return self.ssh.run(["date", "+%s.%N"], timeout=30).text.strip()

    def relay(
        self,
        source_dir: str,
        target: TreeCopy,
        target_dir: str,
        *,
        fresh: bool,
        armed: bool,
        tag: str = "ferry",
    ) -> Stream:
        """A stream that copies a directory's content into a directory on another host.

        It goes straight to the target when the target accepts direct streams (`peer`), else through
        the operator. With `fresh`, the target directory is first emptied and made readable by root
        only. `tag` names the direct stream's key, so that what a migration left can be found and
        withdrawn.
        """
        commands = CopyCommands(_pack(source_dir), _unpack(target_dir, fresh=fresh))
        return self._stream(commands, source_dir, target, armed=armed, tag=tag)

    def mirror_bulk(
        self,
        source_dir: str,
        target: TreeCopy,
        target_dir: str,
        listing: str,
        *,
        tag: str,
        progress: Moved | None = None,
    ) -> tuple[int, Baseline]:
        """The bulk round of a mirror, while the source directory may change: its content replaces the
        target directory's, and `listing` (a file on this host) records what the target then holds.
        Returns the bytes moved (told to `progress` as they go) and the baseline `mirror_final` starts
        from."""
        since = self.clock()
        moved = self._stream(
            bulk_commands(source_dir, target_dir), source_dir, target, armed=False, tag=tag
        ).fire(progress)
        listed = listing_commands(target_dir, listing)
        Relay(Pipe(target.ssh, listed.producer, self.ssh, listed.consumer)).fire()
        return moved, Baseline(since, listing)

    def mirror_final(
        self, source_dir: str, target: TreeCopy, target_dir: str, baseline: Baseline | None, *, tag: str
    ) -> Stream:
        """The final round of a mirror, armed, for once the source directory no longer changes: the
        target directory ends up holding exactly what it holds. Without a baseline (the bulk round
        was not seen), the whole content replaces the target's."""
        return self._stream(
            final_commands(source_dir, target_dir, baseline), source_dir, target, armed=True, tag=tag
        )

    def make_staging(self, staging: str) -> None:
        self.ssh.run(staging_commands(staging))

    def stage(self, source_dir: str, staging: str, name: str) -> Staged:
        """Archives a directory into `staging`/`name`.tar."""
        sha256, size = self.ssh.run(stage_commands(source_dir, staging, name), timeout=900).text.split()
        return Staged(sha256, int(size))

    def unstage(self, staging: str, name: str, sha256: str, target_dir: str, *, fresh: bool) -> None:
        """Unpacks `staging`/`name`.tar into a directory, if it is what `stage` wrote."""
        self.ssh.run(unstage_commands(staging, name, sha256, target_dir, fresh=fresh), timeout=900)

    def has_lz4(self) -> bool:
        """Direct streams may go through lz4 when both hosts have it (when a sample compresses)."""
        if self._has_lz4 is None:
            self._has_lz4 = self.ssh.run(["lz4", "--version"], check=False, timeout=30).exit_code == 0
        return self._has_lz4

    def _stream(
        self, commands: CopyCommands, source_dir: str, target: TreeCopy, *, armed: bool, tag: str
    ) -> Stream:
        pipe = Pipe(self.ssh, commands.producer, target.ssh, commands.consumer)
        if target.peer is not None:
            sample = source_dir if self.has_lz4() and target.has_lz4() else None
            return PeerStream(pipe, target.peer, self._address(), tag, compress_sample=sample)
        return Relay(pipe, armed=armed)

    def _address(self) -> str | None:
        """This host's own IP address as its peers see it, when its SSH address is one."""
        try:
            return str(ipaddress.ip_address(self.ssh.endpoint.address))
        except ValueError:
            return None


def bulk_commands(source_dir: str, target_dir: str) -> CopyCommands:
    """The bulk round: the whole content, read while it may change, into the emptied target."""
    return CopyCommands(
        ["sh", "-c", PACK_CHANGING, "ferry-pack", *_pack(source_dir, "--ignore-failed-read")],
        _unpack_emptied(target_dir),
    )


def listing_commands(target_dir: str, listing: str) -> CopyCommands:
    """Lists, on the target, every path its directory holds into `listing`, a file on the source."""
    return CopyCommands(
        ["sh", "-c", LIST, "ferry-list", target_dir], ["sh", "-c", STORE_LISTING, "ferry-listing", listing]
    )


def final_commands(source_dir: str, target_dir: str, baseline: Baseline | None) -> CopyCommands:
    """The final round: from the baseline, what changed and what went; without, everything."""
    if baseline is None:
        return CopyCommands(_pack(source_dir), _unpack_emptied(target_dir))
    # File times come from the kernel's coarse clock (a tick behind `date`): a second of margin.
    since = f"{float(baseline.since) - CHANGE_TIME_MARGIN_SECONDS:.9f}"
    return CopyCommands(
        ["sh", "-c", PACK_CHANGES, "ferry-pack-changes", source_dir, since, baseline.listing, *PACK_OPTIONS],
        ["sh", "-c", UNPACK_CHANGES, "ferry-unpack-changes", target_dir, *_untar(target_dir)],
    )


def staging_commands(staging: str) -> list[str]:
    return ["sh", "-c", MAKE_STAGING, "ferry-staging", staging]


def stage_commands(source_dir: str, staging: str, name: str) -> list[str]:
    return ["sh", "-c", STAGE, "ferry-stage", staging, name, *_pack(source_dir)]


def unstage_commands(staging: str, name: str, sha256: str, target_dir: str, *, fresh: bool) -> list[str]:
    return ["sh", "-c", UNSTAGE, "ferry-unstage", staging, name, sha256, *_unpack(target_dir, fresh=fresh)]


def _pack(directory: str, *options: str) -> list[str]:
    return ["tar", "-C", directory, *PACK_OPTIONS, *options, "-cf", "-", "."]


def _untar(directory: str) -> list[str]:
    # A directory's time is set once all of it arrived, wherever its members stand in the archive
    # (a list sorted by name puts "./new-file" between "./new" and "./new/file").
    return ["tar", "-C", directory, *TAR_OPTIONS, "--delay-directory-restore", "-xpf", "-"]


def _unpack(directory: str, *, fresh: bool) -> list[str]:
    if not fresh:
        return _untar(directory)
    script = 'rm -rf -- "$1" && install -d -m 0700 -- "${1%/*}" "$1" && shift && exec "$@"'
    return ["sh", "-c", script, "ferry-receive", directory, *_untar(directory)]


def _unpack_emptied(directory: str) -> list[str]:
    """Unpacks into the directory once emptied, keeping the directory itself (a volume's `_data`)."""
    return ["sh", "-c", EMPTY_THEN_UNPACK, "ferry-receive", directory, *_untar(directory)]
