"""Who may start: one migration per container, a per-host limit, and the queued ones in turn."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ferry.migration.admission import ActiveMigration, Turn, migrating_container, ordinal, take_turn
from ferry.migration.phases import Phase

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
TWO_EACH = {"node1": 2, "node2": 2, "node3": 2, "node4": 2}


def active(
    uid: str,
    phase: Phase = Phase.PENDING,
    source: str = "node1",
    target: str = "node2",
    container: str = "c1",
    *,
    second: int = 0,
    queued: bool | None = None,
) -> ActiveMigration:
    """Migration default/`uid`, created `second` seconds after T0; Pending ones are queued unless told."""
    return ActiveMigration(
        key=f"default/{uid}",
        uid=uid,
        phase=phase,
        source_host=source,
        target_host=target,
        source_container_ids=frozenset({container}),
        created=T0 + timedelta(seconds=second),
        queued=phase is Phase.PENDING if queued is None else queued,
    )


def running(count: int, source: str = "node1", target: str = "node2") -> list[ActiveMigration]:
    return [active(f"run{n}", Phase.TRANSFERRING, source, target, f"r{n}") for n in range(count)]


def turn_of(
    candidate: ActiveMigration, others: list[ActiveMigration], limits: dict[str, int] = TWO_EACH
) -> Turn:
    return take_turn([*others, candidate], candidate, limits)


# -- one migration per container


def test_a_migration_under_way_holds_its_container() -> None:
    holder = migrating_container([active("a", Phase.TRANSFERRING)], "b", "node1", "c1")
    assert holder is not None and holder.uid == "a"


def test_a_group_under_way_holds_each_of_its_containers() -> None:
    group = ActiveMigration(
        "default/a", "a", Phase.RESTORING, "node1", "node2", frozenset({"c1", "c2"}), T0, queued=False
    )

    assert migrating_container([group], "b", "node1", "c2") == group


def test_a_pending_or_finished_migration_holds_nothing() -> None:
    others = [active("a", Phase.PENDING), active("b", Phase.SUCCEEDED), active("c", Phase.ROLLED_BACK)]
    assert migrating_container(others, "d", "node1", "c1") is None


def test_a_migration_does_not_block_itself() -> None:
    assert migrating_container([active("a", Phase.PREPARING)], "a", "node1", "c1") is None


def test_the_same_container_id_on_another_host_is_another_container() -> None:
    assert migrating_container([active("a", Phase.PREPARING, source="node3")], "b", "node1", "c1") is None


# -- slots per host, and the line


def test_a_host_at_its_limit_admits_no_one_counting_both_directions() -> None:
    others = [active("a", Phase.RESTORING), active("b", Phase.PREPARING, source="node2", target="node3")]

    turn = turn_of(active("c"), others)

    assert turn.waits_for == ("node2 runs 2 of 2 migrations",)


def test_hosts_below_their_limit_admit_the_first_in_line() -> None:
    turn = turn_of(active("b"), [active("a", Phase.VERIFYING)])

    assert (turn.admitted, turn.place) == (True, 1)


def test_pending_and_finished_migrations_hold_no_slot() -> None:
    others = [
        active("a", Phase.PENDING, queued=False),
        active("b", Phase.SUCCEEDED),
        active("c", Phase.FAILED),
    ]

    assert turn_of(active("d"), others, {"node1": 1, "node2": 1}).admitted


def test_the_oldest_queued_migration_gets_a_free_slot_first() -> None:
    older, younger = active("younger-name-but-older", second=0), active("a-younger", second=1)
    everyone = [*running(1), older, younger]

    assert take_turn(everyone, older, TWO_EACH).admitted
    assert take_turn(everyone, younger, TWO_EACH).waits_for == (
        "node1 runs 1 of 2 migrations, older queued ones take the rest",
        "node2 runs 1 of 2 migrations, older queued ones take the rest",
    )


def test_the_free_slots_go_to_as_many_of_the_oldest_as_the_limit_allows() -> None:
    line = [active(f"m{n}", second=n) for n in range(4)]

    admitted = [m.uid for m in line if take_turn(line, m, TWO_EACH).admitted]

    assert admitted == ["m0", "m1"]


def test_a_migration_on_other_hosts_starts_while_older_ones_wait() -> None:
    waiting = [active(f"m{n}", second=n) for n in range(3)]

    turn = turn_of(active("elsewhere", source="node3", target="node4", second=9), [*running(2), *waiting])

    assert (turn.admitted, turn.place) == (True, 1)


def test_an_older_migration_whose_other_host_is_full_does_not_block_a_younger_one() -> None:
    """The older one needs node2, which is full; node1 has a slot, and the younger needs only node1
    and node3: it takes the slot (backfill)."""
    others = [*running(2, source="node4", target="node2"), active("older", second=0)]

    turn = turn_of(active("younger", source="node1", target="node3", second=1), others)

    assert (turn.admitted, turn.place) == (True, 2)


def test_a_younger_migration_on_the_same_hosts_never_overtakes_an_older_one_that_fits() -> None:
    others = [*running(1), active("older", second=0)]

    turn = turn_of(active("younger", second=1), others)

    assert (turn.admitted, turn.place) == (False, 2)


def test_a_migration_not_yet_queued_goes_behind_the_queued_ones_on_its_hosts() -> None:
    """A Migration just created asks for a slot before it has queued; it stands in the line by its
    creationTimestamp, so behind those already waiting for its hosts, not ahead of them."""
    queued = [active(f"m{n}", second=n) for n in range(3)]
    new = active("new", second=5, queued=False)

    turn = take_turn([*running(1), *queued, new], new, TWO_EACH)

    assert (turn.admitted, turn.place) == (False, 4)


def test_a_pending_migration_that_has_not_queued_holds_no_place_in_line() -> None:
    others = [*running(1), active("seen-but-not-queued", second=0, queued=False)]

    assert turn_of(active("queued", second=1), others).admitted


def test_migrations_created_in_the_same_second_take_turns_by_namespace_and_name() -> None:
    line = [active("b"), active("a"), active("c")]

    admitted = [m.uid for m in line if take_turn([*running(1), *line], m, TWO_EACH).admitted]

    assert admitted == ["a"]


def test_the_place_in_line_counts_only_older_migrations_waiting_for_one_of_its_hosts() -> None:
    others = [
        active("same-hosts", second=0),
        active("shares-node2", source="node3", target="node2", second=1),
        active("other-hosts", source="node3", target="node4", second=2),
        active("younger", second=9),
    ]

    assert turn_of(active("me", second=5), [*running(2), *others]).place == 3


def test_a_host_without_a_limit_has_no_slot_to_give() -> None:
    """A DockerHost that is gone, or whose spec is invalid: its Migrations wait, and fail on their own run."""
    assert not turn_of(active("a", target="gone"), [], {"node1": 2}).admitted


# -- what a queued Migration says, and how often it asks again


def test_a_queued_migration_says_which_host_is_full_and_its_place_in_line() -> None:
    turn = Turn(37, ("node2 runs 2 of 2 migrations",))

    assert turn.message == "queued: node2 runs 2 of 2 migrations (maxConcurrentMigrations); 37th in line"


def test_ordinals() -> None:
    numbers = [1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 101, 111, 112]
    assert [ordinal(n) for n in numbers] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "101st", "111th", "112th"
    ]  # fmt: skip


def test_the_front_of_the_line_asks_again_each_second_and_the_back_every_ten() -> None:
    delays = {place: Turn(place, ("full",)).retry_delay for place in (1, 2, 3, 10, 20, 100)}

    assert delays == {1: 1.0, 2: 1.0, 3: 1.5, 10: 5.0, 20: 10.0, 100: 10.0}


def test_a_hundred_queued_migrations_ask_again_about_a_dozen_times_a_second_not_a_hundred() -> None:
    retries_per_second = sum(1 / Turn(place, ("full",)).retry_delay for place in range(1, 101))

    assert retries_per_second < 15
