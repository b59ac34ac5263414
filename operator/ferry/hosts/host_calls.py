"""A test hook: the operator dies at once, as if killed, right after its Nth call to a host, so that
tests can crash it between any two host calls and not only at phase boundaries.

Every host call is told here once it completes (the host answered, whatever it answered): a command
run over SSH or in a kept shell, a channel started, an armed command or stream that ran to its end,
a Docker Engine request. Set only by `ferry run --test-hooks --test-crash-after-host-calls N`; then
each call is logged with its number. Unset, nothing is counted or logged.
"""

from __future__ import annotations

import logging
import os
import shlex
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NoReturn

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


def completed(host: str, kind: str, argv: Sequence[str]) -> None:
    """Tells the hook that a call of `kind` (`argv`: the command, or a request's method and path)
    to `host` completed."""
    HOST_CALLS.completed(host, kind, argv)


def command_text(argv: Sequence[str]) -> str:
    """The command as the log shows it: each `sh -c SCRIPT` without its script, shortened."""
    words = list(argv)
    for index in range(len(words) - 2):
        if words[index : index + 2] == ["sh", "-c"]:
            words[index + 2] = "..."
    text = shlex.join(words)
    return text if len(text) <= LONGEST_LOGGED else text[: LONGEST_LOGGED - 3] + "..."
