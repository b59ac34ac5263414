"""In-memory stand-ins for the migration layer's protocols (HostDirectory, StatusSink, Coordination),
the operator's EventPoster, the CLI's MigrationApi, and the host calls that preflight, verify and
roll_back make: no Docker, no SSH, no Kubernetes.

A FakeHost answers only the read-only commands it knows (in the real commands' output format);
any other command fails the test, so a test can tell that nothing was changed on a host."""

from __future__ import annotations

import copy
import shlex
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from ferry.api import DockerHostSpec, MigrationSpec, SecretKeyRef, SpecError, Workload
from ferry.client.kube import ClientError
from ferry.hosts.criu import Criu, CriuCheck
from ferry.hosts.docker_engine import DockerError, NotFound
from ferry.hosts.docker_host import DockerHost
from ferry.hosts.peer_stream import PeerEndpoint
from ferry.hosts.ssh import CommandFailed, CommandResult, SSHError
from ferry.migration.admission import ActiveMigration
from ferry.migration.container_config import MIGRATION_LABEL
from ferry.migration.context import MigrationContext, MigrationRequest
from ferry.migration.phases import Phase
from ferry.migration.preflight import Disk, Facts
from ferry.migration.state import MigrationState, now

STACK = "7ffd0000"  # the fingerprint: the stack address of the process before the freeze
GiB = 1 << 30
IMAGE_ID = "sha256:b0b0"
UID = "uid-1"  # the Migration's, in context()


class FakeCommands:
    """A host that records every command and answers from a script of (exit code, stdout)."""

    name = "node1"

    def __init__(self, *answers: tuple[int, str]) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[list[str], bytes | None]] = []

    def run(
        self, argv: Sequence[str], *, input: bytes | None = None, timeout: float = 120.0, check: bool = True
    ) -> CommandResult:
        self.calls.append((list(argv), input))
        code, out = self.answers.pop(0) if self.answers else (0, "")
        if check and code != 0:
            raise CommandFailed(self.name, argv, code, "failed")
        return CommandResult(code, out.encode(), b"failed" if code else b"")


