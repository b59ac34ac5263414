"""Which workloads a Migration may move, from its namespace, its spec and the DockerHosts'
spec.workloads (ferry.workloads), and never from its status: a tenant can patch that.

A workload must be selected by a rule of each of its two hosts (off the source, onto the target).
What can be known without a host (does any rule for the namespace select containers, or processes,
at all?) is decided by ferry.migration.runner.authorization_problem; the rest needs the container's
labels or the process's /proc, and is decided in Preparing, before anything is made. Some processes
are never moved, whatever the rules say: they run the host.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence

from ferry.api import DockerHostSpec, Workload
from ferry.hosts.processes import ProcessInfo
from ferry.migration.errors import Problem

# What runs the host itself, by command name or executable name: SSH, Docker and its runtimes, CRIU.
PROTECTED = frozenset(
    {"sshd", "sshd-session", "sshd-auth", "dockerd", "docker-proxy", "containerd", "runc", "criu"}
)
PROTECTED_PREFIX = "containerd-shim"  # containerd-shim, containerd-shim-runc-v2 ("containerd-shim" in comm)


def kind_problem(namespace: str, workload: Workload, host: DockerHostSpec) -> Problem | None:
    """Whether any rule of `host` for `namespace` selects this kind of workload at all."""
    rules = host.workload_rules(namespace)
    if workload.is_container:
        if any(rule.containers is not None for rule in rules):
            return None
        what, fix = "containers", "containers (a label selector; {} selects every container)"
    else:
        if any(rule.processes is not None for rule in rules):
            return None
        what, fix = "plain processes", "processes (users and executables)"
    return Problem(
        "WorkloadNotAllowed",
        f"DockerHost '{host.name}' lets Migrations from namespace '{namespace}' move no {what}: "
        f"an admin must add a rule with {fix} for it to the DockerHost's spec.workloads",
    )


def container_problem(
    namespace: str, name: str, labels: Mapping[str, str], hosts: Sequence[DockerHostSpec]
) -> Problem | None:
    """Whether a rule of each host selects the container by its Docker labels."""
    for host in hosts:
        selectors = [
            rule.containers for rule in host.workload_rules(namespace) if rule.containers is not None
        ]
        if not any(selector.matches(labels) for selector in selectors):
            listed = "; ".join(selector.describe() for selector in selectors) or "none"
            return Problem(
                "WorkloadNotAllowed",
                f"container '{name}' is selected by no rule of DockerHost '{host.name}' for namespace "
                f"'{namespace}' (spec.workloads[].containers: {listed}): label the container to match, "
                "or ask an admin to widen the selector",
            )
    return None


def process_problem(
    namespace: str,
    process: ProcessInfo,
    users: Mapping[int, str],
    hosts: Sequence[DockerHostSpec],
    *,
    is_operator: bool,
) -> Problem | None:
    """Whether the process may move: it is not one that runs the host, and a rule of each host
    selects all of its users (by name, from `users`, or UID) and its executable."""
    protected = protected_because(process, is_operator=is_operator)
    if protected is not None:
        return Problem(
            "ProtectedProcess",
            f"process {process.pid} ({process.command}) is never moved, whatever spec.workloads "
            f"says: {protected}",
        )
    for host in hosts:
        selectors = [rule.processes for rule in host.workload_rules(namespace) if rule.processes is not None]
        if not any(
            selector.allows_executable(process.program)
            and all(selector.allows_user(uid, users.get(uid)) for uid in process.uids)
            for selector in selectors
        ):
            runs_as = ", ".join(sorted({users.get(uid, str(uid)) for uid in process.uids}))
            listed = "; ".join(selector.describe() for selector in selectors)
            return Problem(
                "WorkloadNotAllowed",
                f"process {process.pid} ({process.program}, user {runs_as}) is selected by no rule of "
                f"DockerHost '{host.name}' for namespace '{namespace}' (spec.workloads[].processes: "
                f"{listed}): ask an admin to add its user and executable there",
            )
    return None


def protected_because(process: ProcessInfo, *, is_operator: bool) -> str | None:
    """Why the process runs the host (and must stay where it is), if it does."""
    if process.pid == 1:
        return "it is PID 1, the host's init"
    if process.kernel_thread:
        return "it is a kernel thread"
    if is_operator:
        return "it is the ferry operator itself"
    for name in (process.command, posixpath.basename(process.program)):
        if name in PROTECTED or name.startswith(PROTECTED_PREFIX):
            return f"{name} serves the host (SSH, Docker, containers, CRIU)"
    if not process.in_host_mount_namespace:
        return "it runs in a container (another mount namespace); move its container instead"
    return None
