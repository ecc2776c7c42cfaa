"""The board Preflights share their target groups' descriptions on (lambdas/domain/descriptions.py): which answers
stand in for a call, who joins a describer, what one DescribeTargetGroups call carries, and the in-memory store."""

from __future__ import annotations

import pytest

from lambdas.domain.descriptions import (
    DESCRIBER_SLACK_SECONDS,
    FRESH_SECONDS,
    MAX_GROUPS_PER_CALL,
    WANTED_SECONDS,
    Board,
    Described,
    LocalDescriptions,
    NoDescriptions,
    batches,
    calls_for,
    done_with,
    fresh,
    may_join,
    still_wanted,
)
from lambdas.domain.ports import TargetGroupSettings

NOW = 1_000_000.0


def tg(name: str, kind: str = "ip", lbs: tuple[str, ...] = ("arn:lb/app/x/1",)) -> TargetGroupSettings:
    return TargetGroupSettings(f"arn:tg/{name}", kind, "HTTP", 80, 5, 2, 2, 2, lbs)


def arn(name: str) -> str:
    return f"arn:tg/{name}"


FRESH_CASES = [
    # id, seconds since the answer, its target type, its load balancers, used
    ("just-made", 0.0, "ip", ("lb",), True),
    ("at-the-limit", FRESH_SECONDS, "ip", ("lb",), True),
    ("too-old", FRESH_SECONDS + 0.1, "ip", ("lb",), False),
    ("from-the-future", -1.0, "ip", ("lb",), False),
    ("instance-targets-asked-again", 0.0, "instance", ("lb",), False),
    ("no-load-balancer-asked-again", 0.0, "ip", (), False),
]


@pytest.mark.parametrize("age,kind,lbs,used", [c[1:] for c in FRESH_CASES], ids=[c[0] for c in FRESH_CASES])
def test_an_answer_stands_in_for_a_call_only_when_fresh_and_acceptable(age, kind, lbs, used):
    board = Board(described={arn("a"): Described(tg("a", kind, lbs), NOW - age)})
    assert (arn("a") in fresh(board, [arn("a"), arn("b")], NOW)) is used
    assert arn("b") not in fresh(board, [arn("a"), arn("b")], NOW)


@pytest.mark.parametrize("groups,calls", [(0, 0), (1, 1), (MAX_GROUPS_PER_CALL, 1), (MAX_GROUPS_PER_CALL + 1, 2)])
def test_one_describe_call_names_up_to_twenty_groups(groups, calls):
    assert calls_for([arn(str(i)) for i in range(groups)]) == calls


def test_still_wanted_is_oldest_first_without_answered_or_forgotten_groups():
    board = Board(
        wanted={arn("late"): NOW - 1, arn("early"): NOW - 5, arn("answered"): NOW - 9,
                arn("lost"): NOW - WANTED_SECONDS - 1, arn("tie-b"): NOW - 3, arn("tie-a"): NOW - 3},
        described={arn("answered"): Described(tg("answered"), NOW - 1)},
    )
    assert still_wanted(board, NOW) == [arn("early"), arn("tie-a"), arn("tie-b"), arn("late")]


JOIN_CASES = [
    # id, describer's turn (seconds from now; None: none), room left in its call, own missing, joins
    ("describer-to-come-with-room", 3.0, 5, 1, True),
    ("room-for-exactly-these", 3.0, 2, 2, True),
    ("call-full", 3.0, 1, 2, False),
    ("no-describer", None, 5, 1, False),
    ("describer-turn-now", 0.0, 5, 1, False),
    ("describer-turn-past", -1.0, 5, 1, False),
    ("nothing-missing", 3.0, 5, 0, False),
]


@pytest.mark.parametrize("turn,room,missing,joins", [c[1:] for c in JOIN_CASES], ids=[c[0] for c in JOIN_CASES])
def test_a_waiting_preflight_joins_a_describer_whose_turn_is_to_come_and_whose_call_has_room(
        turn, room, missing, joins):
    board = Board(describer_at=None if turn is None else NOW + turn, room=room)
    assert may_join(board, [arn(f"own{i}") for i in range(missing)], NOW) is joins


