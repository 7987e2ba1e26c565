"""Hardened Raft over pysyncobj 0.3.17 — the only module of hakv that imports pysyncobj.

What this layer fixes or adds (RAFT-NOTES.md "Safety", point by point):

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
5. Linearizable reads: on the leader, a ReadIndex (Raft thesis §6.4): it notes its commit
   index, confirms with one probe round that a majority still follows it in its term, and
   serves the reads once that index is applied; no log entry, no fsync. Elsewhere (or
   before the leader has committed an entry of its term) ``read_barrier`` puts one no-op
   through the log for all reads that arrived since the last barrier.
6. Ambiguous outcomes are reported as such (``OutcomeUnknownError``), never as failures.
7. Apply never raises: the state machine turns bad commands into error results, and a
   storage failure crash-stops the node (``os._exit``) instead of wedging the tick loop.
8. Commands above ``MAX_COMMAND_BYTES`` are refused before they reach the log.
9. One TCP port per node carries every group (``MuxTransport``); each connection first
   names its group. (Peer authentication with mutual TLS belongs in this transport and is
   not there yet: keep raft ports on trusted networks.)

Threads: one *raft thread* per node runs every member's tick, the fsyncs and the store
commits (``RaftHost.run``). Other threads only submit commands (thread-safe queue + pipe
wake-up) and wait on ``Completion`` objects that the raft thread resolves *after* the
store batch holding their result has been committed.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import hmac
import logging
import math
import os
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import pysyncobj.syncobj as _syncobj_module
import pysyncobj.tcp_connection as _tcp_connection_module
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from pysyncobj import SyncObj, SyncObjConf, replicated  # type: ignore[attr-defined]
from pysyncobj.config import FAIL_REASON
from pysyncobj.node import TCPNode
from pysyncobj.pipe_notifier import PipeNotifier
from pysyncobj.tcp_server import TcpServer
from pysyncobj.transport import TCPTransport, TransportNotReadyError

from hakv import errors
from hakv.core.codec import MAX_COMMAND_BYTES
from hakv.core.quorum import majority
from hakv.raft.poller import LoopPoller

log = logging.getLogger("hakv.raft.host")

_LEADER = 2
_FOLLOWER = 0
_WIRE_HELLO = "hakv1"
_NODE_HEARTBEAT = "hakv_node_heartbeat"
# ReadIndex (GroupMember.start_read_barriers): the leader's "am I still leader?" round.
_READ_PROBE = "hakv_read_probe"
_READ_PROBE_ACK = "hakv_read_probe_ack"
# PreVote (GroupMember._gate_election): "would you vote for me?", asked before a real
# election. A member refuses while it heard from a live leader within PRE_VOTE_LEASE
# election timeouts (minimum): short of the timeout itself, so that a dead leader's
# followers, whose last contact differs by a few ms, all grant.
_PRE_VOTE = "hakv_pre_vote"
_PRE_VOTE_ACK = "hakv_pre_vote_ack"
PRE_VOTE_LEASE = 0.75
_OWN_MESSAGES = {_READ_PROBE: "_on_read_probe", _READ_PROBE_ACK: "_on_read_probe_ack",
                 _PRE_VOTE: "_on_pre_vote", _PRE_VOTE_ACK: "_on_pre_vote_ack"}
# Quiescence, in heartbeat periods: a leader stops heartbeating a group that has been idle,
# with every follower caught up, for QUIESCE_AFTER periods; a follower calls its leader
# quiet after FOLLOWER_QUIET periods without AppendEntries. Node heartbeats go every
# NODE_HEARTBEAT periods; a peer heard from within CONTACT_FRESH node heartbeats counts as
# in contact; a node heartbeat moves a quiet follower's election deadline a fresh Raft
# timeout plus QUIET_SLACK node heartbeats ahead (so one late node heartbeat is no
# election: a quiet group's leader failure is detected up to that much later).
QUIESCE_AFTER = 3.0
FOLLOWER_QUIET = 2.5
NODE_HEARTBEAT = 2.0
CONTACT_FRESH = 3.0
QUIET_SLACK = 2.0
STEP_ASIDE = 0.0004  # seconds (RaftHost step_aside; 0 = off)
QUIET_TICK = 0.5  # seconds between housekeeping ticks of a quiet member (on a shared grid)
MIN_POLL = 0.001  # seconds: the shortest sleep of an idle raft loop (see RaftHost._pass)
#: Seconds read-only followers wait for what the voters got: entries proposed meanwhile go
#: to them together (on one machine, each message to N-3 read-only followers wakes N-3
#: processes; back-to-back cluster writes then paid that herd once per write).
READONLY_LAG = 0.02
READONLY_ROUNDS = 4  # node-heartbeat rounds between two to a peer met only read-only
#: Seconds a connection may read nothing before pysyncobj drops it: 3 node heartbeats to a
#: read-only peer (READONLY_ROUNDS x 0.2 s), so a late one never drops a live connection
#: (which wakes the quiet ensemble and makes more work on a busy node).
CONNECTION_SILENCE = 2.5


@dataclass(frozen=True)
class RaftSettings:
    """Timing of one member. Defaults step a partitioned leader down within ~1 s."""

    election_timeout_min: float = 0.4
    election_timeout_max: float = 1.0
    leader_fallback_timeout: float = 1.0
    connection_retry: float = 0.5
    heartbeat_period: float = 0.1
    log_compaction_entries: int = 20000
    log_compaction_seconds: float = 600.0
    unsafe_stock_replication: bool = False  # tests only: re-enables pysyncobj's data loss
    # Cluster secret: authenticates raft traffic, does not encrypt it (never printed).
    secret: str | None = field(default=None, repr=False)

    def to_conf(self, journal: str, snapshot: str, serializer: Callable[..., Any],
                deserializer: Callable[..., Any], bind_address: str) -> SyncObjConf:
        return SyncObjConf(
            autoTick=False,
            appendEntriesUseBatch=False,
            commandsWaitLeader=False,
            dynamicMembershipChange=True,
            raftMinTimeout=self.election_timeout_min,
            raftMaxTimeout=self.election_timeout_max,
            appendEntriesPeriod=self.heartbeat_period,
            leaderFallbackTimeout=self.leader_fallback_timeout,
            connectionRetryTime=self.connection_retry,
            connectionTimeout=max(CONNECTION_SILENCE, self.election_timeout_max),
            journalFile=journal,
            fullDumpFile=snapshot,
            serializer=serializer,
            deserializer=deserializer,
            logCompactionMinEntries=self.log_compaction_entries,
            logCompactionMinTime=self.log_compaction_seconds,
            bindAddress=bind_address or None,
            pollerType="poll",
            password=self.secret,
        )


class Completion:
    """A submitted command's outcome, resolved by the raft thread.

    ``wait`` returns the state machine's result or raises the typed error. Timing out
    while waiting means the outcome is unknown (the command may still commit).

    A completion made with ``on_done`` is not waited on: the callback runs in the raft
    thread once it is resolved (the client API answers from it), and ``outcome`` gives the
    result there. Such completions carry no ``threading.Event``: at thousands of writes a
    second, making one (a lock and a condition) was a visible share of a leader's CPU.
    """

    __slots__ = ("_event", "_result", "_error", "_on_done", "_resolved")

    def __init__(self, on_done: Callable[[], None] | None = None) -> None:
        self._event = threading.Event() if on_done is None else None
        self._result: Any = None
        self._error: errors.HakvError | None = None
        self._on_done = on_done
        self._resolved = False

    def resolve(self, result: Any = None, error: errors.HakvError | None = None) -> None:
        self._result, self._error = result, error
        self._resolved = True
        if self._event is not None:
            self._event.set()
        if self._on_done is not None:
            self._on_done()

    @property
    def answers_in_loop(self) -> bool:
        """Whether the raft thread acts on it (an ``on_done`` callback)."""
        return self._on_done is not None

    def done(self) -> bool:
        """Whether the outcome is known (``wait`` would not block)."""
        return self._resolved

    def outcome(self) -> Any:
        """The result of a resolved completion, or raises its error."""
        if not self._resolved:
            raise errors.OutcomeUnknownError("the outcome is not known yet")
        if self._error is not None:
            raise self._error
        return self._result

    def wait(self, timeout: float) -> Any:
        if self._event is not None and not self._event.wait(timeout):
            raise commit_timed_out(timeout)
        return self.outcome()


def commit_timed_out(timeout: float) -> errors.OutcomeUnknownError:
    """The error of a write whose commit was not seen within ``timeout`` seconds."""
    return errors.OutcomeUnknownError(
        f"no commit within {timeout:.1f}s: the write may or may not apply; "
        "retry with the same client id and seq"
    )


def _error_for(reason: int, group: str) -> errors.HakvError:
    if reason in (FAIL_REASON.MISSING_LEADER, FAIL_REASON.QUEUE_FULL):
        return errors.NoQuorumError(
            f"group {group} has no leader: a majority of its owners is not reachable "
            "(retry later)", group=group)
    if reason in (FAIL_REASON.NOT_LEADER, FAIL_REASON.DISCARDED, FAIL_REASON.REQUEST_DENIED):
        return errors.NotLeaderError(f"group {group} changed leader; retry", group=group)
    return errors.OutcomeUnknownError(
        f"group {group} changed leader while the command was in flight: it may or may not "
        "apply; retry with the same client id and seq", group=group)


class NodeListener:
    """The node's one raft port. A connection's first message names its group.

    With a cluster secret, every message on the port carries an HMAC under a key derived
    from the secret (``MessageAuthenticator``): pysyncobj verifies it before unpickling
    anything, so a peer without the secret can make the node unpickle nothing at all, not
    even a hello.
    """

    def __init__(self, poller: Any, host: str, port: int, secret: str | None = None) -> None:
        self._transports: dict[str, MuxTransport] = {}
        self.encryptor = encryptor_for(secret) if secret else None
        self._server = TcpServer(poller, host, port, onNewConnection=self._on_connection,
                                 sendBufferSize=2 ** 16, recvBufferSize=2 ** 16,
                                 connectionTimeout=3.5)
        self.address = f"{host}:{port}"
        try:
            self._server.bind()
        except OSError as exc:
            raise errors.ConfigError(
                f"cannot listen on raft address {self.address}: {exc.strerror or exc}; "
                "is another node (or program) using this port?") from None

    def register(self, group: str, transport: MuxTransport) -> None:
        self._transports[group] = transport

    def unregister(self, group: str) -> None:
        self._transports.pop(group, None)

    def _on_connection(self, conn: Any) -> None:
        # pysyncobj sets TCP_NODELAY only on connections it dials; without it here, Nagle
        # holds back acks on accepted connections and every write waits for delayed ACKs.
        sock = getattr(conn, "_TcpConnection__socket", None)
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.encryptor = self.encryptor  # set before the first byte is parsed
        conn.setOnMessageReceivedCallback(functools.partial(self._on_hello, conn))
        conn.setOnDisconnectedCallback(lambda: None)

    def _on_hello(self, conn: Any, message: Any) -> None:
        if self.encryptor is not None and not conn.sendRandKey:
            # pysyncobj's handshake: exchange per-connection random keys (replay guard).
            conn.sendRandKey = message
            conn.recvRandKey = os.urandom(32)
            conn.send(conn.recvRandKey)
            return
        if not (isinstance(message, tuple) and len(message) in (3, 4)
                and message[0] == _WIRE_HELLO):
            log.warning("dropping raft connection with a malformed hello")
            conn.disconnect()
            return
        group, address = message[1], message[2]
        transport = self._transports.get(group)
        if transport is None:
            log.warning("dropping raft connection for group %r, not hosted here", group)
            conn.disconnect()
            return
        transport._onNewIncomingConnection(conn)
        transport._onIncomingMessageReceived(conn, address)
        if address == "readonly" and len(message) == 4 and isinstance(message[3], str):
            # pysyncobj names a read-only peer by a counter; remember the node it runs on,
            # so node heartbeats reach it while its group is quiet.
            for node, known in list(transport._connections.items()):
                if known is conn:
                    node.address = message[3]

    def close(self) -> None:
        self._server.unbind()


class MessageAuthenticator:
    """Stands in for pysyncobj's Fernet encryptor: every message carries a timestamp and an
    HMAC-SHA256 under a key derived from the cluster secret, checked before pysyncobj
    unpickles anything. Authenticated, not encrypted: Fernet (AES + HMAC + base64 on every
    message) cost over a millisecond per write here, this costs microseconds.
    """

    _TAG = hashlib.sha256().digest_size

    def __init__(self, key: bytes) -> None:
        self._key = key
        # pysyncobj asks for a message's timestamp, then for its body: one check for both.
        self._last: tuple[bytes, bytes] | None = None

    def _sign(self, body: bytes) -> bytes:
        return hmac.digest(self._key, body, "sha256")

    def _verified(self, token: bytes) -> bytes:
        last = self._last
        if last is not None and last[0] is token:
            return last[1]
        body, tag = token[:-self._TAG], token[-self._TAG:]
        if len(body) < 8 or not hmac.compare_digest(self._sign(body), tag):
            raise ValueError("raft message failed authentication")  # pysyncobj disconnects
        self._last = (token, body)
        return body

    def encrypt_at_time(self, data: bytes, timestamp: int) -> bytes:
        body = struct.pack(">Q", timestamp) + data
        return body + self._sign(body)

    def extract_timestamp(self, token: bytes) -> int:
        return int(struct.unpack(">Q", self._verified(token)[:8])[0])

    def decrypt(self, token: bytes) -> bytes:
        return self._verified(token)[8:]


@functools.lru_cache(maxsize=4)
def encryptor_for(secret: str) -> MessageAuthenticator:
    """The authenticator for a secret, derived once per process (PBKDF2 with 100,000
    rounds costs ~0.1 s: every group member of the node shares the result)."""
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=_KDF_SALT,
                     iterations=100_000)
    return MessageAuthenticator(kdf.derive(secret.encode("utf-8")))


_KDF_SALT = b"hakv raft message authentication v1"

# Members get the secret through SyncObjConf.password; pysyncobj then builds its
# encryptor with getEncryptor, which is routed here.
_syncobj_module.getEncryptor = encryptor_for


class _WireZlib:
    """Stands in for the ``zlib`` module inside pysyncobj's TcpConnection, which compresses
    every message at level 3. ``zlib.compress`` sets up a fresh deflate state per call:
    ~75 µs even for a 300-byte heartbeat, more than pickling, authenticating and sending
    it together, and several times per write. Small messages are framed as *stored* zlib
    blocks instead (a valid zlib stream, so the receiving side still just calls
    ``zlib.decompress``); large ones (log catch-up, snapshots) are still compressed."""

    STORED_BELOW = 16384
    _BLOCK = 65535

    decompress = staticmethod(zlib.decompress)

    @classmethod
    def compress(cls, data: bytes, level: int = -1) -> bytes:
        if len(data) >= cls.STORED_BELOW:
            return zlib.compress(data, level)
        return cls.stored(data)

    @classmethod
    def stored(cls, data: bytes) -> bytes:
        """``data`` as a zlib stream of stored (uncompressed) deflate blocks (RFC 1950/1951)."""
        parts = [b"\x78\x01"]
        view = memoryview(data)
        offset, size = 0, len(data)
        while True:
            chunk = view[offset:offset + cls._BLOCK]
            offset += len(chunk)
            final = offset >= size
            parts.append(struct.pack("<BHH", 1 if final else 0, len(chunk), len(chunk) ^ 0xFFFF))
            parts.append(chunk.tobytes())
            if final:
                break
        parts.append(struct.pack(">I", zlib.adler32(data)))
        return b"".join(parts)


_tcp_connection_module.zlib = _WireZlib  # type: ignore[assignment]


class MuxTransport(TCPTransport):  # type: ignore[misc]
    """pysyncobj transport sharing the node's listener; outgoing hellos name the group."""

    def __init__(self, syncObj: Any, selfNode: Any, otherNodes: Any, *,
                 listener: NodeListener, group: str) -> None:
        self._listener = listener
        self._group = group
        super().__init__(syncObj, selfNode, otherNodes)

    def _createServer(self) -> None:
        self._listener.register(self._group, self)

    def _maybeBind(self) -> None:
        if not self._ready:  # type: ignore[has-type]
            self._ready = True
            self._bindOverEvent.set()

    def _sendSelfAddress(self, conn: Any) -> None:
        if self._selfIsReadonlyNode:
            conn.send((_WIRE_HELLO, self._group, "readonly", self._listener.address))
        else:
            conn.send((_WIRE_HELLO, self._group, self._selfNode.address))

    def destroy(self) -> None:
        self._listener.unregister(self._group)
        self._server = None
        super().destroy()


