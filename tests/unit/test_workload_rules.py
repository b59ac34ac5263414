"""Which workloads a namespace may move (ferry.migration.workload_rules): each decision alone."""

from __future__ import annotations

from typing import Any

import pytest

from ferry.api import DockerHostSpec, ProcessRef, Workload
from ferry.hosts.processes import ProcessInfo
from ferry.migration.workload_rules import container_problem, kind_problem, process_problem
from ferry.workloads import LabelSelector, ProcessSelector, WorkloadRule
from tests.unit.fakes import host_spec

CONTAINER = Workload(container="web")
PROCESS = Workload(process=ProcessRef(pid=4242))
MOVABLE = LabelSelector((("ferry.dev/movable", "true"),))
APP = ProcessSelector(("app",), ("/opt/app",))
WIDE = ProcessSelector(("*",), ("/",))


def host(name: str = "node1", *rules: WorkloadRule) -> DockerHostSpec:
    return host_spec(name, workloads=rules) if rules else host_spec(name)


def process(**fields: Any) -> ProcessInfo:
    values: dict[str, Any] = {
        "pid": 4242,
        "executable": "/opt/app/bin/app",
        "command": "app",
        "session": 4242,
        "open_fds": {},
        "uids": (1000, 1000, 1000, 1000),
        **fields,
    }
    return ProcessInfo(**values)


USERS = {0: "root", 1000: "app"}


# -- without a host: may the namespace move this kind of workload at all?


def test_by_default_a_host_lets_every_namespace_move_containers() -> None:
    assert kind_problem("team-a", CONTAINER, host()) is None


def test_by_default_a_host_refuses_process_migrations_saying_which_field_to_set() -> None:
    problem = kind_problem("team-a", PROCESS, host())

    assert problem is not None and problem.reason == "WorkloadNotAllowed"
    assert problem.message == (
        "DockerHost 'node1' lets Migrations from namespace 'team-a' move no plain processes: an admin "
        "must add a rule with processes (users and executables) for it to the DockerHost's spec.workloads"
    )


def test_a_process_rule_lets_processes_move() -> None:
    assert kind_problem("team-a", PROCESS, host("node1", WorkloadRule(processes=APP))) is None


def test_a_host_with_only_process_rules_refuses_containers() -> None:
    problem = kind_problem("team-a", CONTAINER, host("node1", WorkloadRule(processes=APP)))

    assert (
        problem is not None
        and "move no containers" in problem.message
        and "spec.workloads" in problem.message
    )


def test_a_rule_for_another_namespace_does_not_count() -> None:
    theirs = WorkloadRule(namespaces=("team-b",), processes=WIDE)

    assert kind_problem("team-a", PROCESS, host("node1", theirs)) is not None


# -- containers: their Docker labels


def test_a_container_selected_on_both_hosts_may_move() -> None:
    rule = WorkloadRule(containers=MOVABLE)
    hosts = (host("node1", rule), host("node2", rule))

    assert container_problem("team-a", "web", {"ferry.dev/movable": "true"}, hosts) is None


def test_a_container_the_target_does_not_select_is_refused_naming_the_host_and_its_selectors() -> None:
    hosts = (host("node1"), host("node2", WorkloadRule(containers=MOVABLE)))

    problem = container_problem("team-a", "web", {"app": "web"}, hosts)

    assert problem is not None and problem.reason == "WorkloadNotAllowed"
    assert problem.message.startswith(
        "container 'web' is selected by no rule of DockerHost 'node2' for namespace 'team-a' "
        "(spec.workloads[].containers: ferry.dev/movable=true)"
    )


def test_any_rule_of_the_namespace_may_select_the_container() -> None:
    rules = (WorkloadRule(containers=MOVABLE), WorkloadRule(containers=LabelSelector((("app", "web"),))))

    assert container_problem("team-a", "web", {"app": "web"}, (host("node1", *rules),)) is None


def test_another_namespaces_selector_does_not_select_for_this_one() -> None:
    theirs = WorkloadRule(namespaces=("team-b",), containers=LabelSelector())

    problem = container_problem("team-a", "web", {}, (host("node1", theirs),))

    assert problem is not None and "(spec.workloads[].containers: none)" in problem.message


# -- processes: what runs the host is never moved


