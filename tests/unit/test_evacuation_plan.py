"""An Evacuation's decisions (ferry.evacuation.plan): what it creates, where, and when it has ended."""

from __future__ import annotations

import re

from ferry.api import EvacuationSpec, OnLiveFailure, Strategy
from ferry.evacuation.plan import Attempt, HostLoad, Plan, SourceContainer, migration_name, plan
from ferry.evacuation.status import EvacuationPhase, Outcome
from ferry.migration.phases import Phase
from ferry.workloads import LabelSelector


def spec(**changes: object) -> EvacuationSpec:
    return EvacuationSpec(source_host="node1", **changes)  # type: ignore[arg-type]


def containers(*names: str) -> list[SourceContainer]:
    return [SourceContainer(name) for name in names]


def idle(containers: int = 0, limit: int = 2) -> HostLoad:
    return HostLoad(containers=containers, migrating=0, limit=limit)


def attempt(
    container: str,
    phase: Phase,
    target: str = "node2",
    *,
    strategy: Strategy = Strategy.LIVE,
    message: str = "",
    fallback: bool = False,
) -> Attempt:
    if fallback:
        strategy = Strategy.COLD
    name = migration_name("drain", container, fallback)
    return Attempt(name, container, target, strategy, phase, message, fallback)


def run(
    evacuation: EvacuationSpec,
    on_source: list[SourceContainer],
    attempts: list[Attempt] | None = None,
    source: HostLoad | None = None,
    targets: dict[str, HostLoad] | None = None,
) -> Plan:
    hosts = targets if targets is not None else {"node2": idle(limit=10), "node3": idle(limit=10)}
    return plan("drain", evacuation, on_source, attempts or [], source or idle(limit=10), hosts)


def outcomes(result: Plan) -> dict[str, Outcome]:
    return {record.name: record.outcome for record in result.records}


def test_each_container_gets_a_migration_on_the_target_running_the_fewest() -> None:
    result = run(
        spec(),
        containers("a", "b", "c"),
        targets={"node2": idle(containers=5, limit=10), "node3": idle(limit=10)},
    )

    assert [(new.container, new.target) for new in result.create] == [
        ("a", "node3"),
        ("b", "node3"),
        ("c", "node3"),
    ]


def test_placement_spreads_over_equally_loaded_targets() -> None:
    result = run(spec(), containers("a", "b", "c", "d"))

    assert sorted(new.target for new in result.create) == ["node2", "node2", "node3", "node3"]


def test_no_more_than_max_concurrent_are_under_way() -> None:
    under_way = [attempt("a", Phase.CHECKPOINTING)]

    result = run(spec(max_concurrent=2), containers("a", "b", "c", "d"), under_way)

    assert [new.container for new in result.create] == ["b"]


def test_the_source_host_limit_bounds_how_many_start() -> None:
    result = run(spec(max_concurrent=10), containers("a", "b", "c"), source=HostLoad(3, migrating=1, limit=2))

    assert len(result.create) == 1


def test_a_target_host_with_no_free_slot_gets_nothing() -> None:
    full = HostLoad(containers=0, migrating=2, limit=2)

    result = run(spec(), containers("a", "b"), targets={"node2": full, "node3": idle(containers=9, limit=10)})

    assert {new.target for new in result.create} == {"node3"}


def test_its_own_queued_migrations_count_against_the_hosts_slots() -> None:
    queued = [attempt("a", Phase.PENDING), attempt("b", Phase.PENDING)]

    result = run(spec(), containers("a", "b", "c"), queued, source=idle(limit=2))

    assert result.create == []
    assert outcomes(result)["c"] is Outcome.PENDING


def test_the_selector_leaves_the_other_containers_where_they_are() -> None:
    selected = spec(selector=LabelSelector(match_labels=(("tier", "web"),)))
    on_source = [SourceContainer("web", {"tier": "web"}), SourceContainer("db", {"tier": "db"})]

    result = run(selected, on_source)

    assert [record.name for record in result.records] == ["web"]


def test_a_container_started_while_it_runs_is_moved_too() -> None:
    result = run(spec(), containers("late"), [attempt("a", Phase.SUCCEEDED)])

    assert [new.container for new in result.create] == ["late"]
    assert result.phase is EvacuationPhase.RUNNING


