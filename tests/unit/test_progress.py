"""status.progress: the bytes a long step moves, written before the freeze as they move (at most
every 2 s), and inside it only with the phase changes around the transfer."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import pytest

from ferry.cluster import ClusterError
from ferry.hosts.docker_host import DockerHost
from ferry.migration.container import ContainerMigration
from ferry.migration.container_files import ContainerFiles
from ferry.migration.context import MigrationContext
from ferry.migration.errors import LostCharge
from ferry.migration.image_copy import copy_image
from ferry.migration.phases import Phase
from ferry.migration.progress import ProgressReport
from ferry.migration.runner import run_phase
from ferry.migration.state import Metrics, MigrationState, Progress
from tests.unit.fakes import (
    FakeCoordination,
    FakeHost,
    FakeHosts,
    FakeSink,
    container_spec,
    context,
    frozen_state,
    host_spec,
)
from tests.unit.test_crds import crd

MiB = 1 << 20


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class TickingClock(FakeClock):
    """Each reading is 2.5 s after the one before: every report is due."""

    def __call__(self) -> float:
        self.now += 2.5
        return self.now


@dataclass
class Reporting:
    report: ProgressReport
    ctx: MigrationContext
    sink: FakeSink
    clock: FakeClock


def report_in(phase: Phase, **coordination: Any) -> Reporting:
    hosts = FakeHosts(host_spec("node1"), host_spec("node2"))
    ctx, sink = context(
        container_spec(), MigrationState(phase=phase), hosts, coordination=FakeCoordination(**coordination)
    )
    clock = FakeClock()
    return Reporting(ProgressReport(ctx, clock=clock), ctx, sink, clock)


def written(sink: FakeSink) -> list[tuple[str, int]]:
    return [(status["progress"]["step"], status["progress"]["movedBytes"]) for status in sink.saved]


def test_a_step_before_the_freeze_is_written_when_it_starts_with_what_it_expects() -> None:
    reporting = report_in(Phase.PREPARING)

    reporting.report.start("image", 300 * MiB)

    [status] = reporting.sink.saved
    assert status["progress"] == {
        "phase": "Preparing",
        "step": "image",
        "movedBytes": 0,
        "expectedBytes": 300 * MiB,
        "summary": "image 0 B of 300.0 MiB (0%)",
    }


def test_bytes_moved_before_the_freeze_are_written_at_most_every_two_seconds() -> None:
    reporting = report_in(Phase.PREPARING)
    reporting.report.start("image", 300 * MiB)

    for second, moved in ((0.5, 10), (1.9, 20), (2.0, 30), (3.0, 40), (4.1, 50)):
        reporting.clock.now = second
        reporting.report.moved(moved)

    assert written(reporting.sink) == [("image", 0), ("image", 30), ("image", 50)]


def test_nothing_is_written_inside_the_freeze_the_phase_change_carries_it() -> None:
    reporting = report_in(Phase.CHECKPOINTING)

    reporting.report.start("transfer", 12 * MiB, phase=Phase.TRANSFERRING)
    reporting.clock.now = 10
    reporting.report.moved(12 * MiB)

    assert reporting.sink.saved == []
    progress = reporting.ctx.state.progress
    assert progress is not None
    assert (progress.phase, progress.moved_bytes) == (Phase.TRANSFERRING, 12 * MiB)


def test_parts_of_a_step_add_up() -> None:
    reporting = report_in(Phase.PREPARING)
    reporting.report.start("volumes", 10 * MiB)
    reporting.clock.now = 5

    reporting.report.after(4 * MiB)(1 * MiB)

    assert written(reporting.sink)[-1] == ("volumes", 5 * MiB)


class AwaySink(FakeSink):
    def save(self, state: MigrationState, generation: int | None) -> None:
        raise ClusterError("writing the status: the API server does not answer")


def test_an_api_server_away_does_not_stop_the_copy(caplog: pytest.LogCaptureFixture) -> None:
    reporting = report_in(Phase.PREPARING)
    reporting.ctx.sink = AwaySink()

    reporting.report.start("image", None)

    assert "progress not written" in caplog.text


def test_a_driver_that_lost_the_migration_stops_at_its_next_progress_write() -> None:
    reporting = report_in(Phase.PREPARING, in_charge_now=False)

    with pytest.raises(LostCharge):
        reporting.report.start("image", None)


@pytest.mark.parametrize(
    ("moved", "expected", "summary"),
    [
        (3 * MiB, None, "volumes 3.0 MiB"),
        (120 * MiB, 300 * MiB, "volumes 120.0 MiB of 300.0 MiB (40%)"),
        (310 * MiB, 300 * MiB, "volumes 310.0 MiB of 300.0 MiB (100%)"),  # an estimate a little short
    ],
)
def test_the_summary_says_what_moves_how_much_and_how_far(
    moved: int, expected: int | None, summary: str
) -> None:
    progress = Progress(phase=Phase.PREPARING, step="volumes", moved_bytes=moved, expected_bytes=expected)

    assert progress.summary == summary


def test_progress_is_read_back_from_the_status_and_gone_once_the_migration_ended() -> None:
    state = MigrationState(
        phase=Phase.VERIFYING, progress=Progress(phase=Phase.TRANSFERRING, step="transfer")
    )

    read = MigrationState.from_status(state.to_status())
    read.enter(Phase.SUCCEEDED)

    assert MigrationState.from_status(state.to_status()).progress == state.progress
    assert "progress" not in read.to_status()


class SavingEngine:
    """A source that saves an image of two chunks; a target that loads them."""

    def __init__(self) -> None:
        self.loaded = b""

    def has_image(self, image_id: str) -> bool:
        return bool(self.loaded)

    def inspect_image(self, reference: str) -> dict[str, Any]:
        return {"Id": "sha256:b0b0", "Size": 4 * MiB}

    def save_image(self, reference: str) -> Iterator[bytes]:
        yield from (b"x" * (2 * MiB), b"y" * (2 * MiB))

    def load_image(self, chunks: Iterable[bytes]) -> None:
        self.loaded = b"".join(chunks)


class EngineHost:
    def __init__(self, name: str) -> None:
        self.name = name
        self.engine = SavingEngine()


def test_the_image_copy_reports_its_bytes_against_the_images_size() -> None:
    reporting = report_in(Phase.PREPARING)
    source, target = EngineHost("node1"), EngineHost("node2")
    info = {"Image": "sha256:b0b0", "Config": {"Image": "busybox"}}

    copy_image(cast(DockerHost, source), cast(DockerHost, target), info, Metrics(), reporting.report)

    assert reporting.sink.saved[0]["progress"]["expectedBytes"] == 4 * MiB
    progress = reporting.ctx.state.progress
    assert progress is not None and progress.moved_bytes == 4 * MiB


class Frozen:
    """The freeze's parts, faked: a checkpoint that succeeds, files that move `moved` bytes."""

    def __init__(self, moved: int) -> None:
        self.moved = moved

    def checkpoint(self) -> None:
        return None

    def transfer(self, metrics: Metrics) -> int:
        return self.moved


