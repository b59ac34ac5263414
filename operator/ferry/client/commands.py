"""The client's subcommands of `ferry`: their options, and what each does with the API server."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, TextIO, TypeVar

from rich.console import Console

from ferry.api import Strategy
from ferry.client import drain, host_registration
from ferry.client.describe import describe
from ferry.client.kube import ClientError, KubeApi, MigrationApi
from ferry.client.listing import as_document, hosts_table, migrations_table
from ferry.client.manifest import MigrateRequest, migration_manifest
from ferry.client.outcome import EXIT_CODES_HELP, ExitCode
from ferry.client.wait import wait_for_end
from ferry.migration.state import now

DEFAULT_WAIT_SECONDS = 600.0

Command = Callable[[argparse.Namespace, MigrationApi, TextIO], ExitCode]
P = TypeVar("P", bound=argparse.ArgumentParser)


def register(commands: argparse._SubParsersAction[P]) -> None:
    """Adds migrate, get, describe, drain, hosts and hosts add to the `ferry` program."""
    migrate = commands.add_parser(
        "migrate",
        help="create a Migration (and --wait for its end)",
        description="Move a container (or, with --compose-project, every container of a compose project; "
        "with --pid or --process, a plain process) to another DockerHost.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    migrate.add_argument("container", nargs="?", metavar="CONTAINER", help="the container's name or ID")
    process = migrate.add_mutually_exclusive_group()
    process.add_argument("--pid", type=int, metavar="N", help="a plain process on --from, by its PID")
    process.add_argument("--process", metavar="NAME", help="a plain process on --from, by its command name")
    process.add_argument(
        "--compose-project", metavar="NAME", help="every container of this compose project on --from, as one"
    )
    migrate.add_argument("--to", required=True, dest="target", metavar="HOST", help="the target DockerHost")
    migrate.add_argument(
        "--from",
        dest="source",
        metavar="HOST",
        help="the source DockerHost (default: searched for the container)",
    )
    migrate.add_argument("--strategy", choices=[s.value for s in Strategy], help="default Live")
    migrate.add_argument(
        "--redirect",
        action="store_true",
        help="forward the source's published ports to the target afterwards",
    )
    migrate.add_argument(
        "--wait", action="store_true", help="follow it to its end; the exit code says how it ended"
    )
    migrate.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_WAIT_SECONDS,
        metavar="S",
        help=f"how long --wait waits, in seconds (default {DEFAULT_WAIT_SECONDS:g}); "
        "the Migration goes on after",
    )
    migrate.add_argument("--name", help="the Migration's name (default: CONTAINER-to-HOST- and a suffix)")
    _namespace_option(migrate)
    migrate.set_defaults(handler=migrate_command)

    get = commands.add_parser("get", help="list Migrations, or show one")
    get.add_argument("name", nargs="?", metavar="NAME")
    get.add_argument("-o", "--output", choices=["json", "yaml"], help="the resources themselves, not a table")
    get.add_argument("-A", "--all-namespaces", action="store_true", help="Migrations of every namespace")
    _namespace_option(get)
    get.set_defaults(handler=get_command)

    describe_parser = commands.add_parser(
        "describe", help="a Migration's phases with their durations, its downtime and conditions"
    )
    describe_parser.add_argument("name", metavar="NAME")
    _namespace_option(describe_parser)
    describe_parser.set_defaults(handler=describe_command)

    drain_parser = commands.add_parser(
        "drain",
        help="create an Evacuation: move every running container off a host (and --wait for its end)",
        description="Move every running container of HOST (or those --selector selects) to other "
        "DockerHosts, each by a Migration of its own, a few at a time.",
        epilog="exit codes: 0 done (with --wait: every container moved or was skipped); 1 error; "
        "2 some container did not move; 4 --wait timed out",
    )
    drain.add_arguments(drain_parser)
    drain_parser.set_defaults(handler=drain.drain_command)

    hosts = commands.add_parser("hosts", help="the DockerHosts: readiness, versions, migrations running")
    hosts.set_defaults(handler=hosts_command)
    add_host = hosts.add_subparsers(dest="hosts_command", metavar="add").add_parser(
        "add",
        help="register a Docker host: a Secret with its SSH key and a DockerHost pinning its host key",
        description="Read a host's SSH host key (ssh-keyscan), then create the Secret holding the "
        "private key and the DockerHost; say what was created.",
    )
    host_registration.add_arguments(add_host)
    add_host.set_defaults(handler=host_registration.add_host_command)


def run(args: argparse.Namespace, connect: Callable[[], MigrationApi] = KubeApi) -> int:
    """Runs the chosen client subcommand against the cluster `connect` reaches; its exit code."""
    command: Command = args.handler
    try:
        return command(args, connect(), sys.stdout)
    except ClientError as error:
        print(f"error: {error}", file=sys.stderr)
        return ExitCode.ERROR


def migrate_command(args: argparse.Namespace, api: MigrationApi, out: TextIO) -> ExitCode:
    namespace = args.namespace or api.namespace
    request = MigrateRequest(
        target=args.target,
        namespace=namespace,
        source=args.source,
        container=args.container,
        pid=args.pid,
        process=args.process,
        compose_project=args.compose_project,
        strategy=args.strategy,
        redirect=args.redirect,
        name=args.name,
    )
    name = api.create_migration(migration_manifest(request))["metadata"]["name"]
    print(f"migration.ferry.dev/{name} created", file=out)
    if not args.wait:
        return ExitCode.SUCCEEDED
    return wait_for_end(api, namespace, name, args.timeout, Console(file=out))


def get_command(args: argparse.Namespace, api: MigrationApi, out: TextIO) -> ExitCode:
    namespace = args.namespace or api.namespace
    if args.name is not None:
        items = [_existing(api, namespace, args.name)]
    else:
        items = api.list_migrations(None if args.all_namespaces else namespace)
    if args.output is not None:
        print(as_document(items[0] if args.name is not None else items, args.output), file=out)
    elif items:
        print(migrations_table(items, now(), with_namespace=args.all_namespaces), file=out)
    else:
        print(f"no Migrations in {'any namespace' if args.all_namespaces else namespace}", file=out)
    return ExitCode.SUCCEEDED


def describe_command(args: argparse.Namespace, api: MigrationApi, out: TextIO) -> ExitCode:
    print(describe(_existing(api, args.namespace or api.namespace, args.name), now()), file=out)
    return ExitCode.SUCCEEDED


def hosts_command(args: argparse.Namespace, api: MigrationApi, out: TextIO) -> ExitCode:
    print(hosts_table(api.list_docker_hosts(), api.list_migrations(None)), file=out)
    return ExitCode.SUCCEEDED


def _existing(api: MigrationApi, namespace: str, name: str) -> dict[str, Any]:
    resource = api.get_migration(namespace, name)
    if resource is None:
        raise ClientError(f"Migration {namespace}/{name} not found")
    return resource


def _namespace_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--namespace", help="default: the kubeconfig context's namespace")
