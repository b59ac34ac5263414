"""Migration of one Docker container, Live (CRIU: memory included) or Cold (stop, move the
writable layer, start afresh): the step behind each phase.

Each step looks at the real state first (does the checkpoint exist? does the target run?), so a
step re-run after an operator crash is safe. A failure before the freeze leaves the source alone
and removes what was made on the target; a failure after it restores the source from the same
checkpoint, so the workload is never lost and never runs twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ferry.api import Strategy, Transfer
from ferry.hosts import processes
from ferry.hosts.docker_engine import DockerError
from ferry.hosts.docker_host import DockerHost
from ferry.hosts.peer_stream import revoke_keys
from ferry.hosts.runc import RUNTIME_NAME, WORK_ROOT, ArmedCommand, FastPathUnavailable
from ferry.hosts.streams import Stream
from ferry.migration import preflight
from ferry.migration.container_config import clone_create_body
from ferry.migration.container_data import VolumeCopy, bind_sources, local_volumes, published_ports
from ferry.migration.context import MigrationContext
from ferry.migration.errors import HostError, Problem
from ferry.migration.phases import Outcome, Phase
from ferry.migration.state import format_duration, milliseconds, now
from ferry.migration.steps import MigrationSteps, unfinished

log = logging.getLogger(__name__)

MIGRATION_LABEL = "ferry.dev/migration"
STOPPED = ("created", "exited")  # what strategy: Cold moves as it is, stopped
CHECKPOINT_ATTEMPTS = 3
START_ATTEMPTS = 3  # Docker 20.10 + containerd 1.6 now and then fail a restore with "already exists"


@dataclass(frozen=True)
class TransferPaths:
    source_checkpoint: str
    target_checkpoint: str
    source_upper: str
    target_upper: str


class ContainerMigration(MigrationSteps):
    def __init__(self, context: MigrationContext) -> None:
        super().__init__(context)
        container = context.request.spec.workload.container
        assert container is not None
        self.container = container
        self._transfer_paths: TransferPaths | None = None
        self.live = context.request.spec.strategy is Strategy.LIVE
        self.shared = context.request.spec.transfer is Transfer.SHARED_DIRECTORY
        self._volume_copies: list[VolumeCopy] | None = None
        self._volumes_since: str | None = None  # after a restart: every volume is sent whole
        self._relays: dict[str, Stream] | None = None
        self._armed_checkpoint: ArmedCommand | None = None
        self._fast_path_files_removed = False

    # -- Preparing: the workload still runs; any failure here leaves the source untouched.

    def prepare(self) -> Outcome | None:
        source, target = self.source, self.target
        info = source.engine.find_container(self.container)
        if info is None:
            raise Problem(
                "ContainerNotFound", f"container '{self.container}' does not exist on host {source.name}"
            )
        self._check_movable(info["State"]["Status"])
        if self.live and info["Config"].get("Tty"):
            raise Problem(
                "TTYNotSupported",
                f"container '{self.container}' has a TTY, which CRIU cannot checkpoint; "
                "use strategy: Cold to move it without its memory",
            )
        self.state.source_was_running = info["State"]["Status"] == "running"
        dry_run = preflight.run(self.ctx, source, target, info, live=self.live)  # a Problem says what to fix
        if dry_run is not None:
            return dry_run  # it passed, and nothing is made
        for host in (source, target) if self.live else ():
            host.criu.ensure_options()
        if self.state.mechanism is None:
            self.state.mechanism = self._choose_mechanism(info)
        self.state.source_container_id = info["Id"]
        if self.live:
            self.state.fingerprint_pid = int(info["State"]["Pid"])
            self.state.fingerprint_stack = processes.stack_address(source.ssh, self.state.fingerprint_pid)
        self.ctx.save()

        self._check_bind_mounts(info)
        if self.shared:
            self._check_shared_directory()
        self._copy_image(info)
        self.state.target_container_id = self._create_target_container(info)
        self.state.checkpoint_name = f"ferry-{self.ctx.request.uid}"
        self._copy_volumes_before_the_freeze()
        self._relays = self._arm_relays()
        if self.fast:
            self._prepare_fast_path()
        return None

    def _check_movable(self, status: str) -> None:
        """Live moves a running container; Cold also a stopped one, which stays stopped."""
        if status == "running" or (status in STOPPED and not self.live):
            return
        fix = (
            "start it, or use strategy: Cold to move it as it is, stopped"
            if status in STOPPED
            else "only a running container, or with strategy: Cold a stopped one, can be moved"
        )
        raise Problem(
            "ContainerNotRunning",
            f"container '{self.container}' on {self.source.name} is {status}, not running; {fix}",
        )

    @property
    def fast(self) -> bool:
        """Checkpoint by runc and restore by ferry's runtime wrapper, past Docker's checkpoint store."""
        return self.state.mechanism == "runc"

    def _choose_mechanism(self, info: dict[str, Any]) -> str:
        """The fast path when both hosts opted in and the container allows it; Docker's API otherwise."""
        source, target = self.source, self.target
        if not self.live or source.runc is None or target.runc is None:
            return "docker"
        if info["HostConfig"].get("AutoRemove"):
            raise Problem(
                "AutoRemove",
                f"container '{self.container}' runs with --rm: Docker would delete it (and its only "
                "checkpoint) at the freeze; recreate it without --rm to move it live",
            )
        try:
            for host in (source, target):
                assert host.runc is not None
                host.runc.install_runtime()
        except FastPathUnavailable as error:
            raise Problem("FastPathUnavailable", str(error)) from None
        self.state.restart_policy = dict(info["HostConfig"].get("RestartPolicy") or {"Name": "no"})
        return "runc"

    def _prepare_fast_path(self) -> None:
        """Before the freeze: empty dump directories, the target's restore prepared, the dump armed."""
        source, target, paths = self.source, self.target, self._paths()
        assert source.runc is not None and target.runc is not None
        runtime = source.engine.inspect_container(self._source_id())["HostConfig"].get("Runtime") or "runc"
        try:
            root = source.runc.runc_root(self._source_id(), runtime)
        except FastPathUnavailable as error:
            raise Problem("FastPathUnavailable", str(error)) from None
        source.runc.prepare_dump(self._dump_work(), paths.source_checkpoint)
        target.runc.prepare_restore(self._target_id(), paths.target_checkpoint)
        self._armed_checkpoint = source.runc.armed_checkpoint(
            root, self._source_id(), paths.source_checkpoint, self._dump_work()
        )
        # Docker must not restart what runc will end. Set aside here, out of the freeze window, and
        # given back on every outcome but success (the twin carries the original).
        source.engine.set_restart_policy(self._source_id(), {"Name": "no"})

    def _dump_work(self) -> str:
        return f"{WORK_ROOT}/{self.ctx.request.uid}/dump"

    def _check_bind_mounts(self, info: dict[str, Any]) -> None:
        for host_path, container_path in bind_sources(info):
            if not self.target.files.exists(host_path):
                raise Problem(
                    "BindMountMissing",
                    f"bind mount {host_path} (at {container_path} in the container) does not exist on "
                    f"{self.target.name}; create it there first",
                )

    def _check_shared_directory(self) -> None:
        """Both hosts name a shared directory, and a file written on one shows on the other."""
        source_dir, target_dir = self._shared_directories()
        probe = f"ferry-{self.ctx.request.uid}/probe"
        self.source.files.write(f"{source_dir}/{probe}", self.ctx.request.uid)
        if self.target.files.read(f"{target_dir}/{probe}") != self.ctx.request.uid:
            raise Problem(
                "NotShared",
                f"{source_dir} on {self.source.name} and {target_dir} on {self.target.name} are not the same "
                "directory (a file written on one is not on the other)",
            )

    def _shared_directories(self) -> tuple[str, str]:
        assert self.state.source_host is not None and self.state.target_host is not None
        found = [
            self.ctx.hosts.spec(name).shared_directory
            for name in (self.state.source_host, self.state.target_host)
        ]
        if found[0] is None or found[1] is None:
            raise Problem(
                "NoSharedDirectory",
                "transfer: SharedDirectory needs spec.sharedDirectory on both DockerHosts",
            )
        return found[0], found[1]

    def _copy_volumes_before_the_freeze(self) -> None:
        """The bulk of each named volume moves while the workload runs; the freeze sends what changed."""
        self._volumes_since = self.source.trees.clock()
        moved = sum(
            self.source.trees.relay(
                v.source_dir, self.target.trees, v.target_dir, fresh=False, armed=False
            ).fire()
            for v in self._volumes()
        )
        self.state.metrics.volume_bytes = moved

    def _volumes(self) -> list[VolumeCopy]:
        if self._volume_copies is None:
            source_info = self.source.engine.inspect_container(self._source_id())
            target_info = self.target.engine.inspect_container(self._target_id())
            self._volume_copies = local_volumes(source_info, target_info)
        return self._volume_copies

    def _copy_image(self, info: dict[str, Any]) -> None:
        image_id: str = info["Image"]
        if self.target.engine.has_image(image_id):
            self.state.metrics.image_transfer_ms = 0
            return
        # Save by name when the name still points at this image, so the target gets its tags too.
        name = info["Config"]["Image"]
        reference = name if _image_id(self.source, name) == image_id else image_id
        started = now()
        counted = _CountingStream(self.source.engine.save_image(reference))
        self.target.engine.load_image(counted)
        if not self.target.engine.has_image(image_id):
            raise Problem("ImageCopyFailed", f"image {reference} did not arrive on {self.target.name}")
        self.state.metrics.image_transfer_ms = milliseconds(started, now())
        self.state.metrics.image_bytes = counted.bytes
        log.info("copied image %s to %s: %d bytes", reference, self.target.name, counted.bytes)

    def _create_target_container(self, info: dict[str, Any]) -> str:
        name = info["Name"].lstrip("/")
        uid = self.ctx.request.uid
        existing = self.target.engine.find_container(name)
        if existing is not None:
            if existing["Config"].get("Labels", {}).get(MIGRATION_LABEL) == uid:
                return str(existing["Id"])  # made by this migration before a restart
            raise Problem("NameTaken", f"host {self.target.name} already has a container named '{name}'")
        image_name, image_id = info["Config"]["Image"], info["Image"]
        image = image_name if _image_id(self.target, image_name) == image_id else image_id
        body = clone_create_body(info, image=image, labels={MIGRATION_LABEL: uid})
        if self.fast:
            body["HostConfig"]["Runtime"] = RUNTIME_NAME  # its create restores; otherwise it is runc
        return self.target.engine.create_container(name, body)

    # -- Checkpointing: the freeze; downtime starts.

    def checkpoint(self) -> None:
        if not self.live:
            self.source.engine.stop(self._source_id())  # Cold: the freeze is a stop; memory is dropped
            return
        if self.fast:
            self._checkpoint_with_runc()
            return
        source_id = self._source_id()
        name = self._checkpoint_name()
        if name not in self.source.engine.list_checkpoints(source_id):
            for attempt in range(1, CHECKPOINT_ATTEMPTS + 1):
                try:
                    self.source.engine.create_checkpoint(source_id, name, exit=True)
                    break
                except DockerError as error:
                    if not self.source.engine.inspect_container(source_id)["State"]["Running"]:
                        raise Problem("CheckpointFailed", str(error)) from None
                    # CRIU resumes the tasks when a dump fails: nothing stays frozen. A busy host
                    # can fail the freeze itself ("unable to freeze"); that is worth another try.
                    if attempt == CHECKPOINT_ATTEMPTS or "freeze" not in str(error):
                        raise Problem("CheckpointFailed", str(error), frozen=False) from None
                    log.warning("checkpoint of %s failed (%s); trying again", self.container, error)

    def _checkpoint_with_runc(self) -> None:
        """runc dumps the container into its Docker checkpoint directory (so that Docker's own restore
        can roll back), with its restart policy set aside: Docker must not restart what runc ended."""
        source, source_id, work = self.source, self._source_id(), self._dump_work()
        assert source.runc is not None
        armed, self._armed_checkpoint = self._armed_checkpoint, None
        if armed is None:  # resumed after a restart: a dump may be complete, still running, or not begun
            dump = source.runc.dump_state(work)
            if dump == "running":
                source.runc.wait_for_dump(work, timeout=600)
                dump = source.runc.dump_state(work)
            if dump == "complete":
                return
            if not source.engine.inspect_container(source_id)["State"]["Running"]:
                raise Problem(
                    "CheckpointLost",
                    f"{self.state.workload} stopped on {source.name} without a complete dump",
                )
            self._prepare_fast_path()
            armed, self._armed_checkpoint = self._armed_checkpoint, None
            assert armed is not None
        try:
            armed.fire()
        except HostError as error:
            if source.engine.inspect_container(source_id)["State"]["Running"]:
                # CRIU resumes the tasks when a dump fails: nothing stays frozen.
                self._give_back_restart_policy(source, source_id)
                raise Problem("CheckpointFailed", str(error), frozen=False) from None
            raise Problem("CheckpointFailed", str(error)) from None

    def _give_back_restart_policy(self, host: DockerHost, container_id: str) -> None:
        if self.state.restart_policy is not None:
            host.engine.set_restart_policy(container_id, self.state.restart_policy)

    # -- Transferring: checkpoint images and the writable layer go to the target.

    def transfer(self) -> None:
        relays = self._relays or self._arm_relays()
        self._relays = None
        with ThreadPoolExecutor(max_workers=4) as pool:
            moved = {kind: pool.submit(relay.fire) for kind, relay in relays.items()}
            if self.shared:
                self._transfer_through_shared_directory()
            for kind, future in moved.items():
                if kind == "rootfs":
                    self.state.metrics.rootfs_bytes = future.result()
                elif kind == "checkpoint":
                    self.state.metrics.checkpoint_bytes = future.result()
                else:
                    self.state.metrics.volume_bytes = (self.state.metrics.volume_bytes or 0) + future.result()
        self.state.transfer = self.ctx.request.spec.transfer.value

    def _transfer_through_shared_directory(self) -> None:
        """The source writes the checkpoint and writable layer into the shared directory; the target
        reads them from there: no byte crosses the operator."""
        paths, (source_shared, target_shared) = self._paths(), self._shared_directories()
        staging = f"ferry-{self.ctx.request.uid}"
        copies = (
            ("checkpoint", paths.source_checkpoint, paths.target_checkpoint, True),
            ("rootfs", paths.source_upper, paths.target_upper, False),
        )
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(
                pool.map(
                    lambda c: self.source.trees.copy_local(
                        c[1], f"{source_shared}/{staging}/{c[0]}", fresh=True
                    ),
                    copies,
                )
            )
            list(
                pool.map(
                    lambda c: self.target.trees.copy_local(
                        f"{target_shared}/{staging}/{c[0]}", c[2], fresh=c[3]
                    ),
                    copies,
                )
            )
        self.state.metrics.checkpoint_bytes = self.source.files.directory_bytes(
            f"{source_shared}/{staging}/checkpoint"
        )
        self.state.metrics.rootfs_bytes = self.source.files.directory_bytes(
            f"{source_shared}/{staging}/rootfs"
        )

    def _arm_relays(self) -> dict[str, Stream]:
        """Starts the copies (checkpoint, writable layer, what changed in volumes), held until fired."""
        source, target, paths = self.source, self.target, self._paths()
        tag = self.ctx.request.uid
        relays: dict[str, Stream] = {
            f"volume:{v.name}": source.trees.relay(
                v.source_dir,
                target.trees,
                v.target_dir,
                fresh=False,
                armed=True,
                changed_since=self._volumes_since,
                tag=tag,
            )
            for v in self._volumes()
        }
        if self.shared:
            return relays
        relays["rootfs"] = source.trees.relay(
            paths.source_upper, target.trees, paths.target_upper, fresh=False, armed=True, tag=tag
        )
        if self.live:
            relays["checkpoint"] = source.trees.relay(
                paths.source_checkpoint,
                target.trees,
                paths.target_checkpoint,
                fresh=True,
                armed=True,
                tag=tag,
            )
        return relays

    def release(self) -> None:
        """Closes streams armed for a transfer that will not happen; once the migration has ended,
        removes what the fast path left on the hosts (dump work files, stream keys, prepared restore)."""
        for relay in (self._relays or {}).values():
            relay.close()
        self._relays = None
        if self._armed_checkpoint is not None:
            self._armed_checkpoint.close()
            self._armed_checkpoint = None
        if self.state.phase.is_terminal and not self.ctx.request.spec.dry_run:  # a dry run made nothing
            try:
                if self.fast and self.state.phase is Phase.FAILED and self.state.source_container_id:
                    self._give_back_restart_policy(self.source, self.state.source_container_id)
                self._remove_fast_path_files()
            except HostError as error:
                log.warning("could not remove the fast path's files of %s: %s", self.ctx.request.uid, error)

    def _remove_fast_path_files(self) -> None:
        """Dump work files on the source, stream keys and a prepared restore on the target (once).
        Direct streams also serve migrations through Docker's API, so their keys go whatever the path."""
        if self._fast_path_files_removed:
            return
        uid = self.ctx.request.uid
        if self.fast and self.state.source_host is not None:
            self.source.files.remove_tree(f"{WORK_ROOT}/{uid}")
        if self.state.target_host is not None:
            target = self.target
            if target.peer is not None:
                revoke_keys(target.ssh, target.peer.authorized_keys, f"ferry:{uid}:")
            if target.runc is not None and self.state.target_container_id is not None:
                target.runc.forget_restore(self.state.target_container_id)
        self._fast_path_files_removed = True

    def _paths(self) -> TransferPaths:
        """Where the checkpoint and writable layers live on both hosts; looked up before the freeze."""
        if self._transfer_paths is None:
            source, target = self.source, self.target
            source_id, target_id, name = self._source_id(), self._target_id(), self._checkpoint_name()
            self._transfer_paths = TransferPaths(
                source_checkpoint=source.engine.checkpoint_dir(source_id, name),
                target_checkpoint=target.engine.checkpoint_dir(target_id, name),
                source_upper=_upper_dir(source.engine.inspect_container(source_id)),
                target_upper=_upper_dir(target.engine.inspect_container(target_id)),
            )
        return self._transfer_paths

    # -- Restoring: the target starts from the checkpoint; downtime ends.

    def restore(self) -> None:
        target_id = self._target_id()
        if not self.target.engine.inspect_container(target_id)["State"]["Running"]:
            self.state.restore_requested = True
            self.ctx.save()
            self._start(self.target, target_id)

    # -- Verifying: the target runs the restored memory, not a fresh start; then clean up.

    def verify(self) -> Outcome:
        """The source is removed last: until then a failure rolls back to it; from then on, the
        target is the only copy, so what is left to do can only be reported, never rolled back."""
        self._check_restored(self.target, self._target_id())
        source_id = self._source_id()
        source_there = self.source.engine.find_container(source_id) is not None
        not_done = []
        for what, step in self._steps_before_removing_the_source():
            if source_there:
                step()
            else:  # resumed after the source was removed
                not_done += self.attempt(what, step)
        if source_there:
            remove = f"removing the source container {source_id[:12]} on {self.source.name}"
            not_done += self.attempt(remove, lambda: self.source.engine.remove_container(source_id))
        not_done += self.attempt("removing the fast path's files", self._remove_fast_path_files)
        downtime = self.state.metrics.downtime_ms or 0
        outcome = (
            f"{self.state.workload} runs on {self.target.name}; downtime {format_duration(downtime)}"
            if self.state.source_was_running is not False
            else f"{self.state.workload} is on {self.target.name}, stopped as it was on {self.source.name}"
        )
        return Outcome(outcome + unfinished(not_done), reason="Migrated")

    def _redirect_source_ports(self) -> None:
        """Keeps the old address working: the source host forwards the published ports to the target."""
        info = self.target.engine.inspect_container(self._target_id())
        ports = published_ports(info)
        assert self.state.target_host is not None
        target_address = self.ctx.hosts.spec(self.state.target_host).address
        self.source.netfilter.forward_ports(ports, target_address, redirect_tag(self.ctx.request.uid))
        self.state.redirect = ", ".join(
            f"{self.source.name}:{port}/{proto} -> {target_address}" for proto, port in ports
        )

    def _check_restored(self, host: DockerHost, container_id: str) -> None:
        if self.state.source_was_running is False:
            return  # moved stopped: it stays stopped, with no memory to recognise
        state = host.engine.inspect_container(container_id)["State"]
        if not state["Running"]:
            raise Problem(
                "NotRunning", f"the container on {host.name} is {state['Status']} after the restore"
            )
        expected = self.state.fingerprint_stack
        if expected is None:
            return
        found = processes.stack_address(host.ssh, int(state["Pid"]))
        if found != expected:
            raise Problem(
                "StartedFromScratch",
                f"the container on {host.name} runs but did not resume from the checkpoint "
                f"(stack at {found}, expected {expected}): Docker started it afresh",
            )

    # -- RollingBack: bring the workload back on the source from the same checkpoint.

    def roll_back(self) -> Outcome:
        """Brings the workload back on the source; the target is removed first, but only once the
        source is known to be restorable (if it is not, the target is the only copy and stays)."""
        cause = self.state.message
        source_id = self._source_id()
        unrestorable = self._why_the_source_cannot_come_back(source_id)
        if unrestorable is not None:
            return self._keep_the_target(cause, unrestorable)
        if self.state.target_container_id is not None:
            self._remove_target_before_rollback()
        source_state = self._wait_until_settled(self.source, source_id)
        if not source_state["Running"]:
            self._start(self.source, source_id)
        self.state.metrics.downtime_ms = milliseconds(self._frozen_at(), now())
        self._check_restored(self.source, source_id)
        not_done = []
        if self.fast:
            not_done += self.attempt(
                f"giving back the restart policy of {source_id[:12]}",
                lambda: self._give_back_restart_policy(self.source, source_id),
            )
        if self.live:
            name = self._checkpoint_name()
            not_done += self.attempt(
                f"removing checkpoint {name} on {self.source.name}",
                lambda: self.source.engine.delete_checkpoint(source_id, name),
            )
        not_done += self.attempt("removing the fast path's files", self._remove_fast_path_files)
        return self.rolled_back(cause, not_done)

    def _remove_target_before_rollback(self) -> None:
        """The target must not run before the source does; a target never started cannot."""
        try:
            self.target_cleanup()
        except HostError as error:
            if self.state.restore_requested:
                raise  # it may run there: retried, and never restarted on the source until we know
            log.warning("leaving the never-started container on %s: %s", self.state.target_host, error)

    def target_cleanup(self) -> None:
        """Removes what this migration made on the target (the container and its checkpoint)."""
        if self.state.target_container_id is not None:
            self.target.engine.remove_container(self.state.target_container_id)

    def _start(self, host: DockerHost, container_id: str) -> None:
        if self.state.source_was_running is False:
            return  # a stopped container moves stopped, and a rollback leaves it so
        if self.fast and host is self.target:
            self._restore_with_runtime_wrapper(host, container_id)
        elif self.live:
            start_from_checkpoint(host, container_id, self._checkpoint_name())
        else:
            host.engine.start(container_id)

    def _restore_with_runtime_wrapper(self, host: DockerHost, container_id: str) -> None:
        """A plain start: ferry's runtime turns containerd's create into `runc restore`."""
        try:
            host.engine.start(container_id)
        except DockerError as error:
            assert host.runc is not None
            detail = host.runc.restore_log(container_id)
            raise Problem("RestoreFailed", f"{error}; CRIU: {detail or 'no log'}") from None

    def _wait_until_settled(
        self, host: DockerHost, container_id: str, timeout: float = 30.0
    ) -> dict[str, Any]:
        """After `checkpoint --exit` Docker shows the container paused for a few seconds."""
        deadline = time.monotonic() + timeout
        while True:
            state: dict[str, Any] = host.engine.inspect_container(container_id)["State"]
            if not state.get("Paused") or time.monotonic() > deadline:
                return state
            time.sleep(0.2)

    def _source_id(self) -> str:
        assert self.state.source_container_id is not None
        return self.state.source_container_id

    def _target_id(self) -> str:
        assert self.state.target_container_id is not None
        return self.state.target_container_id

    def _checkpoint_name(self) -> str:
        assert self.state.checkpoint_name is not None
        return self.state.checkpoint_name

    def _frozen_at(self) -> Any:
        assert self.state.frozen_at is not None
        return self.state.frozen_at

    def _steps_before_removing_the_source(self) -> list[tuple[str, Callable[[], None]]]:
        """What Verifying does while the source can still take over, each named for a report."""
        spec, steps = self.ctx.request.spec, []
        if spec.redirect:
            steps.append((f"forwarding the ports of {self.source.name}", self._redirect_source_ports))
        if self.live and not spec.keep_checkpoint:
            target_id, name = self._target_id(), self._checkpoint_name()
            steps.append(
                (
                    f"removing checkpoint {name} on {self.target.name}",
                    lambda: self.target.engine.delete_checkpoint(target_id, name),
                )
            )
        if self.shared:
            steps.append((f"removing the staging directory on {self.source.name}", self._remove_staging))
        return steps

    def _remove_staging(self) -> None:
        self.source.files.remove_tree(f"{self._shared_directories()[0]}/ferry-{self.ctx.request.uid}")

    def _why_the_source_cannot_come_back(self, source_id: str) -> str | None:
        info = self.source.engine.find_container(source_id)
        if info is None:
            return f"the source container {source_id[:12]} is gone from {self.source.name}"
        name = self._checkpoint_name()
        if (
            self.live
            and not info["State"]["Running"]
            and name not in self.source.engine.list_checkpoints(source_id)
        ):
            return f"checkpoint {name} is gone from {self.source.name}"
        return None

    def _keep_the_target(self, cause: str, unrestorable: str) -> Outcome:
        """The source cannot come back: the target is the only copy. Kept if it runs; waited for if not."""
        target_id = self.state.target_container_id
        info = self.target.engine.find_container(target_id) if target_id is not None else None
        if info is None or not (info["State"]["Running"] or self.state.source_was_running is False):
            raise Problem(
                "NowhereToRun",
                f"{unrestorable}, and no container of this migration runs on {self.target.name}: "
                f"{self.state.workload} runs nowhere",
            )
        return self.target_kept(cause, unrestorable)


