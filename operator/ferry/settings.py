"""Everything one operator process is told (by `ferry run`'s options) or tuned with, in one place."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields

from ferry.lease import OPERATOR_NAMESPACE


@dataclass(frozen=True)
class Settings:
    namespaces: tuple[str, ...] = ()  # the namespaces whose Migrations it serves; none: every one
    operator_namespace: str = OPERATOR_NAMESPACE  # its own, where it keeps one Lease per Migration
    lease_seconds: int = 15  # how long a Migration stays ours after we stop renewing its Lease
    peering: str | None = None  # the KopfPeering replicas coordinate through; none: standalone
    priority: int | None = None  # peering priority; none: random, so replicas never tie
    liveness: str | None = None  # where kopf serves its liveness probe
    metrics_port: int = 0  # where Prometheus metrics are served; 0: not served
    test_hooks: bool = False  # honour ferry.dev/test-pause annotations (tests only)
    test_crash_after_host_calls: int | None = None  # with test_hooks: exit at once after the Nth host call
    verbose: bool = False
    max_workers: int = 32  # threads for handlers; waiting (queued, rollback retries) holds none
    host_probe_seconds: float = 60.0  # between two probes of a DockerHost (its timer is registered late)
    # Fixed when the handlers are registered (kopf's decorators take them), so not options:
    retry_seconds: float = 5.0  # before a handler that failed unexpectedly runs again

    @classmethod
    def from_arguments(cls, args: argparse.Namespace) -> Settings:
        """`ferry run`'s options: each one of the same name as a field, and -n/-A as `namespaces`."""
        named = {f.name for f in fields(cls)} & set(vars(args))
        namespaces = () if args.all_namespaces else tuple(args.namespace or ())
        return cls(namespaces=namespaces, **{name: getattr(args, name) for name in named})


DEFAULTS = Settings()
