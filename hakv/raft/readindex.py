"""ReadIndex (Raft thesis §6.4): when a leader may answer a linearizable read without a
log entry. Pure: no socket, no clock read, no pysyncobj; ``now`` and the messages
received are arguments, and every method returns what to do.

The leader notes its commit index when the reads arrive (the *read index*), asks every
voter "do you still follow me in my term?" (a *probe*, numbered), and serves the reads
once a majority, itself included, has answered that probe or a later one in the same
term (``hakv.core.quorum.committed``: the k-th highest answered probe) *and* the read
index is applied. A leader deposed meanwhile gets no majority of answers in its term (a
voter answers probes of its own current term only), so it can never confirm; it starts
its reads over, as a barrier through the log or a fresh probe. The commit index is only
usable once the leader has committed an entry of its own term (``may_read_by_index``).

Voters are named by their Raft address (any hashable string); reads are opaque tokens
(the member's ``Completion`` objects, the harness's names).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from hakv.core.quorum import committed

READ_PROBE = "hakv_read_probe"
READ_PROBE_ACK = "hakv_read_probe_ack"

R = TypeVar("R")

#: The leader's own name among the voters when counting answers (it always has "seen" its
#: latest probe): a key no Raft address can be.
_SELF = "\0self"


def may_read_by_index(leading: bool, commit_index: int, noop_index: int | None) -> bool:
    """Whether a member's commit index may serve as a read index: it leads and has
    committed an entry of its own term (the no-op appended at its election), so every
    entry committed by earlier leaders is at or below it. Otherwise reads go through the
    log (a barrier entry)."""
    return leading and noop_index is not None and commit_index >= noop_index


def answer_probe(message: Mapping[str, Any], *, term: int, leading: bool,
                 voter: bool) -> dict[str, Any] | None:
    """Follower side: the answer to a probe, or None. A voter answers a probe of its own
    current term at once (an answer says "no leader of a later term had my vote when I
    sent this"); a probe of another term gets no answer: the leader re-sends, or has
    lost its term."""
    probe_term = message.get("term")
    if not (isinstance(probe_term, int) and probe_term == term and not leading and voter):
        return None
    return {"type": READ_PROBE_ACK, "term": probe_term, "seq": message.get("seq")}


@dataclass
class ReadStep(Generic[R]):
    """What the leader does with its waiting reads now."""

    serve: list[R] = field(default_factory=list)  # confirmed, read index applied: answer
    restart: list[R] = field(default_factory=list)  # leadership or term lost: start over
    send: dict[str, Any] | None = None  # a probe to send to every voter again


class ReadIndex(Generic[R]):
    """The leader's ReadIndex bookkeeping: the probe rounds of its current term, who
    answered which, and the reads each round confirms."""

    def __init__(self) -> None:
        self._term = -1  # the term of the probes below
        self._seq = 0  # the last probe sent
        self._acks: dict[str, int] = {}  # voter -> the highest probe it answered in _term
        self._waiting: list[tuple[int, int, list[R]]] = []  # (probe, read index, reads)
        self._sent_at = 0.0

    def waiting(self) -> bool:
        """Whether reads wait for a probe round (the member is not idle)."""
        return bool(self._waiting)

    def probe(self, term: int, commit_index: int, reads: list[R] | None,
              now: float) -> dict[str, Any]:
        """Start a probe round in ``term``: the message to send to every voter. ``reads``
        will be served at ``commit_index`` once the round is confirmed (None re-sends for
        the reads already waiting)."""
        if term != self._term:
            self._term, self._acks = term, {}
        self._seq += 1
        if reads is not None:
            self._waiting.append((self._seq, commit_index, reads))
        self._sent_at = now
        return {"type": READ_PROBE, "term": term, "seq": self._seq}

    def on_answer(self, voter: str, message: Mapping[str, Any], *, leading: bool, term: int,
                  voters: Collection[str]) -> bool:
        """Count ``voter``'s answer; whether it may confirm waiting reads (tick now). An
        answer of another term, from a non-voter, or older than one already counted
        counts for nothing."""
        seq = message.get("seq")
        if (leading and isinstance(seq, int) and message.get("term") == self._term == term
                and voter in voters and seq > self._acks.get(voter, 0)):
            self._acks[voter] = seq
            return bool(self._waiting)
        return False

    def confirmed(self, voters: Collection[str]) -> int:
        """The highest probe that this leader and a majority of the voters (``voters``:
        the others) have seen in the current term; every probe up to it is confirmed."""
        return committed({**self._acks, _SELF: self._seq}, [_SELF, *voters])

    def step(self, *, leading: bool, term: int, applied: int, voters: Collection[str],
             now: float, resend_after: float) -> ReadStep[R]:
        """The reads to serve (confirmed, read index applied) or to restart (no longer
        leader of the probes' term), and whether to probe again: a probe unanswered for
        ``resend_after`` seconds is re-sent (the connection may have dropped it)."""
        if not leading or term != self._term:
            restart = [read for *_, reads in self._waiting for read in reads]
            self._waiting = []
            return ReadStep(restart=restart)
        confirmed = self.confirmed(voters)
        step: ReadStep[R] = ReadStep()
        waiting = []
        for entry in self._waiting:
            seq, read_index, reads = entry
            if seq <= confirmed and read_index <= applied:
                step.serve.extend(reads)
            else:
                waiting.append(entry)
        self._waiting = waiting
        if waiting and waiting[-1][0] > confirmed and now - self._sent_at > resend_after:
            step.send = self.probe(term, 0, None, now)
        return step
