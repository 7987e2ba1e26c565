"""hakv.core.quorum: the majority rule, the k-th highest ack, election outcomes."""

from __future__ import annotations

import pytest

from hakv.core.quorum import VoteResult, committed, has_quorum, majority, vote_result

V3 = ["a", "b", "c"]
V5 = ["a", "b", "c", "d", "e"]


@pytest.mark.parametrize(("voters", "size"), [(0, 1), (1, 1), (2, 2), (3, 2), (4, 3), (5, 3),
                                              (7, 4), (9, 5)])
def test_majority_is_strict(voters: int, size: int) -> None:
    assert majority(voters) == size


COMMITTED = [
    # acks, voters, the highest value a majority acknowledged
    ({"a": 5, "b": 3, "c": 1}, V3, 3),
    ({"a": 5}, V3, 0),                        # one of three is no majority
    ({"a": 5, "b": 5}, V3, 5),
    ({"a": 9, "b": 7, "c": 7, "d": 2, "e": 1}, V5, 7),
    ({"a": 9, "b": 7, "x": 8}, V3, 7),        # a non-voter's ack counts for nothing
    ({"a": 4}, ["a"], 4),                     # a single voter commits alone
    ({"a": 4, "b": 2}, ["a", "b"], 2),        # two voters: both
    ({}, [], 0),
]


@pytest.mark.parametrize(("acks", "voters", "expected"), COMMITTED)
def test_committed_is_the_kth_highest_ack(acks: dict[str, int], voters: list[str],
                                          expected: int) -> None:
    assert committed(acks, voters) == expected


VOTES = [
    ({}, V3, VoteResult.PENDING),
    ({"a": True}, V3, VoteResult.PENDING),
    ({"a": True, "b": True}, V3, VoteResult.WON),
    ({"a": True, "b": False}, V3, VoteResult.PENDING),
    ({"a": True, "b": False, "c": False}, V3, VoteResult.LOST),
    ({"a": True, "b": False, "c": False}, V5, VoteResult.PENDING),
    ({"a": True, "x": True, "y": True}, V3, VoteResult.PENDING),  # non-voters do not count
    ({"a": True}, ["a"], VoteResult.WON),
]


@pytest.mark.parametrize(("votes", "voters", "expected"), VOTES)
def test_vote_result(votes: dict[str, bool], voters: list[str], expected: VoteResult) -> None:
    assert vote_result(votes, voters) is expected


def test_has_quorum_counts_only_the_voters_that_are_up() -> None:
    assert has_quorum(V3, ["a", "b"])
    assert not has_quorum(V3, ["a", "x", "y"])
    assert not has_quorum(V5, ["a", "b"])