def freeze_in(phase: Phase) -> tuple[ContainerMigration, FakeSink]:
    hosts = FakeHosts(host_spec("node1"), host_spec("node2"))
    state = frozen_state(phase, preflight={"rootfsBytes": 2 * MiB, "expectedCheckpointBytes": 10 * MiB})
    ctx, sink = context(container_spec(), state, hosts)
    steps = ContainerMigration(ctx)
    steps.__dict__.update(checkpoints=Frozen(0), files=Frozen(11 * MiB))  # the cached parts
    return steps, sink


def test_the_freezes_transfer_is_written_with_the_phase_changes_around_it() -> None:
    steps, sink = freeze_in(Phase.CHECKPOINTING)

    run_phase(steps.ctx, steps)
    run_phase(steps.ctx, steps)

    assert [
        (s["phase"], s["progress"]["movedBytes"], s["progress"]["expectedBytes"]) for s in sink.saved
    ] == [
        ("Transferring", 0, 12 * MiB),
        ("Restoring", 11 * MiB, 12 * MiB),
    ]
    assert {s["progress"]["phase"] for s in sink.saved} == {"Transferring"}


def test_a_fake_host_is_not_asked_anything_by_the_freezes_progress() -> None:
    steps, _ = freeze_in(Phase.CHECKPOINTING)

    run_phase(steps.ctx, steps)

    assert cast(FakeHost, steps.source).calls == []


