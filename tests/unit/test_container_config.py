"""Specification of the create body of a twin container (ferry.migration.container_config)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from ferry.migration.container_config import clone_create_body

IMAGE_ID = "sha256:" + "c" * 64
MIGRATION_LABEL = {"ferry.dev/migration": "0b7e6a52-uid"}


def inspect(
    *,
    labels: dict[str, str] | None = None,
    networks: dict[str, Any] | None = None,
    **config: Any,
) -> dict[str, Any]:
    """An abridged `docker inspect` of a running container."""
    base_config: dict[str, Any] = {
        "Hostname": "3f4e8a9b2c1d",
        "Domainname": "",
        "User": "app",
        "AttachStdin": False,
        "AttachStdout": True,
        "AttachStderr": True,
        "ExposedPorts": {"8080/tcp": {}},
        "Tty": False,
        "OpenStdin": False,
        "StdinOnce": False,
        "Env": ["PATH=/usr/bin", "MODE=prod"],
        "Cmd": ["serve", "--port", "8080"],
        "Healthcheck": {"Test": ["CMD", "true"], "Interval": 1_000_000_000},
        "Image": "registry.example/web:1.2",
        "Volumes": {"/data": {}},
        "WorkingDir": "/srv",
        "Entrypoint": ["/entrypoint.sh"],
        "OnBuild": None,
        "Labels": {"app": "web", "tier": "front"} if labels is None else labels,
        "StopSignal": "SIGTERM",
        "StopTimeout": 20,
    }
    base_config.update(config)
    return {
        "Id": "3f4e8a9b2c1d" + "0" * 52,
        "Name": "/web",
        "Image": IMAGE_ID,
        "Config": base_config,
        "HostConfig": {
            "Binds": ["/srv/data:/data"],
            "NetworkMode": "bridge",
            "PortBindings": {"8080/tcp": [{"HostIp": "", "HostPort": "18080"}]},
            "RestartPolicy": {"Name": "unless-stopped", "MaximumRetryCount": 0},
            "Memory": 268435456,
        },
        "NetworkSettings": {
            "Networks": {"bridge": {"Aliases": None, "IPAddress": "172.17.0.2"}}
            if networks is None
            else networks
        },
    }


COPIED_FIELDS = [
    "Hostname",
    "Domainname",
    "User",
    "AttachStdin",
    "AttachStdout",
    "AttachStderr",
    "ExposedPorts",
    "Tty",
    "OpenStdin",
    "StdinOnce",
    "Env",
    "Cmd",
    "Healthcheck",
    "Volumes",
    "WorkingDir",
    "Entrypoint",
    "StopSignal",
    "StopTimeout",
]


@pytest.mark.parametrize("key", COPIED_FIELDS)
def test_config_field_is_copied(key: str) -> None:
    info = inspect()

    assert clone_create_body(info)[key] == info["Config"][key]


def test_false_and_empty_config_values_are_copied_not_dropped() -> None:
    body = clone_create_body(inspect(Tty=False, Domainname=""))

    assert body["Tty"] is False
    assert body["Domainname"] == ""


def test_config_fields_that_are_null_are_left_out() -> None:
    body = clone_create_body(inspect(Entrypoint=None, OnBuild=None))

    assert "Entrypoint" not in body
    assert "OnBuild" not in body


def test_config_fields_docker_derives_are_not_copied() -> None:
    body = clone_create_body(inspect(MacAddress="02:42:ac:11:00:02"))

    assert "MacAddress" not in body


def test_given_image_is_used() -> None:
    body = clone_create_body(inspect(), image="registry.example/web:1.2")

    assert body["Image"] == "registry.example/web:1.2"


def test_without_an_image_the_original_image_id_is_used() -> None:
    assert clone_create_body(inspect())["Image"] == IMAGE_ID


def test_added_labels_are_merged_with_the_original_ones() -> None:
    body = clone_create_body(inspect(labels={"app": "web", "tier": "front"}), labels=MIGRATION_LABEL)

    assert body["Labels"] == {"app": "web", "tier": "front", **MIGRATION_LABEL}


def test_without_added_labels_the_original_labels_are_kept() -> None:
    body = clone_create_body(inspect(labels={"app": "web"}))

    assert body["Labels"] == {"app": "web"}


def test_container_without_labels_gets_only_the_added_ones() -> None:
    info = inspect()
    info["Config"]["Labels"] = None

    assert clone_create_body(info, labels=MIGRATION_LABEL)["Labels"] == MIGRATION_LABEL


def test_added_label_overrides_an_original_label_of_the_same_key() -> None:
    body = clone_create_body(
        inspect(labels={"ferry.dev/migration": "an-older-uid", "app": "web"}), labels=MIGRATION_LABEL
    )

    assert body["Labels"] == {"ferry.dev/migration": "0b7e6a52-uid", "app": "web"}


def test_cloning_does_not_modify_the_inspected_container() -> None:
    info = inspect()
    before = copy.deepcopy(info)

    clone_create_body(info, image="other:tag", labels=MIGRATION_LABEL)

    assert info == before


def test_host_config_is_copied() -> None:
    info = inspect()

    body = clone_create_body(info)

    assert body["HostConfig"] == info["HostConfig"]


def test_host_config_is_a_copy_not_the_inspected_mapping() -> None:
    info = inspect()

    body = clone_create_body(info)
    body["HostConfig"]["Memory"] = 1

    assert info["HostConfig"]["Memory"] == 268435456


@pytest.mark.parametrize("network", ["bridge", "host", "none", "default"])
def test_builtin_network_gives_no_networking_config(network: str) -> None:
    body = clone_create_body(inspect(networks={network: {"Aliases": None}}))

    assert "NetworkingConfig" not in body


def test_custom_network_goes_into_networking_config_with_its_aliases() -> None:
    body = clone_create_body(
        inspect(networks={"backend": {"Aliases": ["web", "api"], "IPAddress": "10.0.0.5"}})
    )

    assert body["NetworkingConfig"] == {"EndpointsConfig": {"backend": {"Aliases": ["web", "api"]}}}


def test_a_fixed_address_on_a_custom_network_is_kept() -> None:
    fixed = {"IPv4Address": "10.0.0.5"}
    body = clone_create_body(
        inspect(networks={"backend": {"Aliases": ["web"], "IPAMConfig": fixed, "IPAddress": "10.0.0.5"}})
    )

    assert body["NetworkingConfig"] == {
        "EndpointsConfig": {"backend": {"Aliases": ["web"], "IPAMConfig": fixed}}
    }


def test_only_custom_networks_go_into_networking_config() -> None:
    networks = {
        "bridge": {"Aliases": None},
        "backend": {"Aliases": ["web"]},
        "metrics": {"Aliases": None},
    }

    body = clone_create_body(inspect(networks=networks))

    assert body["NetworkingConfig"] == {
        "EndpointsConfig": {"backend": {"Aliases": ["web"]}, "metrics": {"Aliases": None}}
    }


def test_container_without_network_settings_gives_no_networking_config() -> None:
    info = inspect()
    del info["NetworkSettings"]

    assert "NetworkingConfig" not in clone_create_body(info)


def test_container_with_no_networks_gives_no_networking_config() -> None:
    assert "NetworkingConfig" not in clone_create_body(inspect(networks={}))
