"""What `ferry run` is told ends up in one Settings object; DockerHosts are read from kopf's index."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from ferry.api import SpecError
from ferry.cli import parse_arguments
from ferry.reconcile import DockerHostCatalog, probed_readiness
from ferry.settings import Settings

NODE = {
    "address": "10.0.0.1",
    "hostKey": "ssh-ed25519 AAAA",
    "sshKeySecretRef": {"name": "k", "namespace": "n"},
}


def test_the_operator_serves_every_namespace_unless_told_which() -> None:
    assert Settings.from_arguments(parse_arguments(["run"])).namespaces == ()
    assert Settings.from_arguments(parse_arguments(["run", "-A"])).namespaces == ()


def test_namespaces_given_with_n_are_the_only_ones_served() -> None:
    settings = Settings.from_arguments(parse_arguments(["run", "-n", "team-a", "-n", "team-b"]))

    assert settings.namespaces == ("team-a", "team-b")


def test_every_run_option_reaches_the_settings() -> None:
    argv = ["run", "--lease-seconds", "9", "--operator-namespace", "ops", "--test-hooks", "--peering", "p"]

    settings = Settings.from_arguments(parse_arguments(argv))

    assert (settings.lease_seconds, settings.operator_namespace) == (9, "ops")
    assert (settings.test_hooks, settings.peering) == (True, "p")


def test_the_catalog_lists_and_parses_the_dockerhosts_of_the_index() -> None:
    catalog = DockerHostCatalog({"node2": [NODE], "node1": [NODE]})

    assert catalog.names() == ["node1", "node2"]
    assert catalog.spec("node1").address == "10.0.0.1"


def test_a_dockerhost_missing_from_the_index_does_not_exist() -> None:
    with pytest.raises(SpecError, match="DockerHost 'node3' does not exist"):
        DockerHostCatalog({"node1": [NODE]}).spec("node3")


def test_a_migration_that_waits_is_logged_as_information_not_as_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import ferry.handlers  # noqa: F401  (installs the filter)

    with caplog.at_level(logging.INFO, logger="kopf.objects"):
        logging.getLogger("kopf.objects").error("Handler 'migrate' failed temporarily: queued: node2 is full")

    assert [record.levelname for record in caplog.records] == ["INFO"]


def test_how_often_hosts_are_probed_is_an_option_of_run() -> None:
    assert (
        Settings.from_arguments(parse_arguments(["run", "--host-probe-seconds", "5"])).host_probe_seconds == 5
    )
    assert Settings.from_arguments(parse_arguments(["run"])).host_probe_seconds == 60


def test_the_catalog_knows_what_each_hosts_last_probe_said_and_none_for_a_host_never_probed() -> None:
    catalog = DockerHostCatalog(
        {"node1": [NODE], "node2": [NODE], "node3": [NODE]}, {"node1": [True], "node2": [False]}
    )

    assert [catalog.ready(name) for name in ("node1", "node2", "node3")] == [True, False, None]
    assert catalog.readiness() == {"node1": True, "node2": False}


@pytest.mark.parametrize(
    ("status", "ready"),
    [
        ({}, None),
        ({"conditions": [{"type": "Ready", "status": "True"}]}, True),
        ({"conditions": [{"type": "Ready", "status": "False", "reason": "DockerUnavailable"}]}, False),
        ({"conditions": [{"type": "Ready", "status": "Unknown"}]}, None),
    ],
)
def test_the_readiness_index_holds_what_a_probed_hosts_ready_condition_says(
    status: dict[str, Any], ready: bool | None
) -> None:
    assert probed_readiness(status) is ready


def test_the_crash_after_host_calls_hook_is_a_test_hook() -> None:
    argv = ["run", "--test-hooks", "--test-crash-after-host-calls", "17"]

    assert Settings.from_arguments(parse_arguments(argv)).test_crash_after_host_calls == 17
    assert Settings.from_arguments(parse_arguments(["run"])).test_crash_after_host_calls is None
    for refused in (["run", "--test-crash-after-host-calls", "17"], [*argv[:-1], "0"]):
        with pytest.raises(SystemExit):
            parse_arguments(refused)
