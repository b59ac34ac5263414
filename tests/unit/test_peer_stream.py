"""The one-off keys of direct host-to-host streams."""

from __future__ import annotations

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


def test_the_producers_byte_count_reaches_the_operator_whole_whatever_the_target_prints(
    tmp_path: Path,
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text(TALKATIVE_SSH)
    (bin_dir / "ssh").chmod(0o755)
    key = tmp_path / "key"
    key.write_text("private")
    (tmp_path / "key.known").write_text("known")

    sent = subprocess.run(
        [
            "sh",
            "-c",
            SEND,
            "ferry-send",
            str(key),
            f"{key}.known",
            "22",
            "root@peer",
            "",
            "sh",
            "-c",
            TOTAL_IN_PIECES,
        ],
        input=b"go\n",
        capture_output=True,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
        timeout=10,
        check=True,
    )

    total = TOTAL.search(sent.stderr)
    assert total is not None and int(total.group(1)) == 42, sent.stderr
    assert b"the target says something" in sent.stderr
    assert not key.exists() and not (tmp_path / "key.err").exists()