@pytest.mark.parametrize(
    ("fields", "because"),
    [
        ({"pid": 1, "executable": "/sbin/init", "command": "systemd"}, "PID 1"),
        ({"executable": "", "command": "kworker/0:1"}, "kernel thread"),
        ({"executable": "/usr/sbin/sshd", "command": "sshd", "uids": (0,) * 4}, "sshd serves the host"),
        ({"executable": "/usr/lib/openssh/sshd-session", "command": "sshd-session"}, "sshd-session"),
        ({"executable": "/usr/sbin/sshd (deleted)", "command": "renamed"}, "sshd serves the host"),
        ({"executable": "/usr/bin/dockerd", "command": "dockerd"}, "dockerd"),
        ({"executable": "/usr/bin/containerd", "command": "containerd"}, "containerd"),
        ({"executable": "/usr/bin/containerd-shim-runc-v2", "command": "containerd-shim"}, "containerd-shim"),
        ({"executable": "/usr/sbin/runc", "command": "runc"}, "runc"),
        ({"in_host_mount_namespace": False}, "in a container"),
    ],
)
def test_a_process_that_runs_the_host_is_refused_even_by_the_widest_selector(
    fields: dict[str, Any], because: str
) -> None:
    wide = host("node1", WorkloadRule(processes=WIDE))

    problem = process_problem("team-a", process(**fields), USERS, (wide, wide), is_operator=False)

    assert problem is not None and problem.reason == "ProtectedProcess"
    assert "is never moved, whatever spec.workloads says" in problem.message and because in problem.message


def test_the_operator_itself_is_refused() -> None:
    wide = host("node1", WorkloadRule(processes=WIDE))

    problem = process_problem("team-a", process(), USERS, (wide,), is_operator=True)

    assert problem is not None and "the ferry operator itself" in problem.message


# -- processes: their users and executable


def test_a_process_of_a_selected_user_and_executable_may_move() -> None:
    rule = WorkloadRule(processes=APP)

    assert (
        process_problem(
            "team-a", process(), USERS, (host("node1", rule), host("node2", rule)), is_operator=False
        )
        is None
    )


def test_a_process_is_selected_by_uid_too() -> None:
    by_uid = host("node1", WorkloadRule(processes=ProcessSelector(("1000",), ("/opt/app",))))

    assert process_problem("team-a", process(), {}, (by_uid,), is_operator=False) is None


def test_every_uid_of_the_process_must_be_allowed() -> None:
    """A setuid program run by `app` has root as its effective user."""
    setuid = process(uids=(1000, 0, 0, 0))

    problem = process_problem(
        "team-a", setuid, USERS, (host("node1", WorkloadRule(processes=APP)),), is_operator=False
    )

    assert problem is not None and "user app, root" in problem.message


def test_a_process_outside_the_executables_is_refused_naming_the_host_and_the_selector() -> None:
    hosts = (host("node1", WorkloadRule(processes=APP)), host("node2", WorkloadRule(processes=APP)))

    problem = process_problem("team-a", process(executable="/usr/bin/perl"), USERS, hosts, is_operator=False)

    assert problem is not None and problem.reason == "WorkloadNotAllowed"
    assert problem.message == (
        "process 4242 (/usr/bin/perl, user app) is selected by no rule of DockerHost 'node1' for namespace "
        "'team-a' (spec.workloads[].processes: users [app] running executables under [/opt/app]): ask an "
        "admin to add its user and executable there"
    )


def test_the_target_must_select_the_process_too() -> None:
    hosts = (
        host("node1", WorkloadRule(processes=APP)),
        host("node2", WorkloadRule(processes=ProcessSelector(("root",), ("/",)))),
    )

    problem = process_problem("team-a", process(), USERS, hosts, is_operator=False)

    assert problem is not None and "DockerHost 'node2'" in problem.message


def test_user_and_executable_must_be_selected_by_the_same_rule() -> None:
    rules = (
        WorkloadRule(processes=ProcessSelector(("app",), ("/usr/bin/perl",))),
        WorkloadRule(processes=ProcessSelector(("root",), ("/opt/app",))),
    )

    assert (
        process_problem("team-a", process(), USERS, (host("node1", *rules),), is_operator=False) is not None
    )
