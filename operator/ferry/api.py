"""Typed views of the DockerHost and Migration resources, and their validation.

The CRD schemas reject most bad input at admission; these checks repeat the ones the operator
relies on, so that a resource created before a schema change (or with the schema missing) still
ends with a clear message instead of a traceback.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from ferry.workloads import DEFAULT_WORKLOADS, LabelRequirement, LabelSelector, ProcessSelector, WorkloadRule

GROUP = "ferry.dev"
VERSION = "v1alpha1"
MIGRATIONS = "migrations"
DOCKER_HOSTS = "dockerhosts"
EVACUATIONS = "evacuations"

CONTAINER_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
HOST_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
COMPOSE_PROJECT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
PROCESS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+:-]{0,14}$")
ABSOLUTE_PATH = re.compile(r"^/[A-Za-z0-9._/-]+$")
POLICY_PATH = re.compile(r"^/[A-Za-z0-9._/+-]*$")  # "/" too: every path
LABEL_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
HOST_KEY = re.compile(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/]+={0,3}( .*)?$")


E = TypeVar("E", bound=StrEnum)


class SpecError(ValueError):
    """A resource's spec that cannot be acted on; the message says what to fix."""


class Strategy(StrEnum):
    LIVE = "Live"
    COLD = "Cold"


class Transfer(StrEnum):
    STREAM = "Stream"
    SHARED_DIRECTORY = "SharedDirectory"


@dataclass(frozen=True)
class ProcessRef:
    pid: int | None = None
    name: str | None = None


COMPOSE_PROJECT_LABEL = "com.docker.compose.project"


@dataclass(frozen=True)
class ContainerGroup:
    """Every container on the source host that a label selector selects, moved together; a compose
    project is the selector on its project label."""

    selector: LabelSelector
    compose_project: str | None = None

    @classmethod
    def of_project(cls, project: str) -> ContainerGroup:
        return cls(LabelSelector(match_labels=((COMPOSE_PROJECT_LABEL, project),)), compose_project=project)

    def describe(self) -> str:
        if self.compose_project is not None:
            return f"compose/{self.compose_project}"
        return f"containers/{self.selector.describe()}"


@dataclass(frozen=True)
class Workload:
    container: str | None = None
    process: ProcessRef | None = None
    group: ContainerGroup | None = None

    @property
    def is_container(self) -> bool:
        """One container or several: what DockerHost rules call containers."""
        return self.process is None

    def describe(self) -> str:
        if self.container is not None:
            return f"container/{self.container}"
        if self.group is not None:
            return self.group.describe()
        assert self.process is not None
        return f"process/{self.process.pid if self.process.pid is not None else self.process.name}"


@dataclass(frozen=True)
class MigrationSpec:
    workload: Workload
    target_host: str
    source_host: str | None = None
    strategy: Strategy = Strategy.LIVE
    transfer: Transfer = Transfer.STREAM
    redirect: bool = False
    hold_connections: bool = True  # with redirect: new connections wait across the freeze
    keep_checkpoint: bool = False
    dry_run: bool = False  # preflight only: nothing is changed on any host
    timeout_seconds: int = 300
    # memory pulled from the source after the target runs (CRIU lazy pages; docs/postcopy.md)
    post_copy: bool = False

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> MigrationSpec:
        workload = _parse_workload(_mapping(spec, "workload", required=True))
        target = _host_name(spec, "targetHost", required=True)
        source = _host_name(spec, "sourceHost", required=False)
        if source is not None and source == target:
            raise SpecError(f"sourceHost and targetHost are both '{target}'; name two different hosts")
        if workload.process is not None and source is None:
            raise SpecError("a process workload needs spec.sourceHost")
        if workload.group is not None and source is None:
            raise SpecError("a composeProject or selector workload needs spec.sourceHost")
        dry_run = _boolean(spec, "dryRun")
        if dry_run and workload.process is not None:
            raise SpecError("spec.dryRun applies to a container workload, not to a process")
        post_copy = _boolean(spec, "postCopy")
        strategy = _enum(Strategy, spec, "strategy", Strategy.LIVE)
        if post_copy and (workload.container is None or strategy is not Strategy.LIVE):
            raise SpecError("spec.postCopy applies to a single container workload with strategy Live")
        timeout = spec.get("timeoutSeconds", 300)
        if not isinstance(timeout, int) or isinstance(timeout, bool) or not 10 <= timeout <= 86400:
            raise SpecError(f"spec.timeoutSeconds must be an integer from 10 to 86400, not {timeout!r}")
        assert target is not None
        return cls(
            workload=workload,
            target_host=target,
            source_host=source,
            strategy=strategy,
            transfer=_enum(Transfer, spec, "transfer", Transfer.STREAM),
            redirect=_boolean(spec, "redirect"),
            hold_connections=_boolean(spec, "holdConnections", default=True),
            keep_checkpoint=_boolean(spec, "keepCheckpoint"),
            dry_run=dry_run,
            timeout_seconds=timeout,
            post_copy=post_copy,
        )


