"""Regression tests for the pysyncobj hardening in hakv.raft.member (RAFT-NOTES.md "Safety" 1, 2).

Each test drives a real pysyncobj member (real journal file on disk) with the messages a
leader sends under pipelined load, and runs twice: with hakv's fixes, where nothing an
ack covered is lost, and with pysyncobj's stock behaviour, where it is.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pysyncobj.node import TCPNode
from pysyncobj.poller import createPoller

from hakv.raft.member import GroupMember
from hakv.raft.settings import RaftSettings
from hakv.raft.wire import NodeListener

LEADER = "127.0.0.1:9"  # never contacted: messages are fed in directly
NO_OP = b"\x01"


class CountingMachine:
    """In-memory twin of the store: records what was applied."""

    def __init__(self) -> None:
        self.applied: list[int] = []

    def apply(self, index: int, payload: bytes) -> Any:
        self.applied.append(index)
        return {"index": index}

    def commit(self) -> None:
        pass

    def applied_index(self) -> int:
        return self.applied[-1] if self.applied else 0

    def write_snapshot(self, path: str, raft_data: Any) -> None:
        raise NotImplementedError

    def read_snapshot(self, path: str) -> Any:
        raise NotImplementedError


@contextmanager
def _member(tmp_path: Path, stock: bool) -> Iterator[GroupMember]:
    poller = createPoller("poll")
    listener = NodeListener(poller, "127.0.0.1", 0)
    settings = RaftSettings(election_timeout_min=30, election_timeout_max=60,
                            unsafe_stock_replication=stock)
    member = GroupMember("g", "127.0.0.1:8", [LEADER], CountingMachine(), str(tmp_path),
                         listener, poller, settings)
    try:
        yield member
    finally:
        member._doDestroy()
        listener.close()


@pytest.fixture(params=[False, True], ids=["hardened", "stock"])
def follower(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GroupMember]:
    """A member with hakv's fixes, then one with pysyncobj's stock replication."""
    with _member(tmp_path, stock=request.param) as member:
        yield member


@pytest.fixture
def member(tmp_path: Path) -> Iterator[GroupMember]:
    """A member with hakv's fixes."""
    with _member(tmp_path, stock=False) as member:
        yield member


def _entries(first: int, last: int, term: int = 1) -> list[tuple[bytes, int, int]]:
    return [(NO_OP, i, term) for i in range(first, last + 1)]


def _append(member: GroupMember, prev: int, entries: list[tuple[bytes, int, int]],
            term: int = 1, commit: int = 0) -> None:
    member._receive(TCPNode(LEADER), {
        "type": "append_entries", "term": term, "commit_index": commit,
        "entries": entries, "prevLogIdx": prev, "prevLogTerm": term if prev > 1 else 0,
    })


def test_a_resent_older_batch_does_not_truncate_acknowledged_entries(
        follower: GroupMember) -> None:
    stock = follower.settings.unsafe_stock_replication
    _append(follower, prev=1, entries=_entries(2, 10))
    assert follower.last_log_index() == 10  # the follower acknowledges 2..10
    # The leader, after an old ack moved its next index back, resends 6..7 only.
    _append(follower, prev=5, entries=_entries(6, 7))
    if stock:
        assert follower.last_log_index() == 7, "stock pysyncobj drops acknowledged 8..10"
    else:
        assert follower.last_log_index() == 10, "acknowledged entries must survive a resend"


def test_a_heartbeat_with_an_old_prev_index_does_not_truncate(follower: GroupMember) -> None:
    stock = follower.settings.unsafe_stock_replication
    _append(follower, prev=1, entries=_entries(2, 10))
    _append(follower, prev=4, entries=[])
    assert follower.last_log_index() == (4 if stock else 10)


def test_a_term_conflict_still_truncates_from_the_first_conflicting_entry(
        follower: GroupMember) -> None:
    _append(follower, prev=1, entries=_entries(2, 10, term=1))
    # A new leader (term 2) overwrites 6.. with its own entries 6..7.
    follower._receive(TCPNode(LEADER), {
        "type": "append_entries", "term": 2, "commit_index": 0,
        "entries": _entries(6, 7, term=2), "prevLogIdx": 5, "prevLogTerm": 1})
    log = follower._journal
    assert follower.last_log_index() == 7
    assert [e[2] for e in log[-3:]] == [1, 2, 2]


