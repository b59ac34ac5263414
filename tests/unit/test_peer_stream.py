"""The one-off keys of direct host-to-host streams."""

from __future__ import annotations

import shlex
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ferry.hosts.peer_stream import (
    KEYS_DIR,
    RECEIVE,
    SEND,
    TOTAL,
    authorized_line,
    new_key,
    remove_private_keys,
    revoke_keys,
)
from ferry.hosts.tree_copy import Baseline, _unpack, bulk_commands, final_commands
from tests.unit.fakes import FakeCommands

UNTIL = datetime(2026, 11, 26, 3, 4, tzinfo=UTC)


def test_key_is_restricted_to_its_command_its_source_and_an_hour() -> None:
    line = authorized_line(
        "ssh-ed25519 AAAA ferry:uid:1", ["tar", "-C", "/d", "-xpf", "-"], "10.0.0.1", UNTIL
    )
    options, *key = line.rsplit(" ", 3)
    assert options.split(",")[:2] == ["restrict", 'expiry-time="202611260304Z"']
    assert 'from="10.0.0.1"' in options
    assert 'command="tar -C /d -xpf -"' in options
    assert key == ["ssh-ed25519", "AAAA", "ferry:uid:1"]


def test_forced_command_quotes_survive_authorized_keys_parsing() -> None:
    line = authorized_line("k", ["sh", "-c", 'rm -rf -- "$1"', "x", "/a b"], None, UNTIL)
    assert """command="sh -c 'rm -rf -- \\"$1\\"' x '/a b'\"""" in line
    assert "from=" not in line


def test_new_keys_are_fresh_ed25519_keys_with_the_comment() -> None:
    private, public = new_key("ferry:uid:abc")
    other_private, _ = new_key("ferry:uid:abc")
    assert private.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert private != other_private
    assert public.startswith("ssh-ed25519 ") and public.endswith(" ferry:uid:abc")


@pytest.mark.parametrize(
    "consumer",
    [
        _unpack("/t", fresh=True),
        bulk_commands("/s", "/t").consumer,
        final_commands("/s", "/t", None).consumer,
        final_commands("/s", "/t", Baseline("1700000000.0", "/l")).consumer,
    ],
    ids=["fresh", "bulk-round", "final-round-whole", "final-round-changes"],
)
def test_every_receiving_end_a_key_may_force_fits_on_one_authorized_keys_line(consumer: list[str]) -> None:
    line = authorized_line("k", [*RECEIVE, *consumer], None, UNTIL)
    assert "\n" not in line and "\r" not in line


def test_the_keys_of_senders_that_never_started_are_removed_and_no_others(tmp_path: Path) -> None:
    left = [
        "ferry-uid-1-aaaa",
        "ferry-uid-1-aaaa.known",
        "ferry-uid-1-bbbb.fifo",
        "ferry-uid-10-cccc",
        "other",
    ]
    for name in left:
        (tmp_path / name).write_text("key")
    host = FakeCommands()

    remove_private_keys(host, "uid-1")

    [(argv, _)] = host.calls
    assert argv[4] == KEYS_DIR
    subprocess.run([*argv[:4], str(tmp_path), *argv[5:]], check=True)  # the same command, here
    assert sorted(path.name for path in tmp_path.iterdir()) == ["ferry-uid-10-cccc", "other"]


# Stands in for OpenSSH's client: says "ready" as the target would, then, while the producer is
# halfway through its "Total bytes written" line, prints what the target's side said on stderr.
TALKATIVE_SSH = """#!/bin/sh
echo ready
sleep 0.2
printf 'the target says ' >&2
cat > /dev/null
printf 'something\\n' >&2
"""
TOTAL_IN_PIECES = 'printf payload; printf "Total bytes " >&2; sleep 0.4; printf "written: 42 (1MiB)\\n" >&2'


