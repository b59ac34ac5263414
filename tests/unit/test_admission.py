"""Who may start: one migration per container, and a per-host limit."""

from __future__ import annotations

from ferry.migration.admission import ActiveMigration, full_hosts, migrating_container
from ferry.migration.phases import Phase


def active(
    uid: str, phase: Phase, source: str = "node1", target: str = "node2", container: str = "c1"
) -> ActiveMigration:
    return ActiveMigration(f"default/{uid}", uid, phase, source, target, frozenset({container}))


def test_a_migration_under_way_holds_its_container() -> None:
    holder = migrating_container([active("a", Phase.TRANSFERRING)], "b", "node1", "c1")
    assert holder is not None and holder.uid == "a"


def test_a_group_under_way_holds_each_of_its_containers() -> None:
    group = ActiveMigration("default/a", "a", Phase.RESTORING, "node1", "node2", frozenset({"c1", "c2"}))

    assert migrating_container([group], "b", "node1", "c2") == group


def test_a_pending_or_finished_migration_holds_nothing() -> None:
    others = [active("a", Phase.PENDING), active("b", Phase.SUCCEEDED), active("c", Phase.ROLLED_BACK)]
    assert migrating_container(others, "d", "node1", "c1") is None


def test_a_migration_does_not_block_itself() -> None:
    assert migrating_container([active("a", Phase.PREPARING)], "a", "node1", "c1") is None


def test_the_same_container_id_on_another_host_is_another_container() -> None:
    assert migrating_container([active("a", Phase.PREPARING, source="node3")], "b", "node1", "c1") is None


def test_a_host_at_its_limit_is_full_counting_both_directions() -> None:
    running = [active("a", Phase.RESTORING), active("b", Phase.PREPARING, source="node2", target="node3")]
    full = full_hosts(running, "c", ["node1", "node2"], lambda host: 2)
    assert full == ["node2 runs 2 of 2 migrations"]


def test_hosts_below_their_limit_are_not_full() -> None:
    assert full_hosts([active("a", Phase.VERIFYING)], "b", ["node1", "node2"], lambda host: 2) == []
