"""Quorums: the one place the majority rule is written down.

Everything that counts voters asks here: a group's quorum (hakv.core.topology,
``GroupSpec.quorum_size``), whether the owners that are up may serve (hakv.core.ha,
patent Fig. 4), the Raft commit index and the ReadIndex confirmation (the k-th highest
acknowledgement, as etcd-io/raft's ``MajorityConfig.CommittedIndex``) and an election's
outcome (``VoteResult``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence

__all__ = ["VoteResult", "committed", "has_quorum", "majority", "vote_result"]


def majority(voters: int) -> int:
    """A strict majority of ``voters`` (patent Fig. 4 and Raft both use a majority)."""
    if voters < 0:
        raise ValueError(f"a count of voters is never negative ({voters})")
    return voters // 2 + 1


def has_quorum(voters: Sequence[str], up: Iterable[str]) -> bool:
    """Whether the ``voters`` that are ``up`` form a majority of them: the group may serve
    (run its app, take writes) whatever the rest of the cluster does (I2)."""
    live = set(up)
    return sum(1 for v in voters if v in live) >= majority(len(voters))


def committed(acks: Mapping[str, int], voters: Iterable[str]) -> int:
    """The highest value that a majority of ``voters`` has acknowledged: the k-th highest
    ack, k = majority (0 when fewer voters than a majority acknowledged anything).

    Used for the commit index (acks = match indexes, the leader's own included) and for
    ReadIndex confirmation (acks = the highest probe each voter answered). A voter absent
    from ``acks`` counts as 0; an ack from a non-voter counts for nothing.
    """
    voters = list(dict.fromkeys(voters))
    if not voters:
        return 0
    values = sorted((acks.get(v, 0) for v in voters), reverse=True)
    return values[majority(len(voters)) - 1]


class VoteResult(enum.Enum):
    """An election's outcome so far."""

    PENDING = "pending"
    WON = "won"
    LOST = "lost"


def vote_result(votes: Mapping[str, bool], voters: Iterable[str]) -> VoteResult:
    """WON once a majority of ``voters`` granted, LOST once a majority can no longer be
    reached (a majority refused), else PENDING. Votes from non-voters count for nothing."""
    voters = list(dict.fromkeys(voters))
    need = majority(len(voters))
    granted = sum(1 for v in voters if votes.get(v) is True)
    refused = sum(1 for v in voters if votes.get(v) is False)
    if granted >= need:
        return VoteResult.WON
    if len(voters) - refused < need:
        return VoteResult.LOST
    return VoteResult.PENDING
