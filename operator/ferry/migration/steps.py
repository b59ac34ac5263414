"""What every kind of migration (container, process) has: a phase -> step table and its two hosts."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable

from ferry.hosts.docker_host import DockerHost
from ferry.migration.context import HOST_ERRORS, MigrationContext, Problem
from ferry.migration.state import Phase

log = logging.getLogger(__name__)


class MigrationSteps(ABC):
    def __init__(self, context: MigrationContext) -> None:
        self.ctx = context
        self.state = context.state

    def steps(self) -> dict[Phase, Callable[[], None]]:
        return {
            Phase.PREPARING: self.prepare,
            Phase.CHECKPOINTING: self.checkpoint,
            Phase.TRANSFERRING: self.transfer,
            Phase.RESTORING: self.restore,
            Phase.VERIFYING: self.verify,
            Phase.ROLLING_BACK: self.roll_back,
        }

    @property
    def source(self) -> DockerHost:
        assert self.state.source_host is not None
        return self.ctx.host(self.state.source_host)

    @property
    def target(self) -> DockerHost:
        assert self.state.target_host is not None
        return self.ctx.host(self.state.target_host)

    @abstractmethod
    def prepare(self) -> None:
        """The workload still runs; a failure here leaves the source untouched."""

    @abstractmethod
    def checkpoint(self) -> None:
        """The freeze: downtime starts."""

    @abstractmethod
    def transfer(self) -> None: ...

    @abstractmethod
    def restore(self) -> None:
        """The workload runs on the target: downtime ends."""

    @abstractmethod
    def verify(self) -> None:
        """The target runs the restored state, not a fresh start; then clean up."""

    @abstractmethod
    def roll_back(self) -> None:
        """Bring the workload back on the source from the same checkpoint."""

    @abstractmethod
    def target_cleanup(self) -> None:
        """Remove what this migration made on the target."""

    @abstractmethod
    def release(self) -> None:
        """Close what was opened for a step that will not run."""

    @staticmethod
    def attempt(what: str, step: Callable[[], None]) -> list[str]:
        """Runs a step whose failure must not roll back (the target is the only copy by then);
        returns what was not done, and why, for the status message."""
        try:
            step()
        except (Problem, *HOST_ERRORS) as error:
            log.warning("%s failed: %s", what, error)
            return [f"{what} ({error})"]
        return []


def unfinished(steps: list[str]) -> str:
    """The tail of a status message listing what was not done."""
    return f"; not done: {'; '.join(steps)}" if steps else ""
