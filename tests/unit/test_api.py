"""Specification of the typed views of Migration and DockerHost resources (ferry.api)."""

from __future__ import annotations

from typing import Any

import pytest

from ferry.api import (
    DockerHostSpec,
    MigrationSpec,
    ProcessRef,
    SecretKeyRef,
    SpecError,
    Strategy,
    Transfer,
    Workload,
)

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def migration(**overrides: Any) -> dict[str, Any]:
    """A valid Migration spec, with some keys replaced (a value of None removes the key)."""
    spec: dict[str, Any] = {"workload": {"container": "web"}, "targetHost": "node-b"}
    spec.update(overrides)
    return {key: value for key, value in spec.items() if value is not None}


def process_migration(process: Any) -> dict[str, Any]:
    return migration(workload={"process": process}, sourceHost="node-a")


def docker_host(**overrides: Any) -> dict[str, Any]:
    """A valid DockerHost spec, with some keys replaced (a value of None removes the key)."""
    spec: dict[str, Any] = {
        "address": "192.0.2.10",
        "hostKey": HOST_KEY,
        "sshKeySecretRef": {"name": "node-a-ssh", "namespace": "ferry-system"},
    }
    spec.update(overrides)
    return {key: value for key, value in spec.items() if value is not None}


# -- MigrationSpec.from_dict: accepted specs


def test_minimal_container_spec_gets_the_documented_defaults() -> None:
    parsed = MigrationSpec.from_dict(migration())

    assert parsed == MigrationSpec(
        workload=Workload(container="web"),
        target_host="node-b",
        source_host=None,
        strategy=Strategy.LIVE,
        transfer=Transfer.STREAM,
        redirect=False,
        keep_checkpoint=False,
        dry_run=False,
        timeout_seconds=300,
    )


def test_every_field_is_read_from_its_camel_case_key() -> None:
    parsed = MigrationSpec.from_dict(
        migration(
            sourceHost="node-a",
            strategy="Cold",
            transfer="SharedDirectory",
            redirect=True,
            keepCheckpoint=True,
            dryRun=True,
            timeoutSeconds=600,
        )
    )

    assert parsed.source_host == "node-a"
    assert parsed.strategy is Strategy.COLD
    assert parsed.transfer is Transfer.SHARED_DIRECTORY
    assert parsed.redirect is True
    assert parsed.keep_checkpoint is True
    assert parsed.dry_run is True
    assert parsed.timeout_seconds == 600


def test_container_may_be_given_by_docker_id() -> None:
    container_id = "3f4e8a9b2c1d"

    parsed = MigrationSpec.from_dict(migration(workload={"container": container_id}))

    assert parsed.workload == Workload(container=container_id)


def test_process_workload_by_pid_is_accepted_with_a_source_host() -> None:
    parsed = MigrationSpec.from_dict(process_migration({"pid": 4242}))

    assert parsed.workload == Workload(process=ProcessRef(pid=4242))
    assert parsed.source_host == "node-a"


def test_a_compose_project_is_the_group_its_project_label_selects() -> None:
    parsed = MigrationSpec.from_dict(migration(sourceHost="node-a", workload={"composeProject": "shop"}))

    assert parsed.workload.group is not None
    assert parsed.workload.group.selector.matches({"com.docker.compose.project": "shop", "x": "y"})
    assert not parsed.workload.group.selector.matches({"com.docker.compose.project": "shop2"})
    assert parsed.workload.describe() == "compose/shop"


def test_a_selector_workload_is_the_group_its_labels_select() -> None:
    selector = {"matchLabels": {"app": "shop"}, "matchExpressions": [{"key": "tier", "operator": "Exists"}]}
    parsed = MigrationSpec.from_dict(migration(sourceHost="node-a", workload={"selector": selector}))

    assert parsed.workload.group is not None
    assert parsed.workload.group.selector.matches({"app": "shop", "tier": "db"})
    assert not parsed.workload.group.selector.matches({"app": "shop"})
    assert parsed.workload.describe() == "containers/app=shop,tier"


def test_process_workload_by_name_is_accepted_with_a_source_host() -> None:
    parsed = MigrationSpec.from_dict(process_migration({"name": "redis-server"}))

    assert parsed.workload == Workload(process=ProcessRef(name="redis-server"))


