"""Drives the real lab for the e2e tests and for hack/bench and hack/bench-web: the lab hosts' Docker
CLIs, kubectl, the operator process, and the workloads that are moved."""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import docker
import kubernetes
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from ferry.cluster import Cluster
from ferry.hosts.peer_stream import KEYS_DIR
from ferry.hosts.runc import RESTORE_ROOT, WORK_ROOT
from ferry.migration.continuity import hold_tag, redirect_tag
from ferry.migration.process import IMAGES_ROOT

REPO = Path(__file__).resolve().parents[2]
LAB_SCRIPT = REPO / "hack" / "lab"
LAB_RUN = Path("/run/ferry-lab")  # hack/lab's RUN: each host's docker.sock is there
KUBECONFIG = REPO / ".lab" / "kubeconfig"
KUBE_CACHE = REPO / ".lab" / "kube-cache"  # discovery of this lab only: a stale cache hides new kinds
KUBECTL = Path(os.environ.get("FERRY_HOME", "/opt/ferry")) / "bin" / "kubectl"
IMAGE = "ferry-lab/busybox:latest"
MEMHOG = "ferry-lab/memhog:latest"  # hack/images/memhog.c: holds N MiB, prints a counter, checks its memory
SERVICES = "ferry-lab/services:bookworm"  # hack/lab services: Redis, nginx, PostgreSQL from Debian
REDIS_KEYS = 100_000
# Redis Lua: ARGV[1] keys of about 1.1 KiB, each of its own content (about 130 MiB in Redis for 100,000).
REDIS_FILL = (
    "for i = 1, tonumber(ARGV[1]) do "
    "redis.call('SET', 'k' .. i, string.rep(string.char(65 + i % 26), 1100) .. i) end"
)
BENCH_OPERATOR_LOG = REPO / ".lab" / "logs" / "operator-bench.log"
AUTHORIZED_KEYS = REPO / ".lab" / "ssh" / "authorized_keys"  # every lab host's (peerTransfer)
# Each lab host's own view of these (hack/lab's PRIVATE_DIRS), bound from .lab/hosts/HOST/fs/DIR.
PRIVATE_DIRS = (
    "/tmp",
    "/var/tmp",
    "/root",
    "/home",
    "/srv",
    "/mnt",
    "/var/lib/ferry",
    "/run/ferry",
    "/var/log/ferry",
)
SHARED_TMP = REPO / ".lab" / "tmp"  # the tests' temporary files (tmp_path): every lab host sees them
HELLOER_HOME = Path("/srv/ferry-e2e")  # where the tests install the helloer on a host, as a user would
# test-pause annotations, quick takeovers, a host's readiness known within seconds
TEST_OPERATOR_OPTIONS = ("--test-hooks", "--lease-seconds", "5", "--host-probe-seconds", "3")
TERMINAL_PHASES = ("Succeeded", "Failed", "RolledBack")
HOST_COUNT = REPO / ".lab" / "host-count"  # `hack/lab up --hosts N` records N here
DEFAULT_HOST_COUNT = 2  # what `hack/lab up` starts without --hosts
COUNTER = "i=0; while true; do echo $i; i=$((i+1)); sleep 0.1; done"
WEB = "mkdir -p /www && echo $PAGE > /www/index.html && httpd -f -p 80 -h /www"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def lab_hosts() -> tuple[str, ...]:
    """The lab's hosts, node1..nodeN, as many as `hack/lab up` recorded (read each time: a lab may
    come up after this module is imported); its default before there is a record."""
    try:
        count = int(HOST_COUNT.read_text())
    except FileNotFoundError:
        count = DEFAULT_HOST_COUNT
    return tuple(f"node{index}" for index in range(1, count + 1))


def host_path(host: str, path: str | Path) -> Path:
    """Where the tests see `path` of a lab host: in the host's own directories (PRIVATE_DIRS) if it
    lies in one, else the machine's own (the lab's hosts share the rest)."""
    path = Path(path)
    if any(path.is_relative_to(private) for private in PRIVATE_DIRS):
        return REPO / ".lab" / "hosts" / host / "fs" / path.relative_to("/")
    return path


