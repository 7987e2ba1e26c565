"""Simulated time, links and Raft ensembles, with every message counted.

This module's room: the *costs* of Raft as hakv runs it (how many messages a round, an
election or a forwarded write sends, and how long they take), over simulated nodes, links
and time. It decides nothing about placement, routing or failover: those questions go to
hakv's own pure core (hakv.core.topology, hakv.core.replication, hakv.core.routing, hakv.core.ha), called from
hakv.sim.scenarios. Nothing here reads a clock, opens a socket or starts a thread; time
is the simulation's own (:attr:`Sim.now`) and every random draw comes from the
``random.Random`` the caller passes in, so a seed fixes every number.

What is modelled, and how (every count below is what hakv/raft/host.py on pysyncobj 0.3.17
sends; hakv.core.replication.WriteMessages has the same breakdown):

- **Links.** A message takes ``link_delay`` one way. A round trip to a follower is two
  delays, the follower's journal fsync (``fsync``) and an exponential jitter of mean
  ``link_jitter``; a round to *n* followers that needs *k* acks waits for the *k*-th
  fastest of *n* such round trips, drawn from its exact distribution (one Beta draw), so a
  round to 10,000 followers costs one random draw, not 10,000. A message to a node that
  is down or on the other side of a partition is **not sent and not counted**: hakv's
  transport has no connection to send it on.
- **CPU.** Each message costs ``msg_cpu`` seconds of the raft thread of the node that
  sends it, and of the leader (or candidate) that receives its answer. A node's CPU is one
  serial resource (``Sim.cpu``): a leader with 10,000 followers spends 10,000 x msg_cpu
  sending one round, and rounds queue behind each other. Followers' receive costs are not
  modelled (one message per round each).
- **A write** (``Ensemble.propose``). The leader's own proposal costs one AppendEntries to
  each reachable follower and its ack: 2f messages (f followers, voters and read-only).
  A follower's proposal is forwarded: ``apply_command`` to the leader and
  ``apply_command_response`` back (2 more), and because a follower waits for it, the
  leader sends the new commit index at once after the commit (``notify_commit``): one more
  AppendEntries and ack per follower, 2f more. Commit needs acks from a majority of the
  voters (hakv.core.quorum.majority); read-only followers (the cluster ensemble's non-voters)
  receive and ack every entry but never count for it.
- **Read-only followers get what the voters got ``READONLY_LAG`` later** (hakv.raft.host
  ``GroupMember._SyncObj__sendAppendEntries``, ``send_to_readonly``, ``readonly_due`` and
  ``RaftHost._pass``): every AppendEntries call of a leader that has read-only followers
  goes to the v reachable voters at once; the r reachable read-only followers get one
  call ``READONLY_LAG`` (20 ms) after the first voters' call they missed, carrying
  everything appended meanwhile and the commit index of that moment (``Ensemble
  ._readonly_call``). The pass that sends it does so before its tick, so a commit whose
  quorum's acks come in while that call goes out waits for it; an ordinary write
  commits within 20 ms, before it. A leader's own write: 2v + 2r = 2f. A forwarded one:
  2 + 2v, the commit notice to the voters at once (2v, ``notify_commit``), and the
  read-only followers' call, which still waits and carries entry and commit index
  together (2r): 2 + 2v + 2f. A commit notice after the read-only followers' call went
  (a commit later than 20 ms) makes another one, 20 ms later. ``Ensemble.applied_at``
  says when a member has applied a committed entry (the leader sends in member order,
  one ``msg_cpu`` each).
- **Message size** (pysyncobj ``__sendAppendEntries`` and ``__getEntries``). One
  AppendEntries message carries a follower's entries until they reach
  ``APPEND_ENTRIES_BYTES`` (256 KiB, hakv.raft.settings' batch size for pysyncobj), so a round
  of large entries (the seed transactions, ``Proposal.size``) is k messages to each
  follower, each acked (:func:`append_entries_messages`); other commands are small, one
  message. One call of ``__sendAppendEntries`` stops filling followers once it has run
  for ``appendEntriesPeriod`` (the heartbeat period): every later follower gets one
  message and the rest with the next calls, the heartbeats (:meth:`Sim.fill`). The
  model applies that to the read-only followers; to the voters it sends a round's k
  messages in one go (a commit needs them on a majority anyway, so it waits about as
  long: a lower bound for full replication). A node that comes up after entries went out
  gets what it missed the same way, from the next heartbeat on (``Ensemble.wake``): more
  than the heartbeat's one message only when that is over APPEND_ENTRIES_BYTES.
- **Batching.** A leader with nothing in flight sends a proposal at once; proposals that
  arrive while a round is in flight go out together in one round, at the first ack of the
  round in flight (the raft thread's next pass) or when the leader's CPU is free,
  whichever is later (hakv.raft.host ``propose_now`` and ``_checkCommandsToApply``). A round's
  messages are counted under the category of its largest proposal (the first of equals:
  a new leader's no-op and the seed it proposes at once count as seed).
- **Elections** (``Ensemble.arm``). A voter that hears no leader for its election timeout
  (uniform in ``[election_timeout_min, election_timeout_max]``) asks every reachable voter
  for a PreVote (one request and one answer each). Voters that heard a live leader within
  ``PRE_VOTE_LEASE x election_timeout_min`` refuse. With a majority it runs the election
  (RequestVote and a vote each, after fsyncing term and vote), and the new leader appends
  its no-op entry: an ordinary round. Without one it tries again a fresh timeout later.
  pysyncobj starts no election while connected to nobody. Two candidates at once (a split
  vote) are not modelled: with PreVote and timeouts spread over 0.6 s against
  millisecond round trips they are rare.
- **Heartbeats** (when ``Sim.heartbeats`` is on, as at start-up): a leader sends an empty
  AppendEntries round to every reachable follower each heartbeat period in which no other
  round went out (the read-only followers' part READONLY_LAG later, with whatever else is
  due to them), charged to its CPU like any round, until the ensemble goes quiet
  (hakv.raft.host: idle for ``QUIESCE_AFTER`` heartbeat periods, every member up and caught
  up); a member that connects wakes it. A heartbeat that falls due while a round waits to
  go out is that round. A heartbeat while followers still miss messages (see Message
  size) is the call that brings them the next ones. Node heartbeats of quiet ensembles
  are counted by the steady-state figures (hakv.sim.scenarios.steady_load), not played.

Not modelled: packet loss, bandwidth (a message costs ``msg_cpu`` whatever its size),
log compaction and snapshots, clock drift, disk stalls, split votes, the CPU of
followers.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

from hakv.core.ha import HaTuning
from hakv.core.quorum import has_quorum, majority
from hakv.core.topology import HEARTBEAT_PERIOD, RaftTuning
from hakv.raft import prevote
from hakv.raft.settings import (
    CONNECTION_SILENCE,
    NODE_HEARTBEAT,
    PRE_VOTE_LEASE,
    QUIESCE_AFTER,
    READONLY_LAG,
    READONLY_ROUNDS,
    RaftSettings,
)

__all__ = [
    "APPEND_ENTRIES_BYTES",
    "CONNECTION_SILENCE",
    "NODE_HEARTBEAT",
    "PRE_VOTE_LEASE",
    "PUBLISH_RETRY",
    "QUIESCE_AFTER",
    "READONLY_LAG",
    "READONLY_ROUNDS",
    "SEED_POLL",
    "Ensemble",
    "Network",
    "Proposal",
    "Sim",
    "SimParams",
    "append_entries_messages",
]

# hakv.raft.host's constants are imported, not copied (importing hakv.raft.host loads pysyncobj but
# starts nothing): PRE_VOTE_LEASE (a voter refuses a PreVote while it heard a live leader
# within this many minimum election timeouts), NODE_HEARTBEAT (node heartbeats go every
# this many heartbeat periods), READONLY_ROUNDS (a peer met only through read-only members
# hears every this many node-heartbeat rounds), CONNECTION_SILENCE (pysyncobj's connection
# timeout), QUIESCE_AFTER (an idle leader goes quiet after this many heartbeat periods),
# READONLY_LAG (read-only followers get their AppendEntries call this long after the
# first voters' call they missed, with everything appended meanwhile).
# hakv.node.process writes the next two as literals; tests/test_sim.py reads them from its source.
PUBLISH_RETRY = 0.5
"""hakv.node.process.Node._publish_status and _seed_cluster_records: the wait after a failed
proposal before the next pass."""
SEED_POLL = 0.25
"""hakv.node.process.Node._seed_cluster_records: a cluster voter that does not lead the cluster
ensemble looks again after this long (it proposes nothing)."""

NEVER = -math.inf


def _unused(*_: object) -> None:
    return None


APPEND_ENTRIES_BYTES: int = RaftSettings().to_conf(
    "", "", _unused, _unused, "").appendEntriesBatchSizeBytes
"""pysyncobj's ``appendEntriesBatchSizeBytes`` in the configuration hakv gives it
(hakv.raft.host ``RaftSettings.to_conf``, which builds it and opens nothing): one AppendEntries
message carries entries until they reach this many bytes."""


def append_entries_messages(sizes: Iterable[int], limit: int = APPEND_ENTRIES_BYTES) -> int:
    """How many AppendEntries messages carry entries of these sizes (bytes) to a follower.

    pysyncobj ``__getEntries``: a message takes entries until their total reaches
    ``limit``, the entry that reaches it included; the call goes on with the next ones.
    No entry at all (a heartbeat) is still one message."""
    messages = pending = total = 0
    for size in sizes:
        total += size
        pending += 1
        if total >= limit:
            messages += 1
            total = pending = 0
    return messages + (1 if pending or not messages else 0)


@dataclass(frozen=True)
class SimParams:
    """The simulated hardware and hakv's timing. Seconds throughout.

    The hardware figures are assumptions, not measurements: a LAN (``link_delay``,
    ``link_jitter``), an SSD (``fsync``) and ``msg_cpu``, roughly what one small message
    costs a Python raft thread (pickle, HMAC, a system call). The message counts of the
    simulation do not depend on them; its times and CPU figures do, linearly in
    ``msg_cpu`` once a node is busy.
    """

    link_delay: float = 0.0001
    link_jitter: float = 0.0002
    fsync: float = 0.002
    msg_cpu: float = 20e-6
    boot_spread: float = 5.0
    """Nodes power on at uniformly random times within this many seconds."""
    raft: RaftTuning = field(default_factory=RaftTuning)
    ha: HaTuning = field(default_factory=HaTuning)
    heartbeat: float = HEARTBEAT_PERIOD

    def validate(self) -> None:
        """ValueError naming the first value that is not a finite number >= 0."""
        for name in ("link_delay", "link_jitter", "fsync", "msg_cpu", "boot_spread",
                     "heartbeat"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
        if self.heartbeat <= 0:
            raise ValueError("heartbeat must be > 0")
        self.raft.validate()
        self.ha.validate()


class Network:
    """Which nodes are up, and which can reach which (one partition side per node).

    It keeps the number of up nodes on each side, so that an ensemble over every node
    (10,000 members) counts its reachable followers without looking at each of them.
    """

    def __init__(self, nodes: Iterable[str]) -> None:
        self._side: dict[str, int] = dict.fromkeys(nodes, 0)
        self._down: set[str] = set()
        self._up_on: Counter[int] = Counter({0: len(self._side)})

    @property
    def size(self) -> int:
        return len(self._side)

    def up(self, node: str) -> bool:
        return node not in self._down

    def set_up(self, node: str, up: bool) -> None:
        if up and node in self._down:
            self._down.discard(node)
            self._up_on[self._side[node]] += 1
        elif not up and node not in self._down:
            self._down.add(node)
            self._up_on[self._side[node]] -= 1

    def partition(self, sides: Mapping[str, int]) -> None:
        """Cut the network: nodes on different sides cannot reach each other."""
        self._side.update(sides)
        self._up_on = Counter(s for n, s in self._side.items() if n not in self._down)

    def side(self, node: str) -> int:
        return self._side[node]

    def up_with(self, node: str) -> int:
        """Up nodes on ``node``'s side, itself included (if up)."""
        return self._up_on[self._side[node]]

    def reachable(self, a: str, b: str) -> bool:
        """Both up, and on the same side of any partition."""
        return (a not in self._down and b not in self._down
                and self._side[a] == self._side[b])