@pytest.mark.parametrize("timeout", [10, 86400])
def test_timeout_bounds_are_inclusive(timeout: int) -> None:
    assert MigrationSpec.from_dict(migration(timeoutSeconds=timeout)).timeout_seconds == timeout


def test_pid_2_is_the_lowest_pid_accepted() -> None:
    parsed = MigrationSpec.from_dict(process_migration({"pid": 2}))

    assert parsed.workload.process == ProcessRef(pid=2)


# -- MigrationSpec.from_dict: rejected specs


BAD_MIGRATIONS: list[Any] = [
    pytest.param(migration(workload=None), "spec.workload", id="workload-missing"),
    pytest.param(migration(workload="web"), "spec.workload", id="workload-not-an-object"),
    pytest.param(migration(workload={}), "spec.workload.container", id="workload-empty"),
    pytest.param(
        migration(workload={"container": "web", "process": {"pid": 42}}, sourceHost="node-a"),
        "spec.workload.process",
        id="workload-container-and-process",
    ),
    pytest.param(migration(workload={"container": ""}), "spec.workload.container", id="container-empty"),
    pytest.param(migration(workload={"container": "w"}), "spec.workload.container", id="container-one-char"),
    pytest.param(
        migration(workload={"container": "-web"}), "spec.workload.container", id="container-leading-dash"
    ),
    pytest.param(
        migration(workload={"container": "web app"}), "spec.workload.container", id="container-space"
    ),
    pytest.param(
        migration(workload={"container": "web;reboot"}),
        "spec.workload.container",
        id="container-shell-metacharacter",
    ),
    pytest.param(migration(workload={"container": 42}), "spec.workload.container", id="container-int"),
    pytest.param(process_migration("nginx"), "spec.workload.process", id="process-not-an-object"),
    pytest.param(process_migration({}), "spec.workload.process.pid", id="process-neither-pid-nor-name"),
    pytest.param(
        process_migration({"pid": 42, "name": "nginx"}),
        "spec.workload.process.name",
        id="process-pid-and-name",
    ),
    pytest.param(process_migration({"pid": 1}), "spec.workload.process.pid", id="pid-init"),
    pytest.param(process_migration({"pid": 0}), "spec.workload.process.pid", id="pid-zero"),
    pytest.param(process_migration({"pid": -7}), "spec.workload.process.pid", id="pid-negative"),
    pytest.param(process_migration({"pid": "4242"}), "spec.workload.process.pid", id="pid-string"),
    pytest.param(process_migration({"pid": True}), "spec.workload.process.pid", id="pid-bool"),
    pytest.param(process_migration({"pid": 42.0}), "spec.workload.process.pid", id="pid-float"),
    pytest.param(process_migration({"name": ""}), "spec.workload.process.name", id="name-empty"),
    pytest.param(
        process_migration({"name": "a" * 16}), "spec.workload.process.name", id="name-longer-than-comm"
    ),
    pytest.param(process_migration({"name": "my app"}), "spec.workload.process.name", id="name-space"),
    pytest.param(
        process_migration({"name": "/usr/bin/redis"}), "spec.workload.process.name", id="name-is-a-path"
    ),
    pytest.param(migration(targetHost=None), "spec.targetHost", id="target-missing"),
    pytest.param(migration(targetHost="Node-B"), "spec.targetHost", id="target-uppercase"),
    pytest.param(migration(targetHost="-node"), "spec.targetHost", id="target-leading-dash"),
    pytest.param(migration(targetHost="node-"), "spec.targetHost", id="target-trailing-dash"),
    pytest.param(migration(targetHost=7), "spec.targetHost", id="target-int"),
    pytest.param(migration(sourceHost="node_a"), "spec.sourceHost", id="source-underscore"),
    pytest.param(migration(sourceHost=""), "spec.sourceHost", id="source-empty"),
    pytest.param(migration(sourceHost="node-b"), "sourceHost", id="source-equals-target"),
    pytest.param(
        migration(workload={"process": {"pid": 42}}), "spec.sourceHost", id="process-without-source"
    ),
    pytest.param(migration(timeoutSeconds=9), "spec.timeoutSeconds", id="timeout-too-short"),
    pytest.param(migration(timeoutSeconds=86401), "spec.timeoutSeconds", id="timeout-too-long"),
    pytest.param(migration(timeoutSeconds="300"), "spec.timeoutSeconds", id="timeout-string"),
    pytest.param(migration(timeoutSeconds=300.0), "spec.timeoutSeconds", id="timeout-float"),
    pytest.param(migration(timeoutSeconds=True), "spec.timeoutSeconds", id="timeout-bool"),
    pytest.param(migration(strategy="live"), "spec.strategy", id="strategy-wrong-case"),
    pytest.param(migration(strategy="Hot"), "spec.strategy", id="strategy-unknown"),
    pytest.param(migration(transfer="Rsync"), "spec.transfer", id="transfer-unknown"),
    pytest.param(migration(redirect="yes"), "spec.redirect", id="redirect-string"),
    pytest.param(migration(redirect=1), "spec.redirect", id="redirect-int"),
    pytest.param(migration(keepCheckpoint="true"), "spec.keepCheckpoint", id="keep-checkpoint-string"),
    pytest.param(migration(dryRun="true"), "spec.dryRun", id="dry-run-string"),
    pytest.param(process_migration({"pid": 42}) | {"dryRun": True}, "spec.dryRun", id="dry-run-of-a-process"),
    pytest.param(
        migration(workload={"composeProject": "shop"}), "spec.sourceHost", id="project-without-source"
    ),
    pytest.param(
        migration(sourceHost="node-a", workload={"composeProject": "Shop Front"}),
        "spec.workload.composeProject",
        id="project-not-a-compose-name",
    ),
    pytest.param(
        migration(sourceHost="node-a", workload={"selector": {}}),
        "spec.workload.selector",
        id="selector-empty",
    ),
    pytest.param(
        migration(sourceHost="node-a", workload={"selector": {"matchExpressions": [{"key": "a"}]}}),
        "spec.workload.selector.matchExpressions[0].operator",
        id="selector-without-operator",
    ),
    pytest.param(
        migration(sourceHost="node-a", workload={"container": "web", "composeProject": "shop"}),
        "spec.workload.composeProject",
        id="container-and-project",
    ),
    pytest.param(
        migration(sourceHost="node-a", workload={"composeProject": "shop"}, postCopy=True),
        "spec.postCopy",
        id="post-copy-of-a-group",
    ),
]


