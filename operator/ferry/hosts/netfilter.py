"""Port forwarding on one host by the kernel's NAT (iptables): connections to ports of this host go on
to another host. Every rule carries a tag (an iptables comment), by which it is found and removed.

Clients on the host itself that ask 127.0.0.1 (which docker-proxy served before the move) are sent on
too: that needs `route_localnet`, which ferry turns on while it forwards anything from the host and
gives back its former value when the last of its forwards goes. Like kube-proxy, it then drops
packets from elsewhere addressed to 127.0.0.0/8, which route_localnet would otherwise let in.
`ip_forward` is turned on and left on (Docker needs it on as well).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from ferry.hosts.ssh import Commands

SAVED_ROUTE_LOCALNET = "/var/lib/ferry/route_localnet.saved"  # its value before ferry's first forward
# The rules (nat and filter) come on stdin; route_localnet goes on once the guard rule is in place.
FORWARD = r"""set -e
saved=$1
sysctl -q -w net.ipv4.ip_forward=1
iptables-restore --noflush
if [ ! -e "$saved" ]; then
    install -d -m 0700 -- "${saved%/*}"
    sysctl -n net.ipv4.conf.all.route_localnet > "$saved.new"
    mv -- "$saved.new" "$saved"
fi
sysctl -q -w net.ipv4.conf.all.route_localnet=1
"""
# Deletes the rules that come on stdin; then, once no forward of ferry's is left on the host,
# route_localnet gets its former value back.
UNFORWARD = r"""saved=$1
iptables-restore --noflush || exit
[ -e "$saved" ] || exit 0
iptables -t nat -S | grep -qF -- '--comment "ferry:' && exit 0
sysctl -q -w "net.ipv4.conf.all.route_localnet=$(cat -- "$saved")" && rm -f -- "$saved"
"""


class Netfilter:
    def __init__(self, commands: Commands) -> None:
        self._commands = commands

    def forward_ports(self, ports: Sequence[tuple[str, int]], to_address: str, tag: str) -> None:
        """Sends connections to these ports of this host on to another host (kernel NAT, tagged)."""
        to = self._resolve(to_address)
        nat, forward = [], []
        for protocol, port in ports:
            match = f"-p {protocol} -m comment --comment {tag}"
            dnat = f"--dport {port} -j DNAT --to-destination {to}:{port}"
            nat += [
                f"-I PREROUTING 1 {match} -m addrtype --dst-type LOCAL {dnat}",
                f"-I OUTPUT 1 {match} -m addrtype --dst-type LOCAL {dnat}",
                f"-I POSTROUTING 1 {match} -d {to} --dport {port} -j MASQUERADE",
            ]
            forward += [
                f"-I FORWARD 1 {match} -d {to} --dport {port} -j ACCEPT",
                f"-I FORWARD 1 {match} -s {to} --sport {port} -j ACCEPT",
            ]
        guard = (
            f"-I INPUT 1 -m comment --comment {tag} ! -s 127.0.0.0/8 -d 127.0.0.0/8 "
            "-m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP"
        )
        rules = restore_text({"nat": nat, "filter": [*forward, guard]})
        self._commands.run(
            ["sh", "-c", FORWARD, "ferry-forward", SAVED_ROUTE_LOCALNET], input=rules, timeout=30
        )

    def remove_forwards(self, tag: str) -> None:
        """Removes this tag's forwards: two host calls (a rollback pays for them in the freeze)."""
        deletions = restore_text(self._tagged_rules(("nat", "filter"), tag))
        self._commands.run(
            ["sh", "-c", UNFORWARD, "ferry-unforward", SAVED_ROUTE_LOCALNET], input=deletions, timeout=30
        )

    def remove_tagged(self, tables: Sequence[str], tag: str) -> None:
        """Deletes every rule of these tables that carries `tag`."""
        self.apply(self._tagged_rules(tables, tag))

    def _tagged_rules(self, tables: Sequence[str], tag: str) -> dict[str, list[str]]:
        """The deletions, by table, of the rules of these tables that carry `tag` (one listing)."""
        rules: dict[str, list[str]] = {table: [] for table in tables}
        table = None
        for line in self._commands.run(["iptables-save"], timeout=30).text.splitlines():
            if line.startswith("*"):
                table = line[1:]
            elif table in rules and line.startswith("-A ") and _tagged(line, tag):
                rules[table].append("-D" + line[2:])
        return rules

    def _resolve(self, address: str) -> str:
        try:
            return str(ipaddress.ip_address(address))
        except ValueError:
            found = self._commands.run(["getent", "ahostsv4", address], timeout=30).text.split()
            return str(ipaddress.ip_address(found[0]))

    def apply(self, rules: dict[str, list[str]]) -> None:
        """Applies rule changes in one iptables-restore call (no shell: the rules go on stdin)."""
        text = restore_text(rules)
        if text:
            self._commands.run(["iptables-restore", "--noflush"], input=text, timeout=30)


def restore_text(rules: dict[str, list[str]]) -> bytes:
    """iptables-restore's input for these rule changes, by table."""
    return "".join(
        f"*{table}\n" + "".join(f"{rule}\n" for rule in lines) + "COMMIT\n"
        for table, lines in rules.items()
        if lines
    ).encode()


def _tagged(rule: str, tag: str) -> bool:
    """iptables-save prints a comment quoted when it has a colon."""
    return f'--comment "{tag}"' in rule or f"--comment {tag} " in rule