def start_from_checkpoint(host: DockerHost, container_id: str, checkpoint: str) -> None:
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            host.engine.start(container_id, checkpoint=checkpoint)
            return
        except DockerError as error:
            if "already exists" not in str(error) or attempt == START_ATTEMPTS:
                raise Problem("RestoreFailed", str(error)) from None
            log.warning("restore on %s hit containerd's 'already exists'; retrying", host.name)


def redirect_tag(uid: str) -> str:
    return f"ferry:{uid}"


def _image_id(host: DockerHost, name: str) -> str | None:
    try:
        return str(host.engine.inspect_image(name)["Id"])
    except (DockerError, LookupError):
        return None


def _upper_dir(info: dict[str, Any]) -> str:
    driver = info.get("GraphDriver", {})
    upper = driver.get("Data", {}).get("UpperDir")
    if driver.get("Name") != "overlay2" or not upper:
        raise Problem(
            "UnsupportedStorage", f"storage driver {driver.get('Name')} is not supported (overlay2 only)"
        )
    return str(upper)


class _CountingStream:
    def __init__(self, chunks: Any) -> None:
        self._chunks = chunks
        self.bytes = 0

    def __iter__(self) -> Any:
        for chunk in self._chunks:
            self.bytes += len(chunk)
            yield chunk
