"""What of a container lives outside its checkpoint: volumes to copy, bind mounts to find, ports."""

from __future__ import annotations

from typing import Any

from ferry.migration.container_data import VolumeCopy, bind_sources, local_volumes, published_ports

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