def test_success_acks_wait_for_the_journal_fsync(member: GroupMember) -> None:
    sent: list[Any] = []

    def capture(node: Any, msg: Any, sent: list[Any] = sent) -> None:
        sent.append(msg)

    member._transport().send = capture
    _append(member, prev=1, entries=_entries(2, 4))
    assert sent == [] and len(member._pending_acks) == 1
    member.flush_journal()
    assert [m["next_node_idx"] for m in sent] == [5]
    assert member._pending_acks == []


def _as_leader(member: GroupMember, peer: Any, next_index: int, match: int) -> None:
    member._set_role("leader")
    member._set_next_index(peer, next_index)
    member._set_match_index(peer, match)
    member._set_last_response(peer, 0.0)


def _ack(member: GroupMember, peer: Any, next_index: int, success: bool = True) -> None:
    member._receive(peer, {
        "type": "next_node_idx", "next_node_idx": next_index, "reset": not success,
        "success": success})


@pytest.mark.parametrize("stock", [False, True], ids=["hardened", "stock"])
def test_an_old_success_ack_never_moves_next_index_backwards(tmp_path: Path, stock: bool) -> None:
    with _member(tmp_path, stock=stock) as member:
        peer = next(iter(member.otherNodes))
        _as_leader(member, peer, next_index=101, match=40)
        _ack(member, peer, next_index=51)
        assert member.match_index(peer) == 50
        assert member.next_index(peer) == (51 if stock else 101)


def _leader_with_log(member: GroupMember, last: int, commit: int) -> Any:
    """``member`` as leader of term 1 holding entries up to ``last``, ``commit`` committed."""
    for entry in _entries(member.last_log_index() + 1, last):
        member._journal.add(*entry)
    member._set_commit_index(commit)
    peer = next(iter(member.otherNodes))
    _as_leader(member, peer, next_index=last + 1, match=commit)
    member._activity = 0
    return peer


def test_an_ack_that_may_advance_the_commit_index_makes_the_leader_tick(
        member: GroupMember) -> None:
    peer = _leader_with_log(member, last=5, commit=3)
    _ack(member, peer, next_index=6)
    assert member.match_index(peer) == 5
    assert member.has_work()


def test_an_ack_of_entries_already_committed_costs_the_leader_no_tick(member: GroupMember) -> None:
    # The slower follower's ack of a committed write, at a single client once per write.
    peer = _leader_with_log(member, last=5, commit=5)
    member._set_match_index(peer, 4)
    _ack(member, peer, next_index=6)
    assert member.match_index(peer) == 5
    assert member.last_response(peer) > 0.0
    assert not member.has_work()


def test_an_ack_from_a_follower_still_behind_makes_the_leader_tick(member: GroupMember) -> None:
    peer = _leader_with_log(member, last=9, commit=9)
    member._set_match_index(peer, 2)
    member._set_next_index(peer, 3)
    _ack(member, peer, next_index=5)  # it holds 4 of 9: the tick sends it the rest
    assert member.has_work()


def test_a_failed_ack_makes_the_leader_tick(member: GroupMember) -> None:
    peer = _leader_with_log(member, last=5, commit=5)
    member._set_match_index(peer, 2)
    _ack(member, peer, next_index=3, success=False)  # it lacks 3..5: resend from 3
    assert member.next_index(peer) == 3
    assert member.has_work()


# ---------------------------------------------------------------- ReadIndex (point 5)

PROBE, PROBE_ACK = "hakv_read_probe", "hakv_read_probe_ack"


def _reading_leader(member: GroupMember, commit: int = 5, applied: int = 5,
                    noop: int = 2) -> tuple[Any, list[dict[str, Any]]]:
    """``member`` as leader of term 1 with its no-op at ``noop``; what it sends goes to the
    returned list instead of the network."""
    peer = _leader_with_log(member, last=commit, commit=commit)
    member._set_term(1)
    member._set_noop_index(noop)
    member._set_applied(applied)
    return peer, _capture_sends(member)


def _capture_sends(member: GroupMember) -> list[dict[str, Any]]:
    """What ``member`` sends from now on, instead of sending it."""
    sent: list[dict[str, Any]] = []
    member._transport().send = lambda node, msg: sent.append(msg) or True
    return sent