class Sim:
    """The event loop: simulated time, a queue of actions, the message counters.

    Actions run in time order; actions at the same instant run in the order they were
    scheduled, so a run is a pure function of its inputs and its seed.
    """

    def __init__(self, params: SimParams, rng: random.Random, nodes: Sequence[str]) -> None:
        self.params = params
        self.rng = rng
        self.now = 0.0
        self.net = Network(nodes)
        self.messages: Counter[str] = Counter()
        self.boot: dict[str, float] = {}
        # Play leaders' heartbeat rounds as events (start-up). Off, a settled cluster is
        # taken to be quiet; its heartbeats are the steady-state figures' business.
        self.heartbeats = False
        self._cpu_free: dict[str, float] = {}
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0
        self.events = 0

    # ---- time

    def at(self, when: float, action: Callable[[], None]) -> None:
        """Run ``action`` at ``when`` (or now, if that has passed)."""
        self._seq += 1
        heapq.heappush(self._queue, (max(when, self.now), self._seq, action))

    def run(self, until: float = math.inf) -> None:
        """Run every action due up to ``until``; the clock stops at the last one run."""
        queue = self._queue
        while queue and queue[0][0] <= until:
            when, _, action = heapq.heappop(queue)
            self.now = when
            self.events += 1
            action()

    # ---- costs

    def count(self, category: str, n: int) -> None:
        if n:
            self.messages[category] += n

    def cpu(self, node: str, seconds: float, start: float) -> float:
        """Use ``seconds`` of ``node``'s raft thread from ``start`` (or when it is free);
        return when that work began."""
        begin = max(start, self._cpu_free.get(node, NEVER))
        self._cpu_free[node] = begin + seconds
        return begin

    def cpu_free(self, node: str) -> float:
        return self._cpu_free.get(node, NEVER)

    def one_way(self) -> float:
        return self.params.link_delay

    def round_trip(self, k: int, n: int, fsync: bool = True) -> float:
        """The k-th fastest of n round trips (out, fsync if asked, back), in seconds."""
        p = self.params
        base = 2 * p.link_delay + (p.fsync if fsync else 0.0)
        if n <= 0 or k <= 0 or p.link_jitter == 0:
            return base
        u = self.rng.betavariate(k, n - k + 1)  # k-th order statistic of n uniforms
        return base - math.log1p(-min(u, 1 - 1e-16)) * p.link_jitter

    def timeout(self) -> float:
        """A fresh Raft election timeout."""
        raft = self.params.raft
        return self.rng.uniform(raft.election_timeout_min, raft.election_timeout_max)

    def fill(self, behind: Mapping[tuple[int, str], int]
             ) -> tuple[Counter[str], dict[tuple[int, str], int]]:
        """One call of pysyncobj's ``__sendAppendEntries`` to followers that miss messages.

        ``behind`` maps (messages a follower misses, category) to how many followers miss
        that many. pysyncobj sends each follower its messages in turn and, once the call
        has run for ``appendEntriesPeriod`` (the heartbeat period, at ``msg_cpu`` a
        message), only one more to each of the others (the rest go in the next calls; the
        follower in whose turn the time ran out is counted as filled). Returns the
        messages sent by category and the followers still behind."""
        c, budget = self.params.msg_cpu, self.params.heartbeat
        sent: Counter[str] = Counter()
        left: dict[tuple[int, str], int] = {}
        total = sum(k * n for (k, _), n in behind.items())
        if c <= 0 or total * c <= budget:
            for (k, category), n in behind.items():
                sent[category] += k * n
            return sent, left
        within = math.floor(budget / c) + 1  # messages until the call has run too long
        for (k, category), n in behind.items():
            full = min(n, math.ceil(within / k)) if within > 0 else 0
            within -= full * k
            rest = n - full
            sent[category] += full * k + rest
            if rest and k > 1:
                left[(k - 1, category)] = left.get((k - 1, category), 0) + rest
        return sent, left


