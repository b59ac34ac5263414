"""How a container is frozen and brought back: one class per mechanism.

- `RuncCheckpoints`, the fast path: runc dumps the container into its Docker checkpoint directory,
  and ferry's runtime wrapper restores it on the target as Docker creates the twin. Hosts opt in.
- `PostCopyCheckpoints`, the fast path with spec.postCopy: the memory stays on the source and is
  pulled by the target after it runs (CRIU lazy pages; docs/postcopy.md).
- `DockerCheckpoints`: Docker's own checkpoint API, for hosts that did not opt in.
- `ColdStop`: strategy Cold; the freeze is a stop, the memory is dropped, the start is afresh.

Whatever the mechanism but post-copy, a rollback restarts the source with Docker's `start
--checkpoint` from the same checkpoint directory; post-copy's checkpoint holds no memory, so its
source is kept (stopped) instead and resumed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import cached_property
from typing import Any

from ferry.api import SpecError
from ferry.hosts import facts, processes
from ferry.hosts.docker_engine import DockerError
from ferry.hosts.docker_host import DockerHost
from ferry.hosts.peer_stream import withdraw_stream_keys
from ferry.hosts.runc import WORK_ROOT, ArmedDump, FastPathUnavailable, memory_for_images
from ferry.migration.container_files import ContainerFiles
from ferry.migration.context import MigrationContext
from ferry.migration.errors import HostError, Problem
from ferry.migration.phases import Phase
from ferry.migration.state import milliseconds, now

log = logging.getLogger(__name__)

NamedStep = tuple[str, Callable[[], None]]  # what it does, for a report of what was not done
CHECKPOINT_ATTEMPTS = 3
# Docker 20.10 + containerd 1.6 now and then fail a restore with "already exists", and Docker 26.1 +
# containerd 1.7 every time it comes within about 0.1 s of a checkpoint of the same content (the
# content store is still committing it): tried again after 0.25, 0.5, 1 and 2 s.
START_ATTEMPTS = 5
START_RETRY_SECONDS = 0.25


def choose_mechanism(
    container: str,
    source: DockerHost,
    target: DockerHost,
    info: dict[str, Any],
    *,
    live: bool,
    post_copy: bool = False,
) -> str:
    """The fast path ("runc", "runc-postcopy" with spec.postCopy) when both hosts opted in and the
    container allows it; "docker" otherwise. Post-copy never falls back to a full copy."""
    if post_copy and (source.runc is None or target.runc is None):
        lacking = ", ".join(host.name for host in (source, target) if host.runc is None)
        raise Problem(
            "PostCopyUnavailable",
            f"spec.postCopy needs the fast path on both hosts; without spec.fastPath: {lacking}",
        )
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
    return "runc-postcopy" if post_copy else "runc"


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

    def settle_source(self) -> None:
        """In a rollback, once the target is gone and before the source is judged: makes the source
        ready to run again, or raises a Problem saying why it must not (the rollback then waits)."""

    def wait_for_memory(self) -> None:
        """In Verifying, before the source may go: the target holds all of the workload's memory."""

    def count_cut_connections(self) -> None:
        """Once the checkpoint's copy runs again (on either host): records the TCP connections the
        checkpoint cut, where CRIU's own log is at hand (Docker keeps its log to itself)."""

    def remove_target_checkpoint(self) -> None:
        """In Verifying, unless spec.keepCheckpoint: the images on the target, read by the restore."""
        assert self.state.target_container_id is not None
        self.target.engine.delete_checkpoint(self.state.target_container_id, self.name)

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
            except (HostError, SpecError) as error:  # a host unreachable, or its DockerHost gone
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
                withdraw_stream_keys(self.source.ssh, target.ssh, target.peer, uid)
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
        root = self.runc_root
        if self.files.images_apart and self.state.checkpoint_in_memory is None:  # not again in the freeze
            self.prepare_receive()
        source.runc.prepare_dump(self.dump_work, paths.source_checkpoint)
        self._armed = self.arm(root, paths.source_checkpoint, paths.target_checkpoint)
        # Docker must not restart what runc will end. Set aside here, out of the freeze window, and
        # given back on every outcome but success (the twin carries the original).
        source.engine.set_restart_policy(self.source_id, {"Name": "no"})

    def prepare_receive(self) -> None:
        """The target's directory for the images: in memory when the target has room for them and
        for the restored workload (the preflight's estimate of the checkpoint), else on its disk."""
        assert self.target.runc is not None
        expected = int((self.state.preflight or {}).get("expectedCheckpointBytes") or 0)
        size = memory_for_images(expected, facts.available_memory_bytes(self.target))
        in_memory = self.target.runc.prepare_receive(self.ctx.request.uid, size)
        self.state.checkpoint_in_memory = in_memory

    @cached_property
    def runc_root(self) -> str:
        """runc's --root of the source container (looked up once per run: the fence is in the freeze)."""
        assert self.source.runc is not None
        info = self.source.engine.inspect_container(self.source_id)
        try:
            return self.source.runc.runc_root(self.source_id, info["HostConfig"].get("Runtime") or "runc")
        except FastPathUnavailable as error:
            raise Problem("FastPathUnavailable", str(error)) from None

    def arm(self, root: str, images: str, target_images: str) -> ArmedDump:
        """The target's restore prepared, then the dump armed."""
        assert self.source.runc is not None and self.target.runc is not None
        assert self.state.target_container_id is not None
        self.target.runc.prepare_restore(self.state.target_container_id, target_images)
        return self.source.runc.armed_checkpoint(root, self.source_id, images, self.dump_work)

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
        for attempt in range(1, CHECKPOINT_ATTEMPTS + 1):
            try:
                armed.fire()
                return
            except HostError as error:
                if not source.engine.inspect_container(source_id)["State"]["Running"]:
                    raise Problem("CheckpointFailed", str(error)) from None
                # CRIU resumes the tasks when a dump fails: nothing stays frozen. What it met may
                # pass (a socket changing state as the freeze came): armed again and tried again.
                if attempt == CHECKPOINT_ATTEMPTS:
                    self.give_back_restart_policy()
                    raise Problem("CheckpointFailed", str(error), frozen=False) from None
                log.warning(
                    "the dump of %s failed, and it still runs: once more (%s)", self.state.workload, error
                )
                self.prepare()
                armed, self._armed = self._armed, None
                assert armed is not None

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

    def count_cut_connections(self) -> None:
        assert self.source.runc is not None
        counted = self.source.runc.connections_cut(self.dump_work)
        if counted is not None:  # else the dump's files are gone (a resumed run): keep what was counted
            self.state.metrics.connections_cut = counted

    def give_back_restart_policy(self) -> None:
        if self.state.restart_policy is not None:
            self.source.engine.set_restart_policy(self.source_id, self.state.restart_policy)

    def remove_target_checkpoint(self) -> None:
        if self.files.images_apart:
            assert self.target.runc is not None
            self.target.runc.release_received(self.ctx.request.uid)
        else:
            super().remove_target_checkpoint()

    def after_rollback(self) -> list[NamedStep]:
        return [
            (f"giving back the restart policy of {self.source_id[:12]}", self.give_back_restart_policy),
            ("counting the connections the checkpoint cut", self.count_cut_connections),
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

    def remove_files(self) -> None:
        """Also the target's work files: the received images (their tmpfs first) and post-copy's
        lazy-pages directory."""
        if not self._files_removed and self.state.target_host is not None and self.target.runc is not None:
            self.target.runc.release_received(self.ctx.request.uid)
            self.target.files.remove_tree(f"{WORK_ROOT}/{self.ctx.request.uid}")
        super().remove_files()


class PostCopyCheckpoints(RuncCheckpoints):
    """Post-copy (spec.postCopy; docs/postcopy.md): runc dumps all but the private memory, which the
    source's CRIU then serves on a page server until the target, running already, pulled every page.

    The dump runs with --leave-running, so its end never decides the source's fate: the source is
    stopped (SIGSTOP, the stop fence) before the target starts, and ferry resumes it (SIGCONT) on a
    rollback or removes it once every page arrived. Docker cannot restore a lazy checkpoint."""

    @property
    def lazy_work(self) -> str:
        """The target's lazy-pages daemon's work directory, the wrapper's restore's too."""
        return f"{WORK_ROOT}/{self.ctx.request.uid}/lazy"

    @property
    def page_server(self) -> tuple[str, int]:
        """The source's address (its DockerHost's spec.address: the page server binds to it only), port."""
        assert self.state.post_copy is not None and self.state.source_host is not None
        return self.ctx.hosts.spec(self.state.source_host).address, self.state.post_copy.port

    def arm(self, root: str, images: str, target_images: str) -> ArmedDump:
        assert self.source.runc is not None and self.target.runc is not None
        assert self.state.target_container_id is not None
        self.target.runc.prepare_lazy_restore(self.state.target_container_id, target_images, self.lazy_work)
        address, port = self.page_server
        return self.source.runc.armed_lazy_checkpoint(
            root, self.source_id, images, self.dump_work, address, port
        )

    def start_target(self, container_id: str) -> None:
        """lazy-pages up on the target, the stop fence on the source, then the twin's start."""
        assert self.source.runc is not None and self.target.runc is not None
        address, port = self.page_server
        self.target.runc.start_lazy_pages(self.files.paths().target_checkpoint, self.lazy_work, address, port)
        self.source.runc.signal_container(self.runc_root, self.source_id, "STOP")
        super().start_target(container_id)

    def checkpoint(self) -> None:
        """As the fast path's; a dump that failed to say it is ready, or whose session broke, is
        ended, so that it cannot hold the source frozen while its page server waits."""
        try:
            super().checkpoint()
        except Problem:
            assert self.source.runc is not None
            self.source.runc.abort_lazy_dump(self.dump_work)
            raise

    def wait_for_memory(self) -> None:
        """Waits until lazy-pages moved every page and the source's dump ended well, and says so in
        the status before the source may go. A pull that failed stops both ends and rolls back."""
        assert self.source.runc is not None and self.target.runc is not None
        post_copy = self.state.post_copy
        assert post_copy is not None
        if post_copy.pages_arrived:
            return
        timeout = max(60.0, self.ctx.request.spec.timeout_seconds - self.elapsed_seconds())
        pulled = self.target.runc.wait_for_lazy_pages(self.lazy_work, timeout)
        served = (
            self.source.runc.wait_for_lazy_dump(self.dump_work, 60) if pulled.complete else "not waited for"
        )
        if not pulled.complete or served != "0":
            self.target.runc.stop_lazy_pages(self.lazy_work)
            self.source.runc.abort_lazy_dump(self.dump_work)
            moved = ", ".join(f"{m} of {t}" for m, t in pulled.counts) or "no count"
            raise Problem(
                "PostCopyInterrupted",
                f"lazy-pages on {self.target.name} ended with {pulled.status} ({moved} pages), the page "
                f"server on {self.source.name} with {served}",
            )
        metrics = self.state.metrics
        metrics.lazy_pages = pulled.pages
        if self.state.frozen_at is not None and metrics.downtime_ms is not None:
            metrics.post_copy_ms = max(0, milliseconds(self.state.frozen_at, now()) - metrics.downtime_ms)
        post_copy.pages_arrived = True
        self.ctx.save()

    def elapsed_seconds(self) -> float:
        return milliseconds(self.state.admitted_at or self.state.start_time or now(), now()) / 1000

    def settle_source(self) -> None:
        """Ends the target's lazy-pages and the source's CRIU (the twin is gone already). Before the
        target ran, or once every page arrived, the source is resumed (SIGCONT ends the stop fence).
        After the target ran with pages missing neither copy is whole: the source, stopped at its
        state of the freeze, is the user's to resume (losing what the target did since); the
        rollback waits, saying so, and ends once the user resumed it."""
        assert self.source.runc is not None and self.target.runc is not None
        self.target.runc.stop_lazy_pages(self.lazy_work)
        self.source.runc.abort_lazy_dump(self.dump_work)
        post_copy = self.state.post_copy
        if not self.target_ran() or (post_copy is not None and post_copy.pages_arrived):
            self.source.runc.signal_container(self.runc_root, self.source_id, "CONT")
            return
        pid = int(self.source.engine.inspect_container(self.source_id)["State"]["Pid"])
        if pid and processes.is_stopped(self.source.ssh, pid):
            raise Problem(
                "PostCopyInterrupted",
                f"post-copy was interrupted after {self.state.workload} ran on {self.target.name} "
                f"({self.state.message}): its memory there was incomplete, so that container was "
                f"removed; the source container {self.source_id[:12]} on {self.source.name} is kept "
                "stopped (SIGSTOP) at its state of the freeze. ferry does not resume it: that would "
                f"lose what the workload did on {self.target.name} since. To accept that, resume it "
                "by hand (`kill -CONT` its processes; `docker top` lists them): this rollback then "
                "ends RolledBack",
            )

    def target_ran(self) -> bool:
        """The restore step ended: the workload ran on the target (Verifying was entered)."""
        return any(phase is Phase.VERIFYING for phase, _ in self.state.transitions)

    def missing_on_source(self) -> str | None:
        return (
            f"the source container {self.source_id[:12]} on {self.source.name} no longer runs and a "
            "post-copy checkpoint holds no memory to restore it from"
        )


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
            time.sleep(START_RETRY_SECONDS * 2 ** (attempt - 1))
