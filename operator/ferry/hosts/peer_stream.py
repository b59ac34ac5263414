"""Byte streams that go straight from one host to another over OpenSSH, not through the operator.

Each stream gets a credential that exists only for it: a fresh Ed25519 key whose public half is added
to the target's authorized keys restricted to one forced command (the receiving end of this stream),
to the source's address, and to a short lifetime (`expiry-time`, so that a key left by a crashed
operator dies by itself); the private half is written on the source readable by root only. Both are
removed once the stream ends. The source checks the target's pinned host key.

The ssh client is started before the freeze (it connects and the target's command waits for data);
"go" on the armed session's stdin starts the producer, so the freeze pays for neither an SSH
handshake nor the hosts' shell start-up.
"""

from __future__ import annotations

import logging
import re
import shlex
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ferry.hosts.errors import last_line
from ferry.hosts.ssh import CommandFailed, Commands, SSHSession
from ferry.hosts.streams import ArmedCommand, Moved, Pipe, TransferFailed

log = logging.getLogger(__name__)

KEY_LIFETIME = timedelta(hours=1)
KEYS_DIR = "/var/lib/ferry/keys"  # private halves on the source, one file per stream, root only
# On the source: connect first, wait for "go", then produce into the connection. $1 key file, $2
# known_hosts file, $3 port, $4 user@address, $5 a directory whose largest file decides on lz4 ("" for
# none: no compression), the producer's argv after. lz4 is used only when a 1 MiB sample of that file
# shrinks by half: on random memory it costs more time than it saves (measured in hack/bench). The
# first byte sent says which ("z" lz4, "n" plain). The producer's error output is kept aside and
# printed once the connection ended: the target's messages come through the same ssh client's stderr,
# and tar writes its "Total bytes written" line in pieces, so the two would interleave.
# An ssh client that ends before "go" (refused, unreachable) signals the script, which then ends at
# once with ssh's status and message instead of leaving the operator waiting for "ready".
# AES-GCM first: with AES-NI it is the cheapest authenticated encryption OpenSSH offers.
SEND = r"""set -eu
key=$1 known=$2 port=$3 destination=$4 sample=$5; shift 5
fifo=$key.fifo
rm -f -- "$fifo" "$key.status" && mkfifo -m 0600 -- "$fifo"
trap 'rm -f -- "$key" "$known" "$fifo" "$key.status" "$key.err"' EXIT
trap 'sent=0; wait "$sender" || sent=$?; echo "ssh ended before the stream started" >&2; exit "$sent"' USR1
main=$$
(
  ended=0
  ssh -F /dev/null -T -i "$key" -p "$port" -o BatchMode=yes -o IdentitiesOnly=yes \
    -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$known" -o GlobalKnownHostsFile=/dev/null \
    -o Ciphers=aes128-gcm@openssh.com,chacha20-poly1305@openssh.com,aes128-ctr \
    -o ConnectTimeout=10 -o ServerAliveInterval=5 -o ServerAliveCountMax=3 \
    -- "$destination" < "$fifo" || ended=$?
  kill -USR1 "$main" 2>/dev/null || true
  exit "$ended"
) &
sender=$!
exec 3> "$fifo"
read -r _
trap '' USR1
compress=n
if [ -n "$sample" ]; then
  largest=$(ls -S -- "$sample" 2>/dev/null | head -n 1)
  if [ -n "$largest" ] && [ -f "$sample/$largest" ] && [ ! -L "$sample/$largest" ] \
    && [ "$(head -c 1048576 -- "$sample/$largest" | lz4 -1 -q -c | wc -c)" -lt 524288 ]; then
    compress=z
  fi
fi
printf %s "$compress" >&3
if [ "$compress" = z ]; then
  { "$@" 2> "$key.err"; echo $? > "$key.status"; } | lz4 -1 -q >&3
  produced=$(cat "$key.status")
else
  produced=0
  "$@" 2> "$key.err" >&3 || produced=$?
fi
exec 3>&-
sent=0
wait "$sender" || sent=$?
cat -- "$key.err" >&2
[ "$sent" -eq 0 ] || exit "$sent"
exit "$produced"
"""
# On the target: "ready" (back through ssh to the source's armed session: the connection is up and
# the login shell has started), then the first byte says whether lz4 follows (dd reads just that).
RECEIVE = [
    "sh",
    "-c",
    'echo ready && if [ "$(dd bs=1 count=1 2>/dev/null)" = z ]; then lz4 -d -q | "$@"; else "$@"; fi',
    "ferry-receive-stream",
]
# Appends a key line; the lock (a file of its own, see REVOKE) keeps it from a concurrent rewrite.
AUTHORIZE = (
    'umask 077 && install -d -m 0700 -- "${1%/*}" && flock "$1.ferry-lock" sh -c \'cat >> "$1"\' - "$1"'
)
TOTAL = re.compile(rb"Total bytes written: (\d+)")


@dataclass(frozen=True)
class PeerEndpoint:
    """How the source reaches the target's sshd, and where the target keeps authorized keys."""

    address: str
    port: int
    user: str
    host_key: str
    authorized_keys: str


