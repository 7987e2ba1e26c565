"""PreVote (Raft thesis §9.6): before a real election, ask "would you vote for me?"
without raising the term. Pure: no socket, no clock read, no pysyncobj; ``now`` and the
messages received are arguments, and every method returns what to do.

A voter whose election deadline has passed asks the others (``PreVote.ask``) and holds
its election back another timeout; it runs the real election once a majority, itself
included, said yes (``hakv.core.quorum.vote_result``). A member refuses while it heard
from a live leader within ``PRE_VOTE_LEASE`` minimum election timeouts (``grants``). So
a member cut off from its leader keeps its term while the others still hear that leader,
and cannot depose it, during the cut or when it is back. A TimeoutNow (leadership
hand-over) skips the question.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from hakv.core.quorum import VoteResult, vote_result
from hakv.raft.settings import PRE_VOTE_LEASE

PRE_VOTE = "hakv_pre_vote"
PRE_VOTE_ACK = "hakv_pre_vote_ack"

_SELF = "\0self"  # the asker's own vote among the voters: a key no Raft address can be


def lease(election_timeout_min: float) -> float:
    """Seconds after the last contact with a leader during which a member refuses."""
    return PRE_VOTE_LEASE * election_timeout_min


def leader_alive(*, leading: bool, leader_heard_at: float | None, now: float,
                 election_timeout_min: float) -> bool:
    """The lease rule: whether a member counts its leader as alive, and so refuses to
    pre-vote. It leads, or it heard from a leader (``leader_heard_at``; None: no leader
    known) within ``lease`` of ``now``. (The simulator, hakv.sim.model, applies it too.)"""
    return leading or (leader_heard_at is not None
                       and now - leader_heard_at < lease(election_timeout_min))


def grants(message: Mapping[str, Any], *, term: int, last_index: int, last_term: int,
           voter: bool, leading: bool, leader_heard_at: float | None, now: float,
           election_timeout_min: float) -> dict[str, Any] | None:
    """The answer to a pre-vote request, or None (not a voter; a malformed request).

    Granted if the asker's term is ahead of ours (``term``), its log is at least as up to
    date as ours (``last_index``/``last_term``), and no live leader was heard lately: this
    member does not lead, and ``leader_heard_at`` (None: no leader known) is older than
    the lease. Nothing changes here: no term, no vote."""
    asked, their_index, their_term = (message.get(k) for k in
                                      ("term", "last_log_index", "last_log_term"))
    if (not voter or not isinstance(asked, int) or not isinstance(their_index, int)
            or not isinstance(their_term, int)):
        return None
    up_to_date = their_term > last_term or (their_term == last_term
                                            and their_index >= last_index)
    granted = (asked > term and up_to_date
               and not leader_alive(leading=leading, leader_heard_at=leader_heard_at, now=now,
                                    election_timeout_min=election_timeout_min))
    return {"type": PRE_VOTE_ACK, "term": asked, "granted": granted}


class PreVote:
    """The asker's side: the round in progress (the term it began in), who granted, and
    whether a majority did, which lets the real election run."""

    def __init__(self) -> None:
        self._term = -1  # our term when the round began (-1: none)
        self._grants: set[str] = set()
        self.won = False

    def should_ask(self, *, now: float, election_deadline: float, voter: bool, leading: bool,
                   transfer: bool, connected: bool) -> bool:
        """Whether to ask now: a voter, not leading, past its election deadline, connected
        to someone, and not already cleared for an election (``won``). ``transfer``: a
        TimeoutNow is being obeyed, which skips the question."""
        return (voter and not leading and not transfer and not self.won
                and election_deadline < now and connected)

    def ask(self, term: int, last_index: int, last_term: int,
            voters: Collection[str]) -> dict[str, Any]:
        """Begin a round in ``term``: the request to send to every other voter. With no
        other voter, the round is won at once (see ``won``)."""
        self._term, self._grants = term, set()
        self._count(voters)
        return {"type": PRE_VOTE, "term": term + 1, "last_log_index": last_index,
                "last_log_term": last_term}

    def on_answer(self, voter: str, message: Mapping[str, Any], *, term: int, leading: bool,
                  voters: Collection[str]) -> bool:
        """Count an answer; whether it just won the round (run the election now). An answer
        to another round, from a non-voter, or a refusal counts for nothing."""
        if (message.get("granted") is True and not self.won and not leading
                and self._term == term and message.get("term") == self._term + 1
                and voter in voters):
            self._grants.add(voter)
            return self._count(voters)
        return False

    def _count(self, voters: Collection[str]) -> bool:
        votes = {_SELF: True, **{v: True for v in self._grants}}
        if vote_result(votes, [_SELF, *voters]) is VoteResult.WON:
            self.won = True
        return self.won

    def new_term(self) -> None:
        """The member's term changed: a round belongs to the term it began in."""
        self._term, self._grants, self.won = -1, set(), False

    def leader_heard(self) -> None:
        """A leader is back: the next election asks again."""
        self.won = False