class Lab:
    @property
    def hosts(self) -> tuple[str, ...]:
        """node1..nodeN: every host of the lab (lab_hosts)."""
        return lab_hosts()

    def lab(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(LAB_SCRIPT), *args], capture_output=True, text=True, check=check, timeout=timeout
        )

    def docker(self, host: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.lab("docker", host, *args, check=check)

    def address(self, host: str) -> str:
        return self.lab("addr", host).stdout.strip()

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(KUBECTL), "--kubeconfig", str(KUBECONFIG), "--cache-dir", str(KUBE_CACHE), *args],
            capture_output=True,
            text=True,
            input=input,
            check=check,
            timeout=120,
        )

    # -- containers

    def run_container(self, host: str, name: str, script: str, *docker_args: str, image: str = IMAGE) -> str:
        return self.docker(
            host, "run", "-d", "--name", name, *docker_args, image, "sh", "-c", script
        ).stdout.strip()

    def container_names(self, host: str) -> set[str]:
        return set(self.docker(host, "ps", "-a", "--format", "{{.Names}}").stdout.split())

    def running(self, host: str, name: str) -> bool:
        found = self.docker(host, "inspect", "-f", "{{.State.Running}}", name, check=False)
        return found.returncode == 0 and found.stdout.strip() == "true"

    def volume_names(self, host: str) -> set[str]:
        return set(self.docker(host, "volume", "ls", "-q").stdout.split())

    def network_names(self, host: str) -> set[str]:
        return set(self.docker(host, "network", "ls", "--format", "{{.Name}}").stdout.split())

    def volume_path(self, host: str, volume: str) -> Path:
        """Where the volume's content is (in the host's Docker data root, under .lab: the tests see it)."""
        return Path(self.docker(host, "volume", "inspect", "-f", "{{.Mountpoint}}", volume).stdout.strip())

    def volume_at(self, host: str, container: str, destination: str) -> str:
        """The name of the volume mounted at `destination` in the container."""
        mounts = json.loads(self.docker(host, "inspect", "-f", "{{json .Mounts}}", container).stdout)
        return str(next(m["Name"] for m in mounts if m["Destination"] == destination))

    def docker_objects(self, host: str) -> DockerObjects:
        """Read from the host's Docker Engine API directly: a test's set-up and clean-up look at every
        host, and the docker CLI would cost a process each time."""
        engine = docker_engine(host)
        return DockerObjects(
            {container["Names"][0].lstrip("/") for container in engine.containers(all=True)},
            {volume["Name"] for volume in engine.volumes()["Volumes"] or ()},
            {network["Name"] for network in engine.networks()},
        )

    def remove_docker_objects(self, host: str, keep: DockerObjects) -> None:
        """Removes the host's containers, then volumes, then networks that `keep` does not name."""
        now = self.docker_objects(host)
        if containers := sorted(now.containers - keep.containers):
            self.docker(host, "rm", "-f", *containers, check=False)
        if volumes := sorted(now.volumes - keep.volumes):
            self.docker(host, "volume", "rm", "-f", *volumes, check=False)
        if networks := sorted(now.networks - keep.networks):
            self.docker(host, "network", "rm", *networks, check=False)

    def image_ids(self, host: str) -> set[str]:
        return set(self.docker(host, "images", "-q", "--no-trunc").stdout.split())

    def logs(self, host: str, name: str) -> list[str]:
        return self.docker(host, "logs", name).stdout.split()

    # -- migrations

    def migration(
        self,
        name: str,
        container: str,
        target: str,
        source: str | None = "node1",
        *,
        pauses: str | None = None,
        namespace: str = "default",
        process: dict[str, Any] | None = None,
        **spec: Any,
    ) -> None:
        """Applies a Migration (`migration_body`)."""
        self.apply(
            migration_body(
                name, container, target, source, pauses=pauses, namespace=namespace, process=process, **spec
            )
        )

    def apply(self, *bodies: dict[str, Any]) -> None:
        """Applies the resources in one `kubectl apply`."""
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(bodies))

    def get_migration(self, name: str, namespace: str = "default") -> dict[str, Any]:
        found = self.kubectl("get", "migration", name, "-n", namespace, "-o", "json")
        resource: dict[str, Any] = json.loads(found.stdout)
        return resource

    def phase(self, name: str) -> str | None:
        found = self.kubectl("get", "migration", name, "-o", "jsonpath={.status.phase}", check=False)
        return found.stdout or None

    def wait_for_phase(self, name: str, phase: str, timeout: float = 60) -> None:
        wait_for(lambda: self.phase(name) == phase, timeout, f"Migration {name} to reach {phase}")

    def wait_until(
        self,
        name: str,
        phases: Iterable[str] = TERMINAL_PHASES,
        timeout: float = 180,
        interval: float = 0.2,
    ) -> dict[str, Any]:
        """Polls the Migration in the default namespace through the API client of this process, not
        kubectl: a kubectl started every `interval` would take a good part of a core from what the
        tests and benches measure."""
        wanted = set(phases)
        resource: dict[str, Any] = wait_for(
            lambda: (
                (resource := cluster().get_migration("default", name) or {}).get("status", {}).get("phase")
                in wanted
                and resource
            ),
            timeout,
            f"Migration {name} to reach {sorted(wanted)}",
            interval,
        )
        return resource

    # -- hosts

    def stop_dockerd(self, host: str) -> None:
        """As if Docker crashed there: dockerd, containerd and every container of the host go."""
        self.lab("stop", host, "dockerd")

    def start_dockerd(self, host: str) -> None:
        self.lab("start", host, "dockerd")

    def docker_host(self, name: str) -> dict[str, Any]:
        resource: dict[str, Any] = json.loads(self.kubectl("get", "dockerhost", name, "-o", "json").stdout)
        return resource

    def wait_for_readiness(self, host: str, ready: str, timeout: float = 60) -> dict[str, Any]:
        """The DockerHost's Ready condition, once its status is `ready` ("True" or "False")."""

        def condition() -> dict[str, Any] | None:
            conditions = self.docker_host(host).get("status", {}).get("conditions", [])
            return next((c for c in conditions if c["type"] == "Ready" and c["status"] == ready), None)

        found: dict[str, Any] = wait_for(condition, timeout, f"DockerHost {host} to be Ready={ready}", 0.5)
        return found

    @contextmanager
    def watching(self, name: str, template: str) -> Iterator[list[str]]:
        """`kubectl get -w` of Migration `name`, from before it exists, each change printed with the
        jsonpath `template`: what it printed is in the list yielded once the block ends."""
        watch = subprocess.Popen(
            [
                *(str(KUBECTL), "--kubeconfig", str(KUBECONFIG), "get", "migrations", "--watch"),
                *("--field-selector", f"metadata.name={name}", "-o", f"jsonpath={template}"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        printed: list[str] = []
        try:
            time.sleep(2)  # the watch is established before the Migration exists
            yield printed
        finally:
            watch.terminate()
            stdout, _ = watch.communicate(timeout=30)
            printed += stdout.splitlines()

    def patch_host(self, host: str, spec: dict[str, Any]) -> None:
        """Merge-patches a DockerHost's spec."""
        self.kubectl("patch", "dockerhost", host, "--type", "merge", "-p", json.dumps({"spec": spec}))

    @contextmanager
    def without_fast_path(self, host: str) -> Iterator[None]:
        """The DockerHost without spec.fastPath for the duration: migrations to it go through Docker's
        checkpoint API."""
        fast_path = self.docker_host(host)["spec"]["fastPath"]
        removed = json.dumps([{"op": "remove", "path": "/spec/fastPath"}])
        self.kubectl("patch", "dockerhost", host, "--type", "json", "-p", removed)
        try:
            yield
        finally:
            self.patch_host(host, {"fastPath": fast_path})

    @contextmanager
    def shared_directory(self, directory: Path) -> Iterator[None]:
        """Every lab host's DockerHost names `directory` as its spec.sharedDirectory for the duration
        (a directory outside the hosts' own ones, such as the tests' temporary files: each host sees it,
        as a directory every host mounts)."""
        for host in self.hosts:
            self.patch_host(host, {"sharedDirectory": str(directory)})
        try:
            yield
        finally:
            removed = json.dumps([{"op": "remove", "path": "/spec/sharedDirectory"}])
            for host in self.hosts:
                self.kubectl("patch", "dockerhost", host, "--type", "json", "-p", removed)

    def network_namespace(self, host: str) -> str:
        """The lab host's network namespace, as /proc/PID/ns/net names it."""
        return self.lab("exec", host, "readlink", "/proc/self/ns/net").stdout.strip()

    def probed_since(self, moment: float) -> bool:
        """Every DockerHost was probed since `moment` (a Unix time), and what the probe found written."""
        hosts = json.loads(self.kubectl("get", "dockerhosts", "-o", "json").stdout)["items"]
        return all(
            parse_time(host.get("status", {}).get("lastProbeTime") or "1970-01-01T00:00:00Z") >= moment
            for host in hosts
        )

    def peers(self) -> dict[str, Any]:
        """The operator replicas in the peering (`ferry run --peering ferry`), by identity."""
        peering = json.loads(self.kubectl("get", "clusterkopfpeering", "ferry", "-o", "json").stdout)
        return dict(peering.get("status") or {})

    def peering_priorities(self) -> list[int]:
        return [peer["priority"] for peer in self.peers().values()]

    def live_operators(self) -> list[str]:
        """The operators alive in the `ferry` peering, by identity (a killed one until its lifetime
        is out)."""
        now = datetime.now(UTC)
        return sorted(
            identity
            for identity, peer in self.peers().items()
            if isinstance(peer, dict)
            and "lastseen" in peer
            and datetime.fromisoformat(peer["lastseen"]) + timedelta(seconds=int(peer["lifetime"])) > now
        )

    def leftovers(self, uid: str, target_container_id: str | None) -> list[str]:
        """What a Migration that ended left on the lab's hosts: its files (ferry_files_left, the
        images of a process), its checkpoint on any host, its NAT and hold rules, a mount (the
        tmpfs of its received images)."""
        left = ferry_files_left(uid, target_container_id)
        for host in self.hosts:
            if host_path(host, Path(IMAGES_ROOT) / uid).exists():
                left.append(f"{IMAGES_ROOT}/{uid} on {host}")
            root = Path(self.docker(host, "info", "-f", "{{.DockerRootDir}}").stdout.strip())
            left += [f"{path} on {host}" for path in root.glob(f"containers/*/checkpoints/ferry-{uid}")]
            rules = self.lab("exec", host, "iptables-save").stdout
            left += [f"rules {tag} on {host}" for tag in (redirect_tag(uid), hold_tag(uid)) if tag in rules]
            mounts = self.lab("exec", host, "cat", "/proc/self/mounts").stdout
            left += [f"a mount {line.split()[1]} on {host}" for line in mounts.splitlines() if uid in line]
        return left

    def unfinished_migrations(self) -> list[str]:
        """The Migrations that have not ended: every operator started drives them."""
        items = json.loads(self.kubectl("get", "migrations", "-A", "-o", "json").stdout)["items"]
        return [
            f"{item['metadata']['namespace']}/{item['metadata']['name']}"
            for item in items
            if unfinished(item)
        ]

    def wait_for_migrations_since(self, moment: float, timeout: float) -> None:
        """Waits (never fails) until no Migration created at or after `moment` is still running."""

        def running() -> bool:
            items = cluster().list_migrations()
            return any(
                parse_time(item["metadata"]["creationTimestamp"]) >= int(moment) and unfinished(item)
                for item in items
            )

        deadline = time.monotonic() + timeout
        while running() and time.monotonic() < deadline:
            time.sleep(0.5)

    def delete_migration(self, name: str) -> None:
        """A bench's clean-up: waits up to a minute for the Migration to go, and never fails."""
        self.kubectl("delete", "migration", name, "--ignore-not-found", "--timeout=60s", check=False)

    def forget_migration(self, name: str) -> None:
        """Deletes the Migration; if a minute later its finalizer still waits for a migration that
        does not end, drops the finalizer, so that no operator started later drives it."""
        self.delete_migration(name)
        if self.kubectl("get", "migration", name, "--ignore-not-found", "-o", "name").stdout.strip():
            dropped = json.dumps({"metadata": {"finalizers": None}})
            self.kubectl("patch", "migration", name, "--type", "merge", "-p", dropped, check=False)


def unfinished(migration: dict[str, Any]) -> bool:
    """The Migration has not ended (it may have no status yet)."""
    return (migration.get("status") or {}).get("phase") not in TERMINAL_PHASES


class DockerObjects(NamedTuple):
    """The names of a host's containers, volumes and networks at one moment."""

    containers: set[str]
    volumes: set[str]
    networks: set[str]


@functools.cache
def docker_engine(host: str) -> docker.APIClient:
    """A lab host's Docker Engine API (hack/lab's socket for it)."""
    return docker.APIClient(base_url=f"unix://{LAB_RUN / host / 'docker.sock'}", version="auto")


@functools.cache
def cluster() -> Cluster:
    """ferry's own client of the lab's API server, as its admin, for the tests' quick reads."""
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(str(KUBECONFIG), client_configuration=configuration)  # type: ignore[no-untyped-call]
    return Cluster(kubernetes.client.ApiClient(configuration))


def work_processes(uid: str = "") -> list[str]:
    """Processes whose command line names a Migration's work directory (all of them without `uid`):
    a post-copy page server or lazy-pages daemon. The lab's hosts share one kernel."""
    listed = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    return [line for line in listed.splitlines() if f"{WORK_ROOT}/{uid}" in line]


def ferry_files_left(uid: str, target_container_id: str | None) -> list[str]:
    """A Migration's stream keys (authorized on the target, private halves on the source), its dump
    work directory and the restore prepared for its twin, those still on the lab's hosts."""
    left = [f"a stream key in {AUTHORIZED_KEYS}"] if f"ferry:{uid}:" in AUTHORIZED_KEYS.read_text() else []
    places = [Path(WORK_ROOT) / uid]
    if target_container_id is not None:
        places.append(Path(RESTORE_ROOT) / target_container_id)
    for host in lab_hosts():
        keys = host_path(host, KEYS_DIR)
        left += [f"{key} on {host}" for key in keys.iterdir() if uid in key.name] if keys.exists() else []
        left += [f"{place} on {host}" for place in places if host_path(host, place).exists()]
    return left


def migration_body(
    name: str,
    container: str,
    target: str,
    source: str | None = "node1",
    *,
    pauses: str | None = None,
    namespace: str = "default",
    process: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A Migration of `container` (or of a plain `process`); `pauses` ("Phase=seconds,...") holds the
    operator before those phases (it runs with --test-hooks)."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if pauses:
        metadata["annotations"] = {"ferry.dev/test-pause": pauses}
    body: dict[str, Any] = {
        "apiVersion": "ferry.dev/v1alpha1",
        "kind": "Migration",
        "metadata": metadata,
        "spec": {
            "workload": {"process": process} if process else {"container": container},
            "targetHost": target,
            **spec,
        },
    }
    if source is not None:
        body["spec"]["sourceHost"] = source
    return body


def parse_time(text: str) -> float:
    """The Unix time of a Kubernetes timestamp."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def entered(migration: dict[str, Any], phase: str) -> float | None:
    """When the Migration entered `phase` (Unix time), as its status.phaseTransitions says; None if
    it never did."""
    transitions = migration.get("status", {}).get("phaseTransitions", [])
    return next((parse_time(entry["time"]) for entry in transitions if entry["phase"] == phase), None)


def started(migration: dict[str, Any]) -> float:
    """When the Migration entered Preparing, which it must have."""
    moment = entered(migration, "Preparing")
    assert moment is not None, f"Migration {migration['metadata']['name']} never entered Preparing"
    return moment


def log_times(output: str) -> list[tuple[float, str]]:
    """(Unix time, text) of each `docker logs -t` line."""
    lines = []
    for line in output.splitlines():
        stamp, _, text = line.partition(" ")
        whole, _, fraction = stamp.removesuffix("Z").partition(".")
        seconds = datetime.fromisoformat(whole).replace(tzinfo=UTC).timestamp() + float(f"0.{fraction or 0}")
        lines.append((seconds, text))
    return lines


def longest_gap_ms(times: Sequence[float]) -> float:
    """The longest time between two lines of a workload's log, of Unix times."""
    return max(b - a for a, b in itertools.pairwise(times)) * 1000


def write_between_markers(path: Path, name: str, text: str, heading: str = "") -> None:
    """Puts `text` into the document between `<!-- NAME: begin -->` and `<!-- NAME: end -->`,
    replacing what was there; without those markers, at its end, after `heading`."""
    begin, end = f"<!-- {name}: begin -->", f"<!-- {name}: end -->"
    document = path.read_text()
    section = f"{begin}\n{text}\n{end}"
    if begin in document:
        head, rest = document.split(begin, 1)
        document = head + section + rest.split(end, 1)[1]
    else:
        document = document.rstrip() + "\n\n" + (f"{heading}\n\n" if heading else "") + section + "\n"
    path.write_text(document)


def stop_demo_operator() -> None:
    """The operator that hack/demo leaves running would race with the one under test."""
    pid_file = REPO / ".lab" / "pids" / "operator.pid"
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
        pid_file.unlink()


def free_port(lab: Lab) -> int:
    """A port that no container of any lab host publishes."""
    taken = " ".join(lab.docker(host, "ps", "--format", "{{.Ports}}").stdout for host in lab.hosts)
    while True:
        port = random.randint(20000, 29999)
        if f":{port}->" not in taken:
            return port


def start_web(lab: Lab, prefix: str = "web") -> tuple[str, int, str]:
    """A busybox httpd on node1 serving a page of its own on a free port: (container, port, page)."""
    container, page, port = unique(prefix), unique("page"), free_port(lab)
    lab.run_container("node1", container, WEB, "-e", f"PAGE={page}", "-p", f"{port}:80")
    return container, port, page


def unused_local_port() -> int:
    """A TCP port nothing listens on now, for a server a test starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def ferry(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The `ferry` command line against the lab's API server."""
    return subprocess.run(
        [sys.executable, "-m", "ferry", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "KUBECONFIG": str(KUBECONFIG)},
    )


def report(config: pytest.Config, line: str) -> None:
    """Prints past pytest's output capture, so that a figure shows in CI's log."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Counter:
    """A busybox loop on node1 printing 0, 1, 2... every 0.1 s, and a follower of its log there."""

    def __init__(
        self,
        lab: Lab,
        prefix: str = "counter",
        image: str = IMAGE,
        command: Sequence[str] | None = None,
        docker_args: Sequence[str] = (),
    ) -> None:
        """`command` replaces the busybox loop (for an image that prints 0, 1, 2... itself)."""
        self.lab = lab
        self.name = unique(prefix)
        if command is None:
            lab.run_container("node1", self.name, COUNTER, *docker_args, image=image)
        else:
            lab.docker("node1", "run", "-d", "--name", self.name, *docker_args, image, *command)
        wait_for(lambda: len(lab.logs("node1", self.name)) >= 5, 30, "the counter to count")
        self.follower = LogFollower("node1", self.name, timestamps=True)

    def hosts_running(self) -> list[str]:
        return [host for host in self.lab.hosts if self.lab.running(host, self.name)]

    def assert_runs_once_and_continuous(self) -> str:
        """Exactly one host runs it, its numbers have no gap and no repeat, and it still counts."""
        running = self.hosts_running()
        assert len(running) == 1, f"{self.name} runs on {running}"
        host = running[0]
        before = len(self.lab.logs(host, self.name))
        wait_for(
            lambda: len(self.lab.logs(host, self.name)) > before + 3, 30, f"{self.name} to count on {host}"
        )
        numbers = [line for _, line in self.timed_log(host)]
        assert [int(n) for n in numbers] == list(range(len(numbers))), "the counter has a gap or a repeat"
        return host

    def timed_log(self, host: str) -> list[tuple[float, str]]:
        """(Unix time, line) of all it printed, now that it runs on `host`: from node2, what it printed
        on node1 first (its follower there saw it until the source container went)."""
        here = log_times(self.lab.docker(host, "logs", "-t", self.name).stdout)
        if host == "node1":  # the same container: its log holds everything
            self.follower.process.kill()
            return here
        return log_times(self.follower.output()) + here

    def longest_gap_ms(self, host: str) -> float:
        """The longest time it printed nothing (a freeze shows here), now that it runs on `host`."""
        return longest_gap_ms([moment for moment, _ in self.timed_log(host)])

    def remove(self) -> None:
        """Gone from every host, its follower too."""
        for host in self.lab.hosts:
            self.lab.docker(host, "rm", "-f", self.name, check=False)
        self.follower.process.kill()


class Scrape:
    """One read of a Prometheus endpoint: each sample's value by its name and labels."""

    def __init__(self, text: str) -> None:
        self.samples = {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def value(self, name: str, **labels: str) -> float:
        """The sample's value; 0 when it is not there (a counter not counted yet)."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)


class OperatorProcess:
    """One `ferry run` with peering (and by default test hooks), which tests may kill and start again;
    with `metrics_port`, it serves its metrics there; with `network` (a network namespace's path), it
    runs in that namespace."""

    def __init__(
        self,
        log_path: Path,
        priority: int | None = None,
        options: Sequence[str] = TEST_OPERATOR_OPTIONS,
        metrics_port: int | None = None,
        network: str | None = None,
    ) -> None:
        self.log_path = log_path
        self.priority = priority
        self.options = options
        self.metrics_port = metrics_port
        self.network = network
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [sys.executable, "-m", "ferry", "run", "--peering", "ferry", *self.options]
        if self.priority is not None:
            argv += ["--priority", str(self.priority)]
        if self.metrics_port is not None:
            argv += ["--metrics-port", str(self.metrics_port)]
        if self.network is not None:
            argv = ["nsenter", f"--net={self.network}", *argv]  # nsenter execs: the pid stays ferry's
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                argv,
                env={**os.environ, "KUBECONFIG": str(KUBECONFIG)},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        assert self.process is not None, "the operator has not been started"
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL: no cleanup, no status write, no lease release."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=30)

    def keep_running(self) -> None:
        """Starts it unless it runs."""
        if not self.alive:
            self.start()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def host_calls(self, migration: str, namespace: str = "default") -> list[HostCall]:
        """The host calls it logged (run with --test-crash-after-host-calls), each with the phase of
        Migration `migration` it fell in."""
        phase_line = re.compile(rf"ferry\.migration\.runner: {re.escape(f'{namespace}/{migration}')}: (\w+)$")
        calls, phase = [], ""
        for line in self.log().splitlines():
            if found := phase_line.search(line):
                phase = found[1]
            elif found := HOST_CALL_LINE.search(line):
                calls.append(HostCall(int(found[2]), found[3], phase, crashed=bool(found[1])))
        return calls

    def settle(self, migration: str, quiet: float = 2.0, timeout: float = 30.0) -> None:
        """Waits until it exited or logged no host call for `quiet` seconds (a migration that ended
        still cleans up after its last status write)."""
        deadline, seen, since = time.monotonic() + timeout, -1, time.monotonic()
        while self.alive and time.monotonic() < deadline:
            count = len(self.host_calls(migration))
            if count != seen:
                seen, since = count, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return
            time.sleep(0.2)

    def metrics(self) -> Scrape:
        """What its metrics endpoint serves now."""
        assert self.metrics_port is not None, "the operator serves no metrics"
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as response:
            return Scrape(response.read().decode())


HOST_CALL_LINE = re.compile(r"ferry\.hosts\.host_calls: (crash after )?host call (\d+): (.*)$")


@dataclass(frozen=True)
class HostCall:
    """One host call an operator logged: its number in the process, what it was (the host, its kind
    and the command or request), the Migration's phase it fell in ("" before it began), and whether
    the operator exited right after it."""

    number: int
    call: str
    phase: str
    crashed: bool = False


@contextmanager
def bench_operator(enabled: bool) -> Iterator[OperatorProcess | None]:
    """The benches' `--operator`: `ferry run` without test hooks for the duration, if asked."""
    if not enabled:
        yield None
        return
    operator = OperatorProcess(BENCH_OPERATOR_LOG, priority=50, options=())
    operator.start()
    try:
        yield operator
    finally:
        operator.stop()


class LogFollower:
    """Follows a container's log until the container stops, so its last line is known after it is gone."""

    def __init__(self, host: str, container: str, *, timestamps: bool = False) -> None:
        self.process = subprocess.Popen(
            [str(LAB_SCRIPT), "docker", host, "logs", "-f", *(["-t"] if timestamps else []), container],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._output: str | None = None

    def output(self, timeout: float = 60) -> str:
        """All it followed, once the container stopped (read once, kept)."""
        if self._output is None:
            self._output, _ = self.process.communicate(timeout=timeout)
        return self._output

    def lines(self, timeout: float = 60) -> list[str]:
        return self.output(timeout).split()


# The seed's helloer-c, printing "<unix time> <n>" to the log file it is given every INTERVAL_US.
HELLOER = r"""
#include <stdio.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
    FILE *log = fopen(argv[1], "a");
    if (!log) return 1;
    setvbuf(log, NULL, _IOLBF, 0);
    for (long i = 0;; i++) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        fprintf(log, "%ld.%06ld %ld\n", (long)now.tv_sec, now.tv_nsec / 1000, i);
        usleep(INTERVAL_US);
    }
}
"""


class Helloer:
    """The helloer, built in `directory` (shared by the hosts, where it also writes its log),
    installed in HELLOER_HOME on each of `hosts` as a user would, and started on node1 under a shell
    that reaps it."""

    def __init__(
        self,
        directory: Path,
        *,
        interval_ms: int = 100,
        hosts: Sequence[str] = ("node1", "node2"),
    ) -> None:
        self.name = unique("hello")[:15]
        self.binary = HELLOER_HOME / self.name  # its path on the hosts
        self.log = directory / f"{self.name}.log"
        built, source = directory / self.name, directory / f"{self.name}.c"
        source.write_text(HELLOER)
        subprocess.run(
            ["gcc", "-O1", f"-DINTERVAL_US={interval_ms * 1000}", "-o", str(built), str(source)],
            check=True,
        )
        for host in hosts:
            installed = host_path(host, self.binary)
            installed.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(built, installed)
        self.shell = subprocess.Popen(
            [
                str(LAB_SCRIPT),
                "exec",
                "node1",
                "setsid",
                "sh",
                "-c",
                # its standard streams opened on the host, as a user's would be (CRIU restores what
                # it finds in the process's own mounts)
                '"$0" "$1" </dev/null >/dev/null 2>&1 & wait',
                str(self.binary),
                str(self.log),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.pid = wait_for(self._pid, 10, f"{self.name} to start")
        wait_for(lambda: len(self.numbers()) >= 5, 10, f"{self.name} to count")

    def _pid(self) -> int | None:
        found = subprocess.run(["pgrep", "-x", self.name], capture_output=True, text=True).stdout.split()
        return int(found[0]) if len(found) == 1 else None

    def lines(self) -> list[tuple[float, int]]:
        """(Unix time, number) of each line of its log."""
        if not self.log.exists():
            return []
        return [(float(stamp), int(n)) for stamp, n in map(str.split, self.log.read_text().splitlines())]

    def numbers(self) -> list[int]:
        return [n for _, n in self.lines()]

    def times(self) -> list[float]:
        return [stamp for stamp, _ in self.lines()]

    def assert_continuous_and_counting(self) -> None:
        before = len(self.numbers())
        wait_for(lambda: len(self.numbers()) > before + 3, 20, f"{self.name} to go on counting")
        numbers = self.numbers()
        assert numbers == list(range(len(numbers))), "a number is missing or repeated"

    def assert_runs_once_and_continuous(self, lab: Lab) -> str:
        """One process of its name runs, in one lab host's network namespace, and counts on with no
        number missing or repeated: that host."""
        assert self._pid() == self.pid, f"{self.name} does not run exactly once with PID {self.pid}"
        hosts = [host for host in lab.hosts if lab.network_namespace(host) == self.network_namespace()]
        assert len(hosts) == 1, f"{self.name} runs in the network namespace of {hosts or 'no lab host'}"
        self.assert_continuous_and_counting()
        return hosts[0]

    def network_namespace(self) -> str:
        return os.readlink(f"/proc/{self.pid}/ns/net")

    def stop(self) -> None:
        subprocess.run(["kill", "-KILL", str(self.pid)], check=False)
        self.shell.kill()


@dataclass
class Client:
    """GETs a page every 10 ms on a new connection (bounded in time) and records each answer: (when,
    HTTP status or 0 for none, body). `timeout` is how long one request may wait for its answer."""

    url: str
    deadline: float
    timeout: float = 1.0
    answers: list[tuple[float, int, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            try:
                with urllib.request.urlopen(self.url, timeout=self.timeout) as response:
                    self.answers.append((time.monotonic(), response.status, response.read().decode().strip()))
            except (urllib.error.URLError, OSError):
                self.answers.append((time.monotonic(), 0, ""))
            time.sleep(0.01)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        return thread
