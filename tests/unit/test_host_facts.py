"""Facts read from a host before the freeze, from the output of the real commands (ss, df, ps, ...)."""

from __future__ import annotations

from typing import cast

import pytest

from ferry.hosts import facts
from ferry.hosts.docker_host import DockerHost
from tests.unit.fakes import FakeHost

MiB = 1 << 20


def fake(name: str = "node2") -> tuple[FakeHost, DockerHost]:
    host = FakeHost(name, [])
    return host, cast(DockerHost, host)


def test_listening_ports_are_read_for_tcp_and_udp_of_every_address_family() -> None:
    host, docker_host = fake()
    host.sockets = [
        "udp   UNCONN 0      0       127.0.0.53%lo:53          0.0.0.0:*",
        "tcp   LISTEN 0      4096          0.0.0.0:8080        0.0.0.0:*",
        "tcp   LISTEN 0      4096             [::]:8443           [::]:*",
        "tcp   LISTEN 0      128                 *:9090              *:*",
    ]

    assert facts.listening_ports(docker_host) == {("udp", 53), ("tcp", 8080), ("tcp", 8443), ("tcp", 9090)}


def test_ports_published_by_containers_name_the_running_container_that_publishes_each() -> None:
    host, docker_host = fake()
    host.engine.add("web-old", running=True, ports=(("tcp", 8080),))
    host.engine.add("stopped", running=False, ports=(("tcp", 9090),))

    assert facts.published_by_containers(docker_host) == {("tcp", 8080): "web-old"}


def test_available_disk_is_what_df_says_is_free() -> None:
    host, docker_host = fake()
    host.disk_available = 123456789

    assert facts.available_disk_bytes(docker_host, "/var/lib/docker") == 123456789


def test_available_memory_is_mem_available_in_bytes() -> None:
    host, docker_host = fake()
    host.memory_available = 512 * MiB

    assert facts.available_memory_bytes(docker_host) == 512 * MiB


def test_resident_memory_counts_a_process_and_its_descendants_only() -> None:
    host, docker_host = fake()
    host.processes = [
        (1, 0, 9000, 0, "init"),
        (42, 1, 1000, 0, "nginx"),
        (43, 42, 200, 33, "nginx"),
        (44, 43, 30, 33, "sh"),
        (50, 1, 7000, 0, "sshd"),
    ]

    tree = facts.process_tree(docker_host, 42)

    assert facts.resident_bytes(tree) == (1000 + 200 + 30) * 1024
    assert [(process.pid, process.uids, process.command) for process in tree] == [
        (42, (0, 0, 0), "nginx"),
        (43, (33, 33, 33), "nginx"),
        (44, (33, 33, 33), "sh"),
    ]


def test_a_command_name_with_spaces_is_read_whole() -> None:
    host, docker_host = fake()
    host.processes = [(42, 1, 1000, 0, "tmux: server")]

    assert facts.process_tree(docker_host, 42)[0].command == "tmux: server"


def test_a_capability_is_read_from_what_the_commands_ferry_runs_hold() -> None:
    host, docker_host = fake()
    assert facts.has_capability(docker_host, facts.CAP_SYS_RESOURCE)
    host.capabilities = 0x1FFFEFFFFFF  # a host that is itself a container without CAP_SYS_RESOURCE

    assert not facts.has_capability(docker_host, facts.CAP_SYS_RESOURCE)


def test_criu_not_on_the_path_reads_as_not_installed() -> None:
    host, docker_host = fake()
    host.criu_check = (127, "bash: line 1: criu: command not found")

    check = docker_host.criu.check()

    assert (check.passed, check.installed) == (False, False)
    assert check.output == "bash: line 1: criu: command not found"


@pytest.mark.parametrize(("machine", "name"), [("x86_64", "amd64"), ("aarch64", "arm64"), ("s390x", "s390x")])
def test_the_host_architecture_is_named_as_images_name_it(machine: str, name: str) -> None:
    host, docker_host = fake()
    host.engine.architecture = machine

    assert facts.architecture(docker_host) == name


def test_an_image_gives_its_architecture_and_size() -> None:
    host, docker_host = fake("node1")
    host.engine.add_image("sha256:abc", architecture="arm64", size=7 * MiB)

    assert facts.image(docker_host, "sha256:abc") == facts.Image(architecture="arm64", bytes=7 * MiB)
