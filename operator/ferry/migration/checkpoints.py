"""How a container is frozen and brought back: one class per mechanism.

- `RuncCheckpoints`, the fast path: runc dumps the container into its Docker checkpoint directory,
  and ferry's runtime wrapper restores it on the target as Docker creates the twin. Hosts opt in.
- `DockerCheckpoints`: Docker's own checkpoint API, for hosts that did not opt in.
- `ColdStop`: strategy Cold; the freeze is a stop, the memory is dropped, the start is afresh.

Whatever the mechanism, a rollback restarts the source with Docker's `start --checkpoint` from
the same checkpoint directory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ferry.hosts.docker_engine import DockerError
from ferry.hosts.docker_host import DockerHost
from ferry.hosts.peer_stream import revoke_keys
from ferry.hosts.runc import WORK_ROOT, ArmedDump, FastPathUnavailable
from ferry.migration.container_files import ContainerFiles
from ferry.migration.context import MigrationContext
from ferry.migration.errors import HostError, Problem
from ferry.migration.phases import Phase

log = logging.getLogger(__name__)

NamedStep = tuple[str, Callable[[], None]]  # what it does, for a report of what was not done
CHECKPOINT_ATTEMPTS = 3
START_ATTEMPTS = 3  # Docker 20.10 + containerd 1.6 now and then fail a restore with "already exists"


def choose_mechanism(
    container: str, source: DockerHost, target: DockerHost, info: dict[str, Any], *, live: bool
) -> str:
    """The fast path ("runc") when both hosts opted in and the container allows it; "docker" otherwise."""
    if not live or source.runc is None or target.runc is None:
        return "docker"
    if info["HostConfig"].get("AutoRemove"):
        raise Problem(
            "AutoRemove",
            f"container '{container}' runs with --rm: Docker would delete it (and its only "
            "checkpoint) at the freeze; recreate it without --rm to move it live",
        )
    try:
        for host in (source, target):
            assert host.runc is not None
            host.runc.install_runtime()
    except FastPathUnavailable as error:
        raise Problem("FastPathUnavailable", str(error)) from None
    return "runc"


class DockerCheckpoints:
    """The Docker checkpoint API's way; the other mechanisms change what differs."""

    def __init__(
        self, ctx: MigrationContext, source: DockerHost, target: DockerHost, files: ContainerFiles
    ) -> None:
        self.ctx = ctx
        self.state = ctx.state
        self.source = source
        self.target = target
        self.files = files
        self._files_removed = False

    @property
    def name(self) -> str:
        assert self.state.checkpoint_name is not None
        return self.state.checkpoint_name

    @property
    def source_id(self) -> str:
        assert self.state.source_container_id is not None
        return self.state.source_container_id

    def prepare(self) -> None:
        """Before the freeze, once both containers exist."""

    def checkpoint(self) -> None:
        """The freeze; re-run after a restart, it takes a checkpoint only if there is none."""
        source_id, name = self.source_id, self.name
        if name in self.source.engine.list_checkpoints(source_id):
            return
        for attempt in range(1, CHECKPOINT_ATTEMPTS + 1):
            try:
                self.source.engine.create_checkpoint(source_id, name, exit=True)
                return
            except DockerError as error:
                if not self.source.engine.inspect_container(source_id)["State"]["Running"]:
                    raise Problem("CheckpointFailed", str(error)) from None
                # CRIU resumes the tasks when a dump fails: nothing stays frozen. A busy host
                # can fail the freeze itself ("unable to freeze"); that is worth another try.
                if attempt == CHECKPOINT_ATTEMPTS or "freeze" not in str(error):
                    raise Problem("CheckpointFailed", str(error), frozen=False) from None
                log.warning("checkpoint of %s failed (%s); trying again", self.state.workload, error)

    def start_target(self, container_id: str) -> None:
        start_from_checkpoint(self.target, container_id, self.name)

    def start_source(self, container_id: str) -> None:
        start_from_checkpoint(self.source, container_id, self.name)

    def missing_on_source(self) -> str | None:
        """Why the source cannot be restored from its checkpoint, if it cannot."""
        if self.name not in self.source.engine.list_checkpoints(self.source_id):
            return f"checkpoint {self.name} is gone from {self.source.name}"
        return None

    def after_rollback(self) -> list[NamedStep]:
        """What a rollback still does once the source runs, each named for a report."""
        source_id, name = self.source_id, self.name
        return [
            (
                f"removing checkpoint {name} on {self.source.name}",
                lambda: self.source.engine.delete_checkpoint(source_id, name),
            )
        ]

    def release(self) -> None:
        """Closes what was opened for a step that will not run; once the Migration ended, removes
        what the migration left on the hosts."""
        if self.state.phase.is_terminal and not self.ctx.request.spec.dry_run:  # a dry run made nothing
            try:
                self.ended()
            except HostError as error:
                log.warning("could not remove the fast path's files of %s: %s", self.ctx.request.uid, error)

    def ended(self) -> None:
        self.remove_files()

    def remove_files(self) -> None:
        """The work files on the source (the volumes' listings, the runc dump's), stream keys and a
        prepared restore on the target (once): direct streams serve every mechanism, so their keys
        go whatever the path."""
        if self._files_removed:
            return
        if self.state.mechanism is not None:  # chosen once the preflight passed: files may exist since
            self.source.files.remove_tree(f"{WORK_ROOT}/{self.ctx.request.uid}")
        if self.state.target_host is not None:
            target, uid = self.target, self.ctx.request.uid
            if target.peer is not None:
                revoke_keys(target.ssh, target.peer.authorized_keys, f"ferry:{uid}:")
            if target.runc is not None and self.state.target_container_id is not None:
                target.runc.forget_restore(self.state.target_container_id)
        self._files_removed = True


