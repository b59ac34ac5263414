"""core/v1 Events about ferry's objects, so that `kubectl describe` tells what happened to them.

An Event is news, not part of the work: it is sent in the background (some phases change inside
the freeze, where every API call would be downtime), in order, and a post that fails is logged.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from ferry.api import GROUP, VERSION
from ferry.migration.phases import Phase
from ferry.migration.state import MigrationState, now

log = logging.getLogger(__name__)

COMPONENT = "ferry"
CLUSTER_SCOPED_NAMESPACE = "default"  # where Events about cluster-scoped objects go, as for Nodes
WARNING_PHASES = frozenset({Phase.FAILED, Phase.ROLLING_BACK, Phase.ROLLED_BACK})


class EventPoster(Protocol):
    def create_event(self, namespace: str, body: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class ObjectRef:
    """The object an Event is about; `namespace` None for a cluster-scoped one (a DockerHost)."""

    kind: str
    name: str
    uid: str
    namespace: str | None = None

    def involved_object(self) -> dict[str, str]:
        ref = {"apiVersion": f"{GROUP}/{VERSION}", "kind": self.kind, "name": self.name, "uid": self.uid}
        if self.namespace is not None:
            ref["namespace"] = self.namespace
        return ref


class Events:
    def __init__(self, poster: EventPoster, instance: str) -> None:
        self._poster = poster
        self._instance = instance
        self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ferry-events")

    def post(self, about: ObjectRef, reason: str, message: str, *, warning: bool = False) -> None:
        """Queues the Event; it is sent after those queued before it."""
        namespace = about.namespace or CLUSTER_SCOPED_NAMESPACE
        moment = now().strftime("%Y-%m-%dT%H:%M:%SZ")
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{about.name}.{time.time_ns():x}", "namespace": namespace},
            "involvedObject": about.involved_object(),
            "type": "Warning" if warning else "Normal",
            "reason": reason,
            "message": message,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self._instance,
            "firstTimestamp": moment,
            "lastTimestamp": moment,
            "count": 1,
        }
        self._sender.submit(self._send, namespace, body)

    def flush(self) -> None:
        """Returns once every Event queued so far was sent (or failed)."""
        self._sender.submit(lambda: None).result()

    def phase_entered(self, about: ObjectRef, state: MigrationState) -> None:
        """A Migration entered `state.phase`: the reason is the status's, the message says the phase."""
        phase = state.phase.value
        reason = state.reason or phase
        message = state.message or phase
        if reason != phase:
            message = f"{phase}: {message}"
        self.post(about, reason, message, warning=state.phase in WARNING_PHASES)

    def _send(self, namespace: str, body: dict[str, Any]) -> None:
        try:
            self._poster.create_event(namespace, body)
        except Exception as error:  # never let news of the work break the work
            about = body["involvedObject"]
            log.warning(
                "could not post the %s Event about %s %s: %s",
                body["reason"],
                about["kind"],
                about["name"],
                error,
            )
