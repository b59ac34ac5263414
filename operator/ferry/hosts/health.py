"""Whether a host can take part in a migration: reached over SSH, Docker answering with its
experimental features (Docker's checkpoint API needs them), CRIU >= 4.2 whose `criu check` passes,
and, when the host opted into the fast path, the parts that path needs. Reads only.

Each problem found is a `Fault` naming the part it breaks, so that a caller can tell a host that
cannot checkpoint (still fine for a Cold move) from one that cannot be reached at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ferry.hosts import facts
from ferry.hosts.criu import Criu
from ferry.hosts.docker_engine import DockerError, NotFound
from ferry.hosts.docker_host import DockerHost
from ferry.hosts.errors import HostError

CRIU_MIN_VERSION = (4, 2)


class Part(StrEnum):
    """What a fault breaks; a migration needs some of these on both of its hosts."""

    SSH = "SSH"
    DOCKER = "Docker"
    CHECKPOINTS = "Docker checkpoints"  # the Engine's checkpoint API: experimental features
    CRIU = "CRIU"
    FAST_PATH = "fast path"


@dataclass(frozen=True)
class Fault:
    part: Part
    reason: str  # one CamelCase word, as a condition's reason
    message: str  # what is wrong, and what to do about it


@dataclass(frozen=True)
class Health:
    """What a probe found: the host is ready when it found no fault."""

    faults: tuple[Fault, ...] = ()
    kernel: str = ""
    docker_version: str = ""
    criu_version: str = ""
    fast_path: dict[str, Any] | None = None  # the runtime wrapper, when the host opted into the fast path

    @property
    def ready(self) -> bool:
        return not self.faults

    @property
    def message(self) -> str:
        """Every fault, or what was found to work."""
        if self.faults:
            return "; ".join(fault.message for fault in self.faults)
        fast_path = ", and the fast path's parts" if self.fast_path is not None else ""
        return (
            f"reachable: Docker {self.docker_version} with its experimental features, "
            f"CRIU {self.criu_version} whose `criu check` passes{fast_path}"
        )

    def breaking(self, parts: frozenset[Part]) -> list[Fault]:
        return [fault for fault in self.faults if fault.part in parts]


def unreachable(error: Exception) -> Health:
    return Health(faults=(Fault(Part.SSH, "Unreachable", str(error)),))


def probe(host: DockerHost) -> Health:
    """SSH first (without it nothing else can be asked), then Docker, CRIU and the fast path."""
    try:
        kernel = facts.kernel_release(host)
        return _probe_reached(host, kernel)
    except HostError as error:
        return unreachable(error)


def _probe_reached(host: DockerHost, kernel: str) -> Health:
    faults: list[Fault] = []
    docker_version, docker_answers = "", False
    try:
        docker_version = str(host.engine.version().get("Version", ""))
        experimental = bool(host.engine.info().get("ExperimentalBuild"))
        docker_answers = True
    except (DockerError, NotFound) as error:
        faults.append(Fault(Part.DOCKER, "DockerUnavailable", f"Docker does not answer: {error}"))
    else:
        if not experimental:
            faults.append(
                Fault(
                    Part.CHECKPOINTS,
                    "DockerNotExperimental",
                    'Docker runs without "experimental": true, which its checkpoints need: set it in '
                    "daemon.json and restart dockerd",
                )
            )
    criu_version = host.criu.version()
    faults += _criu_faults(host.criu, criu_version)
    fast_path = None
    if host.runc is not None and docker_answers:  # what the wrapper's registration says is Docker's
        fast_path = host.runc.describe()
        faults += [
            Fault(Part.FAST_PATH, "FastPathUnavailable", f"fast path: {lacking} (or drop spec.fastPath)")
            for lacking in host.runc.missing()
        ]
    return Health(tuple(faults), kernel, docker_version, criu_version or "", fast_path)


def _criu_faults(criu: Criu, version: str | None) -> list[Fault]:
    wanted = ".".join(map(str, CRIU_MIN_VERSION))
    if version is None:
        message = f"CRIU is not installed (criu --version failed): install CRIU >= {wanted} on the PATH"
        return [Fault(Part.CRIU, "CRIUMissing", message)]
    if _numbers(version) < CRIU_MIN_VERSION:
        return [Fault(Part.CRIU, "CRIUTooOld", f"CRIU {version} is older than {wanted}: install a newer one")]
    check = criu.check()
    if not check.passed:
        message = f"`criu check` fails ({check.last_line}): fix what it names (kernel features, CRIU's build)"
        return [Fault(Part.CRIU, "CRIUCheckFailed", message)]
    return []


def _numbers(version: str) -> tuple[int, ...]:
    """'4.1.1' -> (4, 1, 1); '4.2-rc1' -> (4, 2, 1): enough to compare with CRIU_MIN_VERSION."""
    return tuple(int(number) for number in re.findall(r"\d+", version))