def new_key(comment: str) -> tuple[str, str]:
    """(private key in OpenSSH format, public key line) of a fresh Ed25519 key."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, f"{public.decode()} {comment}"


def authorized_line(public: str, command: Sequence[str], source_address: str | None, until: datetime) -> str:
    options = ["restrict", f'expiry-time="{until.strftime("%Y%m%d%H%M")}Z"']
    if source_address is not None:
        options.append(f'from="{source_address}"')
    forced = shlex.join(command).replace("\\", "\\\\").replace('"', '\\"')
    options.append(f'command="{forced}"')
    return f"{','.join(options)} {public}"


class PeerStream:
    """Pipes `producer` on the source into `consumer` on the target over a direct SSH connection.

    The same interface as the operator's `Relay`: build it before the freeze, `fire()` it after.
    """

    def __init__(
        self,
        pipe: Pipe,
        peer: PeerEndpoint,
        source_address: str | None,
        tag: str,
        *,
        compress_sample: str | None = None,
    ) -> None:
        self.pipe = pipe
        source, target = pipe.source, pipe.target
        self.peer = peer
        self.comment = f"ferry:{tag}:{uuid.uuid4().hex[:8]}"
        private, public = new_key(self.comment)
        forced = [*RECEIVE, *pipe.consumer]
        line = authorized_line(public, forced, source_address, datetime.now(UTC) + KEY_LIFETIME)
        target.run(
            ["sh", "-c", AUTHORIZE, "ferry-authorize", peer.authorized_keys], input=f"{line}\n".encode()
        )
        key_file = f"{KEYS_DIR}/{self.comment.replace(':', '-')}"
        known_as = peer.address if peer.port == 22 else f"[{peer.address}]:{peer.port}"
        known = f"{known_as} {' '.join(peer.host_key.split()[:2])}\n"
        write = 'umask 077 && install -d -m 0700 -- "${1%/*}" && cat > "$1" && printf %s "$3" > "$2"'
        source.run(
            ["sh", "-c", write, "ferry-key", key_file, f"{key_file}.known", known], input=private.encode()
        )
        self._sender = ArmedCommand(
            source,
            [
                "sh",
                "-c",
                SEND,
                "ferry-send",
                key_file,
                f"{key_file}.known",
                str(peer.port),
                f"{peer.user}@{peer.address}",
                compress_sample or "",
                *pipe.producer,
            ],
            label=f"{source.name} (to {target.name})",
        )

    def fire(self, progress: Moved | None = None) -> int:
        """Streams everything; returns the number of bytes the producer's tar reported, else 0 (the
        operator sees no byte go by: `progress` is told at the end)."""
        try:
            ended = self._sender.fire()
        except (OSError, EOFError, TimeoutError) as error:
            broke = error or type(error).__name__
            raise TransferFailed(f"stream from {self.pipe} broke: {broke}") from None
        if ended.status != 0:
            raise TransferFailed(
                f"stream from {self.pipe} failed (exit {ended.status}): {last_line(ended.stderr)}"
            )
        total = TOTAL.search(ended.stderr)
        moved = int(total.group(1)) if total else 0
        if progress is not None:
            progress(moved)
        return moved

    def close(self) -> None:
        """Ends the sender and withdraws the key from the target (after the freeze window: it costs
        a remote command, and the key is restricted and expires anyway)."""
        self._sender.close()
        revoke_keys(self.pipe.target, self.peer.authorized_keys, self.comment)


def withdraw_stream_keys(source: Commands, target: SSHSession, peer: PeerEndpoint, tag: str) -> None:
    """Withdraws every key this tag's streams made, on both ends: a stream withdraws its own when it
    closes, but an operator that died in between leaves them (restricted, and expiring within the
    hour)."""
    revoke_keys(target, peer.authorized_keys, f"ferry:{tag}:")
    remove_private_keys(source, tag)


def remove_private_keys(source: Commands, tag: str) -> None:
    """Removes what this tag's streams left in KEYS_DIR on the source: a sender removes its own key
    when it ends, but one never started (the operator died in between) leaves it there."""
    source.run(["sh", "-c", 'rm -f -- "$1/ferry-$2-"*', "ferry-unkey", KEYS_DIR, tag], timeout=30)


# Writes the remaining keys beside the file and renames it over: sshd, which takes no lock, reads
# either the old file or the new one, never one half rewritten (which refused concurrent streams'
# keys). The lock is a file of its own, as the renamed file's inode changes under a lock held on it.
REVOKE = r"""set -eu
umask 077
exec 9>> "$1.ferry-lock"
flock 9
file=$(readlink -f -- "$1")
[ -e "$file" ] || exit 0
grep -vF -- " $2" "$file" > "$file.ferry-new" || [ $? -eq 1 ]
chown --reference="$file" -- "$file.ferry-new"
chmod --reference="$file" -- "$file.ferry-new"
mv -f -- "$file.ferry-new" "$file"
"""


def revoke_keys(target: Commands, authorized_keys: str, comment: str) -> None:
    """Removes the authorized keys whose comment is `comment` or starts with it (a tag)."""
    try:
        target.run(["sh", "-c", REVOKE, "ferry-revoke", authorized_keys, comment], timeout=30)
    except CommandFailed as error:
        log.warning("could not withdraw stream key %s on %s: %s", comment, target.name, error)
