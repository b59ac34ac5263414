"""status.progress of one run: how many bytes the step under way has moved, and how many it should.

Every write is an API call through the run's status sink. Before the freeze, where it costs no
downtime, progress is written when a step starts and then at most every INTERVAL seconds; inside
the freeze it is never written here: the phase change that ends the step writes what it moved.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ferry.migration.context import MigrationContext
from ferry.migration.errors import ClusterUnavailable
from ferry.migration.phases import Phase
from ferry.migration.state import Progress

log = logging.getLogger(__name__)

INTERVAL = 2.0  # seconds between two writes of progress


class ProgressReport:
    def __init__(self, ctx: MigrationContext, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._ctx = ctx
        self._clock = clock
        self._written_at = float("-inf")

    def start(self, step: str, expected: int | None, phase: Phase | None = None) -> None:
        """A step that moves bytes for `phase` (the current one unless said) begins."""
        state = self._ctx.state
        state.progress = Progress(phase=phase or state.phase, step=step, expected_bytes=expected)
        self._write()

    def moved(self, count: int) -> None:
        """The step has moved `count` bytes so far."""
        progress = self._ctx.state.progress
        if progress is None:
            return
        progress.moved_bytes = count
        if self._clock() - self._written_at >= INTERVAL:
            self._write()

    def after(self, before: int) -> Callable[[int], None]:
        """What a part of the step tells its bytes to, when the parts before it moved `before`."""
        return lambda moved: self.moved(before + moved)

    def _write(self) -> None:
        if self._ctx.state.phase.is_frozen:
            return  # the phase change that ends the step writes it
        self._written_at = self._clock()
        try:
            self._ctx.save()
        except ClusterUnavailable as error:  # news only: the copy goes on, the next write carries it
            log.warning(
                "%s/%s: progress not written: %s", self._ctx.request.namespace, self._ctx.request.name, error
            )