class OnLiveFailure(StrEnum):
    """What an Evacuation does with a container whose live Migration fails or rolls back (a TTY,
    CRIU refusing it): move it cold (restarted on the target), leave it where it is, or stop."""

    COLD = "Cold"
    SKIP = "Skip"
    STOP = "Stop"


NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class EvacuationSpec:
    """Moves every running container of a host (those a selector selects) to other hosts."""

    source_host: str
    selector: LabelSelector = field(default_factory=LabelSelector)  # empty: every container there
    target_hosts: tuple[str, ...] = ()  # none: every Ready host but the source
    max_concurrent: int = 4  # Migrations of this Evacuation under way at once (each host's limit holds too)
    strategy: Strategy = Strategy.LIVE
    on_live_failure: OnLiveFailure = OnLiveFailure.SKIP  # nothing restarts unless asked
    migration_namespace: str = "default"  # where its Migrations are created

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> EvacuationSpec:
        where = "Evacuation"
        source = _host_name(spec, "sourceHost", required=True)
        assert source is not None
        targets = _strings(spec.get("targetHosts", []), "spec.targetHosts", where)
        for target in targets:
            if not HOST_NAME.fullmatch(target):
                raise SpecError(f"spec.targetHosts: {target!r} is not a DockerHost name")
        if source in targets:
            raise SpecError(f"spec.targetHosts names the source host '{source}'")
        namespace = spec.get("migrationNamespace", EvacuationSpec.migration_namespace)
        if not isinstance(namespace, str) or not NAMESPACE.fullmatch(namespace):
            raise SpecError(f"spec.migrationNamespace {namespace!r} is not a namespace name")
        return cls(
            source_host=source,
            selector=_label_selector(spec.get("selector", {}), "spec.selector", where),
            target_hosts=tuple(dict.fromkeys(targets)),
            max_concurrent=_bounded_integer(spec, "maxConcurrent", cls.max_concurrent, 1, 100, where),
            strategy=_enum(Strategy, spec, "strategy", Strategy.LIVE),
            on_live_failure=_enum(OnLiveFailure, spec, "onLiveFailure", OnLiveFailure.SKIP),
            migration_namespace=namespace,
        )


@dataclass(frozen=True)
class SecretKeyRef:
    name: str
    namespace: str
    key: str = "id_ed25519"


@dataclass(frozen=True)
class FastPathSpec:
    """The host opts into checkpoints and restores past Docker's checkpoint store (runc + ferry's runtime)."""

    exec_root: str = "/var/run/docker"
    daemon_config: str = "/etc/docker/daemon.json"


@dataclass(frozen=True)
class PeerTransferSpec:
    """Other hosts may stream to this one directly, with one-off keys added to this file."""

    authorized_keys_file: str = "/root/.ssh/authorized_keys"


