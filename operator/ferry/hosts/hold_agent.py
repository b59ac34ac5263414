"""Holds new connections to a host's published ports while a workload is frozen; run ON the host.

ferry sends this file to the host's `python3` (standard library only) as `python3 -c SOURCE hold TAG
QUEUE SECONDS [DRAIN_PID DRAIN_SECONDS DRAIN_PORT...]`, with iptables-restore rules on stdin that send
new TCP SYNs (and UDP datagrams) for the published ports to NFQUEUE number QUEUE in the raw table.
The raw table runs before conntrack and NAT, so a SYN held here has no conntrack entry yet: when it
is let go, the NAT rules of that moment (a DNAT to the target host, or Docker's own to a restored
source) decide where it goes. UDP datagrams are dropped and counted.

The holder runs detached and ends on SIGUSR1/SIGTERM (ferry's release) or after SECONDS (ferry died):
either way it lets every held SYN go at once, deletes its rules (found by TAG, as ferry tags all its
rules) and writes what it did to HOLD_DIR/TAG.json. Its rules use --queue-bypass, so were the holder
killed outright, the rules it leaves let traffic through instead of dropping it.

Before it answers, a hold drains: it waits until the workload (a process in its network namespace,
DRAIN_PID) has no connection open on its own ports, at most DRAIN_SECONDS, so that requests already
in flight finish before the freeze.
"""

from __future__ import annotations

import errno
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import NoReturn

HOLD_DIR = "/run/ferry/hold"  # pid and counts per tag (tmpfs: gone with a reboot, as the rules are)
QUEUE_BUSY = 75  # exit status: another holder has this queue number; ferry tries another

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_NO_ENOBUFS = 5
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2
SUBSYS_QUEUE = 3 << 8
MSG_PACKET, MSG_VERDICT, MSG_CONFIG, MSG_VERDICT_BATCH = 0, 1, 2, 3
CFG_CMD, CFG_PARAMS, CFG_QUEUE_MAXLEN = 1, 2, 3
CMD_BIND = 1
COPY_PACKET = 2
ATTR_PACKET_HDR, ATTR_VERDICT_HDR, ATTR_PAYLOAD = 1, 2, 10
NF_DROP, NF_ACCEPT = 0, 1
COPY_BYTES = 64  # enough for the IP header and the ports
QUEUE_MAXLEN = 8192  # held packets; beyond, the kernel drops (the client retransmits)
TCP_STATES_OPEN = {"01", "03", "08"}  # ESTABLISHED, SYN_RECV, CLOSE_WAIT in /proc/net/tcp