class FakeEngine:
    """A Docker Engine that keeps containers, checkpoints and volumes in dicts; `failing` makes a call
    raise."""

    def __init__(self, host: str, calls: list[str]) -> None:
        self.host = host
        self.containers: dict[str, dict[str, Any]] = {}
        self.checkpoints: dict[str, set[str]] = {}
        self.volumes: dict[str, dict[str, str]] = {}  # name -> labels
        self.anonymous_volumes: dict[str, list[str]] = {}  # container -> the volumes `rm -v` removes
        self.images: dict[str, dict[str, Any]] = {}
        # `docker network inspect` of each, by name
        self.networks: dict[str, dict[str, Any]] = {
            name: {"Name": name, "Driver": driver, "Scope": "local", "Labels": {}}
            for name, driver in (("bridge", "bridge"), ("host", "host"), ("none", "null"))
        }
        self.architecture = "x86_64"  # as `docker info` says it
        self.experimental = True
        self.failing: dict[str, Exception] = {}
        self.calls = calls

    def add(
        self,
        container_id: str,
        *,
        running: bool,
        checkpoints: tuple[str, ...] = (),
        ports: tuple[tuple[str, int], ...] = (),
        networks: tuple[str, ...] = ("bridge",),
        name: str | None = None,
        labels: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """A container of image IMAGE_ID publishing `ports` ((protocol, port)); its inspect data."""
        self.containers[container_id] = {
            "Id": container_id,
            "Name": f"/{name or container_id}",
            "Image": IMAGE_ID,
            "Config": {"Image": "busybox", "Tty": False, "Labels": dict(labels or {})},
            "State": {"Running": running, "Status": "running" if running else "exited", "Pid": 42},
            "HostConfig": {
                "PortBindings": {f"{port}/{protocol}": [{"HostPort": str(port)}] for protocol, port in ports}
            },
            "NetworkSettings": {"Networks": {name: {} for name in networks}},
            "SizeRw": 10 << 20,
        }
        self.checkpoints[container_id] = set(checkpoints)
        return self.containers[container_id]

    def add_source(self, *, running: bool, **options: Any) -> dict[str, Any]:
        """frozen_state()'s source: c-src, named as container_spec() names the container."""
        return self.add("c-src", running=running, name="web", **options)

    def add_twin(self, *, running: bool, **options: Any) -> dict[str, Any]:
        """frozen_state()'s twin: c-tgt, named as its source and labelled with the Migration's uid."""
        return self.add("c-tgt", running=running, name="web", labels={MIGRATION_LABEL: UID}, **options)

    def add_image(
        self, image_id: str = IMAGE_ID, *, architecture: str = "amd64", size: int = 5 << 20
    ) -> None:
        self.images[image_id] = {"Id": image_id, "Architecture": architecture, "Size": size}

    def running(self, container_id: str) -> bool:
        return container_id in self.containers and bool(self.containers[container_id]["State"]["Running"])

    def find_container(self, container_id: str) -> dict[str, Any] | None:
        self._call("find_container", container_id)
        return self.containers.get(container_id)

    def inspect_container(self, container_id: str) -> dict[str, Any]:
        self._call("inspect_container", container_id)
        if container_id not in self.containers:
            raise NotFound(f"no container {container_id} on {self.host}")
        return self.containers[container_id]

    def running_containers(self) -> list[dict[str, Any]]:
        """As `docker ps`: each running container's ID, names (its ID here) and published ports."""
        return [
            {
                "Id": cid,
                "Names": [f"/{cid}"],
                "Ports": [
                    {"PublicPort": int(port.split("/")[0]), "Type": port.split("/")[1]}
                    for port in self.containers[cid]["HostConfig"]["PortBindings"]
                ],
            }
            for cid in self.containers
            if self.running(cid)
        ]

    def list_containers(self, *, stopped_too: bool = False) -> list[dict[str, Any]]:
        """As `docker ps` (`-a`): each container's ID, name and labels."""
        self._call("containers", "all" if stopped_too else "running")
        return [
            {"Id": cid, "Names": [info["Name"]], "Labels": info["Config"]["Labels"]}
            for cid, info in self.containers.items()
            if stopped_too or self.running(cid)
        ]

    def writable_layer_bytes(self, container_id: str) -> int:
        return int(self.inspect_container(container_id)["SizeRw"])

    def version(self) -> dict[str, Any]:
        if "version" in self.failing:
            raise self.failing["version"]
        return {"Version": "20.10.24"}

    def info(self) -> dict[str, Any]:
        return {
            "Architecture": self.architecture,
            "DockerRootDir": f"/var/lib/docker-{self.host}",
            "ExperimentalBuild": self.experimental,
        }

    def root_dir(self) -> str:
        return str(self.info()["DockerRootDir"])

    def inspect_image(self, image_id: str) -> dict[str, Any]:
        if image_id not in self.images:
            raise NotFound(f"no image {image_id} on {self.host}")
        return self.images[image_id]

    def has_image(self, image_id: str) -> bool:
        return image_id in self.images

    def network_names(self) -> set[str]:
        return set(self.networks)

    def inspect_network(self, name: str) -> dict[str, Any]:
        self._call("inspect_network", name)
        if name not in self.networks:
            raise NotFound(f"network {name} on {self.host}: not found")
        return self.networks[name]

    def create_network(self, spec: dict[str, Any]) -> None:
        """As Docker: a name taken, or a subnet another network of this host has, is refused."""
        self._call("create_network", spec["Name"])
        if spec["Name"] in self.networks:
            raise DockerError(f"creating network {spec['Name']} on {self.host} failed: already exists")
        subnets = {pool["Subnet"] for pool in spec.get("IPAM", {}).get("Config") or []}
        taken = {
            pool["Subnet"] for n in self.networks.values() for pool in n.get("IPAM", {}).get("Config") or []
        }
        if subnets & taken:
            raise DockerError(f"creating network {spec['Name']} on {self.host} failed: Pool overlaps")
        self.networks[spec["Name"]] = dict(spec)

    def networks_labelled(self, key: str, value: str) -> list[str]:
        return sorted(name for name, n in self.networks.items() if (n.get("Labels") or {}).get(key) == value)

    def remove_network(self, name: str) -> None:
        self._call("remove_network", name)
        self.networks.pop(name, None)

    def list_checkpoints(self, container_id: str) -> list[str]:
        self._call("list_checkpoints", container_id)
        return sorted(self.checkpoints.get(container_id, set()))

    def delete_checkpoint(self, container_id: str, name: str) -> None:
        self._call("delete_checkpoint", container_id)
        self.checkpoints.get(container_id, set()).discard(name)

    def remove_container(self, container_id: str, *, volumes: bool = False) -> None:
        self._call("remove_container", container_id)
        self.containers.pop(container_id, None)
        self.checkpoints.pop(container_id, None)
        for name in self.anonymous_volumes.pop(container_id, []) if volumes else []:
            self.volumes.pop(name, None)

    def create_container(self, name: str, body: dict[str, Any]) -> str:
        self._call("create_container", name)
        self.containers[name] = {"Id": name, "Name": f"/{name}", "Config": {"Labels": body["Labels"]}}
        return name

    def find_volume(self, name: str) -> dict[str, Any] | None:
        self._call("find_volume", name)
        return {"Name": name, "Labels": self.volumes[name]} if name in self.volumes else None

    def create_volume(self, name: str, labels: dict[str, str]) -> dict[str, Any]:
        """As Docker: the volume there already, if there is one, with its own labels."""
        self._call("create_volume", name)
        return {"Name": name, "Labels": self.volumes.setdefault(name, dict(labels))}

    def volumes_labelled(self, key: str, value: str) -> list[str]:
        self._call("volumes_labelled", value)
        return sorted(name for name, labels in self.volumes.items() if labels.get(key) == value)

    def remove_volume(self, name: str) -> None:
        self._call("remove_volume", name)
        self.volumes.pop(name, None)

    def start(self, container_id: str, checkpoint: str | None = None) -> None:
        self._call("start", container_id)
        state = self.inspect_container(container_id)["State"]
        state["Running"], state["Status"] = True, "running"

    def _call(self, name: str, subject: str) -> None:
        self.calls.append(f"{self.host}:{name}:{subject}")
        if name in self.failing:
            raise self.failing[name]


class FakeFiles:
    """A host's files: the paths that exist, links, directory sizes; `failing` makes remove_tree raise."""

    def __init__(self, host: str, calls: list[str]) -> None:
        self.host = host
        self.paths: set[str] = set()
        self.links: dict[str, str] = {}  # symbolic links: where each leads
        self.sizes: dict[str, int] = {}
        self.failing: dict[str, Exception] = {}
        self.calls = calls

    def exists(self, path: str) -> bool:
        return path in self.paths

    def resolve(self, path: str) -> str | None:
        return self.links.get(path, path if path in self.paths else None)

    def directory_bytes(self, path: str) -> int:
        return self.sizes.get(path, 0)  # a size no test set: an empty directory

    def remove_tree(self, path: str) -> None:
        self.calls.append(f"{self.host}:remove_tree:{path}")
        if "remove_tree" in self.failing:
            raise self.failing["remove_tree"]
        self.paths = {p for p in self.paths if p != path and not p.startswith(f"{path}/")}


class FakeNetfilter:
    """A host's port forwarding: only its calls are recorded."""

    def __init__(self, host: str, calls: list[str]) -> None:
        self.host = host
        self.calls = calls

    def forward_ports(self, ports: Any, to_address: str, tag: str) -> None:
        self.calls.append(f"{self.host}:forward_ports")

    def remove_forwards(self, tag: str) -> None:
        self.calls.append(f"{self.host}:remove_forwards")


@dataclass
class FakeProcess:
    """A plain process as /proc shows it (ferry.hosts.processes.inspect_process reads it)."""

    executable: str = "/opt/app/bin/app"
    command: str = "app"
    uids: tuple[int, ...] = (1000, 1000, 1000, 1000)
    flags: int = 0
    in_container: bool = False
    fds: tuple[tuple[int, str], ...] = ()  # open file descriptors: (fd, what /proc/PID/fd/N links to)

    def inspected(self, pid: int) -> str:
        """The inspect script's output: exe, comm, session and flags, UIDs, mount namespaces, fds."""
        namespace = "mnt:[4026532000]" if self.in_container else "mnt:[4026531841]"
        uids = "\t".join(map(str, self.uids))
        fds = "".join(f"{fd} -> {path}\n" for fd, path in self.fds)
        fixed = (
            f"{self.executable}\n{self.command}\n{pid} {self.flags}\n{uids}\n{namespace}\nmnt:[4026531841]\n"
        )
        return fixed + fds


class FakeHost:
    """What preflight, verify, roll_back and the workload rules use of a DockerHost."""

    def __init__(self, name: str, calls: list[str]) -> None:
        self.name = name
        self.engine = FakeEngine(name, calls)
        self.files = FakeFiles(name, calls)
        self.netfilter = FakeNetfilter(name, calls)
        self.criu = Criu(self)  # the real commands, answered by run()
        self.runc = None
        self.peer: PeerEndpoint | None = None
        self.ssh = self  # commands sent to its SSH session are answered as run() answers them
        self.stack = STACK
        self.sockets: list[str] = []  # lines of `ss -H -ltnu`
        # pid, ppid, RSS in KiB, uid (real, effective and saved), command
        self.processes: list[tuple[int, int, int, int, str]] = [
            (1, 0, 9000, 0, "init"),
            (42, 1, 2048, 0, "app"),
        ]
        self.capabilities = 0x1FFFFFFFFFF  # CapEff of the commands ferry runs here
        self.disk_available = 100 * GiB
        self.memory_available = 8 * GiB
        self.criu_check = (0, "Looks good.")  # exit code, output
        self.cpu = b"cpu-a"  # what `criu cpuinfo dump` writes here
        self.runs_cpus = {b"cpu-a"}  # what `criu cpuinfo check` accepts here
        self.procs: dict[int, FakeProcess] = {}  # what /proc shows of plain processes, by PID
        self.users = {0: "root", 1000: "app"}  # /etc/passwd
        self.pid_space = ("fake-boot-id", "pid:[4026531836]")  # boot id, PID namespace
        self.criu_version = "4.2"  # as `criu --version` says it
        self.tmux = True  # installed
        self.tmux_sessions: set[str] = set()  # on ferry's tmux server here
        self.reachable = True  # False: every command fails as a lost SSH connection does
        self.stopped: set[int] = set()  # PIDs stopped by a signal (state T in /proc/PID/stat)
        self.calls = calls

    def listen(self, protocol: str, port: int) -> None:
        """A process listening on `port` (TCP) or bound to it (UDP), as `ss` lists it."""
        state = "LISTEN" if protocol == "tcp" else "UNCONN"
        self.sockets.append(f"{protocol}   {state} 0      4096         0.0.0.0:{port}      0.0.0.0:*")

    def run(
        self, argv: Sequence[str], *, input: bytes | None = None, timeout: float = 120.0, check: bool = True
    ) -> CommandResult:
        """Answers the read-only commands ferry runs: anything else fails the test."""
        command = list(argv)
        if not self.reachable:
            raise SSHError(f"cannot reach host {self.name} over SSH: connection refused")
        if command[0] == "cat" and command[1].endswith("/maps"):
            maps = f"{self.stack}-7ffd00021000 rw-p 00000000 00:00 0 [stack]\n" if self.stack else ""
            return _output(maps)
        if command[0] == "cat" and command[1].startswith("/proc/") and command[1].endswith("/stat"):
            pid = int(command[1].split("/")[2])
            return _output(f"{pid} (app) {'T' if pid in self.stopped else 'S'} 1 {pid} {pid}\n")
        if command == ["cat", "/proc/meminfo"]:
            available = self.memory_available // 1024
            return _output(f"MemTotal: {available * 2} kB\nMemFree: 1000 kB\nMemAvailable: {available} kB\n")
        if command == ["ss", "-H", "-ltnu"]:
            return _output("".join(f"{line}\n" for line in self.sockets))
        if command[:3] == ["df", "-B1", "--output=avail"]:
            return _output(f"       Avail\n{self.disk_available}\n")
        if command == ["ps", "-e", "-o", "pid=,ppid=,rss=,ruid=,euid=,suid=,comm="]:
            return _output(
                "".join(
                    f"{pid:>5} {ppid:>5} {rss:>6} {uid:>5} {uid:>5} {uid:>5} {name}\n"
                    for pid, ppid, rss, uid, name in self.processes
                )
            )
        if command == ["cat", "/proc/self/status"]:
            return _output(f"Name:\tcat\nCapEff:\t{self.capabilities:016x}\n")
        if command == ["criu", "check"]:
            exit_code, text = self.criu_check
            return CommandResult(exit_code, b"", text.encode())
        if command[:2] == ["sh", "-c"] and command[3:4] == ["ferry-cpuinfo"]:
            return CommandResult(0, self.cpu, b"")
        if command[:2] == ["sh", "-c"] and command[3:4] == ["ferry-cpuinfo-check"]:
            runs = input in self.runs_cpus
            return (
                CommandResult(0, b"", b"")
                if runs
                else CommandResult(1, b"", b"Error (criu/cpu.c:235): CPU has no avx512f")
            )
        if command[:2] == ["sh", "-c"] and command[3:4] == ["ferry-inspect"]:
            process = self.procs.get(int(command[4]))
            return _output(process.inspected(int(command[4]))) if process else CommandResult(3, b"", b"")
        if command[:2] == ["getent", "passwd"]:
            found = [int(uid) for uid in command[2:] if int(uid) in self.users]
            return _output("".join(f"{self.users[uid]}:x:{uid}:{uid}::/:/bin/sh\n" for uid in found))
        if command == ["cat", "/proc/sys/kernel/random/boot_id"]:
            return _output(f"{self.pid_space[0]}\n")
        if command == ["readlink", "/proc/self/ns/pid"]:
            return _output(f"{self.pid_space[1]}\n")
        if command[:1] == ["tmux"] and "has-session" in command:
            return CommandResult(0 if command[-1] in self.tmux_sessions else 1, b"", b"")
        if command[:1] == ["tmux"] and "new-session" in command:  # runs CRIU, which writes its pidfile
            self.tmux_sessions.add(command[command.index("-s") + 1])
            self.calls.append(f"{self.name}:tmux new-session")
            restore = shlex.split(command[command.index(";") - 1])
            self.files.paths.add(restore[restore.index("--pidfile") + 1])
            return _output("")
        if command[:2] == ["test", "-e"]:
            return CommandResult(0 if self.files.exists(command[2]) else 1, b"", b"")
        if command[:3] == ["rm", "-f", "--"]:
            self.files.paths.discard(command[3])
            return _output("")
        if command == ["tmux", "-V"]:
            return _output("tmux 3.3a\n") if self.tmux else CommandResult(127, b"", b"tmux: not found")
        if command == ["criu", "--version"]:
            installed = self.criu_check[0] != 127
            version = f"Version: {self.criu_version}\n"
            return _output(version) if installed else CommandResult(127, b"", b"criu: not found")
        if command == ["uname", "-r"]:
            return _output("6.1.0\n")
        raise AssertionError(f"{self.name} was asked to run {command}")


def _output(text: str) -> CommandResult:
    return CommandResult(0, text.encode(), b"")


def host_spec(name: str, allowed: tuple[str, ...] = ("*",), **fields: Any) -> DockerHostSpec:
    """A DockerHost's spec; `fields` sets others (workloads, allow_privileged, ...)."""
    return DockerHostSpec(
        name=name,
        address=f"10.0.0.{len(name)}",
        host_key="ssh-ed25519 AAAA",
        ssh_key_secret=SecretKeyRef("ferry-ssh", "ferry-system"),
        allowed_namespaces=allowed,
        **fields,
    )


class FakeHosts:
    """A HostDirectory; every connect() is recorded, so a test can say no host was touched.
    `readiness` is what each host's last probe said (none: never probed)."""

    def __init__(self, *specs: DockerHostSpec) -> None:
        self.specs = {spec.name: spec for spec in specs}
        self.calls: list[str] = []
        self.hosts = {name: FakeHost(name, self.calls) for name in self.specs}
        self.connected: list[str] = []
        self.readiness: dict[str, bool] = {}

    def names(self) -> list[str]:
        return sorted(self.specs)

    def spec(self, name: str) -> DockerHostSpec:
        if name not in self.specs:
            raise SpecError(f"DockerHost '{name}' does not exist")
        return self.specs[name]

    def ready(self, name: str) -> bool | None:
        return self.readiness.get(name)

    def connect(self, name: str) -> DockerHost:
        self.connected.append(name)
        return cast(DockerHost, self.hosts[name])


class FakeSink:
    """A StatusSink keeping every status written."""

    def __init__(self) -> None:
        self.saved: list[dict[str, Any]] = []

    def save(self, state: MigrationState, generation: int | None) -> None:
        self.saved.append(state.to_status(generation))

    @property
    def phases(self) -> list[str]:
        return [status["phase"] for status in self.saved]


class FakeEventPoster:
    """An EventPoster keeping every Event posted; `failing` is raised by each post instead."""

    def __init__(self) -> None:
        self.posted: list[dict[str, Any]] = []
        self.failing: Exception | None = None

    def create_event(self, namespace: str, body: dict[str, Any]) -> None:
        if self.failing is not None:
            raise self.failing
        assert body["metadata"]["namespace"] == namespace
        self.posted.append(body)

    @property
    def reasons(self) -> list[str]:
        return [event["reason"] for event in self.posted]


class FakeClock:
    """time.monotonic for a test, with the sleep that moves it on."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class FakeMigrationApi:
    """The CLI's MigrationApi over dicts, naming as the API server does for generateName. Each read of
    a Migration first moves it to the next status in `progress` (as the operator would); a None
    there deletes it. Secrets are kept by (namespace, name); a name taken refuses a create."""

    def __init__(self, *, hosts: Sequence[dict[str, Any]] = (), namespace: str = "default") -> None:
        self.namespace = namespace
        self.migrations: dict[tuple[str, str], dict[str, Any]] = {}
        self.hosts = list(hosts)
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.progress: list[dict[str, Any] | None] = []
        self.evacuations: dict[str, dict[str, Any]] = {}
        self.evacuation_progress: list[
            dict[str, Any]
        ] = []  # each read of an Evacuation takes the next status

    def create_evacuation(self, body: dict[str, Any]) -> dict[str, Any]:
        resource = copy.deepcopy(body)
        meta = resource["metadata"]
        meta.setdefault("name", f"{meta.pop('generateName', 'evacuation-')}x{len(self.evacuations):04d}")
        self.evacuations[meta["name"]] = resource
        return copy.deepcopy(resource)

    def get_evacuation(self, name: str) -> dict[str, Any] | None:
        if name in self.evacuations and self.evacuation_progress:
            self.evacuations[name]["status"] = self.evacuation_progress.pop(0)
        return copy.deepcopy(self.evacuations.get(name))

    def create_migration(self, body: dict[str, Any]) -> dict[str, Any]:
        resource = copy.deepcopy(body)
        meta = resource["metadata"]
        if "name" not in meta:
            meta["name"] = f"{meta.pop('generateName')}x{len(self.migrations):04d}"
        meta["creationTimestamp"] = "2024-05-01T12:00:00Z"
        key = (meta["namespace"], meta["name"])
        if key in self.migrations:
            raise ClientError(f"cannot create the Migration: {meta['name']} already exists")
        self.migrations[key] = resource
        return copy.deepcopy(resource)

    def get_migration(self, namespace: str, name: str) -> dict[str, Any] | None:
        if (namespace, name) in self.migrations and self.progress:
            status = self.progress.pop(0)
            if status is None:
                del self.migrations[namespace, name]
            else:
                self.migrations[namespace, name]["status"] = status
        return copy.deepcopy(self.migrations.get((namespace, name)))

    def list_migrations(self, namespace: str | None) -> list[dict[str, Any]]:
        return [copy.deepcopy(m) for (ns, _), m in self.migrations.items() if namespace in (None, ns)]

    def list_docker_hosts(self) -> list[dict[str, Any]]:
        return copy.deepcopy(self.hosts)

    def create_docker_host(self, body: dict[str, Any]) -> None:
        if any(host["metadata"]["name"] == body["metadata"]["name"] for host in self.hosts):
            raise ClientError(f'cannot create the DockerHost: "{body["metadata"]["name"]}" already exists')
        self.hosts.append(copy.deepcopy(body))

    def create_secret(self, body: dict[str, Any]) -> None:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        if key in self.secrets:
            raise ClientError(f'cannot create the Secret: "{key[1]}" already exists')
        self.secrets[key] = copy.deepcopy(body)

    def delete_secret(self, namespace: str, name: str) -> None:
        del self.secrets[namespace, name]


@dataclass
class FakeCoordination:
    in_charge_now: bool = True
    admission_lock: threading.Lock = field(default_factory=threading.Lock)

    def active_migrations(self) -> list[ActiveMigration]:
        return []

    def cancel_requested(self) -> bool:
        return False

    def in_charge(self) -> bool:
        return self.in_charge_now


def container_spec(**overrides: Any) -> MigrationSpec:
    values: dict[str, Any] = {
        "workload": Workload(container="web"),
        "target_host": "node2",
        "source_host": "node1",
        **overrides,
    }
    return MigrationSpec(**values)


def context(
    spec: MigrationSpec,
    state: MigrationState,
    hosts: FakeHosts,
    *,
    namespace: str = "team-a",
    coordination: FakeCoordination | None = None,
) -> tuple[MigrationContext, FakeSink]:
    sink = FakeSink()
    request = MigrationRequest(namespace, "move-web", UID, 1, spec, now())
    return MigrationContext(request, state, hosts, sink, coordination or FakeCoordination()), sink


def frozen_state(phase: Phase, **fields: Any) -> MigrationState:
    """A container migration past the freeze: source c-src on node1, target c-tgt on node2."""
    values: dict[str, Any] = {
        "phase": phase,
        "workload": "container/web",
        "source_host": "node1",
        "target_host": "node2",
        "source_container_id": "c-src",
        "target_container_id": "c-tgt",
        "checkpoint_name": f"ferry-{UID}",
        "fingerprint_pid": 42,
        "fingerprint_stack": STACK,
        "restore_requested": True,
        "start_time": now(),
        "frozen_at": now(),
        **fields,
    }
    return MigrationState(**values)


def preflight_facts(**overrides: Any) -> Facts:
    """What a Live move of a container publishing 8080/tcp from node1 to node2 finds, all of it fine."""
    values: dict[str, Any] = {
        "source": "node1",
        "target": "node2",
        "live": True,
        "ports": [("tcp", 8080)],
        "port_ranges": [],
        "published_on_target": {},
        "listening_on_target": {("tcp", 22)},
        "image": "busybox",
        "image_architecture": "amd64",
        "image_bytes_to_copy": 5 << 20,
        "target_architecture": "amd64",
        "rootfs_bytes": 10 << 20,
        "volume_bytes": 0,
        "checkpoint_bytes": 100 << 20,
        "other_users": [],
        "source_checkpoints_other_users": True,
        "source_disk": Disk("/var/lib/docker", 100 * GiB),
        "target_disk": Disk("/var/lib/docker", 100 * GiB),
        "target_memory": 8 * GiB,
        "criu": {"node1": CriuCheck(0, "Looks good."), "node2": CriuCheck(0, "Looks good.")},
        "cpu": CriuCheck(0, ""),
        "networks": [],
        "target_networks": {"bridge", "host", "none"},
        "networks_unmakeable": {},
        "volumes": [],
        "volumes_on_target": [],
        **overrides,
    }
    return Facts(**values)
