"""The one-off keys of direct host-to-host streams."""

from __future__ import annotations

from datetime import UTC, datetime

from ferry.hosts.peer_stream import authorized_line, new_key

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
