"""The few ways a migration step can stop, each handled in one place.

- `Problem`: a failure the user can read. The runner fails the Migration before the freeze and
  rolls it back after (ferry.migration.runner); a rollback waits it out and tries again.
- `HostError` (ferry.hosts.errors): a host could not do what was asked; handled as a `Problem`.
- `Wait`: nothing is wrong, but the Migration cannot go on yet (queued for a slot, a rollback
  waiting out an obstacle): the caller calls again after `delay` seconds (kopf does the waiting).
- `LostCharge`: another driver holds the Migration: stop at once, touch nothing, try again later.
- `ClusterUnavailable`: the API server could not be read or written: try again later.
Anything else is a bug: the runner reports it as a `Problem` (InternalError) rather than letting
the Migration sit in its phase while it is retried forever.
"""

from __future__ import annotations

from ferry.hosts.errors import HostError

__all__ = ["ClusterUnavailable", "HostError", "LostCharge", "Problem", "Wait", "as_problem"]


class Problem(Exception):
    """A failure the user can read: `reason` is a CamelCase word, `message` says what happened.

    `frozen=False` says the workload still runs on the source although the phase is past the freeze
    (CRIU resumes the tasks when a dump fails), so there is nothing to roll back.
    """

    def __init__(self, reason: str, message: str, *, frozen: bool = True) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.frozen = frozen


def as_problem(error: Problem | HostError) -> Problem:
    """A host's failure, as the user reads it: a Problem of its own or the host's error's words."""
    return error if isinstance(error, Problem) else Problem("HostError", str(error))


class Wait(Exception):
    """Come back in `delay` seconds; the status already says what the Migration waits for."""

    def __init__(self, message: str, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


class LostCharge(Exception):
    """Another operator drives this Migration now: stop without touching anything."""


class ClusterUnavailable(Exception):
    """The API server did not answer, or refused: the Migration's status cannot be trusted or written."""
