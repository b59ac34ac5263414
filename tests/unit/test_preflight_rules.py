"""The preflight rules: each judges the facts gathered before the freeze, and says what to fix."""

from __future__ import annotations

from ferry.hosts.criu import CriuCheck
from ferry.hosts.facts import Process
from ferry.migration import preflight
from ferry.migration.preflight import Check, Disk, evaluate, with_margin
from tests.unit.fakes import GiB, preflight_facts

MiB = 1 << 20


def failed(**overrides: object) -> list[Check]:
    return [check for check in evaluate(preflight_facts(**overrides)) if not check.passed]


def test_a_live_move_with_everything_in_place_passes_every_check() -> None:
    checks = evaluate(preflight_facts())

    assert [(c.name, c.passed) for c in checks] == [
        ("PortsFree", True),
        ("TargetDiskSpace", True),
        ("SourceDiskSpace", True),
        ("TargetMemory", True),
        ("CRIUCheck", True),
        ("CPU", True),
        ("Architecture", True),
        ("Networks", True),
    ]


def test_a_cold_move_has_no_checkpoint_checks() -> None:
    names = [
        check.name for check in evaluate(preflight_facts(live=False, checkpoint_bytes=0, criu={}, cpu=None))
    ]

    assert names == ["PortsFree", "TargetDiskSpace", "Architecture", "Networks"]


# -- PortsFree


def test_a_port_published_by_a_container_on_the_target_is_taken_naming_the_container() -> None:
    (check,) = failed(published_on_target={("tcp", 8080): "web-old"})

    assert (check.name, check.reason) == ("PortsFree", "PortTaken")
    assert "8080/tcp is already published on node2 by container web-old" in check.message


def test_a_port_a_host_process_listens_on_is_taken() -> None:
    (check,) = failed(listening_on_target={("tcp", 8080)})

    assert check.reason == "PortTaken"
    assert "8080/tcp is in use on node2 by a process there" in check.message


def test_a_taken_port_says_what_to_fix() -> None:
    (check,) = failed(listening_on_target={("tcp", 8080)})

    assert check.message.endswith("stop what holds it, or publish the container on another port")


def test_a_udp_socket_does_not_take_the_same_tcp_port() -> None:
    assert failed(listening_on_target={("udp", 8080)}) == []


def test_every_taken_port_is_named() -> None:
    (check,) = failed(
        ports=[("tcp", 8080), ("udp", 5353)], listening_on_target={("tcp", 8080), ("udp", 5353)}
    )

    assert "8080/tcp" in check.message and "5353/udp" in check.message


# -- disk space


def test_the_target_needs_room_for_the_image_the_layer_and_the_checkpoint_with_a_margin() -> None:
    need = with_margin((5 + 10 + 100) * MiB)

    assert failed(target_disk=Disk("/var/lib/docker", need)) == []
    (check,) = failed(target_disk=Disk("/var/lib/docker", need - 1))
    assert (check.name, check.reason) == ("TargetDiskSpace", "NoDiskSpace")


def test_an_image_the_target_has_needs_no_room_there() -> None:
    need = with_margin((10 + 100) * MiB)

    assert failed(image_bytes_to_copy=None, target_disk=Disk("/var/lib/docker", need)) == []


def test_a_cold_move_needs_no_room_for_a_checkpoint_on_the_target() -> None:
    need = with_margin((5 + 10) * MiB)
    cold = {"live": False, "checkpoint_bytes": 0, "criu": {}}

    assert failed(target_disk=Disk("/var/lib/docker", need), **cold) == []


def test_too_little_room_on_the_target_names_the_directory_and_what_needs_it() -> None:
    (check,) = failed(target_disk=Disk("/srv/docker", 50 * MiB))

    assert check.message.startswith("node2 has 50.0 MiB free in /srv/docker and needs")
    assert (
        "image busybox (5.0 MiB), its writable layer (10.0 MiB), the checkpoint (100.0 MiB)" in check.message
    )


def test_the_target_needs_room_for_the_volumes_too() -> None:
    need = with_margin((5 + 10 + 100 + 300) * MiB)

    assert failed(volume_bytes=300 * MiB, target_disk=Disk("/var/lib/docker", need)) == []
    (check,) = failed(volume_bytes=300 * MiB, target_disk=Disk("/var/lib/docker", need - 1))
    assert (check.name, check.reason) == ("TargetDiskSpace", "NoDiskSpace")
    assert "its volumes (300.0 MiB)" in check.message


def test_the_source_needs_room_for_the_checkpoint() -> None:
    (check,) = failed(source_disk=Disk("/var/lib/docker", with_margin(100 * MiB) - 1))

    assert (check.name, check.reason) == ("SourceDiskSpace", "NoDiskSpace")
    assert check.message.startswith("node1 has")


# -- memory


def test_the_target_needs_memory_for_the_containers_resident_memory() -> None:
    (check,) = failed(target_memory=64 * MiB)

    assert (check.name, check.reason) == ("TargetMemory", "NotEnoughMemory")
    assert "node2 has 64.0 MiB of memory available and the container holds 100.0 MiB" in check.message


# -- CRIU


def test_criu_not_installed_on_a_host_is_criu_missing_naming_the_host() -> None:
    criu = {"node1": CriuCheck(0, "Looks good."), "node2": CriuCheck(127, "bash: criu: command not found")}

    (check,) = failed(criu=criu)

    assert (check.name, check.reason) == ("CRIUCheck", "CRIUMissing")
    assert check.message.startswith("CRIU is not installed on host node2 (bash: criu: command not found)")