class HalvesStream:
    """A stream that tells its progress at half its size, then at the end."""

    def __init__(self, size: int) -> None:
        self.size = size

    def fire(self, progress: Callable[[int], None] | None = None) -> int:
        for moved in (self.size // 2, self.size):
            if progress is not None:
                progress(moved)
        return self.size


class VolumeTrees:
    """Copies of directories whose sizes are given; each is a HalvesStream."""

    def __init__(self, sizes: dict[str, int]) -> None:
        self.sizes = sizes

    def mirror_bulk(
        self, source_dir: str, target: object, target_dir: str, listing: str, **options: Any
    ) -> tuple[int, None]:
        return HalvesStream(self.sizes[source_dir]).fire(options.get("progress")), None


class VolumeHost(FakeHost):
    def __init__(self, name: str, calls: list[str], sizes: dict[str, int]) -> None:
        super().__init__(name, calls)
        self.trees = VolumeTrees(sizes)
        self.files.sizes = sizes


def mounts(*names: str) -> list[dict[str, str]]:
    return [
        {"Type": "volume", "Name": name, "Source": f"/volumes/{name}", "Destination": f"/{name}"}
        for name in names
    ]


def test_the_bulk_volume_copy_reports_its_bytes_across_volumes_against_their_size() -> None:
    sizes = {"/volumes/a": 4 * MiB, "/volumes/b": 6 * MiB}
    hosts = FakeHosts(host_spec("node1"), host_spec("node2"))
    for name in ("node1", "node2"):
        hosts.hosts[name] = VolumeHost(name, hosts.calls, sizes)
    hosts.hosts["node1"].engine.add_source(running=True)["Mounts"] = mounts("a", "b")
    hosts.hosts["node2"].engine.add_twin(running=False)["Mounts"] = mounts("a", "b")
    ctx, sink = context(container_spec(), frozen_state(Phase.PREPARING), hosts)
    source, target = (cast(DockerHost, hosts.hosts[name]) for name in ("node1", "node2"))
    metrics = Metrics()

    ContainerFiles(ctx, source, target, live=True).copy_volumes_before_the_freeze(
        metrics, ProgressReport(ctx, clock=TickingClock())
    )

    assert [
        (s["progress"]["movedBytes"] // MiB, s["progress"]["expectedBytes"] // MiB) for s in sink.saved
    ] == [
        (0, 10),
        (2, 10),
        (4, 10),
        (7, 10),
        (10, 10),
    ]
    assert metrics.volume_bytes == 10 * MiB


def test_kubectl_get_o_wide_shows_the_summary_the_status_writes() -> None:
    (version,) = crd("ferry.dev_migrations.yaml")["spec"]["versions"]
    [column] = [c for c in version["additionalPrinterColumns"] if c["name"] == "Progress"]
    status = MigrationState(progress=Progress(phase=Phase.PREPARING, step="image", moved_bytes=1)).to_status()

    assert column["priority"] == 1  # -o wide: the default columns are kept as they were
    assert column["jsonPath"] == ".status.progress.summary" and status["progress"]["summary"] == "image 1 B"
