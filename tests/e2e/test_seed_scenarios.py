"""The seed report's scenarios: cold moves, a web service under load, address continuity, shared
storage, volumes and bind mounts."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.e2e.lab import Client, Counter, Lab, OperatorProcess, start_web, unique, wait_for


def test_cold_migration_keeps_files_and_drops_memory(lab: Lab, operator: OperatorProcess) -> None:
    container, name, mark = unique("cold"), unique("mig-cold"), unique("file")
    script = (
        f"[ -f /state ] || echo {mark} > /state; i=0; while true; do echo $i; i=$((i+1)); sleep 0.1; done"
    )
    lab.run_container("node1", container, script)
    wait_for(lambda: len(lab.logs("node1", container)) >= 10, 30, "the counter to count")

    lab.migration(name, container, target="node2", strategy="Cold")
    status = lab.wait_until(name)["status"]

    assert status["phase"] == "Succeeded", status
    assert status["metrics"]["downtimeMs"] > 0
    assert lab.docker("node2", "exec", container, "cat", "/state").stdout.strip() == mark
    wait_for(lambda: len(lab.logs("node2", container)) >= 3, 30, "the counter to count on node2")
    assert lab.logs("node2", container)[0] == "0", "a cold move starts the process afresh"
    assert container not in lab.container_names("node1")


def test_live_migration_of_a_tty_container_fails_pointing_to_cold(
    lab: Lab, operator: OperatorProcess
) -> None:
    container, name = unique("tty"), unique("mig-tty")
    lab.docker("node1", "run", "-d", "-t", "--name", container, "ferry-lab/busybox:latest", "sleep", "1000")
    lab.migration(name, container, target="node2")
    status = lab.wait_until(name)["status"]
    assert status["phase"] == "Failed"
    assert "strategy: Cold" in status["message"]
    assert lab.running("node1", container)


def test_web_service_under_load_answers_correctly_after_the_cutover(
    lab: Lab, operator: OperatorProcess
) -> None:
    container, port, page = start_web(lab)
    source, target, name = lab.address("node1"), lab.address("node2"), unique("mig-web-load")
    client = Client(f"http://{source}:{port}/", time.monotonic() + 90)
    thread = client.start()
    wait_for(lambda: any(code == 200 for _, code, _ in client.answers), 30, "the page on node1")

    lab.migration(name, container, target="node2")
    status = lab.wait_until(name)["status"]
    cutover = time.monotonic()
    client.stop.set()
    thread.join()

    assert status["phase"] == "Succeeded", status
    after = Client(f"http://{target}:{port}/", time.monotonic() + 3)
    after.run()
    assert after.answers and all(code == 200 and body == page for _, code, body in after.answers)
    served = [answer for answer in client.answers if answer[1] == 200]
    assert all(body == page for _, _, body in served)
    assert len(client.answers) > 20 and client.answers[0][0] < cutover


def test_redirect_keeps_the_old_address_working_until_the_migration_is_deleted(
    lab: Lab, operator: OperatorProcess
) -> None:
    container, port, page = start_web(lab)
    name, old_address = unique("mig-redirect"), f"http://{lab.address('node1')}:{port}/"
    wait_for(lambda: _get(old_address) == page, 30, "the page on node1")

    lab.migration(name, container, target="node2", redirect=True)
    resource = lab.wait_until(name)
    assert resource["status"]["phase"] == "Succeeded", resource["status"]
    assert container not in lab.container_names("node1")

    after = Client(old_address, time.monotonic() + 3)
    after.run()
    assert after.answers and all(code == 200 and body == page for _, code, body in after.answers)
    tag = f"ferry:{resource['metadata']['uid']}"
    assert tag in lab.lab("exec", "node1", "iptables", "-t", "nat", "-S").stdout

    lab.kubectl("delete", "migration", name, "--timeout=60s")
    assert tag not in lab.lab("exec", "node1", "iptables", "-t", "nat", "-S").stdout
    assert _get(old_address) is None


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            body: bytes = response.read()
            return body.decode().strip()
    except (urllib.error.URLError, OSError):
        return None


VOLUME_WRITER = (
    "[ -f /data/before ] || echo written-before > /data/before; "
    "exec 3>>/data/counter; i=0; while true; do echo $i >&3; i=$((i+1)); sleep 0.1; done"
)


def test_named_volume_keeps_its_data_and_open_file(lab: Lab, operator: OperatorProcess) -> None:
    container, volume, name = unique("vol"), unique("data"), unique("mig-volume")
    lab.run_container("node1", container, VOLUME_WRITER, "-v", f"{volume}:/data")
    wait_for(
        lambda: len(lab.docker("node1", "exec", container, "cat", "/data/counter").stdout.split()) > 20,
        30,
        "",
    )

    lab.migration(name, container, target="node2")
    status = lab.wait_until(name)["status"]

    assert status["phase"] == "Succeeded", status
    assert status["metrics"]["volumeBytes"] > 0
    assert lab.docker("node2", "exec", container, "cat", "/data/before").stdout.strip() == "written-before"

    def read() -> list[int]:
        return [int(n) for n in lab.docker("node2", "exec", container, "cat", "/data/counter").stdout.split()]

    counted = len(read())
    wait_for(lambda: len(read()) > counted + 3, 30, "the volume's counter to go on on node2")
    numbers = read()
    assert numbers == list(range(len(numbers))), "the counter in the volume has a gap or a repeat"


def test_missing_bind_mount_source_on_target_fails_before_the_freeze(
    lab: Lab, operator: OperatorProcess, tmp_path: Path
) -> None:
    container, name = unique("bind"), unique("mig-bind")
    source = tmp_path / "bound"
    source.mkdir()
    lab.run_container("node1", container, "while true; do sleep 1; done", "-v", f"{source}:/bound")
    source.rmdir()  # the container keeps its mount; a new host would have nothing to mount
    lab.migration(name, container, target="node2")
    status = lab.wait_until(name)["status"]
    assert status["phase"] == "Failed"
    assert str(source) in status["message"] and "node2" in status["message"]
    assert lab.running("node1", container)


def test_shared_directory_transfer_moves_the_checkpoint_without_streaming(
    lab: Lab, operator: OperatorProcess, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    with lab.shared_directory(shared):
        counter, name = Counter(lab), unique("mig-shared")
        lab.migration(name, counter.name, target="node2", transfer="SharedDirectory")
        status = lab.wait_until(name)["status"]
    assert status["phase"] == "Succeeded", status
    assert status["transfer"] == "SharedDirectory"
    assert status["metrics"]["checkpointBytes"] > 0
    assert counter.assert_runs_once_and_continuous() == "node2"
    assert not list(shared.iterdir()), "the staging copy is removed after success"