@dataclass(frozen=True)
class DockerHostSpec:
    name: str
    address: str
    host_key: str
    ssh_key_secret: SecretKeyRef
    port: int = 22
    user: str = "root"
    docker_socket: str = "/var/run/docker.sock"
    max_concurrent_migrations: int = 2
    allowed_namespaces: tuple[str, ...] = field(default=("*",))
    shared_directory: str | None = None
    fast_path: FastPathSpec | None = None
    peer_transfer: PeerTransferSpec | None = None
    workloads: tuple[WorkloadRule, ...] = DEFAULT_WORKLOADS
    # What a twin container created on this host may have (it copies its source's HostConfig).
    allow_privileged: bool = False
    allow_host_paths: tuple[str, ...] = ()
    allow_devices: bool = False

    def allows_namespace(self, namespace: str) -> bool:
        return "*" in self.allowed_namespaces or namespace in self.allowed_namespaces

    def workload_rules(self, namespace: str) -> list[WorkloadRule]:
        """The rules of spec.workloads that apply to Migrations from `namespace`."""
        return [rule for rule in self.workloads if rule.applies_to(namespace)]

    @classmethod
    def from_resource(cls, name: str, spec: Mapping[str, Any]) -> DockerHostSpec:
        where = f"DockerHost {name}"
        address = spec.get("address")
        if not isinstance(address, str) or not address:
            raise SpecError(f"{where} has no spec.address")
        host_key = spec.get("hostKey")
        if not isinstance(host_key, str) or not HOST_KEY.fullmatch(host_key):
            raise SpecError(f"{where}: spec.hostKey must be a public key like 'ssh-ed25519 AAAA...'")
        ref = spec.get("sshKeySecretRef")
        if not isinstance(ref, Mapping) or not ref.get("name") or not ref.get("namespace"):
            raise SpecError(f"{where}: spec.sshKeySecretRef needs name and namespace")
        socket = spec.get("dockerSocket", "/var/run/docker.sock")
        shared = spec.get("sharedDirectory")
        fast = _optional_mapping(spec, "fastPath", where)
        peer = _optional_mapping(spec, "peerTransfer", where)
        fast_path = (
            FastPathSpec(
                exec_root=fast.get("execRoot", FastPathSpec.exec_root),
                daemon_config=fast.get("daemonConfig", FastPathSpec.daemon_config),
            )
            if fast is not None
            else None
        )
        peer_transfer = (
            PeerTransferSpec(
                authorized_keys_file=peer.get("authorizedKeysFile", PeerTransferSpec.authorized_keys_file)
            )
            if peer is not None
            else None
        )
        paths = {
            "dockerSocket": socket,
            "sharedDirectory": shared,
            "fastPath.execRoot": fast_path.exec_root if fast_path else None,
            "fastPath.daemonConfig": fast_path.daemon_config if fast_path else None,
            "peerTransfer.authorizedKeysFile": peer_transfer.authorized_keys_file if peer_transfer else None,
        }
        for label, path in paths.items():
            if path is not None and not (
                isinstance(path, str) and ABSOLUTE_PATH.fullmatch(path) and "/.." not in path
            ):
                raise SpecError(f"{where}: spec.{label} must be an absolute path, not {path!r}")
        return cls(
            name=name,
            address=address,
            host_key=host_key,
            ssh_key_secret=SecretKeyRef(
                name=str(ref["name"]), namespace=str(ref["namespace"]), key=str(ref.get("key", "id_ed25519"))
            ),
            port=_bounded_integer(spec, "port", 22, 1, 65535, where),
            user=str(spec.get("user", "root")),
            docker_socket=socket,
            max_concurrent_migrations=_bounded_integer(spec, "maxConcurrentMigrations", 2, 1, 64, where),
            allowed_namespaces=_strings(
                spec.get("allowedNamespaces", ["*"]), "spec.allowedNamespaces", where
            ),
            shared_directory=shared,
            fast_path=fast_path,
            peer_transfer=peer_transfer,
            workloads=_workloads(spec, where),
            allow_privileged=_boolean(spec, "allowPrivileged"),
            allow_host_paths=_paths(spec.get("allowHostPaths", []), "spec.allowHostPaths", where),
            allow_devices=_boolean(spec, "allowDevices"),
        )


def _workloads(spec: Mapping[str, Any], where: str) -> tuple[WorkloadRule, ...]:
    """spec.workloads; absent, the default: any container, no process."""
    value = spec.get("workloads")
    if value is None:
        return DEFAULT_WORKLOADS
    if not isinstance(value, list):
        raise SpecError(f"{where}: spec.workloads must be a list of rules, not {value!r}")
    return tuple(_workload_rule(item, f"spec.workloads[{index}]", where) for index, item in enumerate(value))


def _workload_rule(item: Any, key: str, where: str) -> WorkloadRule:
    if not isinstance(item, Mapping):
        raise SpecError(f"{where}: {key} must be an object")
    containers, processes = item.get("containers"), item.get("processes")
    return WorkloadRule(
        namespaces=_strings(item.get("namespaces", ["*"]), f"{key}.namespaces", where),
        containers=None if containers is None else _label_selector(containers, f"{key}.containers", where),
        processes=None if processes is None else _process_selector(processes, f"{key}.processes", where),
    )


def _label_selector(value: Any, key: str, where: str) -> LabelSelector:
    if not isinstance(value, Mapping):
        raise SpecError(f"{where}: {key} must be a label selector (matchLabels, matchExpressions)")
    labels = value.get("matchLabels") or {}
    if not isinstance(labels, Mapping) or not all(isinstance(text, str) for text in labels.values()):
        raise SpecError(f"{where}: {key}.matchLabels must map label keys to strings")
    expressions = value.get("matchExpressions") or []
    if not isinstance(expressions, list):
        raise SpecError(f"{where}: {key}.matchExpressions must be a list")
    return LabelSelector(
        match_labels=tuple(sorted((str(name), text) for name, text in labels.items())),
        match_expressions=tuple(
            _label_requirement(expression, f"{key}.matchExpressions[{index}]", where)
            for index, expression in enumerate(expressions)
        ),
    )


def _label_requirement(value: Any, key: str, where: str) -> LabelRequirement:
    if not isinstance(value, Mapping) or not isinstance(value.get("key"), str) or not value["key"]:
        raise SpecError(f"{where}: {key} needs a key")
    operator = value.get("operator")
    if operator not in LABEL_OPERATORS:
        raise SpecError(
            f"{where}: {key}.operator must be one of {', '.join(LABEL_OPERATORS)}, not {operator!r}"
        )
    values = _strings(value.get("values", []), f"{key}.values", where)
    if (operator in ("In", "NotIn")) != bool(values):
        raise SpecError(f"{where}: {key}.values must be given for In and NotIn, and only for them")
    return LabelRequirement(value["key"], operator, values)


