"""Holding new connections to a host's published ports across a freeze, instead of refusing them.

Before the freeze, `hold` sends new TCP SYNs for the ports (from other hosts: PREROUTING; from the
host itself, docker-proxy's clients included: OUTPUT) to an NFQUEUE in the raw table, where a small
holder (`hold_agent.py`, run by the host's python3) keeps them. The raw table comes before conntrack
and NAT: a held SYN has no conntrack entry and no NAT decision yet, so when `release` lets it go,
after the cutover, it follows the NAT rules of that moment (ferry's DNAT to the target, or Docker's
to the source restored by a rollback). UDP datagrams are dropped meanwhile, and counted.

A hold ends by itself after `max_seconds` (if ferry dies, nothing stays held), and leaves no rule
that could drop traffic (`--queue-bypass`: with no holder, a rule lets packets through).
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

from ferry.hosts.hold_agent import HOLD_DIR, QUEUE_BUSY
from ferry.hosts.netfilter import Netfilter, restore_text
from ferry.hosts.ssh import CommandFailed, Commands

QUEUE_BASE, QUEUE_SPAN, QUEUE_TRIES = 0xF000, 0x1000, 8
TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
PROTOCOLS = ("tcp", "udp")

# Asks the holder to let go, waits until it has, prints its counts (nothing if it is long gone).
RELEASE = r"""dir=$1 tag=$2
if pid=$(cat -- "$dir/$tag.pid" 2>/dev/null) && grep -qaF -- "$tag" "/proc/$pid/cmdline" 2>/dev/null; then
    kill -USR1 "$pid"
    while [ -e "$dir/$tag.pid" ] && kill -0 "$pid" 2>/dev/null; do sleep 0.005; done
fi
rm -f -- "$dir/$tag.pid"
cat -- "$dir/$tag.json" 2>/dev/null && rm -f -- "$dir/$tag.json"
exit 0
"""


@dataclass(frozen=True)
class Drain:
    """Before the hold answers, wait for the workload's connections to end: `pid` is a process in
    its network namespace, `ports` its own (container) ports, `seconds` the most it may take."""

    pid: int
    ports: tuple[int, ...]
    seconds: float


@dataclass(frozen=True)
class Hold:
    pid: int  # the holder, on the host
    queue: int
    drained_ms: int  # how long the drain waited
    still_open: int  # connections the drain's bound cut short (the freeze will close them)


@dataclass(frozen=True)
class Held:
    """What a hold did, counted by its holder."""

    connections: int  # TCP connection attempts held, then let go
    syns: int  # their SYNs, client retransmissions included
    udp_dropped: int
    passed: int  # arrived while the hold was being taken down: let through at once
    held_ms: int  # from the hold to the release
    ended_by: str  # "release", or "deadline" when nobody released it in time


def hold(
    commands: Commands,
    ports: Sequence[tuple[str, int]],
    tag: str,
    max_seconds: float,
    drain: Drain | None = None,
) -> Hold:
    """Holds new connections to these published ports ((protocol, port)) of the host; returns once
    the hold is on (and, with `drain`, the workload's open connections have ended or ran out of time)."""
    _check_tag(tag)
    agent = resources.files("ferry.hosts").joinpath("hold_agent.py").read_text()
    drain_args = (
        [] if drain is None else [str(int(drain.pid)), f"{drain.seconds:.3f}", *map(str, drain.ports)]
    )
    start = QUEUE_BASE + zlib.crc32(tag.encode()) % QUEUE_SPAN
    for attempt in range(QUEUE_TRIES):
        queue = QUEUE_BASE + (start - QUEUE_BASE + attempt) % QUEUE_SPAN
        argv = ["python3", "-c", agent, "hold", tag, str(queue), f"{max_seconds:.3f}", *drain_args]
        rules = restore_text({"raw": hold_rules(ports, tag, queue)})
        timeout = 30 + (drain.seconds if drain else 0)
        result = commands.run(argv, input=rules, timeout=timeout, check=False)
        if result.exit_code == QUEUE_BUSY:
            continue
        if result.exit_code != 0:
            raise CommandFailed(
                commands.name,
                ["python3", "hold_agent.py", *argv[3:]],
                result.exit_code,
                result.stderr.decode(errors="replace"),
            )
        answer = json.loads(result.text)
        return Hold(int(answer["pid"]), queue, int(answer["drainedMs"]), int(answer["stillOpen"]))
    raise CommandFailed(
        commands.name, ["hold", tag], QUEUE_BUSY, f"no free NFQUEUE after {QUEUE_TRIES} tries"
    )


def release(commands: Commands, tag: str) -> Held | None:
    """Lets every held connection go, to wherever the host's NAT sends it now, and removes the hold.
    Returns its counts; None when there was no holder left to count (its rules are removed anyway)."""
    _check_tag(tag)
    result = commands.run(["sh", "-c", RELEASE, "ferry-release", HOLD_DIR, tag], timeout=30)
    counts = json.loads(result.text) if result.text.strip() else None
    if counts is None or not counts["rulesRemoved"]:
        remove_holds(commands, tag)
    if counts is None:
        return None
    return Held(
        connections=int(counts["connections"]),
        syns=int(counts["syns"]),
        udp_dropped=int(counts["udpDropped"]),
        passed=int(counts["passed"]),
        held_ms=int(counts["heldMs"]),
        ended_by=str(counts["endedBy"]),
    )


def remove_holds(commands: Commands, tag: str) -> None:
    """Deletes the raw-table rules a hold left (its holder removes them itself, unless killed)."""
    _check_tag(tag)
    Netfilter(commands).remove_tagged(("raw",), tag)


def hold_rules(ports: Sequence[tuple[str, int]], tag: str, queue: int) -> list[str]:
    """Raw-table rules queueing what would open a connection to these ports of this host: TCP SYNs
    and UDP datagrams, from elsewhere (PREROUTING) or from the host itself (OUTPUT)."""
    rules = []
    for protocol, port in ports:
        if protocol not in PROTOCOLS:
            raise ValueError(f"cannot hold {protocol!r} traffic")
        syn = " --syn" if protocol == "tcp" else ""
        match = (
            f"-p {protocol}{syn} --dport {int(port)} -m addrtype --dst-type LOCAL -m comment --comment {tag}"
        )
        target = f"-j NFQUEUE --queue-num {int(queue)} --queue-bypass"
        rules += [f"-I PREROUTING 1 {match} {target}", f"-I OUTPUT 1 {match} {target}"]
    return rules


def _check_tag(tag: str) -> None:
    """A tag goes into iptables comments, file names and a shell's arguments: plain characters only."""
    if not TAG.fullmatch(tag):
        raise ValueError(f"hold tag {tag!r} is not letters, digits and '_.:-'")