class NetfilterQueue:
    """One NFQUEUE, bound over a raw netlink socket: packets in, verdicts out."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE: a burst of SYNs fits
        self.sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
        self.sock.bind((0, 0))
        self._seq = 0
        self._request(MSG_CONFIG, _attr(CFG_CMD, struct.pack(">BBH", CMD_BIND, 0, 0)))
        self._request(
            MSG_CONFIG,
            _attr(CFG_PARAMS, struct.pack(">IB", COPY_BYTES, COPY_PACKET))
            + _attr(CFG_QUEUE_MAXLEN, struct.pack(">I", QUEUE_MAXLEN)),
        )

    def _request(self, kind: int, attributes: bytes) -> None:
        """Sends a config message and waits for the kernel's answer; raises its error."""
        self._seq += 1
        self.sock.send(self._message(kind, attributes, NLM_F_REQUEST | NLM_F_ACK))
        while True:
            data = self.sock.recv(65536)
            msg_type, seq = struct.unpack_from("=4xH2xI", data)
            if msg_type == NLMSG_ERROR and seq == self._seq:
                code = -struct.unpack_from("=i", data, 16)[0]
                if code:
                    raise OSError(code, os.strerror(code))
                return

    def _message(self, kind: int, attributes: bytes, flags: int = NLM_F_REQUEST) -> bytes:
        body = struct.pack("=BB", socket.AF_UNSPEC, 0) + struct.pack(">H", self.number) + attributes
        return struct.pack("=IHHII", 16 + len(body), SUBSYS_QUEUE | kind, flags, self._seq, 0) + body

    def packets(self) -> list[tuple[int, bytes]]:
        """The packets waiting on the socket, as (id, first bytes), without blocking."""
        found: list[tuple[int, bytes]] = []
        while True:
            try:
                data = self.sock.recv(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return found
            offset = 0
            while offset + 16 <= len(data):
                length, msg_type = struct.unpack_from("=IH", data, offset)
                if length < 16:
                    break
                if msg_type == SUBSYS_QUEUE | MSG_PACKET:
                    attributes = _attributes(data[offset + 20 : offset + length])
                    packet_id = struct.unpack_from(">I", attributes[ATTR_PACKET_HDR])[0]
                    found.append((packet_id, attributes.get(ATTR_PAYLOAD, b"")))
                offset += (length + 3) & ~3

    def verdict(self, packet_id: int, verdict: int) -> None:
        self.sock.send(
            self._message(MSG_VERDICT, _attr(ATTR_VERDICT_HDR, struct.pack(">II", verdict, packet_id)))
        )

    def accept_up_to(self, packet_id: int) -> None:
        """Lets every packet still queued with an id up to this one go, in one message."""
        header = struct.pack(">II", NF_ACCEPT, packet_id)
        self.sock.send(self._message(MSG_VERDICT_BATCH, _attr(ATTR_VERDICT_HDR, header)))


def _attr(kind: int, payload: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(payload), kind) + payload + b"\0" * (-len(payload) % 4)


def _attributes(data: bytes) -> dict[int, bytes]:
    found, offset = {}, 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        found[kind & 0x3FFF] = data[offset + 4 : offset + length]
        offset += (length + 3) & ~3
    return found


def remove_rules(tag: str) -> None:
    """Deletes this hold's rules from the raw table: every rule commented with the tag."""
    listed = subprocess.run(["iptables", "-t", "raw", "-S"], capture_output=True, text=True, check=True)
    marks = (f'--comment "{tag}"', f"--comment {tag} ")
    deletes = [
        "-D" + line[2:]
        for line in listed.stdout.splitlines()
        if line.startswith("-A ") and any(m in line for m in marks)
    ]
    if deletes:
        text = "*raw\n" + "".join(f"{rule}\n" for rule in deletes) + "COMMIT\n"
        subprocess.run(["iptables-restore", "--noflush"], input=text, text=True, check=True)


def open_connections(pid: int, ports: set[int]) -> int:
    """Connections the process's network namespace has open on these local ports."""
    count = 0
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as listing:
                next(listing)
                for line in listing:
                    fields = line.split()
                    if fields[3] in TCP_STATES_OPEN and int(fields[1].rsplit(":", 1)[1], 16) in ports:
                        count += 1
        except FileNotFoundError:
            continue
    return count


def drain(pid: int, seconds: float, ports: set[int]) -> tuple[int, int]:
    """Waits for the workload's open connections to end, at most `seconds`: (ms waited, still open)."""
    started = time.monotonic()
    while True:
        still_open = open_connections(pid, ports)
        waited = time.monotonic() - started
        if still_open == 0 or waited >= seconds:
            return round(waited * 1000), still_open
        time.sleep(0.005)


class Holder:
    """The detached process: holds TCP SYNs, drops UDP, until released or out of time."""

    def __init__(self, queue: NetfilterQueue, tag: str, seconds: float, wake: int) -> None:
        self.queue, self.tag, self.wake = queue, tag, wake
        self.armed = time.monotonic()
        self.deadline = self.armed + seconds
        self.held: list[int] = []
        self.connections: set[bytes] = set()
        self.syns = self.udp_dropped = self.passed = 0
        self.rules_removed = False

    def run(self) -> str:
        """Returns why it ended: "release" (a signal) or "deadline"."""
        while True:
            left = self.deadline - time.monotonic()
            if left <= 0:
                return "deadline"
            ready, _, _ = select.select([self.queue.sock.fileno(), self.wake], [], [], left)
            if self.wake in ready:
                return "release"
            for packet_id, payload in self.queue.packets():
                self.take(packet_id, payload)

    def take(self, packet_id: int, payload: bytes) -> None:
        header = (payload[0] & 0x0F) * 4 if payload else 0
        if len(payload) > 9 and payload[9] == socket.IPPROTO_UDP:
            self.queue.verdict(packet_id, NF_DROP)
            self.udp_dropped += 1
            return
        self.held.append(packet_id)
        self.syns += 1
        self.connections.add(payload[12:16] + payload[header : header + 2])  # source address and port

    def let_go(self, ended_by: str) -> dict[str, object]:
        """Held SYNs go first, to wherever NAT sends them now; packets that reach the queue while the
        rules are being removed (and just after) are let through at once."""
        for packet_id, payload in self.queue.packets():  # arrived with the release signal
            self.take(packet_id, payload)
        if self.held:
            self.queue.accept_up_to(self.held[-1])
        held_ms = round((time.monotonic() - self.armed) * 1000)
        removal = threading.Thread(target=self._remove_rules)
        removal.start()
        settle = None
        while settle is None or time.monotonic() < settle:
            select.select([self.queue.sock.fileno()], [], [], 0.005)
            for packet_id, _ in self.queue.packets():
                self.queue.verdict(packet_id, NF_ACCEPT)
                self.passed += 1
            if settle is None and not removal.is_alive():
                settle = time.monotonic() + 0.02  # packets already past a rule when it went
        return {
            "connections": len(self.connections),
            "syns": self.syns,
            "udpDropped": self.udp_dropped,
            "passed": self.passed,
            "heldMs": held_ms,
            "endedBy": ended_by,
            "rulesRemoved": self.rules_removed,
        }

    def _remove_rules(self) -> None:
        remove_rules(self.tag)  # on failure (reported nowhere: stderr is /dev/null) ferry removes them
        self.rules_removed = True


def end_previous(tag: str) -> None:
    """Lets go of an earlier hold with this tag (a resumed ferry holding again), waiting for it."""
    try:
        with open(f"{HOLD_DIR}/{tag}.pid") as found:
            pid = int(found.read())
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            if tag.encode() not in cmdline.read():
                return
        os.kill(pid, signal.SIGUSR1)
    except (OSError, ValueError):
        return
    while os.path.exists(f"/proc/{pid}") and os.path.exists(f"{HOLD_DIR}/{tag}.pid"):
        time.sleep(0.005)


def hold(tag: str, queue_number: int, seconds: float, drain_args: list[str]) -> int:
    rules = sys.stdin.read()
    try:
        queue = NetfilterQueue(queue_number)
    except OSError as error:
        if error.errno == errno.EBUSY:
            print(f"queue {queue_number} is taken", file=sys.stderr)
            return QUEUE_BUSY
        raise
    os.makedirs(HOLD_DIR, mode=0o700, exist_ok=True)
    end_previous(tag)
    if os.path.exists(f"{HOLD_DIR}/{tag}.json"):
        os.unlink(f"{HOLD_DIR}/{tag}.json")  # a previous hold's counts
    started_read, started_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(started_read)
        _detach()
        _run_holder(queue, tag, seconds, started_write)
    os.close(started_write)
    queue.sock.close()
    if os.read(started_read, 2) != b"ok":
        print("the holder did not start", file=sys.stderr)
        return 1
    try:
        subprocess.run(["iptables-restore", "--noflush"], input=rules, text=True, check=True)
    except subprocess.CalledProcessError:
        os.kill(pid, signal.SIGTERM)
        return 1
    drained_ms, still_open = 0, 0
    if drain_args:
        drain_pid, drain_seconds, *ports = drain_args
        drained_ms, still_open = drain(int(drain_pid), float(drain_seconds), {int(p) for p in ports})
    print(json.dumps({"pid": pid, "queue": queue_number, "drainedMs": drained_ms, "stillOpen": still_open}))
    return 0


def _run_holder(queue: NetfilterQueue, tag: str, seconds: float, started: int) -> NoReturn:
    """The forked holder: says it started, holds, lets go, writes its counts; never returns."""
    pid_file = f"{HOLD_DIR}/{tag}.pid"
    try:
        holder = Holder(queue, tag, seconds, _wake_on_signals())
        with open(pid_file, "w") as out:
            out.write(f"{os.getpid()}\n")
        os.write(started, b"ok")
        os.close(started)
        try:
            ended_by = holder.run()
        except Exception:
            ended_by = "error"
        counts = holder.let_go(ended_by)
        with open(f"{HOLD_DIR}/{tag}.json", "w") as out:
            json.dump(counts, out)
    finally:
        if os.path.exists(pid_file):
            os.unlink(pid_file)
        os._exit(0)


def _wake_on_signals() -> int:
    """A file descriptor that becomes readable when ferry's release (or any polite kill) arrives."""
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    for number in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(number, lambda *_: None)  # the wakeup fd says it; the holder's loop ends
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    return wake_read


def _detach() -> None:
    """The holder outlives the SSH command that started it, and writes nowhere ferry reads."""
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


if __name__ == "__main__":
    if len(sys.argv) < 5 or sys.argv[1] != "hold":
        sys.exit("usage: hold_agent.py hold TAG QUEUE SECONDS [DRAIN_PID DRAIN_SECONDS PORT...] <RULES")
    sys.exit(hold(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5:]))
