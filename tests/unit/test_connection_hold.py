"""The connection hold's commands (through a fake host), its release script, and the holder's parts
that need no root: packet sorting and the drain's count of open connections."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ferry.hosts import connection_hold, hold_agent
from ferry.hosts.connection_hold import Drain, Held, Hold
from ferry.hosts.ssh import CommandFailed
from tests.unit.fakes import FakeCommands

TAG = "ferry-hold:0b5e3c1a-uid"
COUNTS = {
    "connections": 3,
    "syns": 4,
    "udpDropped": 2,
    "passed": 1,
    "heldMs": 1200,
    "endedBy": "release",
    "rulesRemoved": True,
}
RAW_RULES = f"""*raw
:PREROUTING ACCEPT [0:0]
-A PREROUTING -d 172.17.0.2/32 ! -i docker0 -j DROP
-A PREROUTING -p tcp -m tcp --dport 8080 --tcp-flags FIN,SYN,RST,ACK SYN -m addrtype --dst-type LOCAL -m comment --comment "{TAG}" -j NFQUEUE --queue-num 61442 --queue-bypass
-A OUTPUT -p tcp -m tcp --dport 8080 --tcp-flags FIN,SYN,RST,ACK SYN -m addrtype --dst-type LOCAL -m comment --comment "{TAG}" -j NFQUEUE --queue-num 61442 --queue-bypass
-A OUTPUT -p tcp -m tcp --dport 8080 -m comment --comment "{TAG}-other" -j NFQUEUE --queue-num 61443 --queue-bypass
COMMIT
*nat
:OUTPUT ACCEPT [0:0]
-A OUTPUT -p tcp -m comment --comment "{TAG}" -j DNAT --to-destination 10.0.0.2:8080
COMMIT
"""  # noqa: E501


def armed(pid: int = 4242, drained_ms: int = 0, still_open: int = 0) -> tuple[int, str]:
    return 0, json.dumps({"pid": pid, "queue": 0, "drainedMs": drained_ms, "stillOpen": still_open}) + "\n"


def test_hold_runs_the_agent_with_raw_rules_on_stdin_for_both_directions() -> None:
    host = FakeCommands(armed(drained_ms=40, still_open=1))
    hold = connection_hold.hold(
        host, [("tcp", 8080), ("udp", 5353)], TAG, 15, Drain(pid=777, ports=(80,), seconds=0.3)
    )
    [(argv, rules)] = host.calls
    queue = int(argv[5])
    assert argv[:2] == ["python3", "-c"] and "class NetfilterQueue" in argv[2]
    assert argv[3:] == ["hold", TAG, str(queue), "15.000", "777", "0.300", "80"]
    assert connection_hold.QUEUE_BASE <= queue < connection_hold.QUEUE_BASE + connection_hold.QUEUE_SPAN
    assert hold == Hold(pid=4242, queue=queue, drained_ms=40, still_open=1)
    target = f"-m comment --comment {TAG} -j NFQUEUE --queue-num {queue} --queue-bypass"
    assert rules is not None and rules.decode().splitlines() == [
        "*raw",
        f"-I PREROUTING 1 -p tcp --syn --dport 8080 -m addrtype --dst-type LOCAL {target}",
        f"-I OUTPUT 1 -p tcp --syn --dport 8080 -m addrtype --dst-type LOCAL {target}",
        f"-I PREROUTING 1 -p udp --dport 5353 -m addrtype --dst-type LOCAL {target}",
        f"-I OUTPUT 1 -p udp --dport 5353 -m addrtype --dst-type LOCAL {target}",
        "COMMIT",
    ]


def test_a_taken_queue_makes_the_hold_try_the_next_number() -> None:
    host = FakeCommands((hold_agent.QUEUE_BUSY, ""), armed())
    hold = connection_hold.hold(host, [("tcp", 80)], TAG, 10)
    first, second = (int(argv[5]) for argv, _ in host.calls)
    assert second == first + 1 or (first, second) == (0xFFFF, connection_hold.QUEUE_BASE)
    assert hold.queue == second
    assert f"--queue-num {second} " in (host.calls[1][1] or b"").decode()
    assert host.calls[1][0][6:] == ["10.000"]  # no drain: nothing after the deadline


def test_a_failed_hold_says_so_without_the_agent_source() -> None:
    host = FakeCommands((1, ""))
    with pytest.raises(CommandFailed) as raised:
        connection_hold.hold(host, [("tcp", 80)], TAG, 10)
    assert "hold_agent.py hold" in str(raised.value) and "NetfilterQueue" not in str(raised.value)


@pytest.mark.parametrize(
    "tag",
    [
        "",
        "-D PREROUTING",
        "a b",
        'x" -j ACCEPT',
        "x\n-A OUTPUT -j DROP",
        "../../etc/passwd",
        "$(reboot)",
        "a" * 129,
    ],
)
def test_tags_that_could_reach_a_rule_a_path_or_a_shell_are_refused_before_any_command(tag: str) -> None:
    host = FakeCommands()
    with pytest.raises(ValueError):
        connection_hold.hold(host, [("tcp", 80)], tag, 10)
    with pytest.raises(ValueError):
        connection_hold.release(host, tag)
    assert host.calls == []


def test_ports_are_numbers_and_protocols_tcp_or_udp() -> None:
    with pytest.raises(ValueError):
        connection_hold.hold_rules([("tcp", "80 -j ACCEPT")], TAG, 61440)  # type: ignore[list-item]
    with pytest.raises(ValueError):
        connection_hold.hold_rules([("sctp", 80)], TAG, 61440)


def test_release_hands_dir_and_tag_to_the_script_as_arguments_and_returns_the_counts() -> None:
    host = FakeCommands((0, json.dumps(COUNTS)))
    held = connection_hold.release(host, TAG)
    assert host.calls == [
        (["sh", "-c", connection_hold.RELEASE, "ferry-release", hold_agent.HOLD_DIR, TAG], None)
    ]
    assert held == Held(connections=3, syns=4, udp_dropped=2, passed=1, held_ms=1200, ended_by="release")


def test_a_release_with_no_holder_left_deletes_only_this_holds_rules() -> None:
    host = FakeCommands((0, ""), (0, RAW_RULES), (0, ""))
    assert connection_hold.release(host, TAG) is None
    assert host.calls[1] == (["iptables-save"], None)
    argv, restore = host.calls[2]
    assert argv == ["iptables-restore", "--noflush"]
    assert restore is not None and restore.decode().splitlines() == [
        "*raw",
        *("-D" + line[2:] for line in RAW_RULES.splitlines()[3:5]),
        "COMMIT",
    ]


def test_a_holder_that_could_not_remove_its_rules_has_them_removed() -> None:
    host = FakeCommands((0, json.dumps({**COUNTS, "rulesRemoved": False})), (0, RAW_RULES), (0, ""))
    held = connection_hold.release(host, TAG)
    assert held is not None and held.connections == 3
    assert [argv[0] for argv, _ in host.calls] == ["sh", "iptables-save", "iptables-restore"]


def test_no_rules_left_means_no_restore() -> None:
    host = FakeCommands((0, "-P PREROUTING ACCEPT\n-P OUTPUT ACCEPT\n"))
    connection_hold.remove_holds(host, TAG)
    assert len(host.calls) == 1


# -- the release script, against a stand-in holder (a local process)

HOLDER = r"""
import json, os, signal, sys, time
directory, tag = sys.argv[1], sys.argv[2]
def let_go(*_):
    time.sleep(0.2)  # the real holder removes its rules first
    with open(f"{directory}/{tag}.json", "w") as out:
        json.dump({"endedBy": "release"}, out)
    os.unlink(f"{directory}/{tag}.pid")
    sys.exit(0)