def _probe_ack(member: GroupMember, peer: Any, seq: int, term: int = 1) -> None:
    member._receive(peer, {"type": PROBE_ACK, "term": term, "seq": seq})


def test_a_leader_serves_a_linearizable_read_once_a_majority_answers_its_probe(
        member: GroupMember) -> None:
    peer, sent = _reading_leader(member)
    done = member.read_barrier()
    member.start_read_barriers(b"barrier")
    assert sent == [{"type": PROBE, "term": 1, "seq": 1}]
    assert not done.done()
    _probe_ack(member, peer, seq=1)
    assert member.has_work()  # the answer makes the leader tick and serve the read
    member.start_read_barriers(b"barrier")
    assert done.done() and done.outcome() is None


def test_a_read_on_the_leader_appends_nothing_to_the_log(member: GroupMember) -> None:
    peer, _ = _reading_leader(member)
    done = member.read_barrier()
    member.start_read_barriers(b"barrier")
    _probe_ack(member, peer, seq=1)
    member.start_read_barriers(b"barrier")
    assert done.done() and member.last_log_index() == 5 and not member._proposals_queued()


def test_a_probe_answer_of_another_term_confirms_no_read(member: GroupMember) -> None:
    peer, _ = _reading_leader(member)
    done = member.read_barrier()
    member.start_read_barriers(b"barrier")
    _probe_ack(member, peer, seq=1, term=0)
    _probe_ack(member, peer, seq=1, term=2)
    member.start_read_barriers(b"barrier")
    assert not done.done()


def test_an_answer_to_an_earlier_probe_confirms_no_later_read(member: GroupMember) -> None:
    peer, sent = _reading_leader(member)
    first = member.read_barrier()
    member.start_read_barriers(b"barrier")
    _probe_ack(member, peer, seq=1)
    member.start_read_barriers(b"barrier")
    assert first.done()
    second = member.read_barrier()
    member.start_read_barriers(b"barrier")
    assert sent[-1]["seq"] == 2
    _probe_ack(member, peer, seq=1)  # late duplicate of the first answer
    member.start_read_barriers(b"barrier")
    assert not second.done()


def test_a_confirmed_read_waits_until_its_read_index_is_applied(member: GroupMember) -> None:
    peer, _ = _reading_leader(member, commit=5, applied=4)
    done = member.read_barrier()
    member.start_read_barriers(b"barrier")
    _probe_ack(member, peer, seq=1)
    member.start_read_barriers(b"barrier")
    assert not done.done()
    member._set_applied(5)
    member.start_read_barriers(b"barrier")
    assert done.done()


def test_a_leader_without_a_commit_of_its_own_term_reads_through_the_log(
        member: GroupMember) -> None:
    # Its commit index may still lag entries an earlier leader committed: no ReadIndex.
    peer, sent = _reading_leader(member, commit=5, noop=6)
    member._journal.add(NO_OP, 6, 1)
    member._set_match_index(peer, 6)  # nothing in flight: proposals go out now
    member.read_barrier()
    member.start_read_barriers(b"barrier")
    assert all(m.get("type") != PROBE for m in sent)
    assert member.last_log_index() == 7  # the barrier went into the log


def test_a_leader_that_lost_its_term_starts_its_waiting_reads_over(member: GroupMember) -> None:
    _reading_leader(member)
    done = member.read_barrier()
    member.start_read_barriers(b"barrier")
    member._set_term(2)
    member._set_role("follower")
    member.start_read_barriers(b"barrier")
    assert not done.done() and member._read_batch == [done] and member.has_work()


# Re-sending an unanswered probe every heartbeat period: tests/testdata/raft/readindex.txt
# ("probes again"), on the tracker itself.


def test_a_follower_answers_probes_of_its_own_term_only(follower: GroupMember) -> None:
    follower._set_term(3)
    sent = _capture_sends(follower)
    for term in (2, 3, 4):
        follower._receive(TCPNode(LEADER), {"type": PROBE, "term": term, "seq": term})
    assert sent == [{"type": PROBE_ACK, "term": 3, "seq": 3}]


# ---------------------------------------------------------------- PreVote (point 5)

PRE_VOTE, PRE_VOTE_ACK = "hakv_pre_vote", "hakv_pre_vote_ack"


