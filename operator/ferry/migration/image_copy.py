"""A container's image, copied to the target host before the freeze (when the target lacks it)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ferry.hosts.docker_engine import DockerError
from ferry.hosts.docker_host import DockerHost
from ferry.migration.errors import Problem
from ferry.migration.progress import ProgressReport
from ferry.migration.state import Metrics, milliseconds, now

log = logging.getLogger(__name__)


def copy_image(
    source: DockerHost, target: DockerHost, info: dict[str, Any], metrics: Metrics, progress: ProgressReport
) -> None:
    """Streams `docker save` on the source into `docker load` on the target; records time and bytes,
    and reports them as they move (the image's size is what is expected)."""
    image_id: str = info["Image"]
    if target.engine.has_image(image_id):
        metrics.image_transfer_ms = 0
        return
    # Saved by name when the name still points at this image, so the target gets its tags too.
    reference = image_reference(source, info)
    started = now()
    size = int(source.engine.inspect_image(image_id).get("Size") or 0)
    progress.start("image", size or None)
    counted = _CountingStream(source.engine.save_image(reference), progress.moved)
    target.engine.load_image(counted)
    if not target.engine.has_image(image_id):
        raise Problem("ImageCopyFailed", f"image {reference} did not arrive on {target.name}")
    metrics.image_transfer_ms = milliseconds(started, now())
    metrics.image_bytes = counted.bytes
    log.info("copied image %s to %s: %d bytes", reference, target.name, counted.bytes)


def image_reference(host: DockerHost, info: dict[str, Any]) -> str:
    """The container's image name if, on `host`, that name still means its image; else the image ID."""
    name, image_id = info["Config"]["Image"], info["Image"]
    try:
        named = str(host.engine.inspect_image(name)["Id"])
    except (DockerError, LookupError):
        return str(image_id)
    return str(name) if named == image_id else str(image_id)


class _CountingStream:
    def __init__(self, chunks: Iterable[bytes], moved: Callable[[int], None]) -> None:
        self._chunks = chunks
        self._moved = moved
        self.bytes = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self.bytes += len(chunk)
            self._moved(self.bytes)
            yield chunk