@pytest.mark.parametrize(("spec", "field"), BAD_MIGRATIONS)
def test_bad_migration_spec_is_rejected_naming_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as raised:
        MigrationSpec.from_dict(spec)

    assert field in str(raised.value)


def test_sourcehost_equal_to_targethost_is_rejected() -> None:
    with pytest.raises(SpecError, match="name two different hosts"):
        MigrationSpec.from_dict(migration(sourceHost="node-b", targetHost="node-b"))


def test_process_workload_without_sourcehost_is_rejected() -> None:
    with pytest.raises(SpecError, match=r"process workload needs spec\.sourceHost"):
        MigrationSpec.from_dict(migration(workload={"process": {"name": "nginx"}}))


def test_bad_enum_message_lists_the_allowed_values() -> None:
    with pytest.raises(SpecError) as raised:
        MigrationSpec.from_dict(migration(transfer="Rsync"))

    assert "Stream" in str(raised.value)
    assert "SharedDirectory" in str(raised.value)
    assert "'Rsync'" in str(raised.value)


def test_bad_timeout_message_gives_the_allowed_range() -> None:
    with pytest.raises(SpecError, match="from 10 to 86400"):
        MigrationSpec.from_dict(migration(timeoutSeconds=5))


def test_spec_error_is_a_value_error() -> None:
    assert issubclass(SpecError, ValueError)


# -- Workload.describe


@pytest.mark.parametrize(
    ("workload", "description"),
    [
        (Workload(container="web"), "container/web"),
        (Workload(process=ProcessRef(pid=4242)), "process/4242"),
        (Workload(process=ProcessRef(name="redis-server")), "process/redis-server"),
    ],
)
def test_workload_describes_itself_as_kind_slash_identity(workload: Workload, description: str) -> None:
    assert workload.describe() == description


