"""Migration of one Docker container, Live (CRIU: memory included) or Cold (stop, move the
writable layer, start afresh): the step behind each phase, made of the parts in
ferry.migration.image_copy, .container_files, .checkpoints and .redirect.

Each step looks at the real state first (does the checkpoint exist? does the target run?), so a
step re-run after an operator crash is safe. A failure before the freeze leaves the source alone
and removes what was made on the target; a failure after it restores the source from the same
checkpoint, so the workload is never lost and never runs twice.
"""

from __future__ import annotations

import logging
import time
from functools import cached_property
from typing import Any

from ferry.api import Strategy
from ferry.hosts import processes
from ferry.hosts.docker_host import DockerHost
from ferry.hosts.runc import RUNTIME_NAME
from ferry.migration import preflight
from ferry.migration.checkpoints import (
    ColdStop,
    DockerCheckpoints,
    NamedStep,
    PostCopyCheckpoints,
    RuncCheckpoints,
    choose_mechanism,
)
from ferry.migration.container_config import MIGRATION_LABEL, clone_create_body
from ferry.migration.container_files import ContainerFiles
from ferry.migration.container_networks import TargetNetworks
from ferry.migration.context import MigrationContext
from ferry.migration.continuity import ClientContinuity
from ferry.migration.errors import HostError, Problem
from ferry.migration.image_copy import copy_image, image_reference
from ferry.migration.phases import Outcome, Phase
from ferry.migration.state import format_duration, milliseconds, now
from ferry.migration.steps import MigrationSteps, unfinished
from ferry.migration.twin_rules import linked_host_path_problem, twin_problem
from ferry.migration.workload_rules import container_problem

log = logging.getLogger(__name__)

STOPPED = ("created", "exited")  # what strategy: Cold moves as it is, stopped


