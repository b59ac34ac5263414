"""What a host can tell before a migration changes anything: each function is one command over SSH
(an argument list: no value reaches the remote shell unquoted) or one Docker Engine API call.

Commands run in the SSH session, so in the host's network namespace: sockets listed are the ones
a published port of the twin container would collide with.
"""

from __future__ import annotations

from dataclasses import dataclass

from ferry.hosts.docker_host import DockerHost

# `docker info` reports the machine as `uname -m` does; images name it as Go does.
GO_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "i386": "386"}


@dataclass(frozen=True)
class Image:
    architecture: str
    bytes: int


def listening_ports(host: DockerHost) -> set[tuple[str, int]]:
    """(protocol, port) of every TCP socket listening and UDP socket bound, whoever holds it."""
    ports = set()
    for line in host.ssh.run(["ss", "-H", "-ltnu"], timeout=30).text.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        port = fields[4].rpartition(":")[2]
        if port.isdigit():
            ports.add((fields[0], int(port)))
    return ports


def published_by_containers(host: DockerHost) -> dict[tuple[str, int], str]:
    """(protocol, port) -> the name of the running container that publishes it."""
    return {
        (str(port["Type"]), int(port["PublicPort"])): container["Names"][0].lstrip("/")
        for container in host.engine.running_containers()
        for port in container.get("Ports", [])
        if port.get("PublicPort")
    }


def available_disk_bytes(host: DockerHost, path: str) -> int:
    """Bytes free on the filesystem holding `path` (df's Avail: without the blocks reserved for root)."""
    printed = host.ssh.run(["df", "-B1", "--output=avail", "--", path], timeout=30).text.split()
    return int(printed[-1])


def pipe_max_size(host: DockerHost) -> int:
    """fs.pipe-max-size: how big a pipe may grow without CAP_SYS_RESOURCE (CRIU's page server needs 4 MiB)."""
    return int(host.ssh.run(["cat", "/proc/sys/fs/pipe-max-size"], timeout=30).text.strip())


def available_memory_bytes(host: DockerHost) -> int:
    """MemAvailable of /proc/meminfo: what can be given to new processes without swapping."""
    for line in host.ssh.run(["cat", "/proc/meminfo"], timeout=30).text.splitlines():
        key, _, value = line.partition(":")
        if key == "MemAvailable":
            return int(value.split()[0]) * 1024
    raise ValueError(f"/proc/meminfo on {host.name} has no MemAvailable")


@dataclass(frozen=True)
class Process:
    pid: int
    resident_bytes: int  # RSS, as `ps` shows it
    uids: tuple[int, int, int]  # real, effective, saved
    command: str


def process_tree(host: DockerHost, pid: int) -> list[Process]:
    """A process and all its descendants, from one `ps` of the host."""
    table = host.ssh.run(["ps", "-e", "-o", "pid=,ppid=,rss=,ruid=,euid=,suid=,comm="], timeout=30).text
    children: dict[int, list[int]] = {}
    found: dict[int, Process] = {}
    for line in table.splitlines():
        fields = line.split(None, 6)
        if len(fields) == 7 and all(field.isdigit() for field in fields[:6]):
            child, parent, kilobytes, real, effective, saved = (int(field) for field in fields[:6])
            children.setdefault(parent, []).append(child)
            found[child] = Process(child, kilobytes * 1024, (real, effective, saved), fields[6])
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        if current in found:
            tree.append(found[current])
        todo += children.get(current, [])
    return tree


def resident_bytes(tree: list[Process]) -> int:
    """The resident memory of a process tree.

    It counts the pages shared with other processes (libraries) in each of them, so it is a little
    more than what CRIU dumps: an upper bound for the checkpoint's size.
    """
    return sum(process.resident_bytes for process in tree)


CAP_SYS_RESOURCE = 24


def has_capability(host: DockerHost, capability: int) -> bool:
    """Whether commands ferry runs on the host (as its SSH user) hold `capability` (CapEff)."""
    for line in host.ssh.run(["cat", "/proc/self/status"], timeout=30).text.splitlines():
        key, _, value = line.partition(":")
        if key == "CapEff":
            return bool(int(value.strip(), 16) >> capability & 1)
    raise ValueError(f"/proc/self/status on {host.name} has no CapEff")


def kernel_release(host: DockerHost) -> str:
    return host.ssh.run(["uname", "-r"], timeout=30).text.strip()


def architecture(host: DockerHost) -> str:
    """The host's CPU architecture as images name it (amd64, arm64, ...)."""
    machine = str(host.engine.info()["Architecture"])
    return GO_ARCHITECTURES.get(machine, machine)


def image(host: DockerHost, reference: str) -> Image:
    inspected = host.engine.inspect_image(reference)
    return Image(architecture=str(inspected["Architecture"]), bytes=int(inspected["Size"]))