def test_a_failing_criu_check_is_reported_with_its_last_line() -> None:
    output = "Warn: something\nError (criu/cr-check.c:1100): Kernel doesn't support PTRACE_O_SUSPEND_SECCOMP"
    criu = {"node1": CriuCheck(1, output), "node2": CriuCheck(0, "Looks good.")}

    (check,) = failed(criu=criu)

    assert check.reason == "CRIUCheckFailed"
    assert "`criu check` fails on node1 (Error (criu/cr-check.c:1100): Kernel doesn't" in check.message


# -- ProcessUsers

NGINX_WORKERS = [Process(43, 1 << 20, (33, 33, 33), "nginx"), Process(44, 1 << 20, (33, 33, 33), "nginx")]


def test_other_users_processes_on_a_host_whose_root_lacks_cap_sys_resource_are_refused_by_name() -> None:
    (check,) = failed(other_users=NGINX_WORKERS, source_checkpoints_other_users=False)

    assert (check.name, check.reason) == ("ProcessUsers", "CheckpointNotPermitted")
    assert "root there lacks CAP_SYS_RESOURCE" in check.message
    assert "it runs nginx (uid 33), nginx (uid 33)" in check.message
    assert check.message.endswith("or use strategy: Cold")


def test_processes_of_other_users_pass_where_root_may_checkpoint_them() -> None:
    checks = evaluate(preflight_facts(other_users=NGINX_WORKERS))

    assert ("ProcessUsers", True) in [(c.name, c.passed) for c in checks]


def test_a_long_list_of_other_users_processes_is_cut_short() -> None:
    many = [Process(pid, 0, (0, 1000, 0), "worker") for pid in range(10, 20)]

    (check,) = failed(other_users=many, source_checkpoints_other_users=False)

    assert "worker (uid 1000) and 6 more" in check.message


# -- architecture and networks


def test_an_image_of_another_architecture_than_the_target_fails() -> None:
    (check,) = failed(image_architecture="arm64")

    assert (check.name, check.reason) == ("Architecture", "ArchitectureMismatch")
    assert (
        check.message
        == "image busybox is built for arm64 and node2 is amd64: choose a targetHost that is arm64"
    )


def test_a_missing_network_ferry_cannot_make_is_named_with_its_driver() -> None:
    (check,) = failed(
        networks=["backend", "frontend"],
        target_networks={"bridge", "frontend"},
        networks_unmakeable={"backend": "overlay, swarm scope"},
    )

    assert (check.name, check.reason) == ("Networks", "NetworkMissing")
    assert check.message.startswith(
        "network backend (overlay, swarm scope) does not exist on node2, and ferry makes only local bridge"
    )
    assert check.message.endswith("create it there first (docker network create), with the same options")


def test_a_missing_local_bridge_network_passes_saying_it_will_be_made() -> None:
    checks = evaluate(
        preflight_facts(networks=["backend", "frontend"], target_networks={"bridge", "frontend"})
    )

    [network] = [check for check in checks if check.name == "Networks"]
    assert network.passed
    assert network.message == "network backend will be made on node2 as node1 has it"


# -- the outcome


def test_no_problem_when_every_check_passed() -> None:
    assert preflight.problem(evaluate(preflight_facts())) is None


def test_the_problem_has_the_first_failed_reason_and_every_failed_message() -> None:
    checks = evaluate(preflight_facts(listening_on_target={("tcp", 8080)}, target_memory=1 * MiB))

    found = preflight.problem(checks)

    assert found is not None
    assert found.reason == "PortTaken"
    assert "8080/tcp" in found.message and "of memory available" in found.message


def test_the_report_lists_the_checks_and_what_a_real_run_would_move() -> None:
    facts = preflight_facts()

    status = preflight.report(facts, evaluate(facts))

    assert status["checks"][0] == {
        "name": "PortsFree",
        "passed": True,
        "message": "the ports the container publishes are free on node2: 8080/tcp",
    }
    assert status["imageToCopy"] == {"name": "busybox", "bytes": 5 * MiB}
    assert (status["expectedCheckpointBytes"], status["rootfsBytes"]) == (100 * MiB, 10 * MiB)


def test_the_report_of_a_cold_move_with_the_image_there_has_only_the_layer_size() -> None:
    facts = preflight_facts(live=False, checkpoint_bytes=0, criu={}, cpu=None, image_bytes_to_copy=None)

    status = preflight.report(facts, evaluate(facts))

    assert set(status) == {"checks", "rootfsBytes"}


def test_sizes_read_in_mebibytes_below_a_gibibyte_and_gibibytes_above() -> None:
    assert (preflight.size_text(3 * MiB // 2), preflight.size_text(3 * GiB // 2)) == ("1.5 MiB", "1.5 GiB")


# -- the CPU


def test_a_target_cpu_criu_finds_lacking_fails_naming_both_hosts_and_what_it_lacks() -> None:
    (check,) = failed(cpu=CriuCheck(1, "Error (criu/cpu.c:235): CPU has no avx512f"))

    assert (check.name, check.reason) == ("CPU", "CPUMismatch")
    assert check.message.startswith("the CPU of node2 lacks what the workload may use on node1's")
    assert "CPU has no avx512f" in check.message and "strategy: Cold" in check.message


def test_the_cpu_is_not_judged_without_a_comparison() -> None:
    assert "CPU" not in [check.name for check in evaluate(preflight_facts(cpu=None))]