def _timed_out_follower(member: GroupMember, term: int = 3) -> list[dict[str, Any]]:
    """``member`` as a connected follower of ``term`` whose election deadline has passed;
    what it sends goes to the returned list."""
    member._set_term(term)
    member._set_connected_to_anyone(lambda: True)
    member._set_election_deadline(0.0)
    return _capture_sends(member)


def _pre_vote_ack(member: GroupMember, granted: bool, term: int) -> None:
    member._receive(TCPNode(LEADER), {
        "type": PRE_VOTE_ACK, "term": term, "granted": granted})


def test_a_timed_out_follower_asks_before_it_raises_its_term(member: GroupMember) -> None:
    sent = _timed_out_follower(member, term=3)
    member.tick()
    assert member.raftCurrentTerm == 3 and member.role() == "follower"
    assert [m["type"] for m in sent] == [PRE_VOTE] and sent[0]["term"] == 4


def test_a_majority_of_pre_votes_starts_the_real_election(member: GroupMember) -> None:
    sent = _timed_out_follower(member, term=3)
    member.tick()
    _pre_vote_ack(member, granted=True, term=4)
    member.tick()
    assert member.raftCurrentTerm == 4 and member.role() == "candidate"
    assert sent[-1]["type"] == "request_vote"


def test_refused_or_stale_pre_votes_start_no_election(member: GroupMember) -> None:
    _timed_out_follower(member, term=3)
    member.tick()
    _pre_vote_ack(member, granted=False, term=4)
    _pre_vote_ack(member, granted=True, term=3)  # an answer to an older round
    member._set_election_deadline(0.0)
    member.tick()  # a new round, still no election
    assert member.raftCurrentTerm == 3 and member.role() == "follower"


def test_a_timeout_now_skips_the_pre_vote(member: GroupMember) -> None:
    # A leadership hand-over: the outgoing leader asks the target to stand at once.
    sent = _timed_out_follower(member, term=3)
    member._set_transferring(True)
    member.tick()
    assert member.raftCurrentTerm == 4 and sent[-1]["type"] == "request_vote"


def _asked(member: GroupMember, term: int, last_index: int, last_term: int) -> bool:
    sent = _capture_sends(member)
    member._receive(TCPNode(LEADER), {
        "type": PRE_VOTE, "term": term, "last_log_index": last_index,
        "last_log_term": last_term})
    assert len(sent) == 1 and sent[0]["type"] == PRE_VOTE_ACK and sent[0]["term"] == term
    assert member.raftCurrentTerm == 3  # asking changes nothing
    return bool(sent[0]["granted"])


@pytest.mark.parametrize("case, granted", [
    ("leader silent, asker up to date", True),
    ("leader heard just now", False),
    ("asker's log behind", False),
    ("asker's term not ahead", False),
])
def test_pre_vote_answers(member: GroupMember, case: str, granted: bool) -> None:
    member._set_term(3)
    for entry in _entries(2, 5, term=3):
        member._journal.add(*entry)
    member._set_leader(TCPNode(LEADER))
    member._last_leader_contact = (time.monotonic() if case == "leader heard just now"
                                 else 0.0)
    term = 3 if case == "asker's term not ahead" else 4
    last_index = 4 if case == "asker's log behind" else 5
    assert _asked(member, term, last_index, last_term=3) is granted


def test_a_leader_refuses_pre_votes(member: GroupMember) -> None:
    _leader_with_log(member, last=5, commit=5)
    member._set_term(3)
    assert _asked(member, term=4, last_index=9, last_term=3) is False


@pytest.mark.parametrize("message", [
    {"type": PROBE, "term": "3", "seq": 1},
    {"type": PROBE_ACK, "term": 3, "seq": "1"},
    {"type": PRE_VOTE, "term": 4},
    {"type": PRE_VOTE_ACK, "term": 4, "granted": "yes"},
    {"type": ["not", "a", "name"]},
], ids=["probe", "probe-ack", "pre-vote", "pre-vote-ack", "odd-type"])
def test_a_malformed_message_of_hakv_s_own_is_ignored(member: GroupMember,
                                                      message: dict[str, Any]) -> None:
    member._set_term(3)
    sent = _capture_sends(member)
    member._receive(TCPNode(LEADER), message)
    assert sent == [] and member.raftCurrentTerm == 3 and not member.pre_vote_won()