def sender(tmp_path: Path, fake_ssh: str, *producer: str) -> tuple[list[str], dict[str, str]]:
    """SEND's argv with `fake_ssh` standing in for OpenSSH's client, and the environment that finds it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text(fake_ssh)
    (bin_dir / "ssh").chmod(0o755)
    key = tmp_path / "key"
    key.write_text("private")
    (tmp_path / "key.known").write_text("known")
    argv = ["sh", "-c", SEND, "ferry-send", str(key), f"{key}.known", "22", "root@peer", "", *producer]
    return argv, {"PATH": f"{bin_dir}:/usr/bin:/bin"}


def test_the_producers_byte_count_reaches_the_operator_whole_whatever_the_target_prints(
    tmp_path: Path,
) -> None:
    argv, env = sender(tmp_path, TALKATIVE_SSH, "sh", "-c", TOTAL_IN_PIECES)

    sent = subprocess.run(argv, input=b"go\n", capture_output=True, env=env, timeout=10, check=True)

    total = TOTAL.search(sent.stderr)
    assert total is not None and int(total.group(1)) == 42, sent.stderr
    assert b"the target says something" in sent.stderr
    assert not (tmp_path / "key").exists() and not (tmp_path / "key.err").exists()


def send_with(tmp_path: Path, fake_ssh: str) -> subprocess.Popen[bytes]:
    """Starts SEND with `fake_ssh` as OpenSSH's client; "go" is never sent."""
    argv, env = sender(tmp_path, fake_ssh, "true")
    return subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )


def test_a_sender_whose_ssh_is_refused_ends_at_once_with_why_without_waiting_for_go(tmp_path: Path) -> None:
    refused = "#!/bin/sh\necho 'root@peer: Permission denied (publickey).' >&2\nexit 255\n"
    sender = send_with(tmp_path, refused)
    try:
        status = sender.wait(timeout=10)  # its stdin stays open: no "go" ever comes
    finally:
        sender.kill()

    assert status == 255
    assert sender.stdout is not None and b"ready" not in sender.stdout.read()
    assert sender.stderr is not None and b"Permission denied (publickey)" in sender.stderr.read()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bin"]


def test_a_sender_waits_for_go_while_its_ssh_is_connected(tmp_path: Path) -> None:
    connected = "#!/bin/sh\necho ready\ncat > /dev/null\n"
    sender = send_with(tmp_path, connected)
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            sender.wait(timeout=1)
        assert sender.stdin is not None
        sender.stdin.write(b"go\n")
        sender.stdin.close()
        assert sender.wait(timeout=10) == 0
    finally:
        sender.kill()


def revoke_here(authorized_keys: Path, comment: str) -> None:
    """Runs the very command `revoke_keys` sends to a target, on this machine."""
    host = FakeCommands()
    revoke_keys(host, str(authorized_keys), comment)
    [(argv, _)] = host.calls
    subprocess.run(argv, check=True, timeout=10)


def test_revoking_removes_the_keys_of_a_tag_and_keeps_the_others_and_the_files_mode(tmp_path: Path) -> None:
    keys = tmp_path / "authorized_keys"
    keys.write_text(
        "ssh-ed25519 A admin\nrestrict ssh-ed25519 B ferry:uid-1:aa\nrestrict ssh-ed25519 C ferry:uid-10:bb\n"
    )
    keys.chmod(0o640)

    revoke_here(keys, "ferry:uid-1:")

    assert keys.read_text() == "ssh-ed25519 A admin\nrestrict ssh-ed25519 C ferry:uid-10:bb\n"
    assert keys.stat().st_mode & 0o777 == 0o640
    assert not (tmp_path / "authorized_keys.ferry-new").exists()


def test_revoking_through_a_symlink_rewrites_the_file_it_points_to(tmp_path: Path) -> None:
    managed = tmp_path / "managed_keys"
    managed.write_text("ssh-ed25519 A admin\nrestrict ssh-ed25519 B ferry:uid-1:aa\n")
    (tmp_path / "authorized_keys").symlink_to(managed)

    revoke_here(tmp_path / "authorized_keys", "ferry:uid-1:")

    assert (tmp_path / "authorized_keys").is_symlink()
    assert managed.read_text() == "ssh-ed25519 A admin\n"


def test_a_reader_that_takes_no_lock_never_sees_the_file_half_rewritten(tmp_path: Path) -> None:
    keys = tmp_path / "authorized_keys"
    keys.write_text("".join(f"restrict ssh-ed25519 {'K' * 60} other:{n}\n" for n in range(2000)) + "admin\n")
    host = FakeCommands()
    revoke_keys(host, str(keys), "ferry:none:")
    [(argv, _)] = host.calls
    revoking = subprocess.Popen(["sh", "-c", f"for i in $(seq 100); do {shlex.join(argv)}; done"])
    try:
        seen = [keys.read_text().endswith("admin\n") for _ in range(3000) if revoking.poll() is None]
    finally:
        revoking.wait(timeout=60)
    assert seen and all(seen)