@dataclass
class Proposal:
    """A command on its way into an ensemble's log. ``on_commit`` runs when the proposer
    has it applied: at the commit on the leader; on a follower when the commit index
    reaches it (:meth:`Ensemble.applied_at`). ``size``: the encoded command's bytes, for
    the large ones (0: small, it shares a message with others).

    Set when its round commits: ``committed_at``, the ``leader`` that committed it, when
    its round began (``round_start``), whether a commit notice went out (``to_all``: a
    follower forwarded a command of the round) and when its sends to the voters began
    (``sends_from``). ``readonly_from``: when the read-only followers' call that brought
    them its commit began (NEVER until then); ``readonly_missed``: a read-only call went
    out before it committed."""

    origin: str
    category: str
    on_commit: Callable[[], None] | None
    forwarded: bool
    size: int = 0
    committed_at: float | None = None
    leader: str | None = None
    round_start: float = NEVER
    sends_from: float = NEVER
    readonly_from: float = NEVER
    readonly_missed: bool = False
    to_all: bool = False


class Ensemble:
    """One Raft ensemble: a resource group's owners, or an all-node ensemble (hakv's
    cluster ensemble with its read-only followers, or full replication's one ensemble).

    Every message it sends is added to ``messages`` (and to the Sim's counters by
    category), so a scenario can tell which ensembles reacted to an event at all.
    """

    def __init__(self, sim: Sim, name: str, voters: Sequence[str],
                 readonly: Sequence[str] = ()) -> None:
        self.sim = sim
        self.name = name
        self.voters = tuple(voters)
        self.readonly = tuple(readonly)
        self.members = self.voters + self.readonly
        self.quorum = majority(len(self.voters))
        self.leader: str | None = None
        self.leader_since = NEVER
        self.term = 0
        self.elections = 0
        self.electing = False
        self.heard_leader: dict[str, float] = {}
        self.messages = 0
        self.rounds = 0
        self.committed = 0
        self.lost = 0
        self.stalled: list[Proposal] = []
        self.on_leader: list[Callable[[Ensemble], None]] = []
        self._timer_gen: dict[str, int] = {}
        self._queue: list[Proposal] = []
        self._round_pending = False
        self._next_send = NEVER
        self._last_round = NEVER
        self._last_entries = NEVER
        self._hb_timer = False
        self.quiet = False
        self.log: list[int] = []  # the size of every entry appended so far, in order
        # Followers that miss messages: (messages, category) -> followers; they get them
        # with the leader's next heartbeats, not before ``_behind_from`` (Sim.fill).
        self._behind: dict[tuple[int, str], int] = {}
        self._behind_from = NEVER
        self.caught_up_at = NEVER  # when the last follower that missed messages got them
        # The read-only followers' next call (hakv.raft.host readonly_due): when it is due
        # (None: none pending), the entries it carries, its label, the proposals whose
        # commit the read-only followers have not heard of; the last call (due, end).
        self._ro_due: float | None = None
        self._ro_gen = 0
        self._ro_sizes: list[int] = []
        self._ro_label: tuple[int, str] | None = None
        self._ro_waiting: list[Proposal] = []
        self._ro_last = (NEVER, NEVER)
        # An ensemble over every node counts its reachable members through the network's
        # per-side counts instead of looking at 10,000 of them for every round.
        self._everyone = len(set(self.members)) == sim.net.size
        self._positions: tuple[dict[str, int], dict[str, int]] | None = None
        self.categories: Counter[str] = Counter()
        self.kinds: set[str] = set()  # every kind of command it carried or sent for

    def _set_members(self, voters: Sequence[str], readonly: Sequence[str]) -> None:
        self.voters, self.readonly = tuple(voters), tuple(readonly)
        self.members = self.voters + self.readonly
        self.quorum = majority(len(self.voters))
        self._everyone = len(set(self.members)) == self.sim.net.size
        self._positions = None

    def add_readonly(self, node: str) -> None:
        """A new owner starts as a read-only member (hakv.core.membership: it catches up)."""
        if node not in self.members:
            self._set_members(self.voters, (*self.readonly, node))

    def change_voters(self, action: str, node: str) -> None:
        """Apply one single-server configuration change (hakv.core.membership.Step)."""
        if action == "add":
            readonly = tuple(m for m in self.readonly if m != node)
            self._set_members((*self.voters, node) if node not in self.voters else self.voters,
                              readonly)
        else:
            self._set_members(tuple(v for v in self.voters if v != node), self.readonly)

    def __repr__(self) -> str:
        return f"Ensemble({self.name!r}, leader={self.leader!r}, term={self.term})"

    def count(self, category: str, n: int) -> None:
        if n:
            self.messages += n
            self.categories[category] += n
            self.kinds.add(category)
            self.sim.count(category, n)

    def reachable_followers(self, node: str) -> tuple[int, int]:
        """(members, voters) other than ``node`` that ``node`` can reach now."""
        net = self.sim.net
        if not net.up(node):
            return 0, 0
        if self._everyone:
            members = net.up_with(node) - 1
            if not self.readonly:
                return members, members
            voters = sum(1 for v in self.voters if v != node and net.reachable(node, v))
            return members, voters
        members = voters = 0
        for m in self.members:
            if m != node and net.reachable(node, m):
                members += 1
        for v in self.voters:
            if v != node and net.reachable(node, v):
                voters += 1
        return members, voters

    def quorum_sides(self) -> tuple[int, ...]:
        """The partition sides on which a majority of the voters is up and together
        (hakv.core.quorum.has_quorum): where this ensemble can elect a leader and commit."""
        net = self.sim.net
        by_side: dict[int, list[str]] = {}
        for v in self.voters:
            if net.up(v):
                by_side.setdefault(net.side(v), []).append(v)
        return tuple(sorted(s for s, up in by_side.items() if has_quorum(self.voters, up)))

    # ---- leadership

    def install_leader(self, node: str, since: float = 0.0) -> None:
        """Start from a settled state: ``node`` leads (term 1), everyone has heard it."""
        self.leader, self.leader_since, self.term = node, since, max(self.term, 1)
        self._next_send = since

    def knows_leader(self, node: str, now: float) -> bool:
        """Whether ``node`` knows the current leader at ``now``: the leader itself; a
        member up when it was elected once its first round reached it; a member that came
        up later within one heartbeat period of its start."""
        leader = self.leader
        if leader is None or not self.sim.net.reachable(node, leader):
            return False
        if node == leader:
            return True
        boot = self.sim.boot.get(node, NEVER)
        if boot <= self.leader_since:
            return now >= self.leader_since + self.sim.one_way()
        return now >= boot + self.sim.params.heartbeat

    def arm(self, node: str, at: float) -> None:
        """(Re)start ``node``'s election timer: it fires at ``at`` unless re-armed."""
        gen = self._timer_gen.get(node, 0) + 1
        self._timer_gen[node] = gen
        self.sim.at(at, lambda: self._deadline(node, gen))

    def leader_lost(self, last_contact: float) -> None:
        """The leader is gone (it crashed at ``sim.now``): its followers heard it last at
        ``last_contact`` and each times out a fresh election timeout after that."""
        self.leader = None
        sim = self.sim
        for v in self.voters:
            if sim.net.up(v):
                self.heard_leader[v] = last_contact
                self.arm(v, last_contact + sim.one_way() + sim.timeout())

    def _hears_leader(self, node: str) -> bool:
        leader = self.leader
        return leader is not None and (leader == node or self.sim.net.reachable(node, leader))

    def _refuses_pre_vote(self, voter: str, now: float) -> bool:
        """hakv.raft.prevote's lease rule: a voter that reaches the leader hears it now."""
        return prevote.leader_alive(
            leading=voter == self.leader,
            leader_heard_at=now if self._hears_leader(voter) else self.heard_leader.get(voter),
            now=now, election_timeout_min=self.sim.params.raft.election_timeout_min)

    def _deadline(self, node: str, gen: int) -> None:
        sim = self.sim
        if self._timer_gen.get(node) != gen or not sim.net.up(node):
            return
        if self._hears_leader(node):
            return  # heartbeats keep moving its deadline; re-armed when the leader is lost
        if self.electing:
            self.arm(node, sim.now + sim.timeout())
            return
        self._campaign(node)

    def _campaign(self, node: str) -> None:
        sim = self.sim
        now, c = sim.now, sim.params.msg_cpu
        _, peers = self.reachable_followers(node)
        need = self.quorum - 1
        if not peers and need > 0:
            self.arm(node, now + sim.timeout())  # connected to nobody: no election
            return
        # PreVote: a question to every reachable voter, an answer from each.
        self.count("election", 2 * peers)
        start = sim.cpu(node, 2 * peers * c, now)
        if self.leader is None and not self.heard_leader:
            granting = peers  # nobody has heard a leader yet (a cluster coming up)
        else:
            granting = sum(1 for v in self.voters if v != node and sim.net.reachable(node, v)
                           and not self._refuses_pre_vote(v, now))
        if granting < need:
            self.arm(node, now + sim.timeout())
            return
        asked = start + peers * c + sim.round_trip(need, granting, fsync=False)
        # The election: term and vote fsynced, RequestVote to each, a vote back from each
        # voter that grants it (it fsyncs its vote first).
        self.count("election", peers + granting)
        vote = sim.cpu(node, (peers + need) * c, asked + sim.params.fsync)
        won = vote + peers * c + sim.round_trip(need, granting) + need * c
        self.electing = True
        sim.at(won, lambda: self._won(node))

    def _won(self, node: str) -> None:
        sim = self.sim
        self.electing = False
        if not sim.net.up(node):
            return
        self.take_leadership(node)

    def take_leadership(self, node: str, category: str = "election") -> None:
        """``node`` becomes leader now (after an election or a hand-over): a new term,
        and its no-op entry in the first round."""
        self.term += 1
        self.elections += 1
        self.leader = node
        self.leader_since = self.sim.now
        self._next_send = self.sim.now
        self._behind = {}  # a new leader finds out what each follower has (not modelled)
        self._ro_due, self._ro_sizes, self._ro_label, self._ro_waiting = None, [], None, []
        self._queue.insert(0, Proposal(node, category, None, False))
        self._maybe_send()
        for callback in list(self.on_leader):
            callback(self)

    def hand_over(self, target: str) -> None:
        """Leadership hand-over (hakv.raft.host ``hand_over_leadership``): TimeoutNow to
        ``target``, which runs an election at once, without PreVote (RequestVote and a
        vote from each reachable voter), then its no-op round."""
        sim = self.sim
        leader = self.leader
        if (leader is None or target == leader or self.electing
                or not sim.net.reachable(leader, target)):
            return
        c = sim.params.msg_cpu
        _, peers = self.reachable_followers(target)
        need = self.quorum - 1
        self.count("handover", 1 + 2 * peers)
        start = sim.cpu(target, (peers + need) * c, sim.now + sim.one_way() + sim.params.fsync)
        won = start + peers * c + sim.round_trip(need, peers) + need * c
        self.electing = True

        def done() -> None:
            self.electing = False
            if sim.net.up(target):
                self.take_leadership(target, "handover")

        sim.at(won, done)

    # ---- writes

    def propose(self, origin: str, category: str,
                on_commit: Callable[[], None] | None = None, size: int = 0
                ) -> Proposal | None:
        """``origin`` proposes a command (of ``size`` bytes, 0: small) now; the proposal,
        or None (nothing sent) when it knows no leader: pysyncobj fails such a proposal at
        once (MISSING_LEADER)."""
        sim = self.sim
        leader = self.leader
        if leader is None or self.electing or not self.knows_leader(origin, sim.now):
            return None
        if origin == leader:
            proposal = Proposal(origin, category, on_commit, False, size)
            self._arrive(proposal, leader)
            return proposal
        c = sim.params.msg_cpu
        self.count(category, 2)  # apply_command, apply_command_response
        sent = sim.cpu(origin, c, sim.now) + c
        proposal = Proposal(origin, category, on_commit, True, size)
        sim.at(sent + sim.one_way(), lambda: self._arrive(proposal, leader))
        return proposal

    def _arrive(self, proposal: Proposal, leader: str) -> None:
        sim = self.sim
        if self.leader != leader or not sim.net.up(leader):
            self.lost += 1  # the leader changed meanwhile: the proposer would time out
            return
        if proposal.forwarded:
            sim.cpu(leader, 2 * sim.params.msg_cpu, sim.now)
        self._queue.append(proposal)
        self._maybe_send()

    def _maybe_send(self) -> None:
        if self._round_pending or not self._queue or self.leader is None:
            return
        self._round_pending = True
        sim = self.sim
        start = max(sim.now, self._next_send, sim.cpu_free(self.leader))
        sim.at(start, self._send_round)

    def _send_round(self) -> None:
        self._round_pending = False
        leader = self.leader
        if leader is None or not self._queue:
            return
        sim = self.sim
        c = sim.params.msg_cpu
        batch, self._queue = self._queue, []
        f, voting = self.reachable_followers(leader)
        readonly = f - voting
        need = self.quorum - 1
        sizes = [p.size for p in batch]
        self.log.extend(sizes)
        k = append_entries_messages(sizes)
        category = max(batch, key=lambda p: p.size).category
        # The voters get the round at once, k messages each (hakv.raft.host
        # GroupMember._SyncObj__sendAppendEntries); the read-only followers READONLY_LAG
        # later (_readonly_later).
        sends = voting * k
        self.kinds.update(p.category for p in batch)
        self.count(category, 2 * sends)
        start = sim.cpu(leader, sends * c, sim.now)
        sent = start + sends * c
        self.rounds += 1
        self._last_round = self._last_entries = start
        self.quiet = False
        self._arm_heartbeat()
        if readonly:
            self._readonly_later(leader, sent, sizes, category, batch)
        if voting < need:
            self.stalled.extend(batch)  # no quorum: the entries wait in the log
            return
        to_quorum = sim.round_trip(need, voting)
        first_ack = min(sim.round_trip(1, voting), to_quorum) if voting else to_quorum
        self._next_send = sent + first_ack if voting else max(sent + to_quorum,
                                                               start + sim.params.fsync)
        if readonly:
            sim.at(sent + to_quorum,
                   partial(self._quorum, batch, category, leader, voting, start, sends))
            return
        commit = max(sent + to_quorum + need * c, start + sim.params.fsync)
        sim.at(commit, partial(self._commit, batch, category, leader, voting, start, sends))

    def _quorum(self, batch: list[Proposal], category: str, leader: str, voting: int,
                round_start: float, acks: int) -> None:
        """The quorum's acks are in. The pass that reads them commits, after its call to
        the read-only followers if one is due then (hakv.raft.host ``RaftHost._pass`` sends
        it before the tick)."""
        sim = self.sim
        due, end = self._ro_last
        base = end if due <= sim.now < end else sim.now
        commit = max(base + (self.quorum - 1) * sim.params.msg_cpu,
                     round_start + sim.params.fsync)
        sim.at(commit, partial(self._commit, batch, category, leader, voting, round_start,
                               acks))

    def _readonly_later(self, leader: str, sent: float, sizes: Sequence[int], category: str,
                        batch: Sequence[Proposal] = ()) -> None:
        """The voters got a call at ``sent`` that the read-only followers did not: they get
        theirs READONLY_LAG after the first such call, with everything appended until
        then (hakv.raft.host ``readonly_due``)."""
        self._ro_sizes.extend(sizes)
        weight = max(sizes, default=-1)
        if self._ro_label is None or weight > self._ro_label[0]:
            self._ro_label = (weight, category)
        self._ro_waiting.extend(batch)
        if self._ro_due is None:
            self._ro_due = sent + READONLY_LAG
            self._ro_gen += 1
            self.sim.at(self._ro_due, partial(self._readonly_call, leader, self._ro_gen))

    def _readonly_call(self, leader: str, gen: int) -> None:
        """hakv.raft.host ``send_to_readonly``, at the start of the pass READONLY_LAG after the
        voters' call: what the read-only followers miss, in APPEND_ENTRIES_BYTES messages (Sim.fill),
        with the commit index of that moment; then the acks."""
        if gen != self._ro_gen or self._ro_due is None:
            return
        sim = self.sim
        sizes, label = self._ro_sizes, self._ro_label
        self._ro_due, self._ro_sizes, self._ro_label = None, [], None
        if self.leader != leader or not sim.net.up(leader):
            self._ro_waiting = []
            return
        c = sim.params.msg_cpu
        f, voting = self.reachable_followers(leader)
        category = label[1] if label is not None else "heartbeat"
        k = append_entries_messages(sizes) if sizes else 1
        sent, left = sim.fill({(k, category): f - voting})
        sends = sum(sent.values())
        for name, n in sent.items():
            self.count(name, 2 * n)
        begin = sim.cpu(leader, 2 * sends * c, sim.now)  # the sends, then the acks
        end = begin + sends * c
        self._ro_last = (sim.now, end)
        self._lagging(left, end)
        self._deliver(begin)

    def _deliver(self, begin: float) -> None:
        """A call to the read-only followers began at ``begin``: it carries the commit of
        every proposal committed by now; a read-only proposer applies its own then."""
        sim = self.sim
        waiting = []
        readonly = self._member_positions()[1]
        for p in self._ro_waiting:
            if p.committed_at is None or p.committed_at > sim.now:
                p.readonly_missed = True
                waiting.append(p)
                continue
            p.readonly_from = begin
            if p.on_commit is not None and p.origin in readonly:
                sim.at(self.applied_at(p, p.origin), p.on_commit)
        self._ro_waiting = waiting

    def _lagging(self, left: Mapping[tuple[int, str], int], after: float) -> None:
        """Followers that did not get all of a call's messages get the rest with the
        leader's heartbeats from ``after`` on."""
        if not left:
            return
        for key, n in left.items():
            self._behind[key] = self._behind.get(key, 0) + n
        self._behind_from = max(self._behind_from, after)
        self._arm_heartbeat()

    def _commit(self, batch: list[Proposal], category: str, leader: str, voting: int,
                round_start: float, acks: int) -> None:
        sim = self.sim
        c = sim.params.msg_cpu
        to_all = any(p.forwarded for p in batch)
        sends_from = NEVER
        if to_all:
            # notify_commit: a follower waits for this, so the commit index goes at once,
            # to the voters; the read-only followers get it with their next call.
            self.count(category, 2 * voting)
            sends_from = sim.cpu(leader, 2 * voting * c, sim.now)
        sim.cpu(leader, acks * c, sim.now)  # reading the round's acks
        self.committed += len(batch)
        for p in batch:
            p.committed_at, p.leader, p.round_start = sim.now, leader, round_start
            p.sends_from, p.to_all = sends_from, to_all
        if to_all and any(p.readonly_missed for p in batch):
            # The read-only followers' call went before the commit: notify_commit is
            # another AppendEntries call, theirs READONLY_LAG later.
            f, now_voting = self.reachable_followers(leader)
            if f > now_voting:
                self._readonly_later(leader, sends_from + voting * c, (), category)
        voters, readonly = self._member_positions()
        for p in batch:
            if p.on_commit is None or p.origin in readonly:
                continue  # a read-only proposer applies it when its call comes (_deliver)
            if p.origin == leader:
                p.on_commit()
            else:
                sim.at(self.applied_at(p, p.origin), p.on_commit)

    def _member_positions(self) -> tuple[dict[str, int], dict[str, int]]:
        if self._positions is None:
            self._positions = ({m: i for i, m in enumerate(self.voters)},
                               {m: i for i, m in enumerate(self.readonly)})
        return self._positions

    def applied_at(self, proposal: Proposal, node: str) -> float:
        """When ``node`` has applied ``proposal`` (inf: not yet). On the leader at the
        commit. On a voter when the commit notice reaches it (the leader sends in member
        order, ``msg_cpu`` a message); without one (the leader's own write), when the
        leader's next heartbeat brings the commit index, one heartbeat period after the
        round. On a read-only follower when the first call to the read-only followers
        after the commit reaches it (``readonly_from``); if none carried it yet although
        one went before the commit (a commit later than READONLY_LAG), the heartbeat's."""
        sim = self.sim
        if proposal.committed_at is None:
            return math.inf
        leader = proposal.leader
        if node == leader:
            return proposal.committed_at
        voters, readonly = self._member_positions()
        c = sim.params.msg_cpu
        position = voters.get(node)
        if position is not None:
            if leader is not None and voters.get(leader, -1) < position:
                position -= 1  # the leader sends nothing to itself
            if proposal.to_all:
                return proposal.sends_from + (position + 1) * c + sim.one_way()
            return proposal.round_start + sim.params.heartbeat + sim.one_way()
        after = (readonly.get(node, 0) + 1) * c + sim.one_way()
        if proposal.readonly_from != NEVER:
            return proposal.readonly_from + after
        if proposal.readonly_missed and not proposal.to_all:
            beat = proposal.round_start + sim.params.heartbeat
            return beat + (len(self.voters) - 1) * c + READONLY_LAG + after
        return math.inf

    def read_index(self, category: str, on_done: Callable[[], None]) -> None:
        """A linearizable read on the leader (ReadIndex): one probe and its answer per
        reachable voter, done at a majority; no log entry."""
        sim = self.sim
        leader = self.leader
        if leader is None:
            return
        c = sim.params.msg_cpu
        _, voters = self.reachable_followers(leader)
        need = self.quorum - 1
        self.count(category, 2 * voters)
        start = sim.cpu(leader, 2 * voters * c, sim.now)
        sim.at(start + voters * c + sim.round_trip(need, voters, fsync=False), on_done)

    # ---- heartbeats (when ``Sim.heartbeats`` is on, or while followers miss messages)

    def _arm_heartbeat(self) -> None:
        if (not self.sim.heartbeats and not self._behind) or self._hb_timer or self.leader is None:
            return
        self._hb_timer = True
        when = self._last_round + self.sim.params.heartbeat
        if self._behind:
            when = max(when, self._behind_from)
        self.sim.at(when, self._heartbeat)

    def _caught_up(self, leader: str) -> bool:
        if self._behind:
            return False
        net = self.sim.net
        if self._everyone:
            return net.up_with(leader) == net.size
        return all(net.reachable(leader, m) for m in self.members)

    def _heartbeat(self) -> None:
        """A heartbeat period passed without an AppendEntries round: send an empty one to
        every reachable follower (and read the acks), or go quiet (hakv.raft.host: idle for
        QUIESCE_AFTER periods, every member up and caught up). While followers miss
        messages, the heartbeat is the call that sends them the next ones (Sim.fill)."""
        self._hb_timer = False
        sim = self.sim
        leader = self.leader
        if leader is None or not sim.net.up(leader):
            return
        hb = sim.params.heartbeat
        now = sim.now
        if self._round_pending:
            return  # the round about to go is this heartbeat; it re-arms the timer
        if now < self._last_round + hb - 1e-12 or (self._behind
                                                    and now < self._behind_from - 1e-12):
            self._arm_heartbeat()
            return
        if self._behind:
            self._catch_up(leader)
            return
        if not sim.heartbeats:
            return
        if now - self._last_entries >= QUIESCE_AFTER * hb - 1e-12 and self._caught_up(leader):
            self.quiet = True
            return
        f, voting = self.reachable_followers(leader)
        self.count("heartbeat", 2 * voting)
        self._last_round = sim.cpu(leader, 2 * voting * sim.params.msg_cpu, now)
        if f > voting:  # the read-only followers' part goes READONLY_LAG later
            self._readonly_later(leader, self._last_round + voting * sim.params.msg_cpu, (),
                                 "heartbeat")
        self._arm_heartbeat()

    def _catch_up(self, leader: str) -> None:
        """A heartbeat call while followers miss messages: each of them gets the next ones
        (as many as the call has time for, one at least); the others an empty
        AppendEntries, counted as a heartbeat when heartbeats are played."""
        sim = self.sim
        f, _ = self.reachable_followers(leader)
        lagging = sum(self._behind.values())
        sent, self._behind = sim.fill(self._behind)
        for category, n in sent.items():
            self.count(category, 2 * n)
        empty = max(0, f - lagging) if sim.heartbeats else 0
        self.count("heartbeat", 2 * empty)
        sends = sum(sent.values()) + empty
        self._last_round = sim.cpu(leader, 2 * sends * sim.params.msg_cpu, sim.now)
        self._deliver(self._last_round)
        if not self._behind:
            self.caught_up_at = self._last_round + 2 * sends * sim.params.msg_cpu
        self._arm_heartbeat()

    def wake(self, node: str | None = None) -> None:
        """A member (re)connected: a quiet leader heartbeats again at once. ``node`` came
        up just now and misses every entry so far: the leader's heartbeats bring it them
        (one message, the heartbeat's own, unless they are over APPEND_ENTRIES_BYTES)."""
        leader = self.leader
        if leader is None:
            return
        if node is not None and node != leader and self.log:
            missed = append_entries_messages(self.log)
            if missed >= 1:  # (one: the heartbeat's own message carries it, then caught up)
                key = (missed, "catch-up")
                self._behind[key] = self._behind.get(key, 0) + 1
        if self.quiet:
            self.quiet = False
            self._last_round = self.sim.now - self.sim.params.heartbeat
        self._arm_heartbeat()
