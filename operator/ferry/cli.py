"""The `ferry` program (also `kubectl ferry`): `ferry run` is the operator, the other subcommands
(ferry.client) the command line for people and scripts."""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
from typing import NoReturn

import kopf
import prometheus_client

from ferry import __version__
from ferry.client import commands as client_commands
from ferry.client.outcome import EXIT_CODES_HELP, ExitCode
from ferry.hosts.host_calls import HOST_CALLS
from ferry.lease import OPERATOR_NAMESPACE
from ferry.settings import DEFAULTS, Settings

log = logging.getLogger(__name__)

PLUGIN_EXECUTABLE = "kubectl-ferry"  # kubectl runs it for `kubectl ferry ...`
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # tests read host calls and phases back


class Parser(argparse.ArgumentParser):
    """Usage errors exit 1: argparse's own 2 means a Failed migration here."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(ExitCode.ERROR, f"{self.prog}: error: {message}\n")


def program_name(executable: str) -> str:
    return "kubectl ferry" if os.path.basename(executable) == PLUGIN_EXECUTABLE else "ferry"


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = Parser(
        prog=program_name(sys.argv[0]),
        description="Live-migrate containers between Docker hosts.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ferry {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the operator")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", help="watch only these namespaces (repeatable)")
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="watch every namespace (the default)"
    )
    run.add_argument("--peering", metavar="NAME", help="coordinate replicas through this KopfPeering")
    run.add_argument("--metrics-port", type=int, default=0, help="serve Prometheus metrics on this port")
    run.add_argument(
        "--liveness", metavar="URL", help="serve kopf's liveness probe, e.g. http://0.0.0.0:8080/healthz"
    )
    run.add_argument("--priority", type=int, help="peering priority (default: random, so replicas never tie)")
    run.add_argument(
        "--test-hooks", action="store_true", help="honour ferry.dev/test-pause annotations (tests only)"
    )
    run.add_argument(
        "--test-crash-after-host-calls",
        type=int,
        metavar="N",
        help="with --test-hooks: log every host call, and exit at once (as if killed) right after the "
        "Nth (tests only)",
    )
    run.add_argument(
        "--lease-seconds",
        type=int,
        default=DEFAULTS.lease_seconds,
        help="how long a Migration stays ours after we stop renewing it",
    )
    run.add_argument(
        "--operator-namespace",
        default=os.environ.get("FERRY_NAMESPACE", OPERATOR_NAMESPACE),
        help="the operator's own namespace, where it keeps one Lease per Migration it drives "
        f"(default: $FERRY_NAMESPACE, or {OPERATOR_NAMESPACE})",
    )
    run.add_argument(
        "--host-probe-seconds",
        type=float,
        default=DEFAULTS.host_probe_seconds,
        metavar="S",
        help=f"how often each DockerHost is probed (default {DEFAULTS.host_probe_seconds:g})",
    )
    run.add_argument("-v", "--verbose", action="store_true")
    client_commands.register(commands)
    args = parser.parse_args(argv)
    crash_after = args.test_crash_after_host_calls if args.command == "run" else None
    if crash_after is not None and (crash_after < 1 or not args.test_hooks):
        run.error("--test-crash-after-host-calls takes a number >= 1, and --test-hooks")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    if args.command != "run":
        sys.exit(client_commands.run(args))
    run_operator(args)


def run_operator(args: argparse.Namespace) -> None:
    settings = Settings.from_arguments(args)
    logging.basicConfig(
        level=logging.DEBUG if settings.verbose else logging.INFO,
        format=LOG_FORMAT,
    )
    logging.getLogger("paramiko").setLevel(logging.WARNING)
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    if settings.metrics_port:
        prometheus_client.start_http_server(settings.metrics_port)
    if settings.test_crash_after_host_calls is not None:
        log.warning("test hook: exiting at once after host call %d", settings.test_crash_after_host_calls)
        HOST_CALLS.crash_after = settings.test_crash_after_host_calls
    import ferry.handlers  # registers the handlers

    ferry.handlers.register_host_probe(settings.host_probe_seconds)
    kopf.run(
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        standalone=settings.peering is None,
        peering_name=settings.peering,
        priority=settings.priority if settings.priority is not None else random.randint(1, 1_000_000),
        liveness_endpoint=settings.liveness,
        memo=kopf.Memo(settings=settings),
    )