def test_the_describe_call_carries_own_groups_first_then_the_oldest_wanted_to_the_limit():
    board = Board(wanted={**{arn(f"w{i}"): NOW - 30 + i for i in range(25)}, arn("own"): NOW - 60})
    (call,) = batches(board, [arn("own")], NOW)
    assert call == [arn("own")] + [arn(f"w{i}") for i in range(MAX_GROUPS_PER_CALL - 1)]


def test_more_own_groups_than_one_call_takes_are_split_and_the_last_call_filled():
    own = [arn(f"own{i}") for i in range(MAX_GROUPS_PER_CALL + 2)]
    calls = batches(Board(wanted={arn("other"): NOW - 1}), own, NOW)
    assert calls == [own[:MAX_GROUPS_PER_CALL], own[MAX_GROUPS_PER_CALL:] + [arn("other")]]
    assert batches(Board(wanted={arn("other"): NOW - 1}), [], NOW) == []


def test_done_with_names_answers_too_old_to_use_and_groups_wanted_too_long_ago():
    board = Board(described={arn("old"): Described(tg("old"), NOW - FRESH_SECONDS - 1),
                             arn("new"): Described(tg("new"), NOW - 1)},
                  wanted={arn("lost"): NOW - WANTED_SECONDS - 1, arn("waiting"): NOW - 5})
    assert done_with(board, NOW) == sorted([arn("old"), arn("lost")])


def test_a_describer_takes_the_board_with_its_calls_room_and_joiners_fill_it():
    store = LocalDescriptions()
    store.want([arn("a")], NOW, describer_at=NOW + 4)
    assert store.board().describer_at == NOW + 4 and store.board().room == MAX_GROUPS_PER_CALL - 1
    store.want([arn(f"j{i}") for i in range(MAX_GROUPS_PER_CALL - 3)], NOW + 1)
    store.want([arn("a"), arn("last")], NOW + 2)  # a group already wanted keeps its first time
    board = store.board()
    assert board.room == 0 and len(board.wanted) == MAX_GROUPS_PER_CALL - 1
    assert board.wanted[arn("a")] == NOW and board.wanted[arn("last")] == NOW + 2


def test_a_join_without_room_writes_nothing_and_a_new_describer_takes_the_board():
    store = LocalDescriptions()
    store.want([arn("a")], NOW, describer_at=NOW + 4)
    store.want([arn(f"j{i}") for i in range(MAX_GROUPS_PER_CALL - 1)], NOW + 1)
    store.want([arn("late")], NOW + 2)  # the call is full
    assert arn("late") not in store.board().wanted and store.board().room == 0
    store.want([arn("late")], NOW + 2, describer_at=NOW + 9)  # so it becomes the next describer
    board = store.board()
    assert board.describer_at == NOW + 9 and board.room == MAX_GROUPS_PER_CALL - 1
    assert board.wanted[arn("late")] == NOW + 2


def test_without_a_describer_nobody_joins():
    store = LocalDescriptions()
    store.want([arn("a")], NOW)
    assert store.board() == Board()


def test_answers_take_groups_off_the_wanted_list_and_end_the_describers_turn_that_came():
    store = LocalDescriptions()
    store.want([arn("a"), arn("b"), arn("gone")], NOW, describer_at=NOW + 4)
    store.offer([tg("a")], NOW + 4, forget=[arn("gone")])
    board = store.board()
    assert board.wanted == {arn("b"): NOW} and board.describer_at is None
    assert board.described == {arn("a"): Described(tg("a"), NOW + 4)} and store.offered == 1


def test_an_early_answer_leaves_a_later_describers_turn_on_the_board():
    store = LocalDescriptions()
    store.want([arn("b")], NOW, describer_at=NOW + 10)
    store.offer([tg("a")], NOW + 1)
    assert store.board().describer_at == NOW + 10


def test_forgetting_an_answered_group_in_the_same_write_keeps_its_answer():
    store = LocalDescriptions()
    store.offer([tg("a")], NOW - FRESH_SECONDS - 5)
    store.offer([tg("a")], NOW, forget=[arn("a")])
    assert store.board().described[arn("a")].at == NOW


def test_without_the_table_nothing_is_shared():
    store = NoDescriptions()
    store.want([arn("a")], NOW, describer_at=NOW + 1)
    store.offer([tg("a")], NOW)
    assert store.board() == Board()
