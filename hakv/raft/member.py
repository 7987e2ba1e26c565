"""One group's Raft member: ``GroupMember``, a pysyncobj ``SyncObj`` subclass driven by the
node's raft thread (hakv.raft.host). It is the plumbing: it reads pysyncobj's state,
feeds the pure trackers (hakv.raft.readindex, prevote, quiesce, handover) with ``now``
and the messages received, and acts on their decisions (what to send, which reads to
serve, whether to run an election, whether to heartbeat, whether to hold proposals).

What it fixes or adds to pysyncobj (docs/raft.md, point by point):

1. Follower truncation. Stock pysyncobj deletes every entry after ``prevLogIdx`` on each
   AppendEntries; a follower can thereby drop entries it already acknowledged. Here a
   follower truncates only from the first entry whose *term conflicts* (Raft Fig. 2,
   AppendEntries step 3) and keeps matching entries. On the leader, a success ack never
   moves a follower's next index backwards (an old in-flight ack would otherwise make the
   leader resend, and with stock truncation, erase). Both are switchable off
   (``unsafe_stock_replication``) only so the regression test can show the loss.
2. Durability. The journal is always a file (3), and it is fsynced *before* anything that
   depends on it leaves the node: a follower's success ack and a vote are deferred until
   the journal is flushed (group commit: one fsync per loop iteration for all pending acks),
   and a leader counts its own copy toward commit only on the tick after its flush.
4. Timeouts tuned so a partitioned leader steps down within about a second
   (``leaderFallbackTimeout``); leadership is still never used as a lease.
5. Linearizable reads: on the leader, a ReadIndex (hakv.raft.readindex); elsewhere (or
   before the leader has committed an entry of its term) ``read_barrier`` puts one no-op
   through the log for all reads that arrived since the last barrier. PreVote before
   every election but a hand-over's (hakv.raft.prevote).
6. Ambiguous outcomes are reported as such (``OutcomeUnknownError``), never as failures.
7. Apply never raises: the state machine turns bad commands into error results, and a
   storage failure crash-stops the node (``os._exit``) instead of wedging the tick loop.
8. Commands above ``MAX_COMMAND_BYTES`` are refused before they reach the log.

Every pysyncobj private name used here is listed in hakv.raft.pysyncobj_surface, with
the pysyncobj version it was checked against.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from pysyncobj import SyncObj, replicated  # type: ignore[attr-defined]
from pysyncobj.config import FAIL_REASON
from pysyncobj.node import TCPNode

from hakv import errors
from hakv.core.codec import MAX_COMMAND_BYTES
from hakv.raft import quiesce
from hakv.raft.completion import Completion
from hakv.raft.handover import HandOver, HandOverStep
from hakv.raft.prevote import PRE_VOTE, PRE_VOTE_ACK, PreVote, grants
from hakv.raft.quiesce import Quiescence
from hakv.raft.readindex import (
    READ_PROBE,
    READ_PROBE_ACK,
    ReadIndex,
    answer_probe,
    may_read_by_index,
)
from hakv.raft.settings import CONNECTION_SILENCE, QUIET_TICK, READONLY_LAG, RaftSettings
from hakv.raft.wire import NODE_HEARTBEAT_MESSAGE, MuxTransport, NodeListener, install

log = logging.getLogger("hakv.raft.member")

_LEADER = 2
_FOLLOWER = 0
_ROLES = {0: "follower", 1: "candidate", 2: "leader"}
_STATES = {role: state for state, role in _ROLES.items()}
_OWN_MESSAGES = {READ_PROBE: "_on_read_probe", READ_PROBE_ACK: "_on_read_probe_ack",
                 PRE_VOTE: "_on_pre_vote", PRE_VOTE_ACK: "_on_pre_vote_ack"}


def error_for(reason: int, group: str) -> errors.HakvError:
    """The typed error of a command pysyncobj failed with ``reason``."""
    if reason in (FAIL_REASON.MISSING_LEADER, FAIL_REASON.QUEUE_FULL):
        return errors.NoQuorumError(
            f"group {group} has no leader: a majority of its owners is not reachable "
            "(retry later)", group=group)
    if reason in (FAIL_REASON.NOT_LEADER, FAIL_REASON.DISCARDED, FAIL_REASON.REQUEST_DENIED):
        return errors.NotLeaderError(f"group {group} changed leader; retry", group=group)
    return errors.OutcomeUnknownError(
        f"group {group} changed leader while the command was in flight: it may or may not "
        "apply; retry with the same client id and seq", group=group)


class StateMachine(Protocol):
    """What a member applies into. ``apply`` must not raise for bad commands."""

    def apply(self, index: int, payload: bytes) -> Any: ...
    def commit(self) -> None: ...
    def applied_index(self) -> int: ...
    def write_snapshot(self, path: str, raft_data: Any) -> None: ...
    def read_snapshot(self, path: str) -> Any: ...


class _SharedPoller:
    """The raft thread's poller as one member sees it: sockets (un)subscribe on the shared
    poller, but the poll at the end of every pysyncobj tick does nothing. The raft thread
    polls once per pass for all members; a poll per member tick cost a system call per
    group per pass, which dominated the cost of idle groups."""

    def __init__(self, poller: Any) -> None:
        self._poller = poller
        self.subscribe = poller.subscribe
        self.unsubscribe = poller.unsubscribe

    def poll(self, timeout: float) -> None:
        pass


class GroupMember(SyncObj):  # type: ignore[misc]
    """One group's Raft member, driven by the node's raft thread (``autoTick=False``).

    With ``self_address=None`` the member is read-only: it receives and applies the log
    (and can propose, forwarded to the leader) but never votes or counts for quorum; the
    cluster ensemble's non-voters are such members, so its write cost does not grow with N.
    """

    def __init__(self, group: str, self_address: str | None, peer_addresses: list[str],
                 machine: StateMachine, directory: str, listener: NodeListener,
                 poller: Any, settings: RaftSettings) -> None:
        self.group = group
        self.machine = machine
        self.settings = settings
        self._tick_poller = _SharedPoller(poller)
        self._pending_acks: list[tuple[Any, dict[str, Any]]] = []
        self._completions: list[tuple[Completion, Any, errors.HakvError | None]] = []
        self._read_lock = threading.Lock()
        self._read_batch: list[Completion] = []
        self._reads: ReadIndex[Completion] = ReadIndex()  # the leader's ReadIndex rounds
        self._pre_vote = PreVote()
        self._quiescence = Quiescence()
        self._handover = HandOver()
        self._activity = 0
        self._next_tick = 0.0
        self._last_leader_contact = time.monotonic()
        self._last_append = 0.0  # when the last AppendEntries from a leader arrived
        self._readonly_behind = False  # read-only followers wait (send_to_readonly)
        self.readonly_due = 0.0  # when they get what they wait for
        self._peer_nodes: dict[Any, Any] = {}  # peer address -> node object (peer_alive)
        self._peer_nodes_seen = -1  # how many connections that index was built from
        self.on_node_heartbeat: Callable[[Any, dict[str, Any]], None] | None = None
        self.heard: dict[str, float] = {}  # raft address -> last message from it (host's)
        self._followers_waiting = False  # a follower forwarded a command: tell it the commit
        self._notified_commit = 0
        self._loop_thread = -1  # ident of the raft thread that ticks this member
        self.on_loop_proposal: Callable[[GroupMember], None] | None = None  # by the host
        # For /metrics (hakv.node.metrics), read through ``counters``: leaders seen (the
        # raft thread counts them in ``tick``), proposals submitted here (any thread, under
        # the lock) and how they ended (raft thread, but for a full queue's refusal).
        self.on_fsync: Callable[[float], None] | None = None  # seconds of each journal fsync
        # Peer round trips (leader: a heartbeat's AppendEntries to its ack; MuxTransport
        # arms the probe) and messages received per peer address (the listener's counts).
        self.on_rtt: Callable[[str, float], None] | None = None  # (peer address, seconds)
        self._received = listener.received
        self._leader_seen: Any = None
        self._leader_changes = 0
        self._count_lock = threading.Lock()
        self._proposed = 0
        self._committed = 0
        self._failed = 0
        install()  # hakv's wire in pysyncobj (the host does it too; a no-op by then)
        conf = settings.to_conf(
            journal=os.path.join(directory, "raft.journal"),
            snapshot=os.path.join(directory, "snapshot"),
            serializer=self._write_snapshot,
            deserializer=self._read_snapshot,
            bind_address=self_address or "",
        )
        transport = functools.partial(MuxTransport, listener=listener, group=group)
        super().__init__(self_address, peer_addresses, conf, transportClass=transport)
        self._journal = self._SyncObj__raftLog
        self._rtt_probes = self._transport().rtt_probes
        self._journal_gen = 0
        self._synced_gen = -1  # sync once at start: the journal may hold unsynced writes
        for name in ("add", "clear", "deleteEntriesFrom", "deleteEntriesTo"):
            setattr(self._journal, name, self._counting(getattr(self._journal, name)))

    def _counting(self, write: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap a journal mutator so every change bumps the generation to be fsynced."""
        def counted(*args: Any) -> Any:
            self._journal_gen += 1
            return write(*args)
        return counted

    # pysyncobj assigns ``self._poller`` in its constructor; every member of the node
    # shares the raft thread's poller instead, so this property ignores the assignment.
    @property
    def _poller(self) -> Any:
        return self._tick_poller

    @_poller.setter
    def _poller(self, _value: Any) -> None:
        pass

    # ------------------------------------------------------------------ pysyncobj state
    # The one place GroupMember names pysyncobj's state (hakv.raft.pysyncobj_surface lists
    # every name): each accessor is one line over a private. The tests and this class's
    # code read and set the state through them, so a pysyncobj bump breaks this section,
    # not its users. Exceptions, on purpose: the per-message and per-peer paths
    # (``_SyncObj__onMessageReceived``, ``_append_entries``, ``_next_index_ack``,
    # ``_SyncObj__sendNextNodeIdx``, the AppendEntries sends, ``_applyCommand``, the
    # node-heartbeat handlers, the loops over peers in ``_quiet_now``/``needs_tick``) keep
    # reading the privates directly, where a method call per message or per peer adds up;
    # and the ``_SyncObj__*`` overrides are pysyncobj's hooks, named as pysyncobj names them.

    def role(self) -> str:
        """Raft role: ``"follower"``, ``"candidate"`` or ``"leader"`` (``status`` says
        "read-only" for a member without a vote)."""
        return _ROLES.get(self._SyncObj__raftState, "unknown")

    def leads(self) -> bool:
        """Whether this member is its group's Raft leader (cheaper than ``status``)."""
        return bool(self._SyncObj__raftState == _LEADER)

    def leader(self) -> Any:
        """The last known leader node (None: none known)."""
        return self._SyncObj__raftLeader

    def last_log_index(self) -> int:
        """Index of the last entry in the log (pysyncobj's ``__getCurrentLogIndex``)."""
        return self._journal[-1][1]

    def last_log_term(self) -> int:
        """Term of the last entry in the log (pysyncobj's ``__getCurrentLogTerm``)."""
        return self._journal[-1][2]

    def match_index(self, node: Any) -> int:
        """Leader: the highest entry ``node`` is known to hold (0: none known)."""
        return self._SyncObj__raftMatchIndex.get(node, 0)

    def next_index(self, node: Any) -> int:
        """Leader: the next entry to send ``node`` (0: not tracked)."""
        return self._SyncObj__raftNextIndex.get(node, 0)

    def last_response(self, node: Any) -> float:
        """Leader: when ``node`` last answered (``time.monotonic``; 0.0: never)."""
        return self._SyncObj__lastResponseTime.get(node, 0.0)

    def election_deadline(self) -> float:
        """When this member starts an election (PreVote first) if no leader is heard."""
        return self._SyncObj__raftElectionDeadline

    def noop_index(self) -> int | None:
        """Leader: index of its first entry of its term (None: not appended yet)."""
        return self._SyncObj__noopIDx

    def transferring(self) -> bool:
        """Whether this member obeys a TimeoutNow (a hand-over's election, no PreVote)."""
        return bool(self._SyncObj__transferInProgress)

    def _voters(self) -> set[Any]:
        """The other voters' nodes: pysyncobj's own set (``otherNodes`` copies it)."""
        return self._SyncObj__otherNodes

    def _readonly(self) -> set[Any]:
        """The connected read-only followers' nodes: pysyncobj's own set."""
        return self._SyncObj__readonlyNodes

    def _transport(self) -> Any:
        return self._SyncObj__transport

    def _connected_to_anyone(self) -> bool:
        return bool(self._SyncObj__connectedToAnyone())

    def _receive(self, node: Any, message: dict[str, Any]) -> None:
        """A message from ``node``, as the transport delivers it."""
        self._SyncObj__onMessageReceived(node, message)

    # Setters: this class's writes outside the hot paths, and tests, which put a member in a
    # state (leader, term, peer progress) without running Raft to it.

    def _set_role(self, role: str) -> None:
        self._SyncObj__setState(_STATES[role])

    def _set_term(self, term: int) -> None:
        self._SyncObj__setCurrentTerm(term, None)

    def _set_leader(self, node: Any) -> None:
        self._SyncObj__raftLeader = node

    def _set_election_deadline(self, deadline: float) -> None:
        self._SyncObj__raftElectionDeadline = deadline

    def _set_transferring(self, transferring: bool) -> None:
        self._SyncObj__transferInProgress = transferring

    def _set_match_index(self, node: Any, index: int) -> None:
        self._SyncObj__raftMatchIndex[node] = index

    def _set_next_index(self, node: Any, index: int) -> None:
        self._SyncObj__raftNextIndex[node] = index

    def _set_last_response(self, node: Any, when: float) -> None:
        self._SyncObj__lastResponseTime[node] = when

    def _set_commit_index(self, index: int) -> None:  # tests (_append_entries writes its own)
        self._SyncObj__raftCommitIndex = index

    def _set_noop_index(self, index: int | None) -> None:  # tests
        self._SyncObj__noopIDx = index

    def _set_applied(self, index: int) -> None:  # tests: as if applied up to ``index``
        self._SyncObj__raftLastApplied = index

    def _set_connected_to_anyone(self, check: Callable[[], bool]) -> None:  # tests
        self._SyncObj__connectedToAnyone = check

    # ------------------------------------------------------------------ replicated apply

    @replicated  # type: ignore[misc]
    def _apply(self, payload: bytes) -> Any:
        index = self.raftLastApplied + 1
        try:
            return self.machine.apply(index, payload)
        except Exception:  # storage failure: crash-stop rather than wedge or skip
            log.critical("group %s: state machine failed at index %d; stopping the node",
                         self.group, index, exc_info=True)
            logging.shutdown()
            os._exit(70)

    # ------------------------------------------------------------------ submission (any thread)

    def _applyCommand(self, command: bytes, callback: Any, commandType: Any = None) -> None:
        # Same as pysyncobj's, but always wakes the raft thread: the batching switch below
        # must not decide, from another thread, whether a proposal is noticed.
        queue = self._SyncObj__commandsQueue
        try:
            queue.put_nowait((command, callback) if commandType is None
                             else (bytes([commandType]) + command, callback))
        except Exception:  # queue.Full
            self._SyncObj__callErrCallback(FAIL_REASON.QUEUE_FULL, callback)
            return
        if threading.get_ident() != self._loop_thread:
            self._SyncObj__pipeNotifier.notify()
        elif self.on_loop_proposal is not None:
            # The raft thread itself (the client API, barriers) writes no wake-up byte to
            # its own pipe: it tells the loop to propose at the start of the next pass.
            self.on_loop_proposal(self)

    def _checkCommandsToApply(self) -> None:
        """Append every queued proposal, then send one AppendEntries per follower.

        Stock pysyncobj (non-batched mode) sends a message per proposal to each follower;
        under concurrent load that message count, not the disk, limited throughput.
        """
        if self._handover.active and self._holding_for_handover():
            return  # proposals wait in the queue until the new leader takes them
        conf = self.conf
        before = self.last_log_index()
        batched, conf.appendEntriesUseBatch = conf.appendEntriesUseBatch, True
        try:
            SyncObj._checkCommandsToApply(self)
        finally:
            conf.appendEntriesUseBatch = batched
        if self.leads() and self.last_log_index() != before:
            self._SyncObj__sendAppendEntries()

    def submit(self, payload: bytes, on_done: Callable[[], None] | None = None) -> Completion:
        """Propose a command; the returned completion resolves after commit+apply+store commit."""
        if len(payload) > MAX_COMMAND_BYTES:
            raise errors.RequestTooLargeError(
                f"command of {len(payload)} bytes exceeds the {MAX_COMMAND_BYTES}-byte limit")
        done = Completion(on_done)
        with self._count_lock:
            self._proposed += 1
        self._apply(payload, callback=functools.partial(self._on_applied, done))
        return done

    def propose_now(self) -> None:
        """On the raft thread: if this member leads and nothing is in flight to any
        follower, append the queued proposals and send them now, then fsync the journal.

        The raft thread calls this at the start of the pass after the poll that brought
        the proposals (every request read in that poll goes out in one AppendEntries): an
        idle group's write does not wait for the pass's tick. With entries in flight,
        proposals wait for the tick instead and go out together (the batching that
        carries concurrent load). The fsync here keeps what the loop guarantees: the
        leader's own copy is durable before any later tick counts it toward commit."""
        if not self.leads() or self._handover.active:
            return
        last = self.last_log_index()
        match = self._SyncObj__raftMatchIndex  # per peer: the dict, not match_index()
        if any(match.get(node, 0) < last for node in self._voters()):
            return
        self._checkCommandsToApply()
        self.flush_journal()

    def read_barrier(self, on_done: Callable[[], None] | None = None) -> Completion:
        """A completion resolved once a barrier proposed after this call has applied here."""
        done = Completion(on_done)
        with self._read_lock:
            self._read_batch.append(done)
        return done

    def _on_applied(self, done: Completion, result: Any, reason: int) -> None:
        # Runs in the raft thread inside apply. A loop-served request is answered at once
        # (its entry is committed and durable on a majority); the others resolve after
        # the store commit (finish_batch), because their threads read the committed store.
        if reason != FAIL_REASON.SUCCESS:
            self._failed += 1
            self._completions.append((done, None, error_for(reason, self.group)))
            return
        self._committed += 1
        if done.answers_in_loop:
            self._resolve_in_apply(done, result, None)
        else:
            self._completions.append((done, result, None))

    def _on_barrier(self, batch: list[Completion], result: Any, reason: int) -> None:
        err = None if reason == FAIL_REASON.SUCCESS else error_for(reason, self.group)
        if isinstance(err, errors.OutcomeUnknownError):  # a read can just be retried
            err = errors.NotLeaderError(f"group {self.group} changed leader; retry")
        for done in batch:
            if err is None and done.answers_in_loop:
                self._resolve_in_apply(done, None, None)
            else:
                self._completions.append((done, None, err))

    def _resolve_in_apply(self, done: Completion, result: Any,
                          err: errors.HakvError | None) -> None:
        """Resolve inside pysyncobj's apply loop, where nothing may raise (apply is
        retried forever, RAFT-NOTES.md point 7): a failing callback costs its answer."""
        try:
            done.resolve(result, err)
        except Exception:
            log.exception("group %s: answering a request failed", self.group)

    # ------------------------------------------------------------------ raft-thread hooks

    def start_read_barriers(self, barrier_payload: bytes) -> None:
        """On the raft thread, after the pass's store commit: start the reads that arrived
        (a ReadIndex probe where this member leads, else a barrier through the log) and
        serve those a probe round has confirmed (hakv.raft.readindex)."""
        with self._read_lock:
            batch, self._read_batch = self._read_batch, []
        now = time.monotonic()
        if batch:
            if (not self.settings.unsafe_stock_replication
                    and may_read_by_index(self.leads(), self.raftCommitIndex,
                                          self.noop_index())):
                self._send_to_voters(self._reads.probe(self.raftCurrentTerm,
                                                       self.raftCommitIndex, batch, now))
            else:
                self._apply(barrier_payload, callback=functools.partial(self._on_barrier, batch))
                self.propose_now()
        if self._reads.waiting():
            self._serve_probed_reads(now)

    def _serve_probed_reads(self, now: float) -> None:
        """Resolve the reads whose probe a majority confirmed and whose read index is
        applied (and, this late in the pass, committed to the store). A member that lost
        its leadership or term meanwhile starts its reads over, as a barrier or a new
        probe, whichever then applies."""
        step = self._reads.step(leading=self.leads(), term=self.raftCurrentTerm,
                                applied=self.raftLastApplied, voters=self.voter_addresses(),
                                now=now, resend_after=self.settings.heartbeat_period)
        if step.restart:
            with self._read_lock:
                self._read_batch[:0] = step.restart
            self._activity += 1
        for done in step.serve:
            done.resolve(None, None)
        if step.send is not None:
            self._send_to_voters(step.send)

    def _send_to_voters(self, message: dict[str, Any]) -> None:
        transport = self._transport()
        for node in self._voters():
            transport.send(node, message)

    def voter_addresses(self) -> set[str]:
        """The other voters of the group, by Raft address."""
        return {node.address for node in self._voters()}

    def _on_read_probe(self, node: Any, message: dict[str, Any]) -> None:
        answer = answer_probe(message, term=self.raftCurrentTerm, leading=self.leads(),
                              voter=self.selfNode is not None)
        if answer is not None:
            self._transport().send(node, answer)

    def _on_read_probe_ack(self, node: Any, message: dict[str, Any]) -> None:
        if self._reads.on_answer(str(getattr(node, "address", "")), message,
                                 leading=self.leads(), term=self.raftCurrentTerm,
                                 voters=self.voter_addresses()):
            self._activity += 1

    def acks_waiting(self) -> bool:
        """Whether acks or votes wait for the next journal fsync."""
        return bool(self._pending_acks)

    def flush_journal(self) -> None:
        """fsync the journal if it changed, then release the acks that depended on it."""
        gen = self._journal_gen
        if gen != self._synced_gen:
            self._sync_journal_file()
            self._synced_gen = gen
        if self._pending_acks:
            acks, self._pending_acks = self._pending_acks, []
            transport = self._transport()
            for node, message in acks:
                transport.send(node, message)

    def _sync_journal_file(self) -> None:
        # The journal is written through a shared mmap. On Linux the page cache is unified,
        # so fdatasync of the file writes back the mmap's dirty pages too (msync(MS_SYNC)
        # does the same work; doing both would flush twice).
        f = getattr(getattr(self._journal, "_FileJournal__journalFile", None),
                    "_ResizableFile__f", None)
        started = time.perf_counter()
        if f is not None:
            os.fdatasync(f.fileno())
        else:
            self._journal.flush()
        if self.on_fsync is not None:
            self.on_fsync(time.perf_counter() - started)

    def forget_silent_leader(self) -> None:
        """A follower that has not heard its leader for ``leader_fallback_timeout`` forgets
        it, so proposals fail fast with "no quorum" instead of waiting on a dead leader.

        pysyncobj only clears the leader when an election starts, and starts none while no
        peer is connected: a sole survivor would forward to its dead leader for ever.
        Proposals already forwarded are reported as outcome unknown (they may have committed).
        """
        fallback = self.settings.leader_fallback_timeout
        if self.selfNode is None:  # read-only: node heartbeats come every READONLY_ROUNDS
            fallback = max(fallback, CONNECTION_SILENCE)
        if (not self.leads() and self.leader() is not None
                and time.monotonic() - self._last_leader_contact > fallback):
            self._SyncObj__onLeaderChanged()
            self._set_leader(None)

    def needs_tick(self, now: float, period: float) -> bool:
        """Whether to tick this member now: it has work, or its periodic tick is due.

        A member that got messages or proposals is ticked at once. Otherwise a leader that
        heartbeats is ticked every ``period``; a follower at its election deadline, a
        quiesced leader when it would step down, and both at least every ``QUIET_TICK``
        (reconnects, silent-leader check): so idle groups cost little.
        """
        if not self.has_work() and now < self._next_tick:
            return False
        self._activity = 0
        self._update_quiescence(now)
        state = self._SyncObj__raftState
        if state == _LEADER and not self._quiescence.quiesced:
            self._next_tick = now + period
        elif state == _LEADER:
            heard = self._SyncObj__lastResponseTime  # per peer: the dict
            oldest = min((heard.get(n, 0.0) for n in self._voters()), default=now)
            self._next_tick = quiesce.quiet_leader_next_tick(
                now, oldest, self.settings.leader_fallback_timeout)
        elif self.selfNode is None:
            self._next_tick = quiesce.tick_after(now, QUIET_TICK)
        elif state == _FOLLOWER:
            # At its election deadline, unless that has passed without an election (no
            # peer connected): then on the leader's cadence, not in a busy loop.
            deadline = self.election_deadline()
            if deadline <= now:
                deadline = now + period
            self._next_tick = min(quiesce.tick_after(now, QUIET_TICK), deadline)
        else:  # candidate
            self._next_tick = now + period
        return True

    # ------------------------------------------------------------------ quiescence

    @property
    def quiesced(self) -> bool:
        """Leader only: the group is idle and its heartbeats are off."""
        return self._quiescence.quiesced

    def _update_quiescence(self, now: float) -> None:
        """Quiesce a leader whose group is idle (hakv.raft.quiesce): it stops the periodic
        AppendEntries, and the node heartbeat (``RaftHost``) tells followers it is alive
        instead — one message per pair of nodes, however many groups they share."""
        heartbeat_at = self._quiescence.update(now, self._quiet_now(now),
                                               self.settings.heartbeat_period)
        if heartbeat_at is not None:
            self._SyncObj__newAppendEntriesTime = heartbeat_at

    def _quiet_now(self, now: float) -> bool:
        if (not self.leads() or self._handover.active
                or self.settings.unsafe_stock_replication or self._pending()
                or self._reads.waiting()):
            return False
        match = self._SyncObj__raftMatchIndex  # per peer: the dicts
        heard = self._SyncObj__lastResponseTime
        return quiesce.followers_caught_up(
            now, last_index=self.last_log_index(),
            commit_index=self.raftCommitIndex, applied=self.raftLastApplied,
            voters=[(match.get(n, 0), heard.get(n, 0.0)) for n in self._voters()],
            readonly=[(match.get(n, 0), bool(getattr(n, "address", None)))
                      for n in self._readonly()],
            heartbeat_period=self.settings.heartbeat_period)

    def _SyncObj__onNodeConnected(self, node: Any) -> None:
        SyncObj._SyncObj__onNodeConnected(self, node)
        self._end_quiet()

    def _SyncObj__onNodeDisconnected(self, node: Any) -> None:
        SyncObj._SyncObj__onNodeDisconnected(self, node)
        self._rtt_probes.pop(getattr(node, "address", None), None)
        self._end_quiet()

    def _SyncObj__onReadonlyNodeConnected(self, node: Any) -> None:
        SyncObj._SyncObj__onReadonlyNodeConnected(self, node)
        self._end_quiet()

    def _SyncObj__onReadonlyNodeDisconnected(self, node: Any) -> None:
        SyncObj._SyncObj__onReadonlyNodeDisconnected(self, node)
        self._end_quiet()

    def _end_quiet(self) -> None:
        """A peer (re)connected or went away: heartbeat at once (a restarted follower learns
        its leader from AppendEntries, not from node heartbeats)."""
        self._quiescence.reset()
        self._activity += 1

    def hears_quiet_leader(self, now: float) -> Any:
        """The leader node of this follower (voter or read-only), if the group looks
        quiesced (else None)."""
        if self._SyncObj__raftState != _FOLLOWER or not quiesce.hears_quiet_leader(
                now, self._last_append, self.settings.heartbeat_period):
            return None
        return self._SyncObj__raftLeader

    def leader_alive(self, node: Any, term: int, now: float) -> None:
        """A node heartbeat says ``node`` still leads this group in ``term``."""
        if (self._SyncObj__raftState == _FOLLOWER and term == self.raftCurrentTerm
                and self._SyncObj__raftLeader == node
                and not self._SyncObj__transferInProgress):
            self._SyncObj__raftElectionDeadline = quiesce.quiet_election_deadline(
                now, self._SyncObj__generateRaftTimeout(), self.settings.heartbeat_period)
            self._last_leader_contact = now

    def peer_alive(self, address: str, now: float) -> None:
        """A node heartbeat came from the node at ``address``: its connections of this
        group are alive, though silent while the group is quiet.

        pysyncobj drops a connection that has read nothing for ``connectionTimeout``, and
        it checks that first thing when it sends or reads: on a quiesced group's silent
        connection the next proposal a follower forwarded, or the leader's first
        AppendEntries after the quiet, was dropped with the connection (writes through a
        follower of an idle group timed out, every time; the first write on an idle
        leader waited for a reconnect). The node heartbeat is the liveness evidence the
        quiet connection no longer carries."""
        connections = self._SyncObj__transport._connections
        node = self._peer_nodes.get(address)
        if node is None or node not in connections:
            if node is None and len(connections) == self._peer_nodes_seen:
                return  # no connection to that peer in this group
            # The connections changed since the index was built: rebuild it (a dict, so
            # the cluster ensemble's leader does not scan N-1 connections per heartbeat).
            self._peer_nodes = {getattr(n, "address", None): n for n in connections}
            self._peer_nodes_seen = len(connections)
            node = self._peer_nodes.get(address)
            if node is None:
                return
        conn = connections.get(node)
        if conn is not None:
            conn._TcpConnection__lastReadTime = now

    def follower_alive(self, node: Any, term: int, now: float) -> None:
        """A node heartbeat says ``node`` still follows this leader in ``term``."""
        if (self._SyncObj__raftState == _LEADER and term == self.raftCurrentTerm
                and node in self._SyncObj__otherNodes):
            self._SyncObj__lastResponseTime[node] = now

    def has_work(self) -> bool:
        return bool(self._activity) or self._pending()

    def _pending(self) -> bool:
        """Reads, answers or proposals wait for this member (messages aside)."""
        return bool(self._read_batch or self._completions or self._proposals_queued())

    def _proposals_queued(self) -> bool:
        return bool(self._SyncObj__commandsQueue._FastQueue__queue)

    def tick(self) -> None:
        """One pysyncobj tick, except that applying entries sends no AppendEntries.

        Stock pysyncobj (non-batched) tells followers a new commit index at once, before
        the leader's own store commit and the client's answer: on the critical path of
        every write, and a message plus an ack per follower. Here the commit index rides on
        the next AppendEntries or heartbeat, or goes out after the answers
        (``notify_commit``) when a follower waits for it."""
        self._loop_thread = threading.get_ident()
        self._gate_election(time.monotonic())
        conf = self.conf
        conf.appendEntriesUseBatch = True  # read only by this thread (see _applyCommand)
        try:
            self.doTick(0.0)
        finally:
            conf.appendEntriesUseBatch = False
        leader = self.leader()
        if leader != self._leader_seen:  # etcd's count: every change to a known leader
            if leader is not None:
                self._leader_changes += 1
            self._leader_seen = leader

    def notify_commit(self) -> None:
        """After the pass's answers: send the new commit index now if a follower forwarded
        a command (its caller waits until that follower applied it)."""
        if not self._followers_waiting or not self.leads():
            return
        commit = self.raftCommitIndex
        if commit > self._notified_commit:
            self._notified_commit = commit
            self._SyncObj__sendAppendEntries()
        if commit >= self.last_log_index() and not self._proposals_queued():
            self._followers_waiting = False

    def finish_batch(self) -> None:
        """Commit the store batch, then resolve the completions it holds: those other
        threads wait on, which read the committed store, and failures. (Successful
        loop-served requests were answered at apply, ``_on_applied``.)"""
        self.machine.commit()
        done, self._completions = self._completions, []
        for completion, result, err in done:
            completion.resolve(result, err)

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        leader = self.leader()
        return {
            "role": "read-only" if self.selfNode is None else self.role(),
            "leader_address": leader.address if leader is not None else None,
            "term": self.raftCurrentTerm,
            "commit_index": self.raftCommitIndex,
            "raft_applied": self.raftLastApplied,
            "quorum": bool(self.hasQuorum) and leader is not None,
            "log_entries": self._getRaftLogSize(),
            "quiesced": self.quiesced,
        }

    def counters(self) -> dict[str, int]:
        """Since this member started (any thread; for /metrics, hakv.node.metrics)."""
        committed, failed = self._committed, self._failed
        return {"leader_changes": self._leader_changes, "proposals_committed": committed,
                "proposals_failed": failed,
                "proposals_pending": max(0, self._proposed - committed - failed)}

    # ------------------------------------------------------------------ snapshots

    def _write_snapshot(self, path: str, raft_data: Any) -> None:
        self.machine.commit()
        self.machine.write_snapshot(path, raft_data)

    def _read_snapshot(self, path: str) -> Any:
        # The machine reads member addresses (hakv.storage has no pysyncobj); pysyncobj
        # wants its node objects: it drops its own by equality and makes the rest voters.
        last, previous, members = self.machine.read_snapshot(path)
        return last, previous, {TCPNode(m) if isinstance(m, str) else m for m in members}

    # ------------------------------------------------------------------ hardening overrides

    def _SyncObj__setCurrentTerm(self, term: int, voted_for: Any) -> None:
        # Term and vote must be on disk before a vote or an ack based on them leaves.
        if term != self.raftCurrentTerm:  # a PreVote round belongs to the term it began in
            self._pre_vote.new_term()
        SyncObj._SyncObj__setCurrentTerm(self, term, voted_for)
        meta = getattr(self._journal, "_FileJournal__metaStorer", None)
        self._journal.flush()
        path = getattr(meta, "getPath", lambda: None)()
        if path and os.path.exists(path):
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _SyncObj__sendAppendEntries(self) -> None:
        """AppendEntries to the voters now; read-only followers get theirs
        ``READONLY_LAG`` later, with whatever was proposed meanwhile (``send_to_readonly``).

        Their acks never count toward commit. Sending them N-3 messages in the same pass
        (and reading N-3 acks, and waking N-3 processes that then compete with the voters
        for the CPU) put a cluster-level write's latency in proportion to the cluster size
        (issue 12): 54 ms at 99 nodes on one machine. They lag by ``READONLY_LAG``."""
        readonly = self._SyncObj__readonlyNodes  # type: ignore[has-type]
        if not readonly or self._SyncObj__raftState != _LEADER:
            SyncObj._SyncObj__sendAppendEntries(self)
            return
        self._SyncObj__readonlyNodes = set()
        try:
            SyncObj._SyncObj__sendAppendEntries(self)
        finally:
            self._SyncObj__readonlyNodes = readonly
        if not self._readonly_behind:
            self._readonly_behind = True
            self.readonly_due = time.monotonic() + READONLY_LAG

    def readonly_behind(self) -> bool:
        return self._readonly_behind

    def send_to_readonly(self) -> None:
        """At the end of a pass ``READONLY_LAG`` after the voters got AppendEntries the
        read-only followers did not: the same to them, with everything proposed since
        (the voters' acks are on their way by then; a steady stream of writes holds the
        read-only followers back no longer than that)."""
        if not self._readonly_behind:
            return
        if self._SyncObj__raftState != _LEADER:
            self._readonly_behind = False
            return
        voters = self._SyncObj__otherNodes  # type: ignore[has-type]
        due = self._SyncObj__newAppendEntriesTime
        self._SyncObj__otherNodes = set()
        try:
            SyncObj._SyncObj__sendAppendEntries(self)
        finally:
            self._SyncObj__otherNodes = voters
            self._SyncObj__newAppendEntriesTime = due  # the voters' heartbeat clock
        self._readonly_behind = False

    def _SyncObj__sendNextNodeIdx(self, node: Any, reset: bool = False,
                                  nextNodeIdx: int | None = None, success: bool = False) -> None:
        if nextNodeIdx is None:
            nextNodeIdx = self.last_log_index() + 1
        message = {"type": "next_node_idx", "next_node_idx": nextNodeIdx,
                   "reset": reset, "success": success}
        if success:
            self._pending_acks.append((node, message))  # sent after the journal fsync
        else:
            self._SyncObj__transport.send(node, message)

    def _SyncObj__onMessageReceived(self, node: Any, message: dict[str, Any]) -> None:
        address = getattr(node, "address", None)
        if address is not None:
            self.heard[address] = time.monotonic()
            self._received[address] += 1
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == NODE_HEARTBEAT_MESSAGE:
            if self.on_node_heartbeat is not None:
                self.on_node_heartbeat(node, message)
            return
        own = _OWN_MESSAGES.get(kind) if isinstance(kind, str) else None
        if own is not None:  # hakv's additions to Raft, which pysyncobj never sees
            getattr(self, own)(node, message)
            return
        stock = self.settings.unsafe_stock_replication
        if (kind == "next_node_idx" and not stock
                and self._SyncObj__raftState == _LEADER):
            if self._next_index_ack(node, message):
                self._activity += 1
            return
        self._activity += 1
        if kind == "append_entries" and message.get("term", -1) >= self.raftCurrentTerm:
            self._last_leader_contact = self._last_append = time.monotonic()
            self._pre_vote.leader_heard()  # a leader is back: the next election asks again
        elif kind == "apply_command":
            self._followers_waiting = True
        if (kind == "append_entries" and "prevLogIdx" in message
                and "transmission" not in message and not stock
                and message["term"] >= self.raftCurrentTerm):
            self._append_entries(node, message)
            return
        SyncObj._SyncObj__onMessageReceived(self, node, message)

    def _append_entries(self, node: Any, message: dict[str, Any]) -> None:
        """AppendEntries as Raft Fig. 2 says: truncate only at the first term conflict."""
        now = time.monotonic()
        if message["term"] > self.raftCurrentTerm:
            self._SyncObj__transferInProgress = False
        if not self._SyncObj__transferInProgress:
            self._SyncObj__raftElectionDeadline = now + self._SyncObj__generateRaftTimeout()
        if self._SyncObj__raftLeader != node:  # type: ignore[has-type]
            self._SyncObj__onLeaderChanged()
        self._SyncObj__raftLeader = node
        if message["term"] > self.raftCurrentTerm:
            self._SyncObj__setCurrentTerm(message["term"], None)
        self._SyncObj__setState(_FOLLOWER)
        leader_commit = message["commit_index"]
        self._SyncObj__leaderCommitIndex = leader_commit
        new_entries = message.get("entries", [])
        prev_idx, prev_term = message["prevLogIdx"], message["prevLogTerm"]

        held = self._SyncObj__getEntries(prev_idx)
        if not held:
            self._SyncObj__sendNextNodeIdx(node, success=False, reset=True)
            return
        if held[0][2] != prev_term:
            self._SyncObj__sendNextNodeIdx(node, nextNodeIdx=prev_idx, success=False, reset=True)
            return
        after = held[1:]
        same = 0
        while (same < len(new_entries) and same < len(after)
               and after[same][1] == new_entries[same][1] and after[same][2] == new_entries[same][2]):
            same += 1
        dynamic = self.conf.dynamicMembershipChange
        if same < len(new_entries):
            if same < len(after):
                first_conflict = after[same][1]
                if dynamic:
                    for entry in reversed(after[same:]):
                        change = self._SyncObj__parseChangeClusterRequest(entry[0])
                        if change is not None:
                            self._SyncObj__doChangeCluster(change, reverse=True)
                if first_conflict <= self.raftLastApplied:
                    log.critical("group %s: leader overwrites applied entry %d", self.group,
                                 first_conflict)
                self._SyncObj__deleteEntriesFrom(first_conflict)
            for entry in new_entries[same:]:
                self._journal.add(*entry)
                if dynamic:
                    change = self._SyncObj__parseChangeClusterRequest(entry[0])
                    if change is not None:
                        self._SyncObj__doChangeCluster(change)
        last_new = prev_idx + len(new_entries)
        self._SyncObj__sendNextNodeIdx(node, nextNodeIdx=last_new + 1, success=True)
        commit = self.raftCommitIndex
        if leader_commit > commit:
            commit = min(leader_commit, last_new)
        commit = min(commit, self.last_log_index())
        if commit != self.raftCommitIndex:
            self._SyncObj__raftCommitIndex = commit
            self._journal.setRaftCommitIndex(commit)

    def _next_index_ack(self, node: Any, message: dict[str, Any]) -> bool:
        """Leader side: success acks only move next/match forward; failures back-track.

        Returns whether the leader should tick for it: a failure (entries to resend), an
        ack that may advance the commit index, a follower still behind, a hand-over in
        progress. The other acks, such as the slower follower's ack of an entry already
        committed (one per write at a single client), only update the bookkeeping that
        the next tick reads, and cost no pass of their own."""
        next_idx = message["next_node_idx"]
        match = self._SyncObj__raftMatchIndex
        nxt = self._SyncObj__raftNextIndex
        if node not in match:
            return False
        now = self._SyncObj__lastResponseTime[node] = time.monotonic()
        if self._rtt_probes:
            self._rtt_ack(node, next_idx, message["success"], now)
        if message["success"]:
            if match[node] < next_idx - 1:
                match[node] = next_idx - 1
            if nxt.get(node, 0) < next_idx:
                nxt[node] = next_idx
            return (match[node] > self.raftCommitIndex or self._handover.active
                    or nxt[node] <= self.last_log_index())
        if message["reset"]:
            if next_idx <= match[node]:
                # The follower no longer holds entries it acknowledged (its data dir was
                # lost or replaced): replicate them again rather than never.
                log.warning("group %s: follower %s lost acknowledged entries after %d; "
                            "re-replicating", self.group, node.id, next_idx - 1)
                match[node] = next_idx - 1
            nxt[node] = max(next_idx, match[node] + 1)
        return True

    def _rtt_ack(self, node: Any, next_idx: int, success: bool, now: float) -> None:
        """Close the round-trip probe to ``node`` with this ack: its heartbeat's answer (a
        sample), a later or failed one (no sample). An ack of an earlier message leaves
        it open; one that took longer than a connection may stay silent is no sample."""
        address: str | None = getattr(node, "address", None)
        probe = None if address is None else self._rtt_probes.get(address)
        if address is None or probe is None or (success and next_idx < probe[1]):
            return
        del self._rtt_probes[address]
        seconds = now - probe[0]
        if (success and next_idx == probe[1] and seconds < CONNECTION_SILENCE
                and self.on_rtt is not None):
            self.on_rtt(address, seconds)

    # ------------------------------------------------------------------ PreVote

    def _gate_election(self, now: float) -> None:
        """Before pysyncobj's tick: a voter whose election deadline has passed first asks
        the others whether they would vote for it (hakv.raft.prevote), without raising its
        term, and holds its election back another timeout; pysyncobj's election runs once
        a majority has said yes (its deadline is then set to the past)."""
        if not self._pre_vote.should_ask(
                now=now, election_deadline=self.election_deadline(),
                voter=self.selfNode is not None, leading=self.leads(),
                transfer=self.transferring(), connected=self._connected_to_anyone()):
            return
        self._set_election_deadline(now + self._SyncObj__generateRaftTimeout())
        self._send_to_voters(self._pre_vote.ask(
            self.raftCurrentTerm, self.last_log_index(), self.last_log_term(),
            self.voter_addresses()))
        if self._pre_vote.won:
            self._run_election()

    def _run_election(self) -> None:
        self._set_election_deadline(0.0)  # pysyncobj's election, next tick
        self._activity += 1

    def _on_pre_vote(self, node: Any, message: dict[str, Any]) -> None:
        """Would this member vote for the asker? (``prevote.grants``; nothing changes here.)"""
        leader = self.leader()
        answer = grants(message, term=self.raftCurrentTerm,
                        last_index=self.last_log_index(), last_term=self.last_log_term(),
                        voter=self.selfNode is not None, leading=self.leads(),
                        leader_heard_at=None if leader is None else self._last_leader_contact,
                        now=time.monotonic(),
                        election_timeout_min=self.settings.election_timeout_min)
        if answer is not None:
            self._transport().send(node, answer)

    def _on_pre_vote_ack(self, node: Any, message: dict[str, Any]) -> None:
        if self._pre_vote.on_answer(str(getattr(node, "address", "")), message,
                                    term=self.raftCurrentTerm, leading=self.leads(),
                                    voters=self.voter_addresses()):
            self._run_election()

    def pre_vote_won(self) -> bool:
        """Whether a PreVote majority cleared this member for a real election."""
        return self._pre_vote.won

    # ------------------------------------------------------------------ runtime membership
    # Used by hakv.core.membership. All but ``change_membership`` read or change raft-thread
    # state, so they run in the raft thread (``RaftHost.call_in_loop``).

    def membership(self) -> dict[str, Any]:
        """This member's view of the group's Raft configuration (addresses)."""
        me = self.selfNode.address if self.selfNode is not None else None
        others = [n.address for n in self._voters()]
        leader = self.leader()
        is_leader = self.leads()
        noop = self.noop_index()
        return {
            "self": me,
            "voters": sorted(others + ([me] if me else [])),
            "leader": is_leader,
            "leader_address": leader.address if leader is not None else None,
            "term": self.raftCurrentTerm,
            "applied": self.raftLastApplied,
            "commit_index": self.raftCommitIndex,
            # A leader whose first entry of its term has applied: every entry before it,
            # membership changes included, is committed (pysyncobj refuses changes before).
            "settled": is_leader and noop is not None and self.raftLastApplied >= noop,
        }

    def change_membership(self, action: str, address: str) -> Completion:
        """Propose adding (``"add"``) or removing (``"remove"``) one voter; any thread.

        Raft single-server change: the new configuration takes effect when the entry is
        appended; the completion resolves once it has been committed and applied here.
        Callers must wait for it before proposing the next change (pysyncobj does not
        enforce that itself)."""
        done = Completion()

        def finished(_result: Any, reason: int) -> None:
            if reason == FAIL_REASON.SUCCESS:
                done.resolve(True)
            else:
                done.resolve(None, error_for(reason, self.group))

        if action == "add":
            self.addNodeToCluster(address, callback=finished)
        elif action == "remove":
            self.removeNodeFromCluster(address, callback=finished)
        else:
            raise ValueError(f"unknown membership action {action!r}")
        return done

    def hand_over_leadership(self, address: str, within: float) -> None:
        """Raft thread: hand leadership to ``address`` (a leader leaving its group).

        Appending stops (new proposals wait in the queue), the target gets every entry,
        then it is told to start an election at once (TimeoutNow). Without the pause the
        target asks for votes with a log already behind the others' and loses, and the old
        leader wins again. Gives up after ``within`` seconds, at once when the target is not
        connected, and one election timeout after TimeoutNow went out (a target that died
        meanwhile must not stall the group for long)."""
        if self.leads():
            self._handover.start(address, time.monotonic(), within)

    def handing_over(self) -> bool:
        return self._handover.active

    def _holding_for_handover(self) -> bool:
        """Whether proposals wait for the hand-over (hakv.raft.handover); sends TimeoutNow
        when the tracker says so, through pysyncobj's ``transferLeadership``."""
        now = time.monotonic()
        target = self._handover.target
        step = self._handover.step(
            now, leading=self.leads(),
            target_connected=target is not None
            and self.isNodeConnected(TCPNode(target)))
        if step is HandOverStep.TIMEOUT_NOW:
            outcome: list[int] = []
            self.transferLeadership(target, callback=lambda _r, why: outcome.append(why))
            if outcome == [FAIL_REASON.SUCCESS]:  # denied while the target lags: retried
                self._handover.timeout_now_sent(now, self.settings.election_timeout_min)
        return step is not HandOverStep.RELEASE

    def hold_elections_until_leader(self) -> None:
        """Raft thread: start no election before a leader has contacted this member.

        For a new owner restarted as a voter before the leader adds it: peers drop its
        connections until then, but each short-lived connection would let it time out,
        raise its term and, once added, depose a healthy leader. (PreVote, in
        ``_gate_election``, already keeps its term while the others hear their leader;
        this hold also covers the moments they do not.)"""
        released = False

        def hold() -> None:
            nonlocal released
            if released:
                return
            if self.leader() is not None:
                released = True
                return
            self._set_election_deadline(time.monotonic() + self.settings.election_timeout_max)

        self.addOnTickCallback(hold)
        hold()


