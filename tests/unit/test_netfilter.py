"""Port forwarding after a move (redirect): the rules ferry adds, and route_localnet, which clients on
the source host asking 127.0.0.1 need, turned on behind a guard and given back after the last forward.
The scripts run in a real sh against stand-ins for sysctl and iptables that log what they are asked."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ferry.hosts.netfilter import FORWARD, SAVED_ROUTE_LOCALNET, UNFORWARD, Netfilter
from tests.unit.fakes import FakeCommands

TAG = "ferry:uid-1"
STAND_INS = {
    "sysctl": 'echo "sysctl $*" >> "$LOG"; [ "$1" = -n ] && cat "$LOCALNET"; exit 0',
    "iptables-restore": 'echo "iptables-restore $* <$(wc -l) lines" >> "$LOG"',
    "iptables": 'echo "iptables $*" >> "$LOG"; cat "$NAT_RULES"',
}


def test_forwarding_is_one_command_with_every_rule_tagged_on_stdin() -> None:
    host = FakeCommands()

    Netfilter(host).forward_ports([("tcp", 8080)], "10.0.0.2", TAG)

    [(argv, stdin)] = host.calls
    assert argv == ["sh", "-c", FORWARD, "ferry-forward", SAVED_ROUTE_LOCALNET]
    assert stdin is not None
    rules = [line for line in stdin.decode().splitlines() if line.startswith("-I")]
    assert all(f"--comment {TAG}" in rule for rule in rules)
    assert [rule.split()[1] for rule in rules] == [
        "PREROUTING",
        "OUTPUT",
        "POSTROUTING",
        "FORWARD",
        "FORWARD",
        "INPUT",
    ]
    guard = rules[-1]
    assert (
        "! -s 127.0.0.0/8 -d 127.0.0.0/8" in guard and "! --ctstate RELATED,ESTABLISHED,DNAT -j DROP" in guard
    )


class Host:
    """A local stand-in for a host: its sysctl and iptables log to a file."""

    def __init__(self, root: Path) -> None:
        self.bin, self.log, self.saved = root / "bin", root / "log", root / "ferry" / "route_localnet.saved"
        self.localnet, self.nat_rules = root / "localnet", root / "nat"
        self.bin.mkdir()
        for name, body in STAND_INS.items():
            (self.bin / name).write_text(f"#!/bin/sh\n{body}\n")
            (self.bin / name).chmod(0o755)
        self.localnet.write_text("0\n")
        self.nat_rules.write_text("-P OUTPUT ACCEPT\n")

    def run(self, script: str, stdin: str = "") -> list[str]:
        env = {
            **os.environ,
            "PATH": f"{self.bin}:{os.environ['PATH']}",
            "LOG": str(self.log),
            "LOCALNET": str(self.localnet),
            "NAT_RULES": str(self.nat_rules),
        }
        subprocess.run(
            ["sh", "-c", script, "x", str(self.saved)], input=stdin, text=True, env=env, check=True
        )
        logged = self.log.read_text().splitlines() if self.log.exists() else []
        self.log.unlink(missing_ok=True)
        return logged


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path)


def test_route_localnet_goes_on_only_after_the_guard_rule_and_its_former_value_is_kept(host: Host) -> None:
    logged = host.run(FORWARD, "*filter\n-I INPUT 1 guard\nCOMMIT\n")

    assert logged == [
        "sysctl -q -w net.ipv4.ip_forward=1",
        "iptables-restore --noflush <3 lines",
        "sysctl -n net.ipv4.conf.all.route_localnet",
        "sysctl -q -w net.ipv4.conf.all.route_localnet=1",
    ]
    assert host.saved.read_text() == "0\n"
    assert oct(host.saved.parent.stat().st_mode & 0o777) == "0o700"


def test_a_second_forward_keeps_the_value_from_before_the_first(host: Host) -> None:
    host.run(FORWARD)
    host.localnet.write_text("1\n")  # ferry's own value now

    host.run(FORWARD)

    assert host.saved.read_text() == "0\n"


def test_route_localnet_is_given_back_when_no_forward_of_ferrys_is_left(host: Host) -> None:
    host.run(FORWARD)

    logged = host.run(UNFORWARD)

    assert logged == [
        "iptables-restore --noflush <0 lines",
        "iptables -t nat -S",
        "sysctl -q -w net.ipv4.conf.all.route_localnet=0",
    ]
    assert not host.saved.exists()


def test_route_localnet_stays_on_while_another_migrations_forward_is_left(host: Host) -> None:
    host.run(FORWARD)
    host.nat_rules.write_text('-A OUTPUT -p tcp -m comment --comment "ferry:uid-2" -j DNAT\n')

    logged = host.run(UNFORWARD)

    assert logged == ["iptables-restore --noflush <0 lines", "iptables -t nat -S"]
    assert host.saved.exists()


def test_nothing_is_given_back_by_a_host_ferry_never_forwarded_from(host: Host) -> None:
    assert host.run(UNFORWARD) == ["iptables-restore --noflush <0 lines"]


SAVED_RULES = f"""*nat
:OUTPUT ACCEPT [0:0]
-A OUTPUT -p tcp -m comment --comment "{TAG}" -j DNAT --to-destination 10.0.0.2:8080
-A OUTPUT -p tcp -m comment --comment "{TAG}0" -j DNAT --to-destination 10.0.0.3:8080
COMMIT
*filter
-A INPUT -m comment --comment "{TAG}" ! -s 127.0.0.0/8 -d 127.0.0.0/8 -j DROP
COMMIT
*raw
-A OUTPUT -p tcp -m comment --comment "{TAG}" -j NFQUEUE --queue-num 1
COMMIT
"""


def test_removing_forwards_is_one_listing_then_one_command_deleting_only_this_tags_nat_and_filter_rules() -> (
    None
):
    host = FakeCommands((0, SAVED_RULES))

    Netfilter(host).remove_forwards(TAG)

    [(listing, _), (argv, deletions)] = host.calls
    assert listing == ["iptables-save"]
    assert argv == ["sh", "-c", UNFORWARD, "ferry-unforward", SAVED_ROUTE_LOCALNET]
    assert deletions is not None and deletions.decode().splitlines() == [
        "*nat",
        f'-D OUTPUT -p tcp -m comment --comment "{TAG}" -j DNAT --to-destination 10.0.0.2:8080',
        "COMMIT",
        "*filter",
        f'-D INPUT -m comment --comment "{TAG}" ! -s 127.0.0.0/8 -d 127.0.0.0/8 -j DROP',
        "COMMIT",
    ]