class RuncCheckpoints(DockerCheckpoints):
    """runc checkpoints; the twin, created with ferry's runtime, restores as Docker starts it."""

    def __init__(
        self, ctx: MigrationContext, source: DockerHost, target: DockerHost, files: ContainerFiles
    ) -> None:
        super().__init__(ctx, source, target, files)
        self._armed: ArmedDump | None = None

    @property
    def dump_work(self) -> str:
        return f"{WORK_ROOT}/{self.ctx.request.uid}/dump"

    def prepare(self) -> None:
        """Before the freeze: empty dump directories, the target's restore prepared, the dump armed."""
        source, target, paths = self.source, self.target, self.files.paths()
        assert source.runc is not None and target.runc is not None
        assert self.state.target_container_id is not None
        runtime = source.engine.inspect_container(self.source_id)["HostConfig"].get("Runtime") or "runc"
        try:
            root = source.runc.runc_root(self.source_id, runtime)
        except FastPathUnavailable as error:
            raise Problem("FastPathUnavailable", str(error)) from None
        source.runc.prepare_dump(self.dump_work, paths.source_checkpoint)
        target.runc.prepare_restore(self.state.target_container_id, paths.target_checkpoint)
        self._armed = source.runc.armed_checkpoint(
            root, self.source_id, paths.source_checkpoint, self.dump_work
        )
        # Docker must not restart what runc will end. Set aside here, out of the freeze window, and
        # given back on every outcome but success (the twin carries the original).
        source.engine.set_restart_policy(self.source_id, {"Name": "no"})

    def checkpoint(self) -> None:
        """runc dumps the container into its Docker checkpoint directory (so that Docker's own restore
        can roll back), with its restart policy set aside: Docker must not restart what runc ended."""
        source, source_id = self.source, self.source_id
        assert source.runc is not None
        armed, self._armed = self._armed, None
        if armed is None:  # resumed after a restart: a dump may be complete, still running, or not begun
            dump = source.runc.dump_state(self.dump_work)
            if dump == "running":
                source.runc.wait_for_dump(self.dump_work, timeout=600)
                dump = source.runc.dump_state(self.dump_work)
            if dump == "complete":
                return
            if not source.engine.inspect_container(source_id)["State"]["Running"]:
                raise Problem(
                    "CheckpointLost",
                    f"{self.state.workload} stopped on {source.name} without a complete dump",
                )
            self.prepare()
            armed, self._armed = self._armed, None
            assert armed is not None
        try:
            armed.fire()
        except HostError as error:
            if source.engine.inspect_container(source_id)["State"]["Running"]:
                # CRIU resumes the tasks when a dump fails: nothing stays frozen.
                self.give_back_restart_policy()
                raise Problem("CheckpointFailed", str(error), frozen=False) from None
            raise Problem("CheckpointFailed", str(error)) from None

    def start_target(self, container_id: str) -> None:
        """A plain start: ferry's runtime turns containerd's create into `runc restore`."""
        try:
            self.target.engine.start(container_id)
        except DockerError as error:
            assert self.target.runc is not None
            detail = self.target.runc.restore_log(container_id)
            raise Problem("RestoreFailed", f"{error}; CRIU: {detail or 'no log'}") from None

    def missing_on_source(self) -> str | None:
        """The checkpoint directory exists from before the freeze: only a dump runc marked complete
        can bring the source back."""
        assert self.source.runc is not None
        if self.source.runc.dump_state(self.dump_work) != "complete":
            return f"the dump of {self.state.workload} on {self.source.name} never completed"
        return super().missing_on_source()

    def give_back_restart_policy(self) -> None:
        if self.state.restart_policy is not None:
            self.source.engine.set_restart_policy(self.source_id, self.state.restart_policy)

    def after_rollback(self) -> list[NamedStep]:
        return [
            (f"giving back the restart policy of {self.source_id[:12]}", self.give_back_restart_policy),
            *super().after_rollback(),
        ]

    def release(self) -> None:
        if self._armed is not None:
            self._armed.close()
            self._armed = None
        super().release()

    def ended(self) -> None:
        if self.state.phase is Phase.FAILED and self.state.source_container_id:
            self.give_back_restart_policy()
        super().ended()


class ColdStop(DockerCheckpoints):
    """Strategy Cold: the freeze is a stop (the memory is dropped), the start is afresh."""

    def checkpoint(self) -> None:
        self.source.engine.stop(self.source_id)

    def start_target(self, container_id: str) -> None:
        self.target.engine.start(container_id)

    def start_source(self, container_id: str) -> None:
        self.source.engine.start(container_id)

    def missing_on_source(self) -> str | None:
        return None  # a stopped container restarts from its writable layer, which stays

    def after_rollback(self) -> list[NamedStep]:
        return []


def start_from_checkpoint(host: DockerHost, container_id: str, checkpoint: str) -> None:
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            host.engine.start(container_id, checkpoint=checkpoint)
            return
        except DockerError as error:
            if "already exists" not in str(error) or attempt == START_ATTEMPTS:
                raise Problem("RestoreFailed", str(error)) from None
            log.warning("restore on %s hit containerd's 'already exists'; retrying", host.name)
