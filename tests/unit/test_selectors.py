"""How the selectors of DockerHost.spec.workloads match (ferry.workloads): label selectors with
Kubernetes' semantics, process selectors by user and executable, paths by whole components."""

from __future__ import annotations

import pytest

from ferry.workloads import LabelRequirement, LabelSelector, ProcessSelector, is_under

WEB = {"app": "web", "tier": "front"}


def selector(*expressions: LabelRequirement, **labels: str) -> LabelSelector:
    return LabelSelector(tuple(sorted(labels.items())), expressions)


def test_the_empty_selector_selects_every_container() -> None:
    assert LabelSelector().matches({}) and LabelSelector().matches(WEB)


def test_match_labels_need_every_label_with_its_value() -> None:
    assert selector(app="web", tier="front").matches(WEB)
    assert not selector(app="web", tier="back").matches(WEB)
    assert not selector(app="web", zone="a").matches(WEB)


@pytest.mark.parametrize(
    ("requirement", "labels", "selected"),
    [
        (LabelRequirement("tier", "In", ("front", "back")), WEB, True),
        (LabelRequirement("tier", "In", ("back",)), WEB, False),
        (LabelRequirement("tier", "In", ("front",)), {}, False),
        (LabelRequirement("tier", "NotIn", ("back",)), WEB, True),
        (LabelRequirement("tier", "NotIn", ("front",)), WEB, False),
        (
            LabelRequirement("tier", "NotIn", ("front",)),
            {},
            True,
        ),  # as in Kubernetes: a missing label is not in
        (LabelRequirement("app", "Exists"), WEB, True),
        (LabelRequirement("app", "Exists"), {}, False),
        (LabelRequirement("app", "DoesNotExist"), WEB, False),
        (LabelRequirement("app", "DoesNotExist"), {}, True),
    ],
)
def test_a_requirement_matches_as_in_kubernetes(
    requirement: LabelRequirement, labels: dict[str, str], selected: bool
) -> None:
    assert selector(requirement).matches(labels) is selected


def test_match_labels_and_every_requirement_must_all_hold() -> None:
    both = selector(LabelRequirement("tier", "In", ("back",)), app="web")

    assert not both.matches(WEB)


def test_a_selector_describes_itself_as_kubectl_writes_selectors() -> None:
    described = selector(
        LabelRequirement("tier", "In", ("a", "b")),
        LabelRequirement("x", "Exists"),
        LabelRequirement("y", "DoesNotExist"),
        app="web",
    ).describe()

    assert described == "app=web,tier in (a, b),x,!y"
    assert LabelSelector().describe() == "{}"


APP = ProcessSelector(users=("app", "1001"), executables=("/opt/app/bin", "/usr/bin/python3.11"))


@pytest.mark.parametrize(
    ("uid", "name", "allowed"),
    [(1000, "app", True), (1001, None, True), (0, "root", False), (1000, None, False)],
)
def test_a_user_is_allowed_by_name_or_uid(uid: int, name: str | None, allowed: bool) -> None:
    assert APP.allows_user(uid, name) is allowed


def test_a_star_allows_every_user() -> None:
    assert ProcessSelector(("*",), ("/",)).allows_user(0, "root")


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/opt/app/bin/server", True),  # below a directory
        ("/opt/app/bin", True),
        ("/usr/bin/python3.11", True),  # the file itself
        ("/opt/app/binaries/x", False),  # not below /opt/app/bin, though it starts with it
        ("/opt/app/bin/../../../usr/sbin/sshd", False),
        ("/usr/bin/python3", False),
    ],
)
def test_an_executable_is_allowed_by_file_or_directory(path: str, allowed: bool) -> None:
    assert APP.allows_executable(path) is allowed


def test_root_allows_every_executable() -> None:
    assert ProcessSelector(("*",), ("/",)).allows_executable("/usr/sbin/anything")


@pytest.mark.parametrize(
    ("path", "directory", "under"),
    [
        ("/srv/data", "/srv/data", True),
        ("/srv/data/x/y", "/srv/data", True),
        ("/srv/data/x", "/srv/data/", True),
        ("/srv/database", "/srv/data", False),
        ("/srv/data/../etc", "/srv/data", False),
        ("//srv/data/x", "/srv/data", True),
        ("/etc", "/", True),
    ],
)
def test_is_under_compares_whole_components(path: str, directory: str, under: bool) -> None:
    assert is_under(path, directory) is under
