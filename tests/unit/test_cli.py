"""`ferry run` options (ferry.cli)."""

from __future__ import annotations

import pytest

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