# -- DockerHostSpec.from_resource: accepted specs


def test_minimal_docker_host_gets_the_documented_defaults() -> None:
    host = DockerHostSpec.from_resource("node-a", docker_host())

    assert host == DockerHostSpec(
        name="node-a",
        address="192.0.2.10",
        host_key=HOST_KEY,
        ssh_key_secret=SecretKeyRef(name="node-a-ssh", namespace="ferry-system", key="id_ed25519"),
        port=22,
        user="root",
        docker_socket="/var/run/docker.sock",
        max_concurrent_migrations=2,
        allowed_namespaces=("*",),
        shared_directory=None,
    )


def test_every_docker_host_field_is_read_from_its_camel_case_key() -> None:
    host = DockerHostSpec.from_resource(
        "node-a",
        docker_host(
            sshKeySecretRef={"name": "keys", "namespace": "ops", "key": "id_rsa"},
            port=2222,
            user="ferry",
            dockerSocket="/run/user/1000/docker.sock",
            maxConcurrentMigrations=5,
            allowedNamespaces=["team-a", "team-b"],
            sharedDirectory="/srv/ferry",
        ),
    )

    assert host.ssh_key_secret == SecretKeyRef(name="keys", namespace="ops", key="id_rsa")
    assert host.port == 2222
    assert host.user == "ferry"
    assert host.docker_socket == "/run/user/1000/docker.sock"
    assert host.max_concurrent_migrations == 5
    assert host.allowed_namespaces == ("team-a", "team-b")
    assert host.shared_directory == "/srv/ferry"


@pytest.mark.parametrize(
    "host_key",
    [
        HOST_KEY,
        HOST_KEY + " root@node-a",
        "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ==",
        "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTY=",
        "ecdsa-sha2-nistp521 AAAAE2VjZHNhLXNoYTItbmlzdHA1MjE=",
    ],
)
def test_host_key_of_a_supported_type_is_accepted(host_key: str) -> None:
    assert DockerHostSpec.from_resource("node-a", docker_host(hostKey=host_key)).host_key == host_key


# -- DockerHostSpec.from_resource: rejected specs


BAD_DOCKER_HOSTS: list[Any] = [
    pytest.param(docker_host(address=None), "spec.address", id="address-missing"),
    pytest.param(docker_host(address=""), "spec.address", id="address-empty"),
    pytest.param(docker_host(address=10), "spec.address", id="address-int"),
    pytest.param(docker_host(hostKey=None), "spec.hostKey", id="host-key-missing"),
    pytest.param(docker_host(hostKey="AAAAC3NzaC1lZDI1NTE5"), "spec.hostKey", id="host-key-no-type"),
    pytest.param(docker_host(hostKey="ssh-ed25519"), "spec.hostKey", id="host-key-no-data"),
    pytest.param(docker_host(hostKey="ssh-dss AAAAB3NzaC1kc3M="), "spec.hostKey", id="host-key-dsa"),
    pytest.param(docker_host(hostKey="ssh-ed25519 ***"), "spec.hostKey", id="host-key-not-base64"),
    pytest.param(
        docker_host(hostKey="SHA256:+DiY3wvvV6TuJJhbpZisF/zLDA0zPMSvHdkr4UvCOqU"),
        "spec.hostKey",
        id="host-key-is-a-fingerprint",
    ),
    pytest.param(docker_host(sshKeySecretRef=None), "spec.sshKeySecretRef", id="secret-ref-missing"),
    pytest.param(docker_host(sshKeySecretRef="node-a-ssh"), "spec.sshKeySecretRef", id="secret-ref-string"),
    pytest.param(
        docker_host(sshKeySecretRef={"namespace": "ferry-system"}),
        "spec.sshKeySecretRef",
        id="secret-ref-no-name",
    ),
    pytest.param(
        docker_host(sshKeySecretRef={"name": "node-a-ssh"}),
        "spec.sshKeySecretRef",
        id="secret-ref-no-namespace",
    ),
    pytest.param(docker_host(dockerSocket="var/run/docker.sock"), "spec.dockerSocket", id="socket-relative"),
    pytest.param(
        docker_host(dockerSocket="unix:///var/run/docker.sock"), "spec.dockerSocket", id="socket-url"
    ),
    pytest.param(docker_host(dockerSocket="/var/run/my docker.sock"), "spec.dockerSocket", id="socket-space"),
    pytest.param(docker_host(dockerSocket=5), "spec.dockerSocket", id="socket-int"),
    pytest.param(docker_host(sharedDirectory="srv/ferry"), "spec.sharedDirectory", id="shared-relative"),
    pytest.param(docker_host(sharedDirectory="/srv/$HOME"), "spec.sharedDirectory", id="shared-dollar"),
    pytest.param(docker_host(sharedDirectory=""), "spec.sharedDirectory", id="shared-empty"),
]