class ContainerMigration(MigrationSteps):
    def __init__(self, context: MigrationContext, *, network_owner: str | None = None) -> None:
        """`network_owner`: the uid that labels the networks made on the target (this migration's
        unless it moves as one of a group, whose members share them)."""
        super().__init__(context)
        container = context.request.spec.workload.container
        assert container is not None
        self.container = container
        self.live = context.request.spec.strategy is Strategy.LIVE
        self.network_owner = network_owner or context.request.uid
        self._checked: dict[str, Any] = {}  # the container as check() found it, for make()

    @cached_property
    def files(self) -> ContainerFiles:
        return ContainerFiles(self.ctx, self.source, self.target, live=self.live)

    @cached_property
    def networks(self) -> TargetNetworks:
        return TargetNetworks(self.source, self.target, self.network_owner)

    @cached_property
    def continuity(self) -> ClientContinuity:
        return ClientContinuity(self.ctx, self.source, self.target)

    @cached_property
    def checkpoints(self) -> DockerCheckpoints:
        """The mechanism, once chosen (in Preparing): read back from the status after a restart."""
        kinds: dict[str | None, type[DockerCheckpoints]] = {
            "runc": RuncCheckpoints,
            "runc-postcopy": PostCopyCheckpoints,
        }
        kind = kinds.get(self.state.mechanism, DockerCheckpoints) if self.live else ColdStop
        return kind(self.ctx, self.source, self.target, self.files)

    # -- Preparing: the workload still runs; any failure here leaves the source untouched.

    def prepare(self) -> Outcome | None:
        dry_run = self.check()
        if dry_run is None:
            self.make()
            self.hold_clients()
        return dry_run

    def check(self) -> Outcome | None:
        """Everything that may refuse the move, before anything is changed on either host: the
        container, the rules, the preflight (whose report ends a dry run, returned here)."""
        source, target = self.source, self.target
        info = source.engine.find_container(self.container)
        if info is None:
            raise Problem(
                "ContainerNotFound", f"container '{self.container}' does not exist on host {source.name}"
            )
        self._authorize(info)
        self._check_movable(info["State"]["Status"])
        if self.live and info["Config"].get("Tty"):
            raise Problem(
                "TTYNotSupported",
                f"container '{self.container}' has a TTY, which CRIU cannot checkpoint; "
                "use strategy: Cold to move it without its memory",
            )
        self.state.source_was_running = info["State"]["Status"] == "running"
        self._checked = info
        return preflight.run(self.ctx, source, target, info, live=self.live)  # a Problem says what to fix

    def make(self) -> None:
        """What the move needs on the target, made while the container still runs."""
        source, target, info = self.source, self.target, self._checked
        for host in (source, target) if self.live else ():
            host.criu.ensure_options()
        if self.state.mechanism is None:
            self.state.mechanism = choose_mechanism(
                self.container,
                source,
                target,
                info,
                live=self.live,
                post_copy=self.ctx.request.spec.post_copy,
            )
            if self.state.mechanism != "docker":  # set aside at the freeze, given back unless it succeeds
                self.state.restart_policy = dict(info["HostConfig"].get("RestartPolicy") or {"Name": "no"})
        self.state.source_container_id = info["Id"]
        if self.live:
            self.state.fingerprint_pid = int(info["State"]["Pid"])
            self.state.fingerprint_stack = processes.stack_address(source.ssh, self.state.fingerprint_pid)
        self.ctx.save()

        self.files.check(info)
        copy_image(source, target, info, self.state.metrics, self.progress)
        self.state.target_container_id = self._create_target_container(info)
        self.state.checkpoint_name = f"ferry-{self.ctx.request.uid}"
        self.files.copy_volumes_before_the_freeze(self.state.metrics, self.progress)
        self.files.arm()
        self.checkpoints.prepare()

    def hold_clients(self) -> None:
        """The last of Preparing: new connections wait from here until the workload runs again."""
        if self.live:
            self.continuity.hold(self._checked)

    def _authorize(self, info: dict[str, Any]) -> None:
        """Before anything is made: both hosts select the container, the target allows what its twin
        would get, and the host paths lead where the target allows once its symbolic links are followed."""
        target = self.host_specs()[1]
        problem = self._rules_problem(info) or linked_host_path_problem(
            self.container, info, target, self.target.files.resolve
        )
        if problem is not None:
            raise problem

    def workload_problem(self) -> Problem | None:
        """The containers the status names, where they exist: each must be this migration's (the
        source the container the spec names, the twin labelled with this Migration's uid), since a
        patched status must not get another container frozen, started or removed; and the rules
        must allow them."""
        named = (
            (self.source, self.state.source_container_id, "sourceContainerID", self._is_the_source),
            (self.target, self.state.target_container_id, "targetContainerID", self._is_the_twin),
        )
        for host, container_id, field, belongs in named:
            info = host.engine.find_container(container_id) if container_id is not None else None
            if info is None:
                continue
            if not belongs(info):
                return Problem(
                    "StatusTampered",
                    f"status.{field} names container {info['Name'].lstrip('/')} on {host.name}, "
                    "which is not this migration's",
                )
            if (problem := self._rules_problem(info)) is not None:
                return problem
        return None

    def _is_the_source(self, info: dict[str, Any]) -> bool:
        return info["Name"].lstrip("/") == self.container or str(info["Id"]).startswith(self.container)

    def _is_the_twin(self, info: dict[str, Any]) -> bool:
        return (info["Config"].get("Labels") or {}).get(MIGRATION_LABEL) == self.ctx.request.uid

    def _rules_problem(self, info: dict[str, Any]) -> Problem | None:
        hosts = self.host_specs()
        labels = info["Config"].get("Labels") or {}
        return container_problem(self.ctx.request.namespace, self.container, labels, hosts) or twin_problem(
            self.container, info, hosts[1]
        )

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

    def _create_target_container(self, info: dict[str, Any]) -> str:
        name = info["Name"].lstrip("/")
        uid = self.ctx.request.uid
        existing = self.target.engine.find_container(name)
        if existing is not None:
            if self._is_the_twin(existing):
                return str(existing["Id"])  # made by this migration before a restart
            raise Problem("NameTaken", f"host {self.target.name} already has a container named '{name}'")
        body = clone_create_body(
            info, image=image_reference(self.target, info), labels={MIGRATION_LABEL: uid}
        )
        if isinstance(self.checkpoints, RuncCheckpoints):
            body["HostConfig"]["Runtime"] = RUNTIME_NAME  # its create restores; otherwise it is runc
        try:
            self.networks.make(info)
            self.files.make_target_volumes(info)
            return self.target.engine.create_container(name, body)
        except (HostError, Problem):
            self.attempt(f"removing the volumes made on {self.target.name}", self.files.remove_target_volumes)
            self.attempt(f"removing the networks made on {self.target.name}", self.networks.remove)
            raise

    # -- Checkpointing: the freeze; downtime starts.

    def checkpoint(self) -> None:
        self.checkpoints.checkpoint()
        self.progress.start("transfer", self._expected_transfer_bytes(), phase=Phase.TRANSFERRING)

    def _expected_transfer_bytes(self) -> int | None:
        """What the transfer should move, as the preflight estimated it (read from memory: no call
        inside the freeze); volumes send only what changed, not known beforehand."""
        report = self.state.preflight or {}
        estimates = ("rootfsBytes", "expectedCheckpointBytes") if self.live else ("rootfsBytes",)
        if not all(key in report for key in estimates):
            return None
        return sum(int(report[key]) for key in estimates)

    # -- Transferring: checkpoint images, the writable layer and what changed in volumes.

    def transfer(self) -> None:
        self.progress.moved(self.files.transfer(self.state.metrics))
        self.state.transfer = self.ctx.request.spec.transfer.value

    def release(self) -> None:
        """Closes streams armed for a transfer that will not happen; once the migration has ended,
        removes what it left on the hosts (dump work files, stream keys, prepared restore)."""
        if self.state.source_host is None or self.state.target_host is None:
            return  # it never got as far as its hosts
        made = vars(self)  # the parts this run made (cached properties); others have nothing open
        if "files" in made:
            self.files.release()
        if "checkpoints" in made or self.state.phase.is_terminal:
            self.checkpoints.release()
        if self.state.phase.is_terminal:
            try:
                self.continuity.release()  # a Migration that failed before its workload was frozen
            except HostError as error:
                log.warning("could not let the held connections go (they go at the hold's end): %s", error)

    # -- Restoring: the target starts from the checkpoint; downtime ends.

    def restore(self) -> None:
        target_id = self._target_id()
        if not self.target.engine.inspect_container(target_id)["State"]["Running"]:
            self.state.restore_requested = True
            self.ctx.save()
            if self.state.source_was_running is not False:  # a stopped container moves stopped
                self.checkpoints.start_target(target_id)
        self.continuity.cut_over()

    # -- Verifying: the target runs the restored memory, not a fresh start; then clean up.

    def verify(self) -> Outcome:
        """The source is removed last: until then a failure rolls back to it; from then on, the
        target is the only copy, so what is left to do can only be reported, never rolled back.
        With post-copy, not before every page arrived."""
        source_there = self.source_exists()
        not_done = self.verify_target(source_there) + self.remove_source(source_there)
        return Outcome(self.verified() + unfinished(not_done), reason="Migrated")

    def source_exists(self) -> bool:
        """False when a resumed Verifying finds the source removed already."""
        return self.source.engine.find_container(self._source_id()) is not None

    def verify_target(self, can_roll_back: bool) -> list[str]:
        """What Verifying does while the source can still take over: a failure rolls back to it.
        Once it cannot (a run resumed after the source was removed), each step is only attempted:
        returns what was not done."""
        self.checkpoints.wait_for_memory()
        self._check_restored(self.target, self._target_id())
        self.checkpoints.count_cut_connections()
        not_done = []
        for what, step in self._steps_before_removing_the_source():
            if can_roll_back:
                step()
            else:
                not_done += self.attempt(what, step)
        return not_done

    def remove_source(self, source_there: bool) -> list[str]:
        """The last of Verifying: from here on the target is the only copy, so a failure is only reported."""
        not_done = []
        if source_there:
            source_id = self._source_id()
            remove = f"removing the source container {source_id[:12]} on {self.source.name}"
            not_done += self.attempt(remove, lambda: self.source.engine.remove_container(source_id))
        not_done += self.attempt("removing the fast path's files", self.checkpoints.remove_files)
        return not_done

    def verified(self) -> str:
        """Where the workload is now, for the status message."""
        if self.state.source_was_running is False:
            return f"{self.state.workload} is on {self.target.name}, stopped as it was on {self.source.name}"
        downtime = format_duration(self.state.metrics.downtime_ms or 0)
        return f"{self.state.workload} runs on {self.target.name}; downtime {downtime}"

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
        """Brings the workload back on the source; if the source cannot come back, the target is the
        only copy and stays."""
        cause = self.state.message
        unrestorable = self.source_unrestorable()
        if unrestorable is not None:
            return self.keep_target(cause, unrestorable)
        return self.rolled_back(cause, self.roll_back_onto_source())

    def roll_back_onto_source(self) -> list[str]:
        """The target is removed first, then the source runs again from the same checkpoint;
        returns what was not done once it runs."""
        source_id = self._source_id()
        self.continuity.roll_back()
        if self.state.target_container_id is not None:
            self._remove_target_before_rollback()
        self.checkpoints.settle_source()
        source_state = self._wait_until_settled(self.source, source_id)
        if not source_state["Running"] and self.state.source_was_running is not False:
            self.checkpoints.start_source(source_id)
        assert self.state.frozen_at is not None
        self.state.metrics.downtime_ms = milliseconds(self.state.frozen_at, now())
        self._check_restored(self.source, source_id)
        not_done = self.attempt(f"letting held connections go on {self.source.name}", self.continuity.release)
        # Once the source runs: a volume that cannot go must not keep the workload down.
        not_done += self.attempt(
            f"removing the volumes copied to {self.target.name}", self.files.remove_target_volumes
        )
        not_done += self.attempt(f"removing the networks made on {self.target.name}", self.networks.remove)
        if self.files.shared:  # it holds the workload's memory
            not_done += self.attempt(
                f"removing the staging directory on {self.source.name}", self.files.remove_staging
            )
        for what, step in self.checkpoints.after_rollback():
            not_done += self.attempt(what, step)
        not_done += self.attempt("removing the fast path's files", self.checkpoints.remove_files)
        return not_done

    def _remove_target_before_rollback(self) -> None:
        """The target must not run before the source does; a target never started cannot."""
        try:
            self._remove_target_container()
        except HostError as error:
            if self.state.restore_requested:
                raise  # it may run there: retried, and never restarted on the source until we know
            log.warning("leaving the never-started container on %s: %s", self.state.target_host, error)

    def target_cleanup(self) -> None:
        """Removes what this migration made for the target: the container (its checkpoint and
        anonymous volumes with it), the named volumes and networks made for it, and a staging
        directory."""
        self._remove_target_container()
        self.files.remove_target_volumes()
        self.networks.remove()
        if self.files.shared:
            self.files.remove_staging()

    def _remove_target_container(self) -> None:
        """Only a container this migration made: whatever else the status names stays."""
        target_id = self.state.target_container_id
        info = self.target.engine.find_container(target_id) if target_id is not None else None
        if info is None:
            return
        if not self._is_the_twin(info):
            log.warning("not removing %s on %s: not made by this migration", target_id, self.target.name)
            return
        self.target.engine.remove_container(info["Id"], volumes=True)

    def source_unrestorable(self) -> str | None:
        """Why the source cannot run again, if it cannot."""
        source_id = self._source_id()
        info = self.source.engine.find_container(source_id)
        if info is None:
            return f"the source container {source_id[:12]} is gone from {self.source.name}"
        if info["State"]["Running"]:
            return None
        return self.checkpoints.missing_on_source()

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

    def _steps_before_removing_the_source(self) -> list[NamedStep]:
        """What Verifying does while the source can still take over, each named for a report."""
        spec, steps = self.ctx.request.spec, []
        if spec.redirect and self.state.redirect is None:  # the cutover (Restoring) did not get to it
            steps.append((f"forwarding the ports of {self.source.name}", self.continuity.cut_over))
        if self.live and not spec.keep_checkpoint:
            name = f"removing checkpoint {self.checkpoints.name} on {self.target.name}"
            steps.append((name, self.checkpoints.remove_target_checkpoint))
        if self.files.shared:
            steps.append((f"removing the staging directory on {self.source.name}", self.files.remove_staging))
        return steps

    def keep_target(self, cause: str, unrestorable: str) -> Outcome:
        """The source cannot come back: the target is the only copy. Kept if it runs; waited for if not."""
        target_id = self.state.target_container_id
        info = self.target.engine.find_container(target_id) if target_id is not None else None
        if info is not None and not self._is_the_twin(info):
            info = None
        if info is None or not (info["State"]["Running"] or self.state.source_was_running is False):
            raise Problem(
                "NowhereToRun",
                f"{unrestorable}, and no container of this migration runs on {self.target.name}: "
                f"{self.state.workload} runs nowhere",
            )
        return self.target_kept(cause, unrestorable)