def _process_selector(value: Any, key: str, where: str) -> ProcessSelector:
    if not isinstance(value, Mapping):
        raise SpecError(f"{where}: {key} must be an object with users and executables")
    users = _strings(value.get("users"), f"{key}.users", where)
    executables = _paths(value.get("executables"), f"{key}.executables", where)
    if not users or not executables:
        raise SpecError(f'{where}: {key} needs users and executables ("*" and "/" allow any)')
    return ProcessSelector(users, executables)


def _paths(value: Any, key: str, where: str) -> tuple[str, ...]:
    """Absolute paths without '..' ("/" included), for prefixes."""
    paths = _strings(value, key, where)
    for path in paths:
        if not POLICY_PATH.fullmatch(path) or ".." in path.split("/"):
            raise SpecError(f"{where}: {key} must hold absolute paths without '..', not {path!r}")
    return paths


def _strings(value: Any, key: str, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise SpecError(f"{where}: {key} must be a list of strings, not {value!r}")
    return tuple(value)


def _bounded_integer(spec: Mapping[str, Any], key: str, default: int, low: int, high: int, where: str) -> int:
    value = spec.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise SpecError(f"{where}: spec.{key} must be an integer from {low} to {high}, not {value!r}")
    return value


def _optional_mapping(spec: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any] | None:
    value = spec.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise SpecError(f"{where}: spec.{key} must be an object")
    return value


def _mapping(spec: Mapping[str, Any], key: str, *, required: bool) -> Mapping[str, Any]:
    value = spec.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(f"spec.{key} must be an object")
    return value


def _parse_workload(workload: Mapping[str, Any]) -> Workload:
    container = workload.get("container")
    process = workload.get("process")
    project, selector = workload.get("composeProject"), workload.get("selector")
    if [container, process, project, selector].count(None) != 3:
        raise SpecError(
            "set exactly one of spec.workload.container, spec.workload.process, spec.workload.composeProject "
            "and spec.workload.selector"
        )
    if project is not None:
        if not isinstance(project, str) or not COMPOSE_PROJECT.fullmatch(project):
            raise SpecError(
                f"spec.workload.composeProject {project!r} is not a compose project name "
                "([a-z0-9][a-z0-9_-]*)"
            )
        return Workload(group=ContainerGroup.of_project(project))
    if selector is not None:
        parsed = _label_selector(selector, "spec.workload.selector", "Migration")
        if not parsed.match_labels and not parsed.match_expressions:
            raise SpecError("spec.workload.selector is empty: it would select every container on the host")
        return Workload(group=ContainerGroup(parsed))
    if container is not None:
        if not isinstance(container, str) or not CONTAINER_NAME.fullmatch(container):
            raise SpecError(
                f"spec.workload.container {container!r} is not a Docker container name or ID "
                "([a-zA-Z0-9][a-zA-Z0-9_.-]+)"
            )
        return Workload(container=container)
    if not isinstance(process, Mapping):
        raise SpecError("spec.workload.process must be an object with pid or name")
    pid, name = process.get("pid"), process.get("name")
    if (pid is None) == (name is None):
        raise SpecError("set exactly one of spec.workload.process.pid and spec.workload.process.name")
    if pid is not None and (not isinstance(pid, int) or isinstance(pid, bool) or pid < 2):
        raise SpecError(f"spec.workload.process.pid must be a process ID above 1, not {pid!r}")
    if name is not None and (not isinstance(name, str) or not PROCESS_NAME.fullmatch(name)):
        raise SpecError(f"spec.workload.process.name {name!r} is not a process command name")
    return Workload(process=ProcessRef(pid=pid, name=name))


def _host_name(spec: Mapping[str, Any], key: str, *, required: bool) -> str | None:
    value = spec.get(key)
    if value is None:
        if required:
            raise SpecError(f"spec.{key} is required: name a DockerHost")
        return None
    if not isinstance(value, str) or not HOST_NAME.fullmatch(value):
        raise SpecError(f"spec.{key} {value!r} is not a DockerHost name")
    return value


def _enum(kind: type[E], spec: Mapping[str, Any], key: str, default: E) -> E:
    value = spec.get(key, default)
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(member.value for member in kind)
        raise SpecError(f"spec.{key} must be one of {choices}, not {value!r}") from None


def _boolean(spec: Mapping[str, Any], key: str, *, default: bool = False) -> bool:
    value = spec.get(key, default)
    if not isinstance(value, bool):
        raise SpecError(f"spec.{key} must be true or false, not {value!r}")
    return value