signal.signal(signal.SIGUSR1, let_go)
with open(f"{directory}/{tag}.pid", "w") as out:
    out.write(f"{os.getpid()}\n")
while True:
    time.sleep(1)
"""


def release_script(directory: Path, tag: str = TAG) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", "-c", connection_hold.RELEASE, "ferry-release", str(directory), tag],
        capture_output=True,
        text=True,
        timeout=10,
    )


def test_the_release_script_signals_the_holder_waits_for_it_and_prints_its_counts(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path), TAG])
    try:
        while not (tmp_path / f"{TAG}.pid").exists():
            time.sleep(0.01)
        started = time.monotonic()
        done = release_script(tmp_path)
        assert time.monotonic() - started >= 0.2  # it waited for the holder to finish
        assert json.loads(done.stdout) == {"endedBy": "release"}
        assert holder.wait(timeout=5) == 0
        assert list(tmp_path.iterdir()) == []  # counts read once, then removed
    finally:
        holder.kill()


def test_the_release_script_signals_no_process_that_is_not_the_holder(tmp_path: Path) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / f"{TAG}.pid").write_text(f"{other.pid}\n")  # a stale file, its pid reused
        done = release_script(tmp_path)
        assert (done.returncode, done.stdout) == (0, "")
        assert other.poll() is None
        assert not (tmp_path / f"{TAG}.pid").exists()
    finally:
        other.kill()
        other.wait()


def test_the_release_script_is_quiet_when_there_was_no_hold(tmp_path: Path) -> None:
    done = release_script(tmp_path)
    assert (done.returncode, done.stdout) == (0, "")


# -- the holder's parts


class FakeQueue:
    def __init__(self) -> None:
        self.verdicts: list[tuple[int, int]] = []

    def verdict(self, packet_id: int, verdict: int) -> None:
        self.verdicts.append((packet_id, verdict))


def ipv4(protocol: int, source: str, source_port: int) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 60, 0, 0, 64, protocol, 0, socket.inet_aton(source), b"\0" * 4
    )
    return header + struct.pack("!HH", source_port, 8080)


def test_the_holder_keeps_syns_counts_retransmissions_once_and_drops_udp() -> None:
    queue = FakeQueue()
    holder = hold_agent.Holder(queue, TAG, 10, wake=-1)  # type: ignore[arg-type]
    holder.take(1, ipv4(socket.IPPROTO_TCP, "10.0.0.7", 40000))
    holder.take(2, ipv4(socket.IPPROTO_UDP, "10.0.0.7", 5353))
    holder.take(3, ipv4(socket.IPPROTO_TCP, "10.0.0.7", 40000))  # the client's retransmission
    holder.take(4, ipv4(socket.IPPROTO_TCP, "10.0.0.8", 40000))
    assert holder.held == [1, 3, 4] and queue.verdicts == [(2, hold_agent.NF_DROP)]
    assert (len(holder.connections), holder.syns, holder.udp_dropped) == (2, 3, 1)


def test_netlink_attributes_round_trip() -> None:
    data = hold_agent._attr(1, struct.pack(">IHB", 7, 0x0800, 1)) + hold_agent._attr(10, b"abcde")
    assert len(data) % 4 == 0
    found = hold_agent._attributes(data)
    assert struct.unpack_from(">I", found[1])[0] == 7 and found[10] == b"abcde"


def test_the_drain_counts_open_connections_on_the_workloads_own_ports() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    server, _ = listener.accept()
    try:
        assert hold_agent.open_connections(os.getpid(), {port}) == 1  # not the listener, not the client
        assert hold_agent.drain(os.getpid(), 0.05, {port})[1] == 1  # bounded: gives up, one left
        server.close()  # the workload answered and closed: done (FIN_WAIT, then TIME_WAIT)
        assert hold_agent.drain(os.getpid(), 5, {port})[1] == 0
    finally:
        client.close()
        listener.close()


def test_a_connection_the_workload_has_not_accepted_yet_counts_as_open() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    try:
        assert hold_agent.open_connections(os.getpid(), {port}) == 1
    finally:
        client.close()
        listener.close()


def test_the_agent_source_runs_standalone() -> None:
    """ferry sends hold_agent.py as `python3 -c`: it must need nothing but the standard library."""
    source = Path(hold_agent.__file__).read_text()
    done = subprocess.run([sys.executable, "-I", "-c", source], capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stderr.split(":")[0]) == (1, "usage")