def test_it_succeeds_when_every_container_moved() -> None:
    result = run(spec(), [], [attempt("a", Phase.SUCCEEDED), attempt("b", Phase.SUCCEEDED, "node3")])

    assert result.phase is EvacuationPhase.SUCCEEDED
    assert result.message == "2 of 2 moved"
    assert [(r.name, r.target) for r in result.records] == [("a", "node2"), ("b", "node3")]


def test_nothing_to_move_is_a_success_at_once() -> None:
    assert run(spec(), []).phase is EvacuationPhase.SUCCEEDED


def test_a_live_failure_is_skipped_when_on_live_failure_says_skip() -> None:
    failed = attempt("tty", Phase.FAILED, message="container 'tty' has a TTY")

    result = run(
        spec(on_live_failure=OnLiveFailure.SKIP), containers("tty"), [failed, attempt("a", Phase.SUCCEEDED)]
    )

    assert outcomes(result) == {"a": Outcome.SUCCEEDED, "tty": Outcome.SKIPPED}
    assert result.create == []
    assert result.phase is EvacuationPhase.SUCCEEDED
    assert result.message == "1 of 2 moved, 1 skipped"


def test_a_live_failure_moves_cold_when_on_live_failure_says_cold() -> None:
    failed = attempt("tty", Phase.FAILED, message="has a TTY")

    result = run(spec(on_live_failure=OnLiveFailure.COLD), containers("tty"), [failed])

    (new,) = result.create
    assert (new.container, new.strategy, new.fallback) == ("tty", Strategy.COLD, True)
    assert new.name == migration_name("drain", "tty", fallback=True) != failed.migration
    assert "move cold" in (result.records[0].message or "")


def test_the_cold_move_that_succeeded_counts_as_moved() -> None:
    tried = [attempt("tty", Phase.FAILED), attempt("tty", Phase.SUCCEEDED, fallback=True)]

    result = run(spec(on_live_failure=OnLiveFailure.COLD), [], tried)

    assert outcomes(result) == {"tty": Outcome.SUCCEEDED}
    assert result.records[0].strategy is Strategy.COLD


def test_a_failed_cold_move_is_not_tried_again() -> None:
    tried = [attempt("tty", Phase.FAILED), attempt("tty", Phase.FAILED, fallback=True)]

    result = run(spec(on_live_failure=OnLiveFailure.COLD), containers("tty"), tried)

    assert result.create == []
    assert result.phase is EvacuationPhase.FAILED


def test_stop_creates_nothing_more_and_waits_for_those_under_way() -> None:
    tried = [attempt("a", Phase.FAILED), attempt("b", Phase.TRANSFERRING)]

    result = run(spec(on_live_failure=OnLiveFailure.STOP), containers("a", "b", "c"), tried)

    assert result.create == []
    assert outcomes(result) == {"a": Outcome.FAILED, "b": Outcome.RUNNING, "c": Outcome.SKIPPED}
    assert result.phase is EvacuationPhase.RUNNING
    assert result.message.startswith("stopped: a could not move live")


def test_a_stopped_evacuation_fails_once_nothing_is_under_way() -> None:
    tried = [attempt("a", Phase.ROLLED_BACK), attempt("b", Phase.SUCCEEDED)]

    result = run(spec(on_live_failure=OnLiveFailure.STOP), containers("a", "c"), tried)

    assert result.phase is EvacuationPhase.FAILED
    assert outcomes(result) == {"a": Outcome.ROLLED_BACK, "b": Outcome.SUCCEEDED, "c": Outcome.SKIPPED}


def test_a_rolled_back_cold_evacuation_is_a_failure() -> None:
    result = run(
        spec(strategy=Strategy.COLD),
        containers("a"),
        [attempt("a", Phase.ROLLED_BACK, strategy=Strategy.COLD)],
    )

    assert outcomes(result) == {"a": Outcome.ROLLED_BACK}
    assert result.phase is EvacuationPhase.FAILED
    assert result.message == "0 of 1 moved, 1 did not move"


def test_with_no_target_it_waits_and_says_why() -> None:
    result = run(spec(), containers("a"), targets={})

    assert result.create == []
    assert result.phase is EvacuationPhase.RUNNING
    assert "no target host is Ready" in result.message


def test_migration_names_are_dns_labels_that_tell_similar_container_names_apart() -> None:
    first, second = migration_name("drain", "Web_1", False), migration_name("drain", "web.1", False)

    assert first != second
    assert all(re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) for name in (first, second))
    assert first.startswith("drain-web-1-")
    assert migration_name("drain", "Web_1", False) == first
