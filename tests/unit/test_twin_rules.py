"""What a twin container would get on its target, and the target's allowances
(ferry.migration.twin_rules): privileges, host paths, devices, each alone."""

from __future__ import annotations

from typing import Any

import pytest

from ferry.migration.twin_rules import devices, host_paths, linked_host_path_problem, privileges, twin_problem
from tests.unit.fakes import host_spec

NODE2 = host_spec("node2")


def inspected(mounts: list[dict[str, Any]] | None = None, **host_config: Any) -> dict[str, Any]:
    """docker inspect of a container with this HostConfig and these Mounts."""
    return {"HostConfig": host_config, "Mounts": mounts or []}


def bind(source: str) -> dict[str, Any]:
    return {"Type": "bind", "Source": source, "Destination": "/data"}


def test_a_plain_container_needs_no_allowance() -> None:
    plain = inspected(
        [
            {
                "Type": "volume",
                "Name": "data",
                "Source": "/var/lib/docker/volumes/data/_data",
                "Destination": "/d",
            }
        ],
        NetworkMode="bridge",
        CapAdd=["NET_BIND_SERVICE", "cap_chown"],  # in Docker's default set
        SecurityOpt=["no-new-privileges"],
    )

    assert twin_problem("web", plain, NODE2) is None


@pytest.mark.parametrize(
    ("host_config", "found"),
    [
        ({"Privileged": True}, ["--privileged"]),
        ({"NetworkMode": "host"}, ["--network host"]),
        ({"PidMode": "host", "IpcMode": "host"}, ["--pid host", "--ipc host"]),
        ({"UTSMode": "host", "UsernsMode": "host"}, ["--uts host", "--userns host"]),
        (
            {"CapAdd": ["SYS_ADMIN", "CAP_NET_ADMIN", "ALL"]},
            ["--cap-add SYS_ADMIN", "--cap-add CAP_NET_ADMIN", "--cap-add ALL"],
        ),
        (
            {"SecurityOpt": ["seccomp=unconfined", "apparmor:unconfined"]},
            ["--security-opt seccomp=unconfined", "--security-opt apparmor:unconfined"],
        ),
        (
            {"SecurityOpt": ["label=disable", "systempaths=unconfined"]},
            ["--security-opt label=disable", "--security-opt systempaths=unconfined"],
        ),
        ({"PidMode": "container:abc", "NetworkMode": "my-net"}, []),
    ],
)
def test_privileges_are_what_podsecurity_baseline_forbids_in_docker_terms(
    host_config: dict[str, Any], found: list[str]
) -> None:
    assert privileges(host_config) == found


def test_a_privileged_twin_needs_allow_privileged() -> None:
    problem = twin_problem("web", inspected(Privileged=True, PidMode="host"), NODE2)

    assert problem is not None and problem.reason == "PrivilegedNotAllowed"
    assert problem.message == (
        "container 'web' would run privileged on node2 (--privileged, --pid host), which DockerHost 'node2' "
        "does not allow: set its spec.allowPrivileged: true, or run the container without them"
    )
    assert twin_problem("web", inspected(Privileged=True), host_spec("node2", allow_privileged=True)) is None


def test_host_paths_are_binds_and_volumes_with_a_device() -> None:
    info = inspected(
        [bind("/srv/data"), bind("/var/run/docker.sock")],
        Mounts=[
            {
                "Type": "volume",
                "VolumeOptions": {"DriverConfig": {"Options": {"device": "/etc", "o": "bind"}}},
            },
            {"Type": "volume", "VolumeOptions": {"DriverConfig": {"Options": {"device": "tmpfs"}}}},
        ],
    )

    assert host_paths(info) == ["/etc", "/srv/data", "/var/run/docker.sock"]


def test_a_host_path_outside_allow_host_paths_is_refused_naming_it_and_the_allowed_ones() -> None:
    target = host_spec("node2", allow_host_paths=("/srv/data",))

    problem = twin_problem("web", inspected([bind("/srv/data/x"), bind("/srv/database")]), target)

    assert problem is not None and problem.reason == "HostPathNotAllowed"
    assert problem.message == (
        "container 'web' mounts host path /srv/database, outside DockerHost 'node2''s spec.allowHostPaths "
        "([/srv/data]): add it there, or a directory above it"
    )


def test_a_host_path_inside_allow_host_paths_is_allowed() -> None:
    target = host_spec("node2", allow_host_paths=("/srv",))

    assert twin_problem("web", inspected([bind("/srv/data")]), target) is None


def test_by_default_any_bind_mount_is_refused() -> None:
    problem = twin_problem("web", inspected([bind("/tmp/x")]), NODE2)

    assert problem is not None and problem.reason == "HostPathNotAllowed"


def test_devices_are_devices_cgroup_rules_and_device_requests() -> None:
    host_config = {
        "Devices": [{"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse"}],
        "DeviceCgroupRules": ["c 10:229 rwm"],
        "DeviceRequests": [{"Driver": "nvidia", "Count": -1}],
    }

    assert devices(host_config) == ["/dev/fuse", "cgroup rule 'c 10:229 rwm'", "nvidia request"]


def test_devices_need_allow_devices() -> None:
    info = inspected(Devices=[{"PathOnHost": "/dev/kvm"}])

    problem = twin_problem("web", info, NODE2)

    assert (
        problem is not None
        and problem.reason == "DevicesNotAllowed"
        and "spec.allowDevices: true" in problem.message
    )
    assert twin_problem("web", info, host_spec("node2", allow_devices=True)) is None


def test_every_missing_allowance_is_in_one_message_with_the_first_ones_reason() -> None:
    info = inspected([bind("/etc")], Privileged=True, Devices=[{"PathOnHost": "/dev/kvm"}])

    problem = twin_problem("web", info, NODE2)

    assert problem is not None and problem.reason == "PrivilegedNotAllowed"
    assert all(field in problem.message for field in ("allowPrivileged", "allowHostPaths", "allowDevices"))


def test_an_allowed_path_whose_link_leads_outside_on_the_target_is_refused() -> None:
    target = host_spec("node2", allow_host_paths=("/srv/data",))
    links = {"/srv/data/etc": "/etc", "/srv/data/x": "/srv/data/x"}

    problem = linked_host_path_problem("web", inspected([bind("/srv/data/etc")]), target, links.get)

    assert problem is not None and problem.reason == "HostPathNotAllowed"
    assert "host path /srv/data/etc of container 'web' leads to /etc on node2" in problem.message
    assert linked_host_path_problem("web", inspected([bind("/srv/data/x")]), target, links.get) is None