@pytest.mark.parametrize(("spec", "field"), BAD_DOCKER_HOSTS)
def test_bad_docker_host_spec_is_rejected_naming_the_host_and_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as raised:
        DockerHostSpec.from_resource("node-a", spec)

    assert field in str(raised.value)
    assert "DockerHost node-a" in str(raised.value)


# A resource created without the CRD schema still ends with a clear message naming the field.
UNCHECKED_DOCKER_HOST_FIELDS: list[Any] = [
    pytest.param(docker_host(port="ssh"), "spec.port", id="port-not-a-number"),
    pytest.param(docker_host(port=0), "spec.port", id="port-zero"),
    pytest.param(docker_host(port=70000), "spec.port", id="port-above-65535"),
    pytest.param(
        docker_host(maxConcurrentMigrations="many"),
        "spec.maxConcurrentMigrations",
        id="max-concurrent-not-a-number",
    ),
    pytest.param(
        docker_host(maxConcurrentMigrations=0), "spec.maxConcurrentMigrations", id="max-concurrent-zero"
    ),
    pytest.param(docker_host(allowedNamespaces="team-a"), "spec.allowedNamespaces", id="namespaces-a-string"),
]


@pytest.mark.parametrize(("spec", "field"), UNCHECKED_DOCKER_HOST_FIELDS)
def test_out_of_schema_docker_host_numbers_and_lists_are_rejected_naming_the_field(
    spec: dict[str, Any], field: str
) -> None:
    with pytest.raises(SpecError) as raised:
        DockerHostSpec.from_resource("node-a", spec)

    assert field in str(raised.value)


def test_string_allowed_namespaces_never_allows_single_letter_namespaces() -> None:
    try:
        host = DockerHostSpec.from_resource("node-a", docker_host(allowedNamespaces="team-a"))
    except SpecError:
        return  # rejecting the spec is also correct
    assert not host.allows_namespace("t")
    assert host.allows_namespace("team-a")


# -- DockerHostSpec.allows_namespace


def test_wildcard_allows_every_namespace() -> None:
    host = DockerHostSpec.from_resource("node-a", docker_host(allowedNamespaces=["*"]))

    assert host.allows_namespace("default")
    assert host.allows_namespace("anything-else")


def test_wildcard_among_names_still_allows_every_namespace() -> None:
    host = DockerHostSpec.from_resource("node-a", docker_host(allowedNamespaces=["team-a", "*"]))

    assert host.allows_namespace("team-z")


def test_listed_namespace_is_allowed() -> None:
    host = DockerHostSpec.from_resource("node-a", docker_host(allowedNamespaces=["team-a", "team-b"]))

    assert host.allows_namespace("team-b")


def test_unlisted_namespace_is_refused() -> None:
    host = DockerHostSpec.from_resource("node-a", docker_host(allowedNamespaces=["team-a", "team-b"]))

    assert not host.allows_namespace("team-c")


def test_namespace_match_is_exact_not_prefix() -> None:
    host = DockerHostSpec.from_resource("node-a", docker_host(allowedNamespaces=["team"]))

    assert not host.allows_namespace("team-a")


def test_empty_allowed_namespaces_refuses_every_namespace() -> None:
    host = DockerHostSpec.from_resource("node-a", docker_host(allowedNamespaces=[]))

    assert not host.allows_namespace("default")
