"""What of a container lives outside its checkpoint: volumes to copy, bind mounts to find, ports."""

from __future__ import annotations

from typing import Any

import pytest

from ferry.migration.container_data import (
    VolumeCopy,
    bind_sources,
    local_volumes,
    named_volumes,
    published_port_ranges,
    published_ports,
)
from ferry.migration.errors import Problem

SOURCE: dict[str, Any] = {
    "Mounts": [
        {
            "Type": "volume",
            "Name": "data",
            "Source": "/s/volumes/data/_data",
            "Destination": "/data",
            "Driver": "local",
        },
        {
            "Type": "volume",
            "Name": "nfs",
            "Source": "/s/volumes/nfs/_data",
            "Destination": "/nfs",
            "Driver": "nfsdriver",
        },
        {"Type": "bind", "Source": "/srv/config", "Destination": "/config"},
        {"Type": "tmpfs", "Destination": "/run"},
    ],
    "HostConfig": {
        "PortBindings": {
            "80/tcp": [{"HostIp": "", "HostPort": "8080"}],
            "53/udp": [{"HostPort": "5353"}],
            "9000/tcp": None,
        }
    },
}
TARGET: dict[str, Any] = {
    "Mounts": [
        {"Type": "volume", "Name": "data", "Source": "/t/volumes/data/_data", "Destination": "/data"},
        {"Type": "volume", "Name": "nfs", "Source": "/t/volumes/nfs/_data", "Destination": "/nfs"},
    ]
}


def test_local_named_volumes_are_paired_with_the_twins_volume() -> None:
    assert local_volumes(SOURCE, TARGET) == [
        VolumeCopy("data", "/s/volumes/data/_data", "/t/volumes/data/_data")
    ]


def test_volumes_of_other_drivers_are_left_to_their_driver() -> None:
    assert all(copy.name != "nfs" for copy in local_volumes(SOURCE, TARGET))


def test_bind_mounts_are_listed_with_both_paths() -> None:
    assert bind_sources(SOURCE) == [("/srv/config", "/config")]


def test_published_ports_list_protocol_and_host_port() -> None:
    assert published_ports(SOURCE) == [("tcp", 8080), ("udp", 5353)]


def test_a_container_without_mounts_or_ports_has_none() -> None:
    bare: dict[str, Any] = {"HostConfig": {}}
    assert (local_volumes(bare, bare), bind_sources(bare), published_ports(bare)) == ([], [], [])


def volume(name: str, destination: str, host: str = "s") -> dict[str, Any]:
    return {
        "Type": "volume",
        "Name": name,
        "Source": f"/{host}/volumes/{name}/_data",
        "Destination": destination,
        "Driver": "local",
    }


ANONYMOUS = "3f4c" * 16  # Docker names an anonymous volume with 64 hex digits


def test_an_anonymous_volume_is_paired_with_the_new_volume_the_twin_has_at_the_same_place() -> None:
    source = {"Mounts": [volume(ANONYMOUS, "/cache")]}
    target = {"Mounts": [volume("9e1d" * 16, "/cache", host="t")]}

    assert local_volumes(source, target) == [
        VolumeCopy(ANONYMOUS, f"/s/volumes/{ANONYMOUS}/_data", f"/t/volumes/{'9e1d' * 16}/_data")
    ]


def test_a_volume_the_twin_lacks_fails_naming_it_rather_than_being_dropped() -> None:
    with pytest.raises(Problem, match=f"no volume at /cache to copy volume {ANONYMOUS} into"):
        local_volumes({"Mounts": [volume(ANONYMOUS, "/cache")]}, {"Mounts": []})


def test_a_volume_mounted_at_two_places_is_copied_once() -> None:
    source = {"Mounts": [volume("data", "/a"), volume("data", "/b")]}
    target = {"Mounts": [volume("data", "/a", host="t"), volume("data", "/b", host="t")]}

    assert [copy.name for copy in local_volumes(source, target)] == ["data"]


def test_named_volumes_are_the_local_ones_the_configuration_names() -> None:
    info = {
        "HostConfig": {
            "Binds": ["data:/data:ro", "/srv/config:/config", "nfs:/nfs"],
            "Mounts": [
                {"Type": "volume", "Source": "logs", "Target": "/logs"},
                {"Type": "volume", "Target": "/tmp"},
            ],
        },
        "Mounts": [
            volume("data", "/data"),
            volume("logs", "/logs"),
            volume(ANONYMOUS, "/tmp"),
            volume("9e1d" * 16, "/cache"),  # from the image's VOLUME or `-v /cache`: named nowhere
            {**volume("nfs", "/nfs"), "Driver": "nfsdriver"},
            {"Type": "bind", "Source": "/srv/config", "Destination": "/config"},
        ],
    }

    assert named_volumes(info) == ["data", "logs"]


def test_a_port_published_on_a_range_of_host_ports_is_told_apart() -> None:
    info = {
        "HostConfig": {
            "PortBindings": {"80/tcp": [{"HostPort": "8000-8010"}], "53/udp": [{"HostPort": "53"}]}
        }
    }

    assert (published_ports(info), published_port_ranges(info)) == ([("udp", 53)], ["80/tcp on 8000-8010"])
