"""What of a container moves as files: its writable layer, its local volumes, and the checkpoint's
images, streamed host to host or passed through a shared directory.

Volumes are mirrored: in bulk while the workload runs, then at the freeze what changed since and
the deletion of what went (ferry.hosts.tree_copy). The streams of the freeze are started (armed)
before it, so that the freeze pays only for the bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ferry.api import Transfer
from ferry.hosts.docker_host import DockerHost
from ferry.hosts.host_calls import ContextExecutor
from ferry.hosts.runc import WORK_ROOT, received_images
from ferry.hosts.streams import Stream
from ferry.hosts.tree_copy import Baseline
from ferry.migration.container_config import MIGRATION_LABEL
from ferry.migration.container_data import VolumeCopy, bind_sources, local_volumes, named_volumes
from ferry.migration.context import MigrationContext
from ferry.migration.errors import Problem
from ferry.migration.progress import ProgressReport
from ferry.migration.state import Metrics


@dataclass(frozen=True)
class TransferPaths:
    source_checkpoint: str
    target_checkpoint: str
    source_upper: str
    target_upper: str


class ContainerFiles:
    def __init__(self, ctx: MigrationContext, source: DockerHost, target: DockerHost, *, live: bool) -> None:
        self.ctx = ctx
        self.source = source
        self.target = target
        self.live = live
        self.shared = ctx.request.spec.transfer is Transfer.SHARED_DIRECTORY
        self._paths: TransferPaths | None = None
        self._volume_copies: list[VolumeCopy] | None = None
        self._baselines: dict[str, Baseline] = {}  # by volume; after a restart: none, volumes go whole
        self._relays: dict[str, Stream] | None = None

    @property
    def uid(self) -> str:
        return self.ctx.request.uid

    # -- before anything is made

    def check(self, info: dict[str, Any]) -> None:
        """Every bind mount exists on the target; a shared directory is really shared."""
        for host_path, container_path in bind_sources(info):
            if not self.target.files.exists(host_path):
                raise Problem(
                    "BindMountMissing",
                    f"bind mount {host_path} (at {container_path} in the container) does not exist on "
                    f"{self.target.name}; create it there first",
                )
        if self.shared:
            self._check_shared_directory()

    def _check_shared_directory(self) -> None:
        """Both hosts name a shared directory, and a file written on one shows on the other."""
        source_dir, target_dir = self._shared_directories()
        probe = f"ferry-{self.uid}/probe"
        self.source.files.write(f"{source_dir}/{probe}", self.uid)
        if self.target.files.read(f"{target_dir}/{probe}") != self.uid:
            raise Problem(
                "NotShared",
                f"{source_dir} on {self.source.name} and {target_dir} on {self.target.name} are not the same "
                "directory (a file written on one is not on the other)",
            )

    def _shared_directories(self) -> tuple[str, str]:
        found = [self.ctx.hosts.spec(host.name).shared_directory for host in (self.source, self.target)]
        if found[0] is None or found[1] is None:
            raise Problem(
                "NoSharedDirectory",
                "transfer: SharedDirectory needs spec.sharedDirectory on both DockerHosts",
            )
        return found[0], found[1]

    # -- on the target, before the twin is made

    def make_target_volumes(self, info: dict[str, Any]) -> None:
        """The twin's named volumes, made new and labelled with this migration, so that a failure or
        a rollback removes them and a resumed migration knows them as its own."""
        for name in named_volumes(info):
            made = self.target.engine.create_volume(name, {MIGRATION_LABEL: self.uid})
            if (made.get("Labels") or {}).get(MIGRATION_LABEL) != self.uid:  # Docker gave the one there
                raise Problem(
                    "VolumeExists",
                    f"volume {name} appeared on {self.target.name} after the checks; ferry never copies "
                    "into a volume holding data of its own",
                )

    def remove_target_volumes(self) -> None:
        """The named volumes made for the twin (its anonymous ones go with it)."""
        for name in self.target.engine.volumes_labelled(MIGRATION_LABEL, self.uid):
            self.target.engine.remove_volume(name)

    # -- before the freeze, once both containers exist

    @property
    def images_apart(self) -> bool:
        """Whether the target receives the checkpoint's images apart from Docker's checkpoint
        directory (`received_images`; in memory when it has room for them): the fast path's runtime
        wrapper restores from any directory, Docker's own restore only from its own. Images to be
        kept (spec.keepCheckpoint) go to Docker's directory, on the disk."""
        mechanism = self.ctx.state.mechanism
        return bool(mechanism and mechanism.startswith("runc") and not self.ctx.request.spec.keep_checkpoint)

    def paths(self) -> TransferPaths:
        """Where the checkpoint and writable layers live on both hosts; looked up before the freeze."""
        if self._paths is None:
            state = self.ctx.state
            assert state.source_container_id and state.target_container_id and state.checkpoint_name
            source_id, target_id = state.source_container_id, state.target_container_id
            self._paths = TransferPaths(
                source_checkpoint=self.source.engine.checkpoint_dir(source_id, state.checkpoint_name),
                target_checkpoint=received_images(self.uid)
                if self.images_apart
                else self.target.engine.checkpoint_dir(target_id, state.checkpoint_name),
                source_upper=_upper_dir(self.source.engine.inspect_container(source_id)),
                target_upper=_upper_dir(self.target.engine.inspect_container(target_id)),
            )
        return self._paths

    def copy_volumes_before_the_freeze(self, metrics: Metrics, progress: ProgressReport) -> None:
        """The bulk of each local volume moves while the workload runs; the freeze sends what changed
        and deletes what went. Progress is reported against the volumes' size (`du`)."""
        volumes = self._volumes()
        if volumes:
            progress.start("volumes", sum(self.source.files.directory_bytes(v.source_dir) for v in volumes))
        metrics.volume_bytes = 0
        for v in volumes:
            listing = f"{WORK_ROOT}/{self.uid}/volumes/{v.name}"  # on the source, removed with the work files
            moved, self._baselines[v.name] = self.source.trees.mirror_bulk(
                v.source_dir,
                self.target.trees,
                v.target_dir,
                listing,
                tag=self.uid,
                progress=progress.after(metrics.volume_bytes),
            )
            metrics.volume_bytes += moved

    def arm(self) -> None:
        """Starts the copies of the freeze (checkpoint, writable layer, what changed in volumes),
        held until fired."""
        self._relays = self._armed_relays()
        if self.shared:
            self.source.trees.make_staging(self._staging()[0])

    def _volumes(self) -> list[VolumeCopy]:
        if self._volume_copies is None:
            state = self.ctx.state
            assert state.source_container_id and state.target_container_id
            source_info = self.source.engine.inspect_container(state.source_container_id)
            target_info = self.target.engine.inspect_container(state.target_container_id)
            self._volume_copies = local_volumes(source_info, target_info)
        return self._volume_copies

    def _armed_relays(self) -> dict[str, Stream]:
        source, target, paths = self.source, self.target, self.paths()
        relays: dict[str, Stream] = {
            f"volume:{v.name}": source.trees.mirror_final(
                v.source_dir, target.trees, v.target_dir, self._baselines.get(v.name), tag=self.uid
            )
            for v in self._volumes()
        }
        if self.shared:
            return relays
        relays["rootfs"] = source.trees.relay(
            paths.source_upper, target.trees, paths.target_upper, fresh=False, armed=True, tag=self.uid
        )
        if self.live:
            relays["checkpoint"] = source.trees.relay(
                paths.source_checkpoint,
                target.trees,
                paths.target_checkpoint,
                fresh=True,
                armed=True,
                tag=self.uid,
            )
        return relays

    # -- in the freeze

    def transfer(self, metrics: Metrics) -> int:
        """Fires the armed copies (arming them first after a restart) and counts what each moved;
        returns the bytes moved in all."""
        if self._relays is None:
            self.arm()
        relays, self._relays = self._relays or {}, None
        with ContextExecutor(max_workers=4) as pool:
            moved = {kind: pool.submit(relay.fire) for kind, relay in relays.items()}
            total = self._transfer_through_shared_directory(metrics) if self.shared else 0
            for kind, future in moved.items():
                total += future.result()
                if kind == "rootfs":
                    metrics.rootfs_bytes = future.result()
                elif kind == "checkpoint":
                    metrics.checkpoint_bytes = future.result()
                else:
                    metrics.volume_bytes = (metrics.volume_bytes or 0) + future.result()
        return total

    def _transfer_through_shared_directory(self, metrics: Metrics) -> int:
        """The source archives the checkpoint and writable layer into its staging directory in the
        shared directory; the target unpacks them from there once their sha256 is what the source
        wrote: no byte crosses the operator. Returns the archives' size."""
        paths, (source_staging, target_staging) = self.paths(), self._staging()
        copies = (
            ("checkpoint", paths.source_checkpoint, paths.target_checkpoint, True),
            ("rootfs", paths.source_upper, paths.target_upper, False),
        )
        with ContextExecutor(max_workers=2) as pool:
            staged = list(pool.map(lambda c: self.source.trees.stage(c[1], source_staging, c[0]), copies))
            list(
                pool.map(
                    lambda c, archive: self.target.trees.unstage(
                        target_staging, c[0], archive.sha256, c[2], fresh=c[3]
                    ),
                    copies,
                    staged,
                )
            )
        metrics.checkpoint_bytes, metrics.rootfs_bytes = (archive.size for archive in staged)
        return metrics.checkpoint_bytes + metrics.rootfs_bytes

    def _staging(self) -> tuple[str, str]:
        """This migration's staging directory, as the source and as the target see it."""
        source_shared, target_shared = self._shared_directories()
        return f"{source_shared}/ferry-{self.uid}", f"{target_shared}/ferry-{self.uid}"

    # -- after

    def remove_staging(self) -> None:
        self.source.files.remove_tree(self._staging()[0])

    def release(self) -> None:
        """Closes streams armed for a transfer that will not happen."""
        for relay in (self._relays or {}).values():
            relay.close()
        self._relays = None


def _upper_dir(info: dict[str, Any]) -> str:
    driver = info.get("GraphDriver", {})
    upper = driver.get("Data", {}).get("UpperDir")
    if driver.get("Name") != "overlay2" or not upper:
        raise Problem(
            "UnsupportedStorage", f"storage driver {driver.get('Name')} is not supported (overlay2 only)"
        )
    return str(upper)
