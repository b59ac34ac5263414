"""Every host call is told here once it completes (the host answered, whatever it answered): a command
run over SSH or in a kept shell, a channel started, an armed command or stream that ran to its end,
a Docker Engine request.

Before one starts, the current fence (`fenced`), if any, may stop it: a driver that lost the right
to act on the hosts raises there, so it stops between two host calls, never in the middle of a step
with calls still to make (as if it had died right after its last call, which a resumed run handles).

Two things count them:
- a `Tally`, made current for a piece of work (`tallied`): the calls made in it, including by the
  tasks it hands to a `ContextExecutor`; a migration tallies the calls inside its freeze window;
- a test hook: the operator dies at once, as if killed, right after its Nth call to a host, so that
  tests can crash it between any two host calls and not only at phase boundaries. Set only by
  `ferry run --test-hooks --test-crash-after-host-calls N`; then each call is logged with its
  number. Unset, nothing is counted for it or logged.
"""

from __future__ import annotations

import contextvars
import logging
import os
import shlex
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import NoReturn, ParamSpec, TypeVar

log = logging.getLogger(__name__)

CRASH_EXIT_CODE = 137  # what a shell reports of a process killed by SIGKILL
LONGEST_LOGGED = 200  # characters of a command in the log


@dataclass
class HostCalls:
    crash_after: int | None = None  # the hook; None: nothing is counted
    count: int = 0
    exit: Callable[[int], NoReturn] = os._exit  # no cleanup, no flush, no lease release: like SIGKILL
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def completed(self, host: str, kind: str, argv: Sequence[str]) -> None:
        if self.crash_after is None:
            return
        with self._lock:  # held while dying: no other thread gets past its call meanwhile
            self.count += 1
            call = f"host call {self.count}: {host} {kind} {command_text(argv)}"
            if self.count >= self.crash_after:
                log.critical("crash after %s", call)
                self.exit(CRASH_EXIT_CODE)
            log.info("%s", call)


HOST_CALLS = HostCalls()


@dataclass
class Tally:
    calls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self) -> None:
        with self._lock:
            self.calls += 1


_CURRENT_TALLY: contextvars.ContextVar[Tally | None] = contextvars.ContextVar("ferry_tally", default=None)
P = ParamSpec("P")
T = TypeVar("T")


@contextmanager
def tallied() -> Iterator[Tally]:
    """Counts the host calls made in the block (and in the tasks it gives a ContextExecutor)."""
    tally = Tally()
    token = _CURRENT_TALLY.set(tally)
    try:
        yield tally
    finally:
        _CURRENT_TALLY.reset(token)


class ContextExecutor(ThreadPoolExecutor):
    """A thread pool whose tasks run in a copy of the submitter's context, as asyncio's tasks do:
    their host calls count in the submitter's tally."""

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        context = contextvars.copy_context()
        return super().submit(context.run, fn, *args, **kwargs)  # type: ignore[arg-type]


_CURRENT_FENCE: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar(
    "ferry_fence", default=None
)


@contextmanager
def fenced(check: Callable[[], None]) -> Iterator[None]:
    """Runs `check` before every host call of the block (and of the tasks it gives a
    ContextExecutor): what it raises stops the call from being made."""
    token = _CURRENT_FENCE.set(check)
    try:
        yield
    finally:
        _CURRENT_FENCE.reset(token)


def starting() -> None:
    """Called before a host call is made: the current fence may stop it."""
    fence = _CURRENT_FENCE.get()
    if fence is not None:
        fence()


def completed(host: str, kind: str, argv: Sequence[str]) -> None:
    """Tells the current tally and the hook that a call of `kind` (`argv`: the command, or a
    request's method and path) to `host` completed."""
    tally = _CURRENT_TALLY.get()
    if tally is not None:
        tally.add()
    HOST_CALLS.completed(host, kind, argv)


def command_text(argv: Sequence[str]) -> str:
    """The command as the log shows it: each `sh -c SCRIPT` without its script, shortened."""
    words = list(argv)
    for index in range(len(words) - 2):
        if words[index : index + 2] == ["sh", "-c"]:
            words[index + 2] = "..."
    text = shlex.join(words)
    return text if len(text) <= LONGEST_LOGGED else text[: LONGEST_LOGGED - 3] + "..."
