"""The raft host: all Raft members of one node, one listener port, one poller, one raft
thread (``RaftHost``). The only package of hakv that imports pysyncobj is hakv.raft; this
module drives the members (hakv.raft.member) and sends the node heartbeats of quiet groups.

Threads: one *raft thread* per node runs every member's tick, the fsyncs and the store
commits (``RaftHost.run``). Other threads only submit commands (thread-safe queue + pipe
wake-up) and wait on ``Completion`` objects that the raft thread resolves *after* the
store batch holding their result has been committed.

Building a ``RaftHost`` installs hakv's wire into pysyncobj (``hakv.raft.wire.install``);
importing this module changes nothing in pysyncobj.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from pysyncobj.pipe_notifier import PipeNotifier
from pysyncobj.transport import TransportNotReadyError

from hakv import errors
from hakv.raft.completion import Completion
from hakv.raft.member import GroupMember
from hakv.raft.poller import LoopPoller
from hakv.raft.quiesce import node_heartbeat_period
from hakv.raft.settings import CONNECTION_SILENCE, MIN_POLL, READONLY_ROUNDS, STEP_ASIDE
from hakv.raft.tls import RaftTls
from hakv.raft.wire import NODE_HEARTBEAT_MESSAGE, NodeListener, install

log = logging.getLogger("hakv.raft.host")


class RaftHost:
    """All Raft members of one node: one listener port, one poller, one raft thread."""

    def __init__(self, host: str, port: int, barrier_payload: bytes, secret: str | None = None,
                 idle_wait: float = 0.05, step_aside: float = STEP_ASIDE,
                 tls: RaftTls | None = None) -> None:
        install()  # hakv's wire in pysyncobj, before any member exists
        self.poller = LoopPoller()
        self.step_aside = step_aside
        self.listener = NodeListener(self.poller, host, port, secret, tls)
        self.members: dict[str, GroupMember] = {}
        self._barrier = barrier_payload
        self._idle_wait = idle_wait
        self._stop = threading.Event()
        self._wake = PipeNotifier(self.poller)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # guards member creation vs. the loop
        self._calls: collections.deque[tuple[Callable[[], Any], Completion | None]] = (
            collections.deque())  # run by the raft thread between ticks (call_in_loop, post)
        self.timers: list[Callable[[float], float | None]] = [self.listener.expire]
        """Called with the time at the start of every pass; each returns when it wants
        the next call (None: no wish). The API server's request deadlines are one."""
        self._next_node_heartbeat = 0.0
        self._beats = 0  # node-heartbeat rounds so far
        self._readonly_next: list[GroupMember] = []  # send_to_readonly in the next pass
        self._loop_proposals = False  # proposed by the raft thread since the pass began
        self._proposers: set[GroupMember] = set()  # members the raft thread proposed to
        self._stepped_aside = False  # the last pass ended after its acks (_may_step_aside)
        self.last_heard: dict[str, float] = {}
        """Raft address of a peer node -> when any raft message from it last arrived (the
        clock is ``time.monotonic``): liveness evidence for free, used by the HA prober."""
        self.on_rtt: Callable[[str, float], None] | None = None
        """Called with (peer raft address, seconds) for each round trip measured: a
        leader's heartbeat to its ack (GroupMember), a node heartbeat to the one that
        echoes it (``_on_node_heartbeat``). For /metrics; no message is sent for it."""
        self._echo: dict[str, tuple[float, float]] = {}  # peer -> (its send time, got at)

    def add_member(self, member_factory: Callable[[NodeListener, Any], GroupMember]) -> GroupMember:
        def add() -> GroupMember:
            member = member_factory(self.listener, self.poller)
            member.on_node_heartbeat = self._on_node_heartbeat
            member.on_loop_proposal = self._proposed_in_loop
            member.heard = self.last_heard
            member.on_rtt = self._rtt
            self.members[member.group] = member
            return member

        member: GroupMember = self.call_in_loop(add)
        return member

    def remove_member(self, group: str, timeout: float = 10.0) -> GroupMember | None:
        """Stop and destroy ``group``'s member (runtime membership). Done in the raft thread
        between ticks, so the loop never ticks, and the poller never dispatches to, a
        destroyed member. Its journal is flushed and closed; its data stay on disk."""
        def drop() -> GroupMember | None:
            member = self.members.pop(group, None)
            if member is None:
                return None
            try:
                member.flush_journal()
                member.finish_batch()
            finally:
                member._doDestroy()
                # The member's own wake-up pipe stays open (a thread still holding the
                # member may notify it) but is no longer polled.
                notifier = getattr(member, "_SyncObj__pipeNotifier", None)
                fd = getattr(notifier, "_PipeNotifier__pipeR", None)
                if fd is not None:
                    self.poller.unsubscribe(fd)
            return member

        result: GroupMember | None = self.call_in_loop(drop, timeout)
        return result

    def call_in_loop(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Run ``fn`` in the raft thread between ticks and return its result (or raise its
        HakvError). Before the thread runs (or after it stopped): here, under the lock."""
        thread = self._thread
        if thread is threading.current_thread():
            return fn()
        if thread is None or not thread.is_alive():
            with self._lock:
                return fn()
        done = Completion()
        self._calls.append((fn, done))
        self.wake()
        return done.wait(timeout)

    def post(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` in the raft thread soon, without waiting for it (any thread)."""
        self._calls.append((fn, None))
        self.wake()

    def _run_calls(self) -> None:
        while self._calls:
            fn, done = self._calls.popleft()
            try:
                result = fn()
            except errors.HakvError as exc:
                if done is not None:
                    done.resolve(None, exc)
            except Exception as exc:  # never let a caller's bug kill the raft thread
                log.exception("call in the raft thread failed")
                if done is not None:
                    done.resolve(None, errors.InternalError(f"{type(exc).__name__}: {exc}"))
            else:
                if done is not None:
                    done.resolve(result)

    def wake(self) -> None:
        """Make the raft thread run a pass soon (from the raft thread itself: no sleep
        before the next pass, without a byte through the wake-up pipe)."""
        if self._thread is not None and threading.get_ident() == self._thread.ident:
            self._loop_proposals = True
        else:
            self._wake.notify()

    def _proposed_in_loop(self, member: GroupMember) -> None:
        self._loop_proposals = True
        self._proposers.add(member)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run_or_stop, name="raft", daemon=True)
        self._thread.start()

    def _run_or_stop(self) -> None:
        """The raft thread. If it ever dies the node can serve nothing: crash-stop (exit
        70, as for a storage failure) so that a supervisor restarts it, rather than a
        process that looks alive and answers nothing."""
        try:
            self.run()
        except BaseException:
            log.critical("the raft thread failed; stopping the node", exc_info=True)
            logging.shutdown()
            os._exit(70)

    def run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                self._loop_proposals = False
                self._run_calls()
                members = list(self.members.values())
                now = time.monotonic()
                wishes = [due for due in (timer(now) for timer in self.timers)
                          if due is not None]
                # Acks for entries that came in during the poll go out first: a follower's
                # ack is on the critical path of every write, its tick (applying earlier
                # entries into the store) is not.
                acked = False
                for member in members:
                    if member.acks_waiting():
                        member.flush_journal()
                        acked = True
                proposers, self._proposers = self._proposers, set()
                for member in proposers:
                    if self.members.get(member.group) is member:  # not removed since
                        member.propose_now()
                if acked and self._may_step_aside(members):
                    wait = self.step_aside
                else:
                    self._stepped_aside = False
                    wait = self._pass(members, now, wishes)
            self.poller.poll(wait)

    def _may_step_aside(self, members: list[GroupMember]) -> bool:
        """Whether to end this pass after sending acks and poll for up to ``STEP_ASIDE``
        before ticking (at most one pass in two, never while a group led here has work).

        The leader an ack wakes needs a core now to commit and answer; the follower's own
        tick (applying entries it already acked, into its store) can wait. Where nodes
        share cores (a test machine, or this benchmark's three nodes and clients on two),
        ticking at once took the core the leader was about to run on."""
        if not self.step_aside or self._stepped_aside or self._calls:
            return False
        if any(m.leads() and m.has_work() for m in members):
            return False
        self._stepped_aside = True
        return True

    def _pass(self, members: list[GroupMember], now: float, wishes: list[float]) -> float:
        """Tick the members that need it, fsync, commit, answer; how long to poll next."""
        # Only members with work or a due periodic tick are touched: with many idle
        # groups per node, per-member bookkeeping on every wake-up dominated the
        # idle cost. A member that got messages during another's tick has work, so
        # it is ticked (and its acks released) on the next pass, without sleeping.
        ticked = [m for m in members if m.needs_tick(now, self._idle_wait)]
        for member in ticked:
            try:
                member.tick()
            except TransportNotReadyError:
                pass
        for member in ticked:
            member.forget_silent_leader()
            member.flush_journal()
        for member in ticked:
            member.finish_batch()
        for member in ticked:
            member.notify_commit()
        for member in ticked:
            member.start_read_barriers(self._barrier)
        if members and now >= self._next_node_heartbeat:
            period = node_heartbeat_period(min(m.settings.heartbeat_period for m in members))
            self._next_node_heartbeat = now + period
            self._send_node_heartbeats(members, now)
        # Only a ticked member can have work now, or one the raft thread gave work
        # during this pass: messages arrive in the poll below, and other threads'
        # proposals and reads wake it through the pipe.
        # After the ticks: a voter ack that came in this poll has been counted first.
        for member in self._readonly_next:
            if self.members.get(member.group) is member and now >= member.readonly_due:
                member.send_to_readonly()
        self._readonly_next = [m for m in members if m.readonly_behind()]
        if self._loop_proposals or any([member.has_work() for member in ticked]):
            return 0.0
        if self._readonly_next:
            wishes = [*wishes, min(m.readonly_due for m in self._readonly_next)]
        due = [m._next_tick for m in members]
        if members:
            due.append(self._next_node_heartbeat)
        due += wishes
        # A floor: a deadline that stays in the past (a bug, or a member whose tick does
        # not move it) costs at most a pass per millisecond, not a busy loop.
        return max(MIN_POLL, min(due) - time.monotonic()) if due else self._idle_wait

    # ------------------------------------------------------------------ node heartbeats

    def _send_node_heartbeats(self, members: list[GroupMember], now: float) -> None:
        """One message per peer node for all quiet groups shared with it: which groups this
        node leads (so their followers hold off elections) and which it follows (so their
        leaders keep counting it as in contact). Nothing is sent while no group is quiet."""
        led: dict[str, dict[str, int]] = {}
        followed: dict[str, dict[str, int]] = {}
        routes: dict[str, list[tuple[GroupMember, Any]]] = {}
        voting: set[str] = set()  # peers that vote with this node in some group
        self._beats += 1
        readonly_round = self._beats % READONLY_ROUNDS == 0
        for member in members:
            others = member._SyncObj__otherNodes
            if member.selfNode is None:  # read-only: never a leader, so never quiesced
                if not readonly_round:
                    continue
            else:
                voting.update(node.address for node in others)
            if member.quiesced:
                for node in others:
                    led.setdefault(node.address, {})[member.group] = member.raftCurrentTerm
                for node in member._SyncObj__readonlyNodes if readonly_round else ():
                    address = getattr(node, "address", None)
                    if address is not None:
                        led.setdefault(address, {})[member.group] = member.raftCurrentTerm
                        routes.setdefault(address, []).append((member, node))
            else:
                # A follower says so to its quiet leader; a read-only one too, so that
                # the leader's connection to it stays alive (peer_alive).
                leader = member.hears_quiet_leader(now)
                if leader is not None:
                    followed.setdefault(leader.address, {})[member.group] = (
                        member.raftCurrentTerm)
            for node in others:
                routes.setdefault(node.address, []).append((member, node))
        # A peer related to this node only through read-only members (the cluster
        # ensemble's leader and its N-3 read-only followers) hears every READONLY_ROUNDS
        # rounds: nobody there waits to hold an election, and the leader's N-1 messages
        # per round (and as many answers) were the one idle cost growing with N. Every
        # 0.8 s still comes 3 times inside the connection timeout (CONNECTION_SILENCE)
        # and a read-only member's leader fallback (``forget_silent_leader``).
        for address in led.keys() | followed.keys():
            if not readonly_round and address not in voting:
                continue
            # Round trips for free: the send time (our clock), and the peer's last one
            # back with how long we held it (its node heartbeats echo ours the same way).
            sent = time.monotonic()
            message: dict[str, Any] = {"type": NODE_HEARTBEAT_MESSAGE,
                                       "led": led.get(address, {}),
                                       "followed": followed.get(address, {}), "sent": sent}
            echo = self._echo.pop(address, None)
            if echo is not None:
                message["echo"] = (echo[0], sent - echo[1])
            for member, node in routes.get(address, ()):
                if member._SyncObj__transport.send(node, message):
                    break

    def _on_node_heartbeat(self, node: Any, message: dict[str, Any]) -> None:
        now = time.monotonic()
        address = getattr(node, "address", None)
        if isinstance(address, str):
            for each in self.members.values():
                each.peer_alive(address, now)
            self._echoed(address, message, now)
        for key, alive in (("led", GroupMember.leader_alive),
                           ("followed", GroupMember.follower_alive)):
            entries = message.get(key)
            if not isinstance(entries, dict):
                continue
            for group, term in entries.items():
                member = self.members.get(group) if isinstance(group, str) else None
                if member is not None and isinstance(term, int):
                    alive(member, node, term, now)

    def _echoed(self, address: str, message: dict[str, Any], now: float) -> None:
        """Keep the peer's send time to echo; a round trip from our own echoed back."""
        sent = message.get("sent")
        if isinstance(sent, float):
            self._echo[address] = (sent, now)
        echo = message.get("echo")
        if (isinstance(echo, tuple) and len(echo) == 2
                and all(isinstance(x, float) for x in echo)):
            self._rtt(address, now - echo[0] - echo[1])

    def _rtt(self, address: str, seconds: float) -> None:
        if self.on_rtt is not None and 0.0 <= seconds < CONNECTION_SILENCE:
            self.on_rtt(address, seconds)

    def stop(self) -> None:
        self._stop.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for member in self.members.values():
            try:
                member.flush_journal()
                member.finish_batch()
                member._doDestroy()
            except Exception:  # best effort at shutdown
                log.exception("error while closing group %s", member.group)
        self.listener.close()


__all__ = ["RaftHost"]
