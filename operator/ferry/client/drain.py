"""`ferry drain HOST`: an Evacuation that moves every running container off a host; with --wait, its
progress line by line, then where each container went."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any, TextIO

from ferry.api import GROUP, VERSION, OnLiveFailure, Strategy
from ferry.client.kube import ClientError, MigrationApi
from ferry.client.outcome import ExitCode

POLL_SECONDS = 1.0
DEFAULT_WAIT_SECONDS = 3600.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("host", metavar="HOST", help="the DockerHost to drain")
    parser.add_argument(
        "--to", dest="targets", metavar="HOST,...", help="the target DockerHosts (default: every Ready host)"
    )
    parser.add_argument(
        "--selector", metavar="KEY=VALUE,...", help="only the containers with these labels (default: all)"
    )
    parser.add_argument("--max-concurrent", type=int, metavar="N", help="migrations at once (default 4)")
    parser.add_argument(
        "--on-live-failure",
        choices=[choice.value for choice in OnLiveFailure],
        help="a container that cannot move live: Skip it (default), move it Cold, or Stop",
    )
    parser.add_argument("--strategy", choices=[s.value for s in Strategy], help="default Live")
    parser.add_argument(
        "--wait", action="store_true", help="follow it to its end; the exit code says how it ended"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_WAIT_SECONDS,
        metavar="S",
        help=f"how long --wait waits, in seconds (default {DEFAULT_WAIT_SECONDS:g}); "
        "the Evacuation goes on after",
    )
    parser.add_argument("--name", help="the Evacuation's name (default: drain-HOST- and a suffix)")


def evacuation_manifest(args: argparse.Namespace) -> dict[str, Any]:
    spec: dict[str, Any] = {"sourceHost": args.host}
    if args.targets:
        spec["targetHosts"] = [host.strip() for host in args.targets.split(",") if host.strip()]
    if args.selector:
        spec["selector"] = {"matchLabels": _labels(args.selector)}
    optional = {
        "maxConcurrent": args.max_concurrent,
        "onLiveFailure": args.on_live_failure,
        "strategy": args.strategy,
    }
    spec.update({key: value for key, value in optional.items() if value is not None})
    metadata = {"name": args.name} if args.name else {"generateName": f"drain-{args.host}-"}
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Evacuation", "metadata": metadata, "spec": spec}


def drain_command(
    args: argparse.Namespace,
    api: MigrationApi,
    out: TextIO,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ExitCode:
    name = api.create_evacuation(evacuation_manifest(args))["metadata"]["name"]
    print(f"evacuation.ferry.dev/{name} created", file=out)
    if not args.wait:
        return ExitCode.SUCCEEDED
    deadline, said = clock() + args.timeout, ""
    while True:
        found = api.get_evacuation(name)
        if found is None:
            raise ClientError(f"Evacuation {name} was deleted")
        status = found.get("status", {})
        line = status.get("message", "") or "waiting for the operator"
        if line != said:
            print(line, file=out)
            said = line
        if status.get("phase") in ("Succeeded", "Failed"):
            for record in status.get("containers", []):
                print(f"  {_where(record)}", file=out)
            return ExitCode.SUCCEEDED if status["phase"] == "Succeeded" else ExitCode.FAILED
        if clock() > deadline:
            print(f"timed out after {args.timeout:g}s: {name} goes on (kubectl get evac {name})", file=out)
            return ExitCode.TIMEOUT
        sleep(POLL_SECONDS)


def _labels(text: str) -> dict[str, str]:
    labels = {}
    for pair in text.split(","):
        key, equals, value = pair.partition("=")
        if not equals or not key.strip():
            raise ClientError(f"--selector takes KEY=VALUE pairs separated by commas, not {pair!r}")
        labels[key.strip()] = value.strip()
    return labels


def _where(record: dict[str, Any]) -> str:
    """'web-1: Succeeded on node2 (Live)', or why it did not move."""
    said = f"{record['name']}: {record['outcome']}"
    if record["outcome"] == "Succeeded":
        said += f" on {record.get('target')} ({record.get('strategy')})"
    if record.get("message"):
        said += f": {record['message']}"
    return said
