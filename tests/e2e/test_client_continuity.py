"""Clients of a moved service wait across the cutover instead of failing (spec.redirect: true):
new connections are held on the source host from just before the freeze until the service runs
again, on the target after a migration, on the source after a rollback."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from typing import Any

from tests.e2e.lab import LAB_SCRIPT, Client, Lab, OperatorProcess, start_web, unique, wait_for
from tests.e2e.test_faults import FAILING_RESTORE, fake_criu

PATIENCE = 15.0  # how long one request waits for its answer: a hold makes requests late, not lost
# A client run on a lab host itself: asks the URL every 10 ms until told to stop (a line on stdin),
# then prints how many answers were the page, and what went wrong otherwise.
LOCAL_CLIENT = r"""
import json, sys, threading, time, urllib.request
url, page, patience = sys.argv[1], sys.argv[2], float(sys.argv[3])
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
stop, good, bad = threading.Event(), [0], []
threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
while not stop.is_set():
    try:
        body = opener.open(url, timeout=patience).read().decode()
        if page in body:
            good[0] += 1
        else:
            bad.append("wrong page")
    except Exception as error:
        bad.append(repr(error))
    time.sleep(0.01)
print(json.dumps({"good": good[0], "bad": bad}))
"""


def serve_and_ask(lab: Lab) -> tuple[str, str, Client]:
    """A web container on node1 and a client asking node1's address, on a new connection each time."""
    container, port, page = start_web(lab)
    client = Client(f"http://{lab.address('node1')}:{port}/", time.monotonic() + 180, timeout=PATIENCE)
    client.start()
    wait_for(lambda: any(code == 200 for _, code, _ in client.answers), 30, "the page on node1")
    return container, page, client


def finish(client: Client) -> None:
    time.sleep(1.0)  # asked on after the end
    client.stop.set()


def unanswered(client: Client, page: str) -> list[tuple[float, int, str]]:
    return [answer for answer in client.answers if answer[1] != 200 or answer[2] != page]


def page_at(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())
    except OSError:
        return ""


def held(status: dict[str, Any]) -> dict[str, Any]:
    hold: dict[str, Any] = status["connectionHold"]
    assert hold["released"], hold
    return hold


def test_no_request_fails_across_a_migration_with_redirect(lab: Lab, operator: OperatorProcess) -> None:
    container, page, client = serve_and_ask(lab)
    name = unique("mig-hold")

    lab.migration(name, container, target="node2", redirect=True)
    status = lab.wait_until(name)["status"]
    finish(client)

    assert status["phase"] == "Succeeded", status
    assert unanswered(client, page) == []
    assert len(client.answers) > 50
    assert held(status)["connections"] >= 1  # some did arrive while it was frozen, and waited
    assert lab.running("node2", container) and container not in lab.container_names("node1")
    uid = lab.get_migration(name)["metadata"]["uid"]
    assert f"ferry-hold:{uid}" not in lab.lab("exec", "node1", "iptables-save").stdout  # no hold left


def test_no_request_fails_across_a_rollback(lab: Lab, operator: OperatorProcess) -> None:
    container, page, client = serve_and_ask(lab)
    name = unique("mig-hold-back")

    with fake_criu(lab, "node2", FAILING_RESTORE):
        lab.migration(name, container, target="node2", redirect=True)
        status = lab.wait_until(name)["status"]
    finish(client)

    assert status["phase"] == "RolledBack", status
    assert unanswered(client, page) == []
    assert status["metrics"]["connectionsCut"] >= 0  # counted on a rollback too
    assert held(status)["connections"] >= 1
    assert lab.running("node1", container) and container not in lab.container_names("node2")
    uid = lab.get_migration(name)["metadata"]["uid"]
    rules = lab.lab("exec", "node1", "iptables-save").stdout
    assert f"ferry:{uid}" not in rules and f"ferry-hold:{uid}" not in rules  # no forward, no hold left


def test_clients_on_the_source_host_asking_localhost_follow_the_service(
    lab: Lab, operator: OperatorProcess
) -> None:
    """docker-proxy answers 127.0.0.1 before the move; after it, ferry's forward needs route_localnet
    (on only while ferry forwards from the host, behind a guard rule)."""
    container, port, page = start_web(lab)
    localnet = "net.ipv4.conf.all.route_localnet"
    before = lab.lab("exec", "node1", "sysctl", "-n", localnet).stdout.strip()
    client = subprocess.Popen(
        [
            LAB_SCRIPT,
            "exec",
            "node1",
            "python3",
            "-c",
            LOCAL_CLIENT,
            f"http://127.0.0.1:{port}/",
            page,
            str(PATIENCE),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    name = unique("mig-localhost")
    try:
        time.sleep(1.0)
        lab.migration(name, container, target="node2", redirect=True)
        status = lab.wait_until(name)["status"]
        time.sleep(2.0)  # asked on after the end, through the forward
    finally:
        answers = json.loads(client.communicate("stop\n", timeout=60)[0])
    assert status["phase"] == "Succeeded", status
    assert answers["bad"] == [] and answers["good"] > 100, answers
    assert lab.lab("exec", "node1", "sysctl", "-n", localnet).stdout.strip() == "1"
    lab.delete_migration(name)  # its forwards go, and route_localnet gets its former value back
    assert lab.lab("exec", "node1", "sysctl", "-n", localnet).stdout.strip() == before


def test_a_connection_left_open_past_the_drain_is_cut_and_counted_from_criu_s_log(
    lab: Lab, operator: OperatorProcess
) -> None:
    """An idle keep-alive connection outlives the drain: the checkpoint closes it (CRIU's
    tcp-close), the status counts it from CRIU's dump log, and its client's next send meets the
    connection's end (a reset or an end of stream), never a hang or an answer."""
    container, port, page = start_web(lab)
    wait_for(lambda: page in page_at(f"http://{lab.address('node1')}:{port}/"), 30, "the page on node1")
    name = unique("mig-cut")
    with socket.create_connection((lab.address("node1"), port), timeout=30) as idle:
        idle.sendall(b"GET / HTTP/1.1\r\n")  # a request begun, never ended: httpd waits for the rest
        time.sleep(1.0)  # accepted by httpd (a connection still in its backlog is not cut: not counted)

        lab.migration(name, container, target="node2", redirect=True)
        status = lab.wait_until(name)["status"]

        idle.settimeout(10)
        try:
            idle.sendall(b"Host: x\r\n\r\n")  # the request's end
            after = idle.recv(1024)
        except (ConnectionResetError, BrokenPipeError):
            after = b""
    assert status["phase"] == "Succeeded", status
    assert status["metrics"]["connectionsCut"] == 1
    assert held(status)["cutByFreeze"] == 1  # the drain saw the same one still open
    assert after == b""  # ended, never answered
