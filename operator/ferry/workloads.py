"""DockerHost.spec.workloads: which workloads the Migrations of each namespace may move off or onto
a host; the selectors and how they match (ferry.api parses them, ferry.migration.workload_rules
applies them).

Each rule names namespaces and selects containers (a Kubernetes label selector on the container's
Docker labels) and plain processes (their users and executables); a workload is selected when any
rule for the Migration's namespace selects it. The default rule lets every namespace move any
container and no process: today's container users keep working, processes need an admin's word.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass

ANY = "*"


def is_under(path: str, directory: str) -> bool:
    """`path` is `directory` or lies below it, compared by whole components (/srv/data is not
    under /srv/dat), after `..` and repeated slashes are resolved."""
    path, directory = _normal(path), _normal(directory)
    return directory == "/" or path == directory or path.startswith(f"{directory}/")


def _normal(path: str) -> str:
    return "/" + posixpath.normpath(path).lstrip("/")


@dataclass(frozen=True)
class LabelRequirement:
    """One of a selector's matchExpressions, as in Kubernetes."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator == "Exists":
            return present
        if self.operator == "DoesNotExist":
            return not present
        inside = present and labels[self.key] in self.values
        return inside if self.operator == "In" else not inside

    def describe(self) -> str:
        if self.operator == "Exists":
            return self.key
        if self.operator == "DoesNotExist":
            return f"!{self.key}"
        return f"{self.key} {self.operator.lower()} ({', '.join(self.values)})"


@dataclass(frozen=True)
class LabelSelector:
    """A Kubernetes label selector, matched against a container's Docker labels; the empty selector
    selects every container."""

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[LabelRequirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(key) == value for key, value in self.match_labels) and all(
            requirement.matches(labels) for requirement in self.match_expressions
        )

    def describe(self) -> str:
        """As kubectl writes a selector (`app=web,tier in (a, b)`); `{}` for the empty one."""
        parts = [f"{key}={value}" for key, value in self.match_labels]
        parts += [requirement.describe() for requirement in self.match_expressions]
        return ",".join(parts) or "{}"


@dataclass(frozen=True)
class ProcessSelector:
    """Processes run by these users (names or UIDs, "*" any) from these executables (absolute paths:
    the file, or every file below a directory; "/" any)."""

    users: tuple[str, ...]
    executables: tuple[str, ...]

    def allows_user(self, uid: int, name: str | None) -> bool:
        return ANY in self.users or str(uid) in self.users or (name is not None and name in self.users)

    def allows_executable(self, path: str) -> bool:
        return any(is_under(path, allowed) for allowed in self.executables)

    def describe(self) -> str:
        return f"users [{', '.join(self.users)}] running executables under [{', '.join(self.executables)}]"


@dataclass(frozen=True)
class WorkloadRule:
    namespaces: tuple[str, ...] = (ANY,)
    containers: LabelSelector | None = None  # None: this rule selects no container
    processes: ProcessSelector | None = None  # None: this rule selects no process

    def applies_to(self, namespace: str) -> bool:
        return ANY in self.namespaces or namespace in self.namespaces


DEFAULT_WORKLOADS = (WorkloadRule(containers=LabelSelector()),)