class StateMachine(Protocol):
    """What a member applies into. ``apply`` must not raise for bad commands."""

    def apply(self, index: int, payload: bytes) -> Any: ...
    def commit(self) -> None: ...
    def applied_index(self) -> int: ...
    def write_snapshot(self, path: str, raft_data: Any) -> None: ...
    def read_snapshot(self, path: str) -> Any: ...


def _tick_after(now: float, period: float) -> float:
    """The next housekeeping instant: on a grid shared by all members of the node, so quiet
    groups are ticked together in one wake-up rather than each in its own."""
    return (math.floor(now / period) + 1) * period


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
        # ReadIndex on the leader: reads waiting for a probe round of _probe_term, as
        # (probe seq, read index, reads); per voter the highest probe seq it answered.
        self._probing: list[tuple[int, int, list[Completion]]] = []
        self._probe_seq = 0
        self._probe_term = -1
        self._probe_acks: dict[Any, int] = {}
        self._probe_sent_at = 0.0
        # PreVote: the round in progress (our term when it began), who granted, and whether
        # a majority did, which lets the next tick run pysyncobj's real election.
        self._pre_vote_term = -1
        self._pre_vote_grants: set[Any] = set()
        self._pre_vote_won = False
        self._activity = 0
        self._next_tick = 0.0
        self._last_leader_contact = time.monotonic()
        self._last_append = 0.0  # when the last AppendEntries from a leader arrived
        self._readonly_behind = False  # read-only followers wait (send_to_readonly)
        self.readonly_due = 0.0  # when they get what they wait for
        self._peer_nodes: dict[Any, Any] = {}  # peer address -> node object (peer_alive)
        self._peer_nodes_seen = -1  # how many connections that index was built from
        self._quiet_since: float | None = None
        self.quiesced = False  # leader only: the group is idle and heartbeats are off
        self.on_node_heartbeat: Callable[[Any, dict[str, Any]], None] | None = None
        self.heard: dict[str, float] = {}  # raft address -> last message from it (host's)
        self._followers_waiting = False  # a follower forwarded a command: tell it the commit
        self._notified_commit = 0
        self._handover: tuple[str, float, bool] | None = None  # hand_over_leadership
        self._loop_thread = -1  # ident of the raft thread that ticks this member
        self.on_loop_proposal: Callable[[GroupMember], None] | None = None  # by the host
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
        if self._handover is not None and self._holding_for_handover():
            return  # proposals wait in the queue until the new leader takes them
        conf = self.conf
        before = self._SyncObj__getCurrentLogIndex()
        batched, conf.appendEntriesUseBatch = conf.appendEntriesUseBatch, True
        try:
            SyncObj._checkCommandsToApply(self)
        finally:
            conf.appendEntriesUseBatch = batched
        if (self._SyncObj__raftState == _LEADER
                and self._SyncObj__getCurrentLogIndex() != before):
            self._SyncObj__sendAppendEntries()

    def submit(self, payload: bytes, on_done: Callable[[], None] | None = None) -> Completion:
        """Propose a command; the returned completion resolves after commit+apply+store commit."""
        if len(payload) > MAX_COMMAND_BYTES:
            raise errors.RequestTooLargeError(
                f"command of {len(payload)} bytes exceeds the {MAX_COMMAND_BYTES}-byte limit")
        done = Completion(on_done)
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
        if self._SyncObj__raftState != _LEADER or self._handover is not None:
            return
        last = self._SyncObj__getCurrentLogIndex()
        match = self._SyncObj__raftMatchIndex
        if any(match.get(node, 0) < last for node in self._SyncObj__otherNodes):
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
            self._completions.append((done, None, _error_for(reason, self.group)))
        elif done.answers_in_loop:
            self._resolve_in_apply(done, result, None)
        else:
            self._completions.append((done, result, None))

    def _on_barrier(self, batch: list[Completion], result: Any, reason: int) -> None:
        err = None if reason == FAIL_REASON.SUCCESS else _error_for(reason, self.group)
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
        serve those a probe round has confirmed."""
        with self._read_lock:
            batch, self._read_batch = self._read_batch, []
        if batch:
            if self._reads_by_index():
                self._probe(batch)
            else:
                self._apply(barrier_payload, callback=functools.partial(self._on_barrier, batch))
                self.propose_now()
        if self._probing:
            self._serve_probed_reads()

    def _reads_by_index(self) -> bool:
        """Whether this member's commit index is one a ReadIndex may use: it leads and has
        committed an entry of its own term (pysyncobj's no-op at election), so every entry
        committed by earlier leaders is at or below it."""
        noop = self._SyncObj__noopIDx
        return (self._SyncObj__raftState == _LEADER and not self.settings.unsafe_stock_replication
                and noop is not None and self.raftCommitIndex >= noop)

    def _probe(self, batch: list[Completion] | None) -> None:
        """Ask every voter whether it still follows this leader's term; the reads in
        ``batch`` may use the commit index noted now once a majority has answered this
        probe (or a later one). ``batch=None`` re-sends for the reads already waiting."""
        term = self.raftCurrentTerm
        if term != self._probe_term:
            self._probe_term, self._probe_acks = term, {}
        self._probe_seq += 1
        if batch is not None:
            self._probing.append((self._probe_seq, self.raftCommitIndex, batch))
        self._probe_sent_at = time.monotonic()
        message = {"type": _READ_PROBE, "term": term, "seq": self._probe_seq}
        for node in self._SyncObj__otherNodes:
            self._SyncObj__transport.send(node, message)

    def _majority(self) -> int:
        """Voters (this member included) that make a majority of the current configuration."""
        return majority(len(self._SyncObj__otherNodes) + 1)

    def _confirmed_probe(self) -> int:
        """The highest probe seq that this leader and a majority of the voters have seen
        in the current term (every probe up to it is confirmed)."""
        quorum = self._majority()
        acked = sorted((self._probe_acks.get(node, 0) for node in self._SyncObj__otherNodes),
                       reverse=True)
        if quorum <= 1:
            return self._probe_seq
        return acked[quorum - 2] if len(acked) >= quorum - 1 else 0

    def _serve_probed_reads(self) -> None:
        """Resolve the reads whose probe a majority confirmed and whose read index is
        applied (and, this late in the pass, committed to the store). A member that lost
        its leadership or term meanwhile starts its reads over, as a barrier or a new
        probe, whichever then applies; a probe unanswered for a heartbeat period is
        re-sent (the connection may have dropped it)."""
        term = self.raftCurrentTerm
        if self._SyncObj__raftState != _LEADER or term != self._probe_term:
            with self._read_lock:
                self._read_batch[:0] = [done for *_, batch in self._probing for done in batch]
            self._probing = []
            self._activity += 1
            return
        confirmed = self._confirmed_probe()
        applied = self.raftLastApplied
        waiting, ready = [], []
        for entry in self._probing:
            seq, read_index, batch = entry
            if seq <= confirmed and read_index <= applied:
                ready.extend(batch)
            else:
                waiting.append(entry)
        self._probing = waiting
        for done in ready:
            done.resolve(None, None)
        if (self._probing and self._probing[-1][0] > confirmed
                and time.monotonic() - self._probe_sent_at > self.settings.heartbeat_period):
            self._probe(None)

    def _on_read_probe(self, node: Any, message: dict[str, Any]) -> None:
        """Follower side: answer a probe of its own current term at once (an answer says
        "no leader of a later term had my vote when I sent this"). A probe of another
        term gets no answer: the leader re-sends, or has lost its term."""
        term = message.get("term")
        if (isinstance(term, int) and term == self.raftCurrentTerm
                and self._SyncObj__raftState != _LEADER and self.selfNode is not None):
            self._SyncObj__transport.send(node, {"type": _READ_PROBE_ACK, "term": term,
                                                 "seq": message.get("seq")})

    def _on_read_probe_ack(self, node: Any, message: dict[str, Any]) -> None:
        seq = message.get("seq")
        if (self._SyncObj__raftState == _LEADER and isinstance(seq, int)
                and message.get("term") == self._probe_term == self.raftCurrentTerm
                and node in self._SyncObj__otherNodes
                and seq > self._probe_acks.get(node, 0)):
            self._probe_acks[node] = seq
            if self._probing:
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
            transport = self._SyncObj__transport
            for node, message in acks:
                transport.send(node, message)

    def _sync_journal_file(self) -> None:
        # The journal is written through a shared mmap. On Linux the page cache is unified,
        # so fdatasync of the file writes back the mmap's dirty pages too (msync(MS_SYNC)
        # does the same work; doing both would flush twice).
        f = getattr(getattr(self._journal, "_FileJournal__journalFile", None),
                    "_ResizableFile__f", None)
        if f is not None:
            os.fdatasync(f.fileno())
        else:
            self._journal.flush()

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
        if (self._SyncObj__raftState != _LEADER and self._SyncObj__raftLeader is not None  # type: ignore[has-type]
                and time.monotonic() - self._last_leader_contact > fallback):
            self._SyncObj__onLeaderChanged()
            self._SyncObj__raftLeader = None

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
        if state == _LEADER and not self.quiesced:
            self._next_tick = now + period
        elif state == _LEADER:
            heard = self._SyncObj__lastResponseTime
            oldest = min((heard.get(n, 0.0) for n in self._SyncObj__otherNodes), default=now)
            fallback = max(now + 0.001, oldest + self.settings.leader_fallback_timeout)
            self._next_tick = min(_tick_after(now, QUIET_TICK), fallback)
        elif self.selfNode is None:
            self._next_tick = _tick_after(now, QUIET_TICK)
        elif state == _FOLLOWER:
            # At its election deadline, unless that has passed without an election (no
            # peer connected): then on the leader's cadence, not in a busy loop.
            deadline = self._SyncObj__raftElectionDeadline
            if deadline <= now:
                deadline = now + period
            self._next_tick = min(_tick_after(now, QUIET_TICK), deadline)
        else:  # candidate
            self._next_tick = now + period
        return True

    # ------------------------------------------------------------------ quiescence

    def _update_quiescence(self, now: float) -> None:
        """Quiesce a leader whose group is idle: it stops the periodic AppendEntries, and
        the node heartbeat (``RaftHost``) tells followers it is alive instead — one message
        per pair of nodes, however many groups they share. Elections and step-downs only
        serve liveness, so a wrong guess here can delay a failover but never lose data."""
        if self._quiet_now(now):
            if self._quiet_since is None:
                self._quiet_since = now
            quiet = now - self._quiet_since >= QUIESCE_AFTER * self.settings.heartbeat_period
        else:
            quiet = False
            self._quiet_since = None
        if quiet:
            self._SyncObj__newAppendEntriesTime = now + QUIET_TICK + 1.0
        elif self.quiesced:
            self._SyncObj__newAppendEntriesTime = 0.0  # heartbeat again at once
        self.quiesced = quiet

    def _quiet_now(self, now: float) -> bool:
        if (self._SyncObj__raftState != _LEADER or self._handover is not None
                or self.settings.unsafe_stock_replication or self._pending() or self._probing):
            return False
        last = self._SyncObj__getCurrentLogIndex()
        if self.raftCommitIndex != last or self.raftLastApplied != last:
            return False
        match = self._SyncObj__raftMatchIndex
        heard = self._SyncObj__lastResponseTime
        fresh = now - CONTACT_FRESH * NODE_HEARTBEAT * self.settings.heartbeat_period
        # Read-only followers must be caught up and reachable by node heartbeats (their
        # node's address known); they neither vote nor answer node heartbeats.
        return (all(match.get(node, 0) >= last and heard.get(node, 0.0) > fresh
                    for node in self._SyncObj__otherNodes)
                and all(match.get(node, 0) >= last and getattr(node, "address", None)
                        for node in self._SyncObj__readonlyNodes))

    def _SyncObj__onNodeConnected(self, node: Any) -> None:
        SyncObj._SyncObj__onNodeConnected(self, node)
        self._end_quiet()

    def _SyncObj__onNodeDisconnected(self, node: Any) -> None:
        SyncObj._SyncObj__onNodeDisconnected(self, node)
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
        self._quiet_since = None
        self._activity += 1

    def leads(self) -> bool:
        """Whether this member is its group's Raft leader (cheaper than ``status``)."""
        return bool(self._SyncObj__raftState == _LEADER)

    def hears_quiet_leader(self, now: float) -> Any:
        """The leader node of this follower (voter or read-only), if the group looks
        quiesced (else None)."""
        if self._SyncObj__raftState != _FOLLOWER:
            return None
        if now - self._last_append <= FOLLOWER_QUIET * self.settings.heartbeat_period:
            return None
        return self._SyncObj__raftLeader

    def leader_alive(self, node: Any, term: int, now: float) -> None:
        """A node heartbeat says ``node`` still leads this group in ``term``."""
        if (self._SyncObj__raftState == _FOLLOWER and term == self.raftCurrentTerm
                and self._SyncObj__raftLeader == node
                and not self._SyncObj__transferInProgress):
            self._SyncObj__raftElectionDeadline = (
                now + self._SyncObj__generateRaftTimeout()
                + QUIET_SLACK * NODE_HEARTBEAT * self.settings.heartbeat_period)
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

    def notify_commit(self) -> None:
        """After the pass's answers: send the new commit index now if a follower forwarded
        a command (its caller waits until that follower applied it)."""
        if not self._followers_waiting or self._SyncObj__raftState != _LEADER:
            return
        commit = self.raftCommitIndex
        if commit > self._notified_commit:
            self._notified_commit = commit
            self._SyncObj__sendAppendEntries()
        if commit >= self._SyncObj__getCurrentLogIndex() and not self._proposals_queued():
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
        leader = self._getLeader()
        state = self._SyncObj__raftState
        return {
            "role": ("read-only" if self.selfNode is None else
                     {0: "follower", 1: "candidate", 2: "leader"}.get(state, "unknown")),
            "leader_address": leader.address if leader is not None else None,
            "term": self.raftCurrentTerm,
            "commit_index": self.raftCommitIndex,
            "raft_applied": self.raftLastApplied,
            "quorum": bool(self.hasQuorum) and leader is not None,
            "log_entries": self._getRaftLogSize(),
            "quiesced": self.quiesced,
        }

    # ------------------------------------------------------------------ snapshots

    def _write_snapshot(self, path: str, raft_data: Any) -> None:
        self.machine.commit()
        self.machine.write_snapshot(path, raft_data)

    def _read_snapshot(self, path: str) -> Any:
        return self.machine.read_snapshot(path)

    # ------------------------------------------------------------------ hardening overrides

    def _SyncObj__setCurrentTerm(self, term: int, voted_for: Any) -> None:
        # Term and vote must be on disk before a vote or an ack based on them leaves.
        if term != self.raftCurrentTerm:  # a PreVote round belongs to the term it began in
            self._pre_vote_term, self._pre_vote_grants = -1, set()
            self._pre_vote_won = False
        SyncObj._SyncObj__setCurrentTerm(self, term, voted_for)
        meta = getattr(self._SyncObj__raftLog, "_FileJournal__metaStorer", None)
        self._SyncObj__raftLog.flush()
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
            nextNodeIdx = self._SyncObj__getCurrentLogIndex() + 1
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
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == _NODE_HEARTBEAT:
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
            self._pre_vote_won = False  # a leader is back: the next election asks again
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
                self._SyncObj__raftLog.add(*entry)
                if dynamic:
                    change = self._SyncObj__parseChangeClusterRequest(entry[0])
                    if change is not None:
                        self._SyncObj__doChangeCluster(change)
        last_new = prev_idx + len(new_entries)
        self._SyncObj__sendNextNodeIdx(node, nextNodeIdx=last_new + 1, success=True)
        commit = self.raftCommitIndex
        if leader_commit > commit:
            commit = min(leader_commit, last_new)
        commit = min(commit, self._SyncObj__getCurrentLogIndex())
        if commit != self.raftCommitIndex:
            self._SyncObj__raftCommitIndex = commit
            self._SyncObj__raftLog.setRaftCommitIndex(commit)

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
        self._SyncObj__lastResponseTime[node] = time.monotonic()
        if message["success"]:
            if match[node] < next_idx - 1:
                match[node] = next_idx - 1
            if nxt.get(node, 0) < next_idx:
                nxt[node] = next_idx
            return (match[node] > self.raftCommitIndex or self._handover is not None
                    or nxt[node] <= self._SyncObj__getCurrentLogIndex())
        if message["reset"]:
            if next_idx <= match[node]:
                # The follower no longer holds entries it acknowledged (its data dir was
                # lost or replaced): replicate them again rather than never.
                log.warning("group %s: follower %s lost acknowledged entries after %d; "
                            "re-replicating", self.group, node.id, next_idx - 1)
                match[node] = next_idx - 1
            nxt[node] = max(next_idx, match[node] + 1)
        return True

    # ------------------------------------------------------------------ PreVote

    def _gate_election(self, now: float) -> None:
        """Before pysyncobj's tick: a voter whose election deadline has passed first asks
        the others whether they would vote for it (PreVote, Raft thesis §9.6), without
        raising its term, and holds its election back another timeout; the election runs
        once a majority has said yes (``_on_pre_vote_ack``). So a member cut off from its
        leader keeps its term while the others still hear that leader, and cannot depose
        it, during the cut or when it is back. A TimeoutNow (leadership hand-over) skips
        the question."""
        if (self.selfNode is None or self._SyncObj__raftState == _LEADER
                or self._SyncObj__transferInProgress or self._pre_vote_won
                or self._SyncObj__raftElectionDeadline >= now
                or not self._SyncObj__connectedToAnyone()):
            return
        self._SyncObj__raftElectionDeadline = now + self._SyncObj__generateRaftTimeout()
        term = self.raftCurrentTerm
        self._pre_vote_term, self._pre_vote_grants = term, set()
        message = {"type": _PRE_VOTE, "term": term + 1,
                   "last_log_index": self._SyncObj__getCurrentLogIndex(),
                   "last_log_term": self._SyncObj__getCurrentLogTerm()}
        for node in self._SyncObj__otherNodes:
            self._SyncObj__transport.send(node, message)
        self._count_pre_votes()

    def _count_pre_votes(self) -> None:
        if 1 + len(self._pre_vote_grants) >= self._majority():
            self._pre_vote_won = True
            self._SyncObj__raftElectionDeadline = 0.0  # pysyncobj's election, next tick
            self._activity += 1

    def _on_pre_vote(self, node: Any, message: dict[str, Any]) -> None:
        """Would this member vote for the asker in ``term``? Yes if that term is ahead of
        its own, the asker's log is at least as up to date, and it has not heard from a
        live leader lately. Nothing changes here: no term, no vote."""
        term, last_index, last_term = (message.get(k) for k in
                                       ("term", "last_log_index", "last_log_term"))
        if (self.selfNode is None or not isinstance(term, int)
                or not isinstance(last_index, int) or not isinstance(last_term, int)):
            return
        now = time.monotonic()
        leader_alive = self._SyncObj__raftState == _LEADER or (
            self._SyncObj__raftLeader is not None  # type: ignore[has-type]
            and now - self._last_leader_contact
            < PRE_VOTE_LEASE * self.settings.election_timeout_min)
        my_term = self._SyncObj__getCurrentLogTerm()
        up_to_date = last_term > my_term or (
            last_term == my_term and last_index >= self._SyncObj__getCurrentLogIndex())
        granted = term > self.raftCurrentTerm and up_to_date and not leader_alive
        self._SyncObj__transport.send(node, {"type": _PRE_VOTE_ACK, "term": term,
                                             "granted": granted})

    def _on_pre_vote_ack(self, node: Any, message: dict[str, Any]) -> None:
        if (message.get("granted") is True and not self._pre_vote_won
                and self._SyncObj__raftState != _LEADER
                and self._pre_vote_term == self.raftCurrentTerm
                and message.get("term") == self._pre_vote_term + 1
                and node in self._SyncObj__otherNodes):
            self._pre_vote_grants.add(node)
            self._count_pre_votes()

    # ------------------------------------------------------------------ runtime membership
    # Used by hakv.core.membership. All but ``change_membership`` read or change raft-thread
    # state, so they run in the raft thread (``RaftHost.call_in_loop``).

    def membership(self) -> dict[str, Any]:
        """This member's view of the group's Raft configuration (addresses)."""
        me = self.selfNode.address if self.selfNode is not None else None
        others = [n.address for n in self._SyncObj__otherNodes]
        leader = self._SyncObj__raftLeader  # type: ignore[has-type]
        is_leader = self._SyncObj__raftState == _LEADER
        noop = self._SyncObj__noopIDx
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
                done.resolve(None, _error_for(reason, self.group))

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
        if self._SyncObj__raftState == _LEADER:
            self._handover = (address, time.monotonic() + within, False)

    def handing_over(self) -> bool:
        return self._handover is not None

    def _holding_for_handover(self) -> bool:
        assert self._handover is not None
        address, deadline, sent = self._handover
        now = time.monotonic()
        if (self._SyncObj__raftState != _LEADER or now > deadline
                or TCPNode(address) not in self._SyncObj__connectedNodes):
            self._handover = None
            return False
        if not sent:
            outcome: list[int] = []
            self.transferLeadership(address, callback=lambda _r, why: outcome.append(why))
            if outcome == [FAIL_REASON.SUCCESS]:  # denied while the target lags: retried
                deadline = min(deadline, now + self.settings.election_timeout_min)
                self._handover = (address, deadline, True)
        return True

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
            if self._SyncObj__raftLeader is not None:  # type: ignore[has-type]
                released = True
                return
            self._SyncObj__raftElectionDeadline = (
                time.monotonic() + self.settings.election_timeout_max)

        self.addOnTickCallback(hold)
        hold()


class RaftHost:
    """All Raft members of one node: one listener port, one poller, one raft thread."""

    def __init__(self, host: str, port: int, barrier_payload: bytes, secret: str | None = None,
                 idle_wait: float = 0.05, step_aside: float = STEP_ASIDE) -> None:
        self.poller = LoopPoller()
        self.step_aside = step_aside
        self.listener = NodeListener(self.poller, host, port, secret)
        self.members: dict[str, GroupMember] = {}
        self._barrier = barrier_payload
        self._idle_wait = idle_wait
        self._stop = threading.Event()
        self._wake = PipeNotifier(self.poller)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # guards member creation vs. the loop
        self._calls: collections.deque[tuple[Callable[[], Any], Completion | None]] = (
            collections.deque())  # run by the raft thread between ticks (call_in_loop, post)
        self.timers: list[Callable[[float], float | None]] = []
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

    def add_member(self, member_factory: Callable[[NodeListener, Any], GroupMember]) -> GroupMember:
        def add() -> GroupMember:
            member = member_factory(self.listener, self.poller)
            member.on_node_heartbeat = self._on_node_heartbeat
            member.on_loop_proposal = self._proposed_in_loop
            member.heard = self.last_heard
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
        self._thread = threading.Thread(target=self.run, name="raft", daemon=True)
        self._thread.start()

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
            period = NODE_HEARTBEAT * min(m.settings.heartbeat_period for m in members)
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
            message = {"type": _NODE_HEARTBEAT, "led": led.get(address, {}),
                       "followed": followed.get(address, {})}
            for member, node in routes.get(address, ()):
                if member._SyncObj__transport.send(node, message):
                    break

    def _on_node_heartbeat(self, node: Any, message: dict[str, Any]) -> None:
        now = time.monotonic()
        address = getattr(node, "address", None)
        if isinstance(address, str):
            for each in self.members.values():
                each.peer_alive(address, now)
        for key, alive in (("led", GroupMember.leader_alive),
                           ("followed", GroupMember.follower_alive)):
            entries = message.get(key)
            if not isinstance(entries, dict):
                continue
            for group, term in entries.items():
                member = self.members.get(group) if isinstance(group, str) else None
                if member is not None and isinstance(term, int):
                    alive(member, node, term, now)

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


__all__ = [
    "Completion",
    "GroupMember",
    "MuxTransport",
    "NodeListener",
    "RaftHost",
    "RaftSettings",
    "StateMachine",
    "TransportNotReadyError",
    "TCPNode",
]
