"""Edges of the Preflights' board (lambdas/domain/descriptions.py) that the behaviour tests do not pin: the
boundaries of its times, and what ``offer`` does with groups it forgets."""

from __future__ import annotations

from lambdas.domain.descriptions import (
    DESCRIBER_SLACK_SECONDS,
    FRESH_SECONDS,
    WANTED_SECONDS,
    Board,
    Described,
    LocalDescriptions,
    done_with,
    still_wanted,
)
from tests.unit.test_descriptions import NOW, arn, tg


def test_an_answer_exactly_fresh_is_not_done_with():
    board = Board(described={arn("a"): Described(tg("a"), NOW - FRESH_SECONDS)})
    assert done_with(board, NOW) == []


def test_a_group_wanted_exactly_the_limit_ago_is_still_wanted():
    assert still_wanted(Board(wanted={arn("a"): NOW - WANTED_SECONDS}), NOW) == [arn("a")]


def test_every_answer_offered_is_counted():
    store = LocalDescriptions()
    store.offer([tg("a"), tg("b")], NOW)
    store.offer([tg("c")], NOW)
    assert store.offered == 3


def test_forgetting_drops_an_answer_whose_group_nobody_wants_any_more():
    store = LocalDescriptions()
    store.offer([tg("old")], NOW - FRESH_SECONDS - 1)
    store.want([arn("b")], NOW, describer_at=NOW + 30)
    store.offer([tg("c")], NOW, forget=[arn("old"), arn("b"), arn("never-seen")])
    board = store.board()
    assert set(board.described) == {arn("c")} and board.wanted == {}


def test_an_answer_at_the_end_of_the_slack_still_ends_the_describers_turn():
    store = LocalDescriptions()
    store.want([arn("a")], NOW, describer_at=NOW + 5)
    store.offer([tg("a")], NOW + 5 - DESCRIBER_SLACK_SECONDS)
    assert store.board().describer_at is None


def test_once_the_describers_turn_ended_nobody_joins_it():
    store = LocalDescriptions()
    store.want([arn("a")], NOW, describer_at=NOW + 5)
    store.offer([tg("a")], NOW + 5)
    store.want([arn("late")], NOW + 6)  # no describer to come: the join takes no room and writes nothing
    assert store.board().wanted == {} and store.board().room == 0


def test_a_group_wanted_exactly_the_limit_ago_is_not_done_with():
    assert done_with(Board(wanted={arn("a"): NOW - WANTED_SECONDS}), NOW) == []
