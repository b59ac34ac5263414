"""Port forwarding on one host by the kernel's NAT (iptables): connections to ports of this host go on
to another host. Every rule carries a tag (an iptables comment), by which it is found and removed."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from ferry.hosts.ssh import Commands


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
        self._commands.run(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"], timeout=30)
        self.apply({"nat": nat, "filter": forward})

    def remove_forwards(self, tag: str) -> None:
        self.remove_tagged(("nat", "filter"), tag)

    def remove_tagged(self, tables: Sequence[str], tag: str) -> None:
        """Deletes every rule of these tables that carries `tag`."""
        rules: dict[str, list[str]] = {}
        for table in tables:
            listed = self._commands.run(["iptables", "-t", table, "-S"], timeout=30).text.splitlines()
            rules[table] = [
                "-D" + line[2:] for line in listed if line.startswith("-A ") and _tagged(line, tag)
            ]
        self.apply(rules)

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
    """iptables -S prints a comment quoted when it has a colon."""
    return f'--comment "{tag}"' in rule or f"--comment {tag} " in rule
