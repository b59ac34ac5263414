"""What a migration step works with: its request, its state, the hosts, and where status goes."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from ferry.api import DockerHostSpec, MigrationSpec
from ferry.hosts.docker_host import DockerHost
from ferry.migration.admission import ActiveMigration
from ferry.migration.errors import LostCharge
from ferry.migration.phases import Phase
from ferry.migration.state import MigrationState


class HostDirectory(Protocol):
    """The DockerHosts the operator knows, and warm connections to them."""

    def names(self) -> list[str]: ...

    def spec(self, name: str) -> DockerHostSpec: ...

    def ready(self, name: str) -> bool | None:
        """What the host's last probe said (its DockerHost's Ready condition); None: never probed."""
        ...

    def connect(self, name: str) -> DockerHost: ...


class StatusSink(Protocol):
    def save(self, state: MigrationState, generation: int | None) -> None: ...


class Coordination(Protocol):
    """What a migration must know of the world beyond its own hosts."""

    admission_lock: threading.Lock

    def active_migrations(self) -> list[ActiveMigration]: ...

    def cancel_requested(self) -> bool:
        """The Migration is being deleted."""
        ...

    def in_charge(self) -> bool:
        """This operator still holds the Migration's lease."""
        ...


@dataclass(frozen=True)
class MigrationRequest:
    namespace: str
    name: str
    uid: str
    generation: int | None
    spec: MigrationSpec
    created: datetime  # its creationTimestamp: its place in the line for a slot
    pauses: Mapping[Phase, float] = field(default_factory=dict)  # test hooks: sleep before a phase


class MigrationContext:
    def __init__(
        self,
        request: MigrationRequest,
        state: MigrationState,
        hosts: HostDirectory,
        sink: StatusSink,
        coordination: Coordination,
    ) -> None:
        self.request = request
        self.state = state
        self.hosts = hosts
        self.sink = sink
        self.coordination = coordination
        self._connected: dict[str, DockerHost] = {}

    def host(self, name: str) -> DockerHost:
        """The host's connection, looked up once per run (not once per step: that costs downtime)."""
        if name not in self._connected:
            self._connected[name] = self.hosts.connect(name)
        return self._connected[name]

    def ensure_in_charge(self) -> None:
        if not self.coordination.in_charge():
            raise LostCharge(
                f"{self.request.namespace}/{self.request.name} is not ours to drive any more "
                "(its lease was lost, or not renewed in time)"
            )

    def save(self) -> None:
        self.ensure_in_charge()
        if self.state.down:
            self.state.metrics.count_in_freeze(status_writes=1)
        self.sink.save(self.state, self.request.generation)

    def advance(self, phase: Phase, message: str = "", reason: str = "") -> None:
        self.state.enter(phase, message, reason)
        self.save()
