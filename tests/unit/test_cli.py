"""`ferry run` options and `ferry --version` (ferry.cli)."""

from __future__ import annotations

import importlib.metadata

import pytest

import ferry
from ferry.cli import parse_arguments


def test_leases_live_in_ferry_system_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FERRY_NAMESPACE", raising=False)

    assert parse_arguments(["run"]).operator_namespace == "ferry-system"


def test_the_operator_namespace_comes_from_ferry_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRY_NAMESPACE", "ops")

    assert parse_arguments(["run"]).operator_namespace == "ops"


def test_the_operator_namespace_option_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRY_NAMESPACE", "ops")

    assert parse_arguments(["run", "--operator-namespace", "ferry"]).operator_namespace == "ferry"


def test_namespace_still_selects_the_watched_namespaces() -> None:
    args = parse_arguments(["run", "--namespace", "team-a", "--namespace", "team-b"])

    assert args.namespace == ["team-a", "team-b"]
    assert args.operator_namespace != "team-a"


def test_version_prints_the_installed_version_and_exits(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_arguments(["--version"])

    assert exited.value.code == 0
    assert capsys.readouterr().out == f"ferry {ferry.__version__}\n"


def test_the_version_comes_from_the_installed_distribution() -> None:
    assert ferry.installed_version("ferry") == importlib.metadata.version("ferry")


def test_a_distribution_that_is_not_installed_has_the_unknown_version() -> None:
    assert ferry.installed_version("ferry-not-installed-anywhere") == "0.0.0+unknown"
