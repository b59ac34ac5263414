"""An Evacuation's spec as the operator reads it (the CRD refuses the same bad input first)."""

from __future__ import annotations

import pytest

from ferry.api import EvacuationSpec, OnLiveFailure, SpecError, Strategy


def test_only_the_source_host_is_required_and_the_defaults_move_everything_live() -> None:
    spec = EvacuationSpec.from_dict({"sourceHost": "node1"})

    assert spec.target_hosts == ()
    assert spec.selector.matches({"any": "label"})
    assert (spec.strategy, spec.on_live_failure, spec.max_concurrent) == (
        Strategy.LIVE,
        OnLiveFailure.SKIP,
        4,
    )
    assert spec.migration_namespace == "default"


def test_the_selector_is_read_as_a_label_selector() -> None:
    spec = EvacuationSpec.from_dict({"sourceHost": "node1", "selector": {"matchLabels": {"tier": "web"}}})

    assert spec.selector.matches({"tier": "web"}) and not spec.selector.matches({"tier": "db"})


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ({}, "sourceHost is required"),
        ({"sourceHost": "node1", "targetHosts": ["node2", "node1"]}, "names the source host"),
        ({"sourceHost": "node1", "targetHosts": ["Node 2"]}, "not a DockerHost name"),
        ({"sourceHost": "node1", "maxConcurrent": 0}, "maxConcurrent must be an integer from 1"),
        ({"sourceHost": "node1", "onLiveFailure": "Retry"}, "onLiveFailure must be one of Cold, Skip, Stop"),
        ({"sourceHost": "node1", "migrationNamespace": "a/b"}, "not a namespace name"),
        ({"sourceHost": "node1", "selector": {"matchLabels": {"a": 1}}}, "matchLabels must map"),
    ],
)
def test_bad_input_is_refused_with_what_to_fix(spec: dict[str, object], says: str) -> None:
    with pytest.raises(SpecError, match=says):
        EvacuationSpec.from_dict(spec)
