"""What every kind of migration (container, process) has: a step for each phase of the table in
ferry.migration.phases, and its two hosts."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable

from ferry.api import DockerHostSpec
from ferry.hosts.docker_host import DockerHost
from ferry.migration import pending
from ferry.migration.context import MigrationContext
from ferry.migration.errors import HostError, Problem
from ferry.migration.phases import Outcome, Phase
from ferry.migration.progress import ProgressReport

log = logging.getLogger(__name__)


class MigrationSteps(ABC):
    def __init__(self, context: MigrationContext) -> None:
        self.ctx = context
        self.state = context.state
        self.progress = ProgressReport(context)

    @property
    def source(self) -> DockerHost:
        assert self.state.source_host is not None
        return self.ctx.host(self.state.source_host)

    @property
    def target(self) -> DockerHost:
        assert self.state.target_host is not None
        return self.ctx.host(self.state.target_host)

    def host_specs(self) -> tuple[DockerHostSpec, DockerHostSpec]:
        """The source's and the target's DockerHost specs, as the operator sees them now."""
        assert self.state.source_host is not None and self.state.target_host is not None
        return self.ctx.hosts.spec(self.state.source_host), self.ctx.hosts.spec(self.state.target_host)

    def admit(self) -> None:
        """Finds the workload and waits for a slot on both hosts (the same for every kind)."""
        pending.admit(self.ctx)

    @abstractmethod
    def workload_problem(self) -> Problem | None:
        """Why the workload this run would act on may not move (ferry.migration.workload_rules), or
        is not this migration's, if so: Preparing's decision, made again when a run starts past
        Pending, since a status can be patched to skip Preparing or to name other containers. Reads only."""

    @abstractmethod
    def prepare(self) -> Outcome | None:
        """The workload still runs; a failure here leaves the source untouched."""

    @abstractmethod
    def checkpoint(self) -> Outcome | None:
        """The freeze: downtime starts."""

    @abstractmethod
    def transfer(self) -> None: ...

    @abstractmethod
    def restore(self) -> None:
        """The workload runs on the target: downtime ends."""

    @abstractmethod
    def verify(self) -> Outcome:
        """The target runs the restored state, not a fresh start; then clean up."""

    @abstractmethod
    def roll_back(self) -> Outcome:
        """Bring the workload back on the source from the same checkpoint."""

    def made_on_target(self) -> bool:
        """Whether Preparing got as far as making the target's twin (a failure then cleans it up)."""
        return self.state.target_container_id is not None

    @abstractmethod
    def target_cleanup(self) -> None:
        """Remove what this migration made on the target."""

    @abstractmethod
    def release(self) -> None:
        """Close what was opened for a step that will not run."""

    def rolled_back(self, cause: str, not_done: list[str]) -> Outcome:
        """How a rollback ends: the workload runs on the source again, for the reason it failed."""
        reason = self.state.reason if self.state.reason != Phase.ROLLING_BACK.value else "RolledBack"
        message = f"{self.state.workload} runs again on {self.source.name} after: {cause}"
        return Outcome(message + unfinished(not_done), reason)

    def target_kept(self, cause: str, unrestorable: str) -> Outcome:
        """How a rollback ends when the source cannot come back: on the target, which runs."""
        return Outcome(
            f"{self.state.workload} stays on {self.target.name}, where it runs: the rollback (after: "
            f"{cause}) cannot bring it back, as {unrestorable}",
            reason="TargetKept",
            ending=Phase.SUCCEEDED,
        )

    @staticmethod
    def attempt(what: str, step: Callable[[], None]) -> list[str]:
        """Runs a step whose failure must not roll back (the target is the only copy by then);
        returns what was not done, and why, for the status message."""
        try:
            step()
        except (Problem, HostError) as error:
            log.warning("%s failed: %s", what, error)
            return [f"{what} ({error})"]
        return []


def unfinished(steps: list[str]) -> str:
    """The tail of a status message listing what was not done."""
    return f"; not done: {'; '.join(steps)}" if steps else ""
