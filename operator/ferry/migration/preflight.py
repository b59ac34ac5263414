"""Preflight: everything that can be known before the freeze is checked before it.

Facts are read from both hosts first (ferry.hosts.facts, `criu check`: nothing is changed anywhere); then each
rule judges them and gives a named check, passed or failed, whose message says what to fix. Any
failed check fails the migration before anything is made on a host, with the first failed check's
reason (PortTaken, NoDiskSpace, ...) and every failed check's message. The report goes into
status.preflight; a dry run ends with it.

Sizes are estimates: the checkpoint holds the container's memory, estimated as the resident memory
of its processes (`ps` RSS of the main process and its descendants, pages shared between them
counted in each: a little more than CRIU dumps). Space and memory are wanted with a margin.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from ferry.hosts import facts
from ferry.hosts.criu import CriuCheck
from ferry.hosts.docker_host import DockerHost
from ferry.hosts.errors import last_line
from ferry.migration.container_config import MIGRATION_LABEL
from ferry.migration.container_data import (
    local_volume_dirs,
    named_volumes,
    published_port_ranges,
    published_ports,
)
from ferry.migration.container_networks import can_be_made, user_networks
from ferry.migration.context import MigrationContext
from ferry.migration.errors import Problem
from ferry.migration.phases import Outcome, Phase
from ferry.migration.state import PostCopy

MiB = 1 << 20
PIPE_MAX_NEEDED = 4 * MiB  # CRIU's page server grows its pipe to 819 pages (rounded up to 4 MiB)
PAGE_SERVER_PORTS = range(27100, 27200)  # where a post-copy's page server listens on the source
RESERVE = 64 * MiB  # added to every need: filesystem metadata, logs, estimates a little short


@dataclass(frozen=True)
class Disk:
    path: str
    available: int


@dataclass(frozen=True)
class PostCopyFacts:
    """What spec.postCopy needs of the two hosts (docs/postcopy.md)."""

    without_fast_path: list[str]  # hosts without spec.fastPath
    source_pipe_max_size: int
    target_uffd: CriuCheck  # `criu check --feature uffd-noncoop` on the target
    port: int | None  # a free TCP port on the source for the page server; None: none free


@dataclass(frozen=True)
class Facts:
    """What the rules judge: the container, and what its two hosts said about themselves."""

    source: str
    target: str
    live: bool
    ports: list[tuple[str, int]]  # (protocol, host port) the container publishes
    port_ranges: list[str]  # ports it publishes on a range of host ports ("80/tcp on 8000-8010")
    published_on_target: dict[tuple[str, int], str]  # by the running containers there: their names
    listening_on_target: set[tuple[str, int]]  # sockets of any process there (docker-proxy included)
    image: str
    image_architecture: str
    image_bytes_to_copy: int | None  # None: the target has the image
    target_architecture: str
    rootfs_bytes: int  # the writable layer
    volume_bytes: int  # what its local volumes hold: copied into the target's Docker root dir
    checkpoint_bytes: int  # the expected checkpoint: the container's resident memory (0 when Cold)
    other_users: list[facts.Process]  # its processes not all of whose uids are root's (none when Cold)
    source_checkpoints_other_users: bool  # the source's root holds CAP_SYS_RESOURCE (CRIU needs it then)
    source_disk: Disk  # where the checkpoint is written (the Docker root dir)
    target_disk: Disk  # where the image, layer and checkpoint arrive (the Docker root dir)
    target_memory: int  # MemAvailable
    criu: dict[str, CriuCheck]  # by host name; empty when Cold
    cpu: CriuCheck | None  # the source's CPU checked on the target; None: Cold, or CRIU fails somewhere
    networks: list[str]  # the user-defined networks the container is on
    target_networks: set[str]
    networks_unmakeable: dict[str, str]  # those missing on the target that ferry cannot make: drivers
    volumes: list[str]  # the named local volumes the container mounts: made new on the target
    volumes_on_target: list[str]  # those that exist there already (but not made by this migration)
    post_copy: PostCopyFacts | None = None  # spec.postCopy only


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    message: str
    reason: str = ""  # the Problem's reason when it failed


def run(
    ctx: MigrationContext, source: DockerHost, target: DockerHost, info: dict[str, Any], *, live: bool
) -> Outcome | None:
    """Checks everything before anything is made; records the report in the status. Raises the
    Problem of the failed checks; a dry run that passes ends here: its Outcome is Succeeded."""
    post_copy = live and ctx.request.spec.post_copy
    found = gather(source, target, info, live=live, uid=ctx.request.uid, post_copy=post_copy)
    checks = evaluate(found)
    ctx.state.preflight = report(found, checks)
    failure = problem(checks)
    if failure is not None:
        raise failure
    if ctx.request.spec.dry_run:
        return Outcome(dry_run_summary(found, checks), reason="DryRunPassed", ending=Phase.SUCCEEDED)
    if found.post_copy is not None and found.post_copy.port is not None:
        ctx.state.post_copy = PostCopy(port=found.post_copy.port)
    return None


def gather(
    source: DockerHost,
    target: DockerHost,
    info: dict[str, Any],
    *,
    live: bool,
    uid: str,
    post_copy: bool = False,
) -> Facts:
    """Reads the facts from both hosts; reads only. `uid` is the migration's: what it made on the
    target before a restart is its own."""
    image_id: str = info["Image"]
    image = facts.image(source, image_id)
    networks = user_networks(info)
    target_networks = target.engine.network_names() if networks else set()
    missing = [source.engine.inspect_network(name) for name in networks if name not in target_networks]
    volumes = named_volumes(info)
    criu = {host.name: host.criu.check() for host in (source, target)} if live else {}
    tree = facts.process_tree(source, int(info["State"]["Pid"])) if live else []
    other_users = [process for process in tree if any(process.uids)]
    cpu = (
        target.criu.cpuinfo_check(source.criu.cpuinfo())
        if criu and all(c.passed for c in criu.values())
        else None
    )
    return Facts(
        source=source.name,
        target=target.name,
        live=live,
        ports=published_ports(info),
        port_ranges=published_port_ranges(info),
        published_on_target=facts.published_by_containers(target),
        listening_on_target=facts.listening_ports(target),
        image=info["Config"]["Image"],
        image_architecture=image.architecture,
        image_bytes_to_copy=None if target.engine.has_image(image_id) else image.bytes,
        target_architecture=facts.architecture(target),
        rootfs_bytes=source.engine.writable_layer_bytes(info["Id"]),
        volume_bytes=sum(source.files.directory_bytes(path) for path in local_volume_dirs(info)),
        checkpoint_bytes=facts.resident_bytes(tree),
        other_users=other_users,
        source_checkpoints_other_users=not other_users
        or facts.has_capability(source, facts.CAP_SYS_RESOURCE),
        source_disk=_disk(source),
        target_disk=_disk(target),
        target_memory=facts.available_memory_bytes(target),
        criu=criu,
        cpu=cpu,
        networks=networks,
        target_networks=target_networks,
        networks_unmakeable={
            str(network["Name"]): f"{network.get('Driver')}, {network.get('Scope')} scope"
            for network in missing
            if not can_be_made(network)
        },
        volumes=volumes,
        volumes_on_target=[name for name in volumes if _made_by_another(target, name, uid)],
        post_copy=_post_copy_facts(source, target, uid) if post_copy else None,
    )


def _post_copy_facts(source: DockerHost, target: DockerHost, uid: str) -> PostCopyFacts:
    """A free port is looked for from a place of its own for each migration, so that two moving
    from one host at once rarely try the same one (if they do, the second dump fails to listen
    and its workload runs on)."""
    taken = {port for protocol, port in facts.listening_ports(source) if protocol == "tcp"}
    start = zlib.crc32(uid.encode()) % len(PAGE_SERVER_PORTS)
    ordered = [*PAGE_SERVER_PORTS[start:], *PAGE_SERVER_PORTS[:start]]
    return PostCopyFacts(
        without_fast_path=[host.name for host in (source, target) if host.runc is None],
        source_pipe_max_size=facts.pipe_max_size(source),
        target_uffd=target.criu.check_feature("uffd-noncoop"),
        port=next((port for port in ordered if port not in taken), None),
    )


def _made_by_another(host: DockerHost, volume: str, uid: str) -> bool:
    """The volume exists on the host, and not as one this migration made."""
    found = host.engine.find_volume(volume)
    return found is not None and (found.get("Labels") or {}).get(MIGRATION_LABEL) != uid


def _disk(host: DockerHost) -> Disk:
    path = host.engine.root_dir()
    return Disk(path, facts.available_disk_bytes(host, path))


# -- The rules: each judges the facts, or says nothing (None) when it does not apply.


def ports_free(f: Facts) -> Check:
    taken = []
    for protocol, port in f.ports:
        holder = f.published_on_target.get((protocol, port))
        if holder is not None:
            taken.append(f"{port}/{protocol} is already published on {f.target} by container {holder}")
        elif (protocol, port) in f.listening_on_target:
            taken.append(
                f"{port}/{protocol} is in use on {f.target} by a process there (`ss -ltnup` names it)"
            )
    if taken:
        return Check(
            "PortsFree",
            False,
            f"port {'; port '.join(taken)}: stop what holds it, or publish the container on another port",
            "PortTaken",
        )
    listed = ", ".join(f"{port}/{protocol}" for protocol, port in f.ports) or "none"
    return Check("PortsFree", True, f"the ports the container publishes are free on {f.target}: {listed}")


def ports_single(f: Facts) -> Check | None:
    """A port published on a range may be bound to another port of it on the target."""
    if not f.port_ranges:
        return None
    return Check(
        "PortRanges",
        False,
        f"the container publishes {', '.join(f.port_ranges)} (a range of host ports): Docker binds "
        f"whichever port of a range is free when it starts, so on {f.target} clients could find it on "
        "another port; publish each port on one host port to move the container",
        "PortRange",
    )


def target_disk_space(f: Facts) -> Check:
    parts = [("its writable layer", f.rootfs_bytes)]
    if f.image_bytes_to_copy is not None:
        parts.insert(0, (f"image {f.image}", f.image_bytes_to_copy))
    if f.volume_bytes:
        parts.append(("its volumes", f.volume_bytes))
    if f.live:
        parts.append(("the checkpoint", f.checkpoint_bytes))
    need = with_margin(sum(size for _, size in parts))
    what = ", ".join(f"{name} ({size_text(size)})" for name, size in parts)
    disk = f.target_disk
    return enough(
        "TargetDiskSpace",
        disk.available >= need,
        f"{f.target} has {size_text(disk.available)} free in {disk.path} for {what}",
        f"{f.target} has {size_text(disk.available)} free in {disk.path} and needs {size_text(need)} "
        f"for {what} with a margin: free space there, or choose another targetHost",
        "NoDiskSpace",
    )


def source_disk_space(f: Facts) -> Check | None:
    if not f.live:
        return None
    need, disk = with_margin(f.checkpoint_bytes), f.source_disk
    return enough(
        "SourceDiskSpace",
        disk.available >= need,
        f"{f.source} has {size_text(disk.available)} free in {disk.path} for the checkpoint "
        f"({size_text(f.checkpoint_bytes)})",
        f"{f.source} has {size_text(disk.available)} free in {disk.path} and needs {size_text(need)} "
        f"for the checkpoint ({size_text(f.checkpoint_bytes)} of memory) with a margin: free space there",
        "NoDiskSpace",
    )


def target_memory(f: Facts) -> Check | None:
    if not f.live:
        return None
    need = with_margin(f.checkpoint_bytes)
    return enough(
        "TargetMemory",
        f.target_memory >= need,
        f"{f.target} has {size_text(f.target_memory)} of memory available for "
        f"{size_text(f.checkpoint_bytes)} resident",
        f"{f.target} has {size_text(f.target_memory)} of memory available and the container holds "
        f"{size_text(f.checkpoint_bytes)} (needs {size_text(need)} with a margin): free memory on "
        f"{f.target}, or choose another targetHost",
        "NotEnoughMemory",
    )


def criu_works(f: Facts) -> Check | None:
    if not f.live:
        return None
    missing = [host for host, check in f.criu.items() if not check.installed]
    failing = [host for host, check in f.criu.items() if check.installed and not check.passed]
    problems = [
        f"CRIU is not installed on host {host} ({_last_line(f.criu[host].output)}): install CRIU >= 4.2 "
        "on its PATH, or move the container with strategy: Cold"
        for host in missing
    ] + [
        f"`criu check` fails on {host} ({_last_line(f.criu[host].output)}): CRIU could not checkpoint or "
        "restore there; fix what it names (kernel features, CRIU's build), or use strategy: Cold"
        for host in failing
    ]
    if problems:
        return Check("CRIUCheck", False, "; ".join(problems), "CRIUMissing" if missing else "CRIUCheckFailed")
    return Check("CRIUCheck", True, f"`criu check` passes on {' and '.join(f.criu)}")


def other_users_checkpointable(f: Facts) -> Check | None:
    """CRIU reads each process's resource limits (prlimit); for a process of another user the kernel
    allows that to root only with CAP_SYS_RESOURCE, which some hosts' root lacks (a host that is
    itself a container, for one): the dump would fail after the freeze began."""
    if not f.other_users:
        return None
    named = ", ".join(f"{process.command} (uid {process.uids[1]})" for process in f.other_users[:4])
    if len(f.other_users) > 4:
        named += f" and {len(f.other_users) - 4} more"
    if f.source_checkpoints_other_users:
        return Check("ProcessUsers", True, f"{f.source} may checkpoint the processes of other users: {named}")
    return Check(
        "ProcessUsers",
        False,
        f"CRIU cannot checkpoint the container's processes of users other than root on {f.source}: "
        f"root there lacks CAP_SYS_RESOURCE, without which the kernel refuses CRIU their resource "
        f"limits; it runs {named}: run its processes as root, give {f.source}'s root "
        "CAP_SYS_RESOURCE, or use strategy: Cold",
        "CheckpointNotPermitted",
    )


def cpu_compatible(f: Facts) -> Check | None:
    if f.cpu is None:
        return None
    if not f.cpu.passed:
        return Check(
            "CPU",
            False,
            f"the CPU of {f.target} lacks what the workload may use on {f.source}'s "
            f"(`criu cpuinfo check`: {f.cpu.last_line}): choose a targetHost with the same CPU "
            "features, or use strategy: Cold",
            "CPUMismatch",
        )
    return Check("CPU", True, f"CRIU finds {f.target}'s CPU able to run what {f.source}'s runs")


def architecture_matches(f: Facts) -> Check:
    if f.image_architecture != f.target_architecture:
        return Check(
            "Architecture",
            False,
            f"image {f.image} is built for {f.image_architecture} and {f.target} is "
            f"{f.target_architecture}: choose a targetHost that is {f.image_architecture}",
            "ArchitectureMismatch",
        )
    return Check("Architecture", True, f"image {f.image} and {f.target} are both {f.target_architecture}")


def networks_exist(f: Facts) -> Check:
    """A missing local bridge network is made on the target (container_networks); others must exist."""
    if f.networks_unmakeable:
        named = ", ".join(f"{name} ({driver})" for name, driver in f.networks_unmakeable.items())
        return Check(
            "Networks",
            False,
            f"network {named} does not exist on {f.target}, and ferry makes only local bridge networks: "
            "create it there first (docker network create), with the same options",
            "NetworkMissing",
        )
    to_make = [name for name in f.networks if name not in f.target_networks]
    listed = ", ".join(f.networks) or "only Docker's built-in ones"
    if to_make:
        return Check(
            "Networks", True, f"network {', '.join(to_make)} will be made on {f.target} as {f.source} has it"
        )
    return Check("Networks", True, f"the networks the container is on exist on {f.target}: {listed}")


def volumes_new(f: Facts) -> Check | None:
    """A volume is copied into a new one only: never merged into what the target holds already."""
    if not f.volumes:
        return None
    if f.volumes_on_target:
        taken = ", ".join(f.volumes_on_target)
        which = (
            f"volumes {taken} already exist"
            if len(f.volumes_on_target) > 1
            else f"volume {taken} already exists"
        )
        return Check(
            "Volumes",
            False,
            f"{which} on {f.target}, and ferry copies a volume only into a new one, never into one "
            "holding data of its own: remove or rename it there, or choose another targetHost",
            "VolumeExists",
        )
    return Check(
        "Volumes", True, f"the volumes the container mounts are new to {f.target}: {', '.join(f.volumes)}"
    )


def post_copy_ready(f: Facts) -> Check | None:
    """spec.postCopy never falls back to a full copy: what it lacks fails the migration."""
    pc = f.post_copy
    if pc is None:
        return None
    lacking = []
    if pc.without_fast_path:
        lacking.append(
            f"post-copy needs the fast path on both hosts; without spec.fastPath: "
            f"{', '.join(pc.without_fast_path)}"
        )
    if pc.source_pipe_max_size < PIPE_MAX_NEEDED:
        lacking.append(
            f"fs.pipe-max-size on {f.source} is {pc.source_pipe_max_size}, CRIU's page server needs "
            f"{PIPE_MAX_NEEDED}: set it with `sysctl -w fs.pipe-max-size={PIPE_MAX_NEEDED}` (kernel-wide)"
        )
    if not pc.target_uffd.passed:
        lacking.append(
            f"`criu check --feature uffd-noncoop` fails on {f.target} ({_last_line(pc.target_uffd.output)}): "
            "its kernel cannot take lazy pages"
        )
    if pc.port is None:
        lacking.append(
            f"no TCP port from {PAGE_SERVER_PORTS.start} to {PAGE_SERVER_PORTS.stop - 1} is free on "
            f"{f.source} for the page server"
        )
    if lacking:
        return Check("PostCopy", False, "spec.postCopy: " + "; ".join(lacking), "PostCopyUnavailable")
    return Check(
        "PostCopy",
        True,
        f"post-copy can run: the fast path on both hosts, fs.pipe-max-size {pc.source_pipe_max_size} on "
        f"{f.source}, uffd-noncoop on {f.target}, port {pc.port} free on {f.source}",
    )


RULES: tuple[Callable[[Facts], Check | None], ...] = (
    ports_free,
    ports_single,
    target_disk_space,
    source_disk_space,
    target_memory,
    criu_works,
    other_users_checkpointable,
    cpu_compatible,
    architecture_matches,
    networks_exist,
    volumes_new,
    post_copy_ready,
)


def evaluate(f: Facts) -> list[Check]:
    return [check for rule in RULES if (check := rule(f)) is not None]


def problem(checks: list[Check]) -> Problem | None:
    """The Problem of the failed checks: the first one's reason, every one's message."""
    failed = [check for check in checks if not check.passed]
    if not failed:
        return None
    return Problem(failed[0].reason, "; ".join(check.message for check in failed))


def report(f: Facts, checks: list[Check]) -> dict[str, Any]:
    """status.preflight: the checks, and what a real run would move."""
    status: dict[str, Any] = {
        "checks": [{"name": c.name, "passed": c.passed, "message": c.message} for c in checks],
        "rootfsBytes": f.rootfs_bytes,
    }
    if f.image_bytes_to_copy is not None:
        status["imageToCopy"] = {"name": f.image, "bytes": f.image_bytes_to_copy}
    if f.live:
        status["expectedCheckpointBytes"] = f.checkpoint_bytes
    return status


def dry_run_summary(f: Facts, checks: list[Check]) -> str:
    moves = [f"copy its writable layer ({size_text(f.rootfs_bytes)})"]
    if f.image_bytes_to_copy is not None:
        moves.insert(0, f"copy image {f.image} ({size_text(f.image_bytes_to_copy)}) to {f.target}")
    if f.live:
        moves.append(f"checkpoint about {size_text(f.checkpoint_bytes)} of memory")
    return (
        f"dry run: {len(checks)} checks passed; a real run would {', '.join(moves)}; "
        "nothing was changed on any host"
    )


def enough(name: str, holds: bool, passed: str, failed: str, reason: str) -> Check:
    """A check of a resource: its message says what there is, and when short, what to do."""
    return Check(name, True, passed) if holds else Check(name, False, failed, reason)


def with_margin(size: int) -> int:
    """A tenth more, and RESERVE."""
    return size + size // 10 + RESERVE


def size_text(size: int) -> str:
    if size >= 1 << 30:
        return f"{size / (1 << 30):.1f} GiB"
    return f"{size / MiB:.1f} MiB"


_last_line = partial(last_line, empty="no output")  # what a check printed last
