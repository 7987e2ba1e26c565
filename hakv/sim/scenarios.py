"""The scenarios: the patent's claims, each played on a simulated cluster.

This module's room: what happens in the cluster, step by step, when it comes up, takes a
write, loses a node, is partitioned, or idles. Every decision in it is hakv's own code,
called as a node would call it; the simulator adds only time and message costs
(hakv.sim.model) and the ensembles of a scheme (hakv.sim.cluster):

==========================  ==================================================
decision                    hakv code the scenario calls
==========================  ==================================================
who stores a record         hakv.core.replication.replication_set (ensemble members)
where a change goes         hakv.core.routing.route (status, marks, allocations)
failover, marks, hand-over  hakv.core.ha.decide, node_marks, handover_target
failure detection           hakv.node.manager.raft_evidence_window, probe_backoff, jittered,
                            ROUND
who records a failure       hakv.node.manager.mark_rank, MARK_STAGGER (the cluster ensemble)
the placement record        hakv.core.ha.command, apply_command (place, report, renew)
quorum                      hakv.core.quorum.has_quorum, majority
seeding the cluster         hakv.core.seed.seed_transactions, hakv.core.codec (their size)
where a node's status goes  hakv.node.process.status_home (via SimCluster.status_targets)
node heartbeats             hakv.raft.host.NODE_HEARTBEAT, READONLY_ROUNDS, CONNECTION_SILENCE
replacing a node            hakv.core.membership.plan_membership
the patent's formulas       hakv.core.replication.startup_messages, messages_per_write
==========================  ==================================================

Each scenario takes a topology, a scheme (``hakv`` or ``full``), :class:`SimParams` and a
``random.Random``, and returns a frozen result. Same inputs, same seed: same result.

The node failure is played on a settled, idle cluster: every group's app runs on its
first owner, which also leads the group (hakv.core.ha.handover_target), no other write is in
flight. The steady-state load (:func:`steady_load`) is counted, not played: it applies the
same per-round rules to a cluster whose apps renew their leases every ``renew_interval``.

No scenario freezes a node: hakv.node.manager's rule for a manager that did not run for
``STALLED`` seconds (it marks nobody down for a failure timeout) changes nothing when a
node crashes, since the managers that see it go silent keep running.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

from hakv.core import codec, ha, quorum
from hakv.core.membership import plan_membership
from hakv.core.replication import (
    NodeStatusRecord,
    cluster_startup_messages_full,
    messages_per_write,
    messages_per_write_full,
    replication_set,
    startup_messages,
)
from hakv.core.routing import ClusterChange, GroupChange, NodeChange, route
from hakv.core.seed import seed_transactions
from hakv.core.topology import Topology
from hakv.node.manager import (
    MARK_STAGGER,
    jittered,
    mark_rank,
    probe_backoff,
    raft_evidence_window,
)
from hakv.node.manager import ROUND as MANAGER_ROUND
from hakv.sim.cluster import Scheme, SimCluster
from hakv.sim.model import (
    CONNECTION_SILENCE,
    NEVER,
    NODE_HEARTBEAT,
    PUBLISH_RETRY,
    READONLY_ROUNDS,
    SEED_POLL,
    Ensemble,
    Proposal,
    Sim,
    SimParams,
)

__all__ = [
    "Failure",
    "Load",
    "Serving",
    "Startup",
    "WriteCost",
    "node_failure",
    "seed_sizes",
    "serving",
    "serving_under",
    "startup",
    "steady_load",
    "write_costs",
]

EPOCH = 1.8e9
"""Wall-clock seconds at simulated time 0: placement commands carry a wall time."""
REQUEST_TIMEOUT = 3.0
"""hakv.node.process.Node.request_timeout: how long a node waits for one of its own writes."""
SETTLED = -60.0
"""When the settled cluster of the failure scenario elected its leaders."""
REACTIONS = frozenset({"election", "mark", "place", "report", "handover"})
"""Message categories of a group's own reaction to a failure (patent Fig. 4)."""
NOTICES = frozenset({"allocate", "bridge"})
"""Message categories a group gets because a node it shares is allocated to (Fig. 3)."""
MARKER_RETRY = 0.5
"""hakv.node.manager.Manager._cluster_marker: the wait after a mark it could not submit."""


def _categories(counter: Counter[str]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted((k, v) for k, v in counter.items() if v))


# =========================================================================== start-up


@dataclass(frozen=True)
class Startup:
    """Bringing the whole cluster up, every node powered on within ``boot_spread``.

    ``group_messages``: the resource groups' ensembles (elections, every owner's status,
    heartbeats until they go quiet); ``all_node_messages``: the ensemble every node is in
    (hakv's cluster ensemble, or full replication's one ensemble): elections, seeding the
    cluster-level records, heartbeats, and the status of the nodes it is the home of
    (full replication: every node; hakv: nodes that own no group). ``formula_messages``:
    the patent's accounting, one replicated write per status event, no batching, as
    hakv.core.replication counts it (``startup_messages(t).total`` for hakv: the groups' part,
    and 2(N-1) for each node that owns no group; N x 2(N-1) for full).
    ``seconds``: from the first power-on until the last start-up write committed;
    ``groups_ready``: until every group has a leader and every owner's status;
    ``seeded``: until the last seed transaction committed; ``records_everywhere``: until
    the last node that missed messages of the all-node ensemble (the seed, sent in 256 KiB
    messages over heartbeat calls, or caught up when it came up late) got them (0: none
    ever missed any).
    """

    group_messages: int
    all_node_messages: int
    formula_messages: int
    seconds: float
    groups_ready: float
    status_writes: int
    by_category: tuple[tuple[str, int], ...]
    group_by_category: tuple[tuple[str, int], ...]
    all_node_by_category: tuple[tuple[str, int], ...]
    events: int
    seeded: float = 0.0
    records_everywhere: float = 0.0


class _Tracker:
    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        self.last = 0.0
        self.status: set[tuple[str, str]] = set()
        self.owners_in: Counter[str] = Counter()
        self.ready: dict[str, float] = {}
        self.seeded: dict[int, float] = {}

    def status_committed(self, ensemble: Ensemble, node: str) -> None:
        self.last = max(self.last, self.sim.now)
        if (ensemble.name, node) in self.status:
            return
        self.status.add((ensemble.name, node))
        self.owners_in[ensemble.name] += 1
        if self.owners_in[ensemble.name] == len(ensemble.members):
            self.ready[ensemble.name] = self.sim.now

    def committed(self) -> None:
        self.last = max(self.last, self.sim.now)


class _Publisher:
    """hakv.node.process.Node._publish_status on one node: its status into each target in turn,
    each waited for (up to REQUEST_TIMEOUT); a target without a known leader fails at once
    and is retried in the next pass, PUBLISH_RETRY seconds later."""

    def __init__(self, sim: Sim, node: str, targets: Sequence[Ensemble],
                 tracker: _Tracker) -> None:
        self.sim, self.node, self.targets, self.tracker = sim, node, tuple(targets), tracker
        self.pending = {e.name for e in targets}
        self._order: tuple[Ensemble, ...] = ()
        self._waiting = 0

    def start(self) -> None:
        self._order = tuple(e for e in self.targets if e.name in self.pending)
        self._next(0)

    def _next(self, i: int) -> None:
        sim = self.sim
        while i < len(self._order):
            ensemble = self._order[i]
            i += 1
            self._waiting += 1
            token = self._waiting
            if ensemble.propose(self.node, "status",
                                partial(self._done, ensemble, i, token)):
                sim.at(sim.now + REQUEST_TIMEOUT, partial(self._timed_out, i, token))
                return
        if self.pending:
            sim.at(sim.now + PUBLISH_RETRY, self.start)

    def _done(self, ensemble: Ensemble, i: int, token: int) -> None:
        self.tracker.status_committed(ensemble, self.node)
        if token != self._waiting:
            return  # committed after the node gave up waiting: it already moved on
        self.pending.discard(ensemble.name)
        self._waiting += 1
        self._next(i)

    def _timed_out(self, i: int, token: int) -> None:
        if token == self._waiting:
            self._waiting += 1
            self._next(i)


def seed_sizes(topology: Topology) -> tuple[int, ...]:
    """The bytes of each seed transaction as hakv.node.process ``Node._seed_cluster_records``
    proposes it: ``hakv.core.codec.encode`` of its ``write_command`` (about 12 KB for 60
    records; pysyncobj's framing, a few dozen bytes, aside)."""
    client = f"seed-{topology.fingerprint()[:16]}"
    return tuple(len(codec.encode(codec.write_command("txn", body, client, n + 1)))
                 for n, body in enumerate(seed_transactions(topology)))


class _Seeder:
    """hakv.node.process.Node._seed_cluster_records, on every voter of the all-node ensemble.

    Only the voter that leads the ensemble proposes: every chunk not applied yet at once,
    then it waits for them all and looks again (nothing left: done). The others look every
    SEED_POLL seconds whether their copy shows every chunk's marker or they lead now, and
    propose nothing, so only the leader's loop is played here. A voter's loop looks every
    SEED_POLL seconds from its power-on, so a new leader proposes at its first look after
    it was elected; a proposal that finds no leader fails at once and the loop looks again
    PUBLISH_RETRY later. Proposed at one instant, the chunks go out in one round, in
    AppendEntries messages of up to 256 KiB (hakv.sim.model ``append_entries_messages``;
    hakv's own raft thread may take the first of them into a round of its own: about the
    same messages). The wait's request timeout is not played: the seed commits in a
    fraction of a second (hakv), or the waits return chunk by chunk (full replication).
    ``seeders``: the nodes that run the loop (hakv: the cluster voters; full replication:
    every node, all of them voters of the one ensemble)."""

    def __init__(self, sim: Sim, ensemble: Ensemble, sizes: Sequence[int],
                 seeders: Iterable[str], on_commit: Callable[[int], None]) -> None:
        self.sim, self.ensemble = sim, ensemble
        self.sizes = tuple(sizes)
        self.count = len(self.sizes)
        self.seeders = frozenset(seeders)
        self.on_commit = on_commit
        self.applied: set[int] = set()
        self.proposals = 0
        ensemble.on_leader.append(self._leader)

    def _leader(self, ensemble: Ensemble) -> None:
        node, sim = ensemble.leader, self.sim
        if node is None or node not in self.seeders or len(self.applied) >= self.count:
            return
        boot = sim.boot.get(node, 0.0)
        look = boot + math.ceil((sim.now - boot) / SEED_POLL - 1e-9) * SEED_POLL
        sim.at(look, partial(self._step, node, ensemble.term))

    def _step(self, node: str, term: int) -> None:
        ensemble = self.ensemble
        if len(self.applied) >= self.count or ensemble.leader != node or ensemble.term != term:
            return  # done, or no longer the leader (the next leader's loop goes on)
        chunks = [i for i in range(self.count) if i not in self.applied]
        waiting = set(chunks)
        for i in chunks:
            done = partial(self._done, node, term, i, waiting)
            if ensemble.propose(node, "seed", done, size=self.sizes[i]) is None:
                self.sim.at(self.sim.now + PUBLISH_RETRY, partial(self._step, node, term))
                return
            self.proposals += 1

    def _done(self, node: str, term: int, index: int, waiting: set[int]) -> None:
        self.on_commit(index)
        self.applied.add(index)
        waiting.discard(index)
        if not waiting:
            self._step(node, term)  # it looks again: every chunk applied, it is done


def startup(topology: Topology, scheme: Scheme, params: SimParams,
            rng: random.Random, boots: Mapping[str, float] | None = None) -> Startup:
    """Power every node on at a random time within ``params.boot_spread`` and run until
    every start-up write has committed (see :class:`Startup`).

    What each node does is what a hakv node does at start (hakv.node.process.Node.start): its
    election timers run in every ensemble it votes in; it writes its status into each
    target (:meth:`SimCluster.status_targets`); the cluster voter that leads the cluster
    ensemble seeds the cluster-level records (``seed_transactions``, :class:`_Seeder`).
    A node that comes up after entries of an ensemble went out gets them from its
    leader's heartbeats (hakv.sim.model ``Ensemble.wake``).
    Placing the apps afterwards is not part of it.

    ``boots`` (node -> power-on time) replaces the random power-on times.
    """
    nodes = topology.node_ids
    sim = Sim(params, rng, nodes)
    cluster = SimCluster(sim, topology, scheme)
    spread = params.boot_spread
    if boots is None:
        boots = {n: rng.uniform(0.0, spread) if spread else 0.0 for n in nodes}
    else:
        boots = {n: float(boots[n]) for n in nodes}
    sim.boot = boots
    sim.heartbeats = True
    for n in nodes:
        sim.net.set_up(n, False)
    voter_of = cluster.voter_of()
    member_of = cluster.member_of()
    tracker = _Tracker(sim)
    all_nodes = cluster.all_nodes
    sizes = seed_sizes(topology)
    seeds = len(sizes)

    def seeded(index: int) -> None:
        tracker.committed()
        tracker.seeded.setdefault(index, sim.now)

    _Seeder(sim, all_nodes, sizes, all_nodes.voters, seeded)

    def boot(node: str) -> None:
        sim.net.set_up(node, True)
        for ensemble in member_of[node]:
            ensemble.wake(node)
        for ensemble in voter_of[node]:
            ensemble.arm(node, sim.now + sim.timeout())
        _Publisher(sim, node, cluster.status_targets(node), tracker).start()

    for n in nodes:
        sim.at(boots[n], partial(boot, n))
    sim.run(until=max(boots.values(), default=0.0) + 3600.0)

    expected = sum(len(cluster.status_targets(n)) for n in nodes)
    if len(tracker.status) < expected or len(tracker.seeded) < seeds:
        raise RuntimeError(f"start-up did not finish: {len(tracker.status)} of {expected} "
                           f"status writes, {len(tracker.seeded)} of {seeds} seeds")
    group_kinds: Counter[str] = Counter()
    for ensemble in cluster.group_ensembles:
        group_kinds.update(ensemble.categories)
    group_messages = sum(e.messages for e in cluster.group_ensembles)
    if scheme == "hakv":
        formula = startup_messages(topology).total
        ready = max(tracker.ready[e.name] for e in cluster.group_ensembles)
    else:
        formula = cluster_startup_messages_full(len(nodes))
        ready = tracker.ready[all_nodes.name]
    return Startup(group_messages=group_messages, all_node_messages=all_nodes.messages,
                   formula_messages=formula, seconds=tracker.last, groups_ready=ready,
                   status_writes=len(tracker.status),
                   by_category=_categories(sim.messages),
                   group_by_category=_categories(group_kinds),
                   all_node_by_category=_categories(all_nodes.categories), events=sim.events,
                   seeded=max(tracker.seeded.values()),
                   records_everywhere=max(all_nodes.caught_up_at, 0.0))


# =========================================================================== writes


@dataclass(frozen=True)
class WriteCost:
    """One write to a group, and one cluster-level write, on a settled idle cluster: the
    messages it sends (leader's own proposal) and when it commits."""

    group_write: int
    cluster_write: int
    group_commit: float
    cluster_commit: float
    formula_group: int
    formula_cluster: int


def _settle(sim: Sim, cluster: SimCluster) -> None:
    """Every ensemble has elected its leader long ago: a group's first owner (its app
    runs there, and leadership follows the app), the cluster ensemble's first voter, the
    full ensemble's first node."""
    for group in cluster.topology.groups:
        ensemble = cluster.of_group(group.id)
        if ensemble.leader is None:
            leader = group.owners[0] if ensemble is not cluster.all_nodes else ensemble.voters[0]
            ensemble.install_leader(leader, since=SETTLED)
    if cluster.all_nodes.leader is None:
        cluster.all_nodes.install_leader(cluster.all_nodes.voters[0], since=SETTLED)


def _one_write(sim: Sim, ensemble: Ensemble) -> tuple[int, float]:
    before, start = ensemble.messages, sim.now
    done: list[float] = []
    assert ensemble.leader is not None
    ensemble.propose(ensemble.leader, "write", lambda: done.append(sim.now))
    sim.run()
    return ensemble.messages - before, done[0] - start


def write_costs(topology: Topology, scheme: Scheme, params: SimParams,
                rng: random.Random) -> WriteCost:
    """A key-value write to the first group and a cluster-level change ("a group was
    defined"), each routed by hakv.core.routing.route and proposed by its ensemble's leader."""
    sim = Sim(params, rng, topology.node_ids)
    cluster = SimCluster(sim, topology, scheme)
    _settle(sim, cluster)
    group = topology.groups[0]
    (group_ensemble,) = cluster.targets(GroupChange(group.id, "kv"))
    group_msgs, group_time = _one_write(sim, group_ensemble)
    (cluster_ensemble,) = cluster.targets(ClusterChange("group_defined", group.id))
    cluster_msgs, cluster_time = _one_write(sim, cluster_ensemble)
    n = len(topology.node_ids)
    if scheme == "hakv":
        formula_group = messages_per_write(len(group.owners))
    else:
        formula_group = messages_per_write_full(n)
    return WriteCost(group_msgs, cluster_msgs, group_time, cluster_time, formula_group,
                     messages_per_write_full(n))


# =========================================================================== a node fails


@dataclass(frozen=True)
class Failure:
    """One node crashes on a settled cluster (patent Fig. 4).

    ``reacting``: groups that react (an election, the node marked down, its app
    re-placed); ``notified``: groups that only receive a forwarded allocation notice
    because the new runner is a shared node they list (Fig. 3, one hop); ``elections``:
    groups that elected a new leader, ``elected`` the winner of each such election.

    ``messages`` counts everything the failure caused up to the apps running again and
    leadership handed to their new runners: probes, elections, marks (in the groups and,
    in hakv, the cluster ensemble), allocations, placements, reports, hand-overs;
    ``all_node_messages`` is the part that went through the ensemble of all nodes (hakv:
    the failure as a cluster-level record). Not counted: the probes that go on (one per
    failure timeout, backed off) while the node stays down, and the heartbeats of the
    ensembles that can no longer go quiet (both in :func:`steady_load`).

    ``cluster_marks``: hakv, the group leaders that proposed the failure to the cluster
    ensemble, in order; ``cluster_marks_skipped``: those that found it recorded there
    already (hakv.node.manager.Manager._cluster_marker reads its own copy first). The leader of
    the node's k-th group (topology order, hakv.node.manager.mark_rank) looks k x
    MARK_STAGGER after it marked the node down in its group.

    ``replace_seconds``: from the crash until the last of its apps is placed on another
    owner (committed). ``stored_on``: nodes that store the failed node's new status
    ("down"). ``replace_node_messages``: afterwards, re-owning every group that listed it
    to a spare node (``hakv group set-owners``, planned by
    hakv.core.membership.plan_membership).
    """

    node: str
    reacting: tuple[str, ...]
    notified: tuple[str, ...]
    elections: tuple[str, ...]
    elected: tuple[tuple[str, str], ...]
    placed: tuple[tuple[str, str], ...]
    messages: int
    all_node_messages: int
    by_category: tuple[tuple[str, int], ...]
    replace_seconds: float
    stored_on: int
    sphere: int
    skipped_hops: int
    replace_node_messages: int
    replace_steps: tuple[tuple[str, str], ...]
    cluster_marks: tuple[str, ...] = ()
    cluster_marks_skipped: tuple[str, ...] = ()


class _FailureRun:
    """The failure scenario's state: the managers of the nodes that lead affected groups
    (hakv.node.manager.Manager, reduced to its decisions) and the placement records."""

    def __init__(self, topology: Topology, scheme: Scheme, params: SimParams,
                 rng: random.Random, node: str | None) -> None:
        self.topology, self.scheme, self.params, self.rng = topology, scheme, params, rng
        self.sim = Sim(params, rng, topology.node_ids)
        self.cluster = SimCluster(self.sim, topology, scheme)
        _settle(self.sim, self.cluster)
        self.runners = {g.id: g.owners[0] for g in topology.groups}
        self.failed = node if node is not None else self._pick()
        topology.node(self.failed)  # TopologyError for an unknown node
        self.records: dict[str, ha.Placement] = {}
        self.seen: dict[str, float] = {}
        self.phase: dict[str, float] = {}
        self.watching: dict[str, tuple[float | None, float, float, int]] = {}
        self.last_ae: dict[str, float] = {}
        self.cluster_marked: set[str] = set()
        self.cluster_marks: list[Proposal] = []  # in the order they were proposed
        self.cluster_skipped: list[str] = []
        self.took_over: set[tuple[str, str]] = set()
        self.elected: dict[str, str] = {}
        self.marked: set[str] = set()
        self.stored: set[str] = set()
        self.placed_at: dict[str, float] = {}
        self.placed_on: dict[str, str] = {}
        self.skipped_hops = 0
        self.index = 1000

    def _pick(self) -> str:
        """A node that runs an app and is no cluster voter (so no cluster election blurs
        the picture), drawn from the seed."""
        voters = set(self.topology.cluster_voters) | {self.cluster.all_nodes.voters[0]}
        runners = set(self.runners.values())
        choices = [n for n in self.topology.node_ids if n in runners and n not in voters]
        if not choices:
            choices = [n for n in self.topology.node_ids if n not in voters]
        return self.rng.choice(choices)

    # ---- time

    def round_at(self, node: str, t: float) -> float:
        """The first round of ``node``'s manager at or after ``t`` (every MANAGER_ROUND,
        on a phase of its own)."""
        phase = self.phase.get(node)
        if phase is None:
            phase = self.phase[node] = self.rng.uniform(0.0, MANAGER_ROUND)
        k = math.ceil((t - phase) / MANAGER_ROUND - 1e-9)
        return phase + k * MANAGER_ROUND

    # ---- the placement record (hakv.core.ha's state machine)

    def _apply(self, record: ha.Placement, action: str, when: float,
               **fields: object) -> ha.Placement:
        self.index += 1
        new, result, _event = ha.apply_command(record, ha.command(action, EPOCH + when, **fields),
                                               self.index)
        if new is None:
            raise RuntimeError(f"placement {action} refused: {result}")
        return new

    def _running_record(self, runner: str) -> ha.Placement:
        record = self._apply(ha.Placement(), "place", SETTLED, node=runner, expect_token=0,
                             expect_renewals=0, reason="initial placement")
        record = self._apply(record, "report", SETTLED, node=runner, token=record.token,
                             state="running")
        for k in range(8):
            record = self._apply(record, "renew", SETTLED + k, node=runner, token=record.token)
        return record

    # ---- the crash

    def crash(self) -> None:
        sim, x, p = self.sim, self.failed, self.params
        hb, renew, d = p.heartbeat, p.ha.renew_interval, p.link_delay
        for gid, runner in self.runners.items():
            if runner == x:
                self.records[gid] = self._running_record(x)
        sim.net.set_up(x, False)
        for ensemble in self.cluster.ensembles.values():
            if x not in ensemble.members:
                continue  # it exchanges no message with x: nothing to notice
            if ensemble is self.cluster.all_nodes and self.scheme == "hakv":
                continue  # a read-only follower: the groups' leaders mark it (below)
            if ensemble.leader == x:
                # x ran the group's app and led it. Its last renewal request went out at
                # `last`, then heartbeats every hb; followers applied a renewal with the
                # next AppendEntries, one heartbeat period after it.
                last = -self.rng.uniform(0.0, renew)
                last_ae = last + max(0, math.floor(-last / hb - 1e-9)) * hb
                seen = last + hb + d
                while seen >= 0:
                    seen -= renew
                self.seen[ensemble.name] = seen
                self.last_ae[ensemble.name] = last_ae + d
                ensemble.leader_lost(last_ae)
                ensemble.on_leader.append(self._elected)
            else:
                leader = ensemble.leader
                assert leader is not None
                heard = -self.rng.uniform(0.0, hb)  # its last ack, or node heartbeat
                self._watch(ensemble, leader, heard=heard, since=NEVER)
                for gid in self.cluster.groups_in([ensemble]):
                    if self.runners[gid] == x:
                        # the leader saw the runner's last (forwarded) renewal commit
                        last = -self.rng.uniform(0.0, renew)
                        seen = last + 4 * d + p.fsync
                        while seen >= 0:
                            seen -= renew
                        self.seen[gid] = seen
                        sim.at(self.round_at(leader, 0.0), partial(self._decide, gid, leader))

    # ---- failure detection (hakv.node.manager.Prober.classify, Manager.mark)

    def _watch(self, ensemble: Ensemble, leader: str, heard: float, since: float) -> None:
        """``leader``'s prober watches the failed node (hakv.node.manager.Prober, one thread per
        peer): it last heard raft traffic from it at ``heard``; the thread runs since
        ``since`` (NEVER: long ago). Schedules the mark (hakv.node.manager.Manager.mark)."""
        state = self.watching.get(leader)
        if state is None:
            state = self.watching[leader] = self._prober(leader, heard, since)
        self.sim.at(state[2], partial(self._mark, ensemble, leader))

    def _prober(self, leader: str, heard: float, since: float
                ) -> tuple[float | None, float, float, int]:
        """(last_ok, watched since, when it is marked down, HTTP probes until then).

        The manager's ``Prober.classify`` reads the peer's last raft contact here itself
        (``heard``: its last AppendEntries, ack or node heartbeat): the peer counts as
        alive until a failure timeout after it, and the manager marks it down at its first
        round after that (and not before it leads: ``since``). The probe thread, in the
        meantime: while raft evidence lasts (``raft_evidence_window``) it sleeps until the
        evidence runs out (jittered, at least a probe interval); after that it probes,
        unanswered, and waits ``probe_backoff`` (doubling, jittered) between probes. A
        thread that has been running (``since`` NEVER) makes its next pass within about
        one evidence window of the crash: that is how long it slept while contact was
        fresh."""
        tuning, rng = self.params.ha, self.rng
        window = raft_evidence_window(tuning)
        t = since if since > NEVER else rng.uniform(0.0, jittered(window, rng))
        mark_at = self.round_at(leader, max(heard + tuning.failure_timeout, since))
        probes = failures = 0
        while t < mark_at:
            if t - heard < window:
                t += jittered(max(tuning.probe_interval, heard + window - t), rng)
                continue
            probes += 1
            failures += 1
            t += jittered(probe_backoff(tuning, failures), rng)
        return heard, since, mark_at, probes

    def _classify(self, leader: str, owners: Iterable[str]
                  ) -> tuple[frozenset[str], frozenset[str]]:
        """(live, unknown) as ``leader``'s prober sees them now."""
        net, now, ft = self.sim.net, self.sim.now, self.params.ha.failure_timeout
        live, unknown = {leader}, set()
        for owner in owners:
            if owner == leader:
                continue
            if net.reachable(leader, owner):
                live.add(owner)
            elif owner == self.failed and leader in self.watching:
                last_ok, since, _, _ = self.watching[leader]
                if last_ok is not None and now - last_ok < ft:
                    live.add(owner)
                elif last_ok is None and now - since < ft:
                    unknown.add(owner)
        return frozenset(live), frozenset(unknown)

    def _mark(self, ensemble: Ensemble, leader: str) -> None:
        if ensemble.leader != leader or ensemble.name in self.marked:
            return  # no longer its leader (the next one marks), or recorded already
        x = self.failed
        owners = ensemble.voters + ensemble.readonly
        live, unknown = self._classify(leader, owners)
        statuses = {x: {"status": {"state": "up"}}}
        for node, state in ha.node_marks(owners, leader, live, unknown, statuses):
            if self.scheme == "hakv":
                # Fig. 3: a status change recorded in one group goes on to the others
                # through the bridge on the node it is about. That node is down: every
                # group that lists it records the mark itself.
                hops = route(self.topology, NodeChange(node, "status", group=ensemble.name)).hops
                self.skipped_hops += sum(1 for h in hops if not self.sim.net.up(h.via_node))
            if ensemble.propose(leader, "mark", partial(self._stored, ensemble)):
                self.marked.add(ensemble.name)
            if self.scheme == "hakv" and leader not in self.cluster_marked and state == "down":
                # Manager.mark queues it for the cluster ensemble, once per node and state,
                # not before MARK_STAGGER x the place of this group among the node's groups
                # (mark_rank), and wakes the marker thread, which sleeps until then (its 1 s
                # wait is only the fallback poll).
                self.cluster_marked.add(leader)
                rank = mark_rank([g.id for g in self.topology.groups_of(node)], ensemble.name)
                self.sim.at(self.sim.now + MARK_STAGGER * rank,
                            partial(self._cluster_marker, leader))

    def _cluster_marker(self, leader: str) -> None:
        """hakv.node.manager.Manager._cluster_marker on ``leader``, at its turn (see _mark):
        skip the mark if this node's copy of the cluster records shows the node down
        already (another group leader's mark, applied here: :meth:`Ensemble.applied_at`);
        else propose it (forwarded, on a read-only follower), and after a failed proposal
        look again MARKER_RETRY later. The check reads the local copy, nothing more: a
        later leader proposes too if the earlier one's mark has not reached it
        MARK_STAGGER after it decided (say, that group had no quorum)."""
        all_nodes, now = self.cluster.all_nodes, self.sim.now
        if any(all_nodes.applied_at(p, leader) <= now for p in self.cluster_marks):
            self.cluster_skipped.append(leader)
            return
        proposal = all_nodes.propose(leader, "mark")
        if proposal is None:
            self.sim.at(now + MARKER_RETRY, partial(self._cluster_marker, leader))
            return
        self.cluster_marks.append(proposal)

    def _stored(self, ensemble: Ensemble) -> None:
        self.stored.update(m for m in ensemble.members if self.sim.net.up(m))

    # ---- failover (hakv.node.manager.Manager.tick, hakv.core.ha.decide)

    def _elected(self, ensemble: Ensemble) -> None:
        """A new leader (elected, or handed the leadership): its manager takes over the
        group. Its prober starts watching the failed owner now; the old leader's raft
        traffic, if recent, counts as a sign of life, else it is "unknown" for a failure
        timeout; then down (unless the group recorded it down already)."""
        leader = ensemble.leader
        assert leader is not None
        if (ensemble.name, leader) in self.took_over:
            return
        self.took_over.add((ensemble.name, leader))
        self.elected.setdefault(ensemble.name, leader)
        if ensemble.name not in self.marked:
            self._watch(ensemble, leader, heard=self.last_ae[ensemble.name],
                        since=self.sim.now)
        self.sim.at(self.round_at(leader, self.sim.now),
                    partial(self._decide, ensemble.name, leader))

    def _decide(self, gid: str, leader: str) -> None:
        ensemble = self.cluster.of_group(gid)
        if ensemble.leader != leader or gid in self.placed_at:
            return
        spec = self.topology.group(gid)
        live, unknown = self._classify(leader, spec.owners)
        view = ha.GroupView(owners=spec.owners, placement=self.records[gid], live=live,
                            lease_seen_at=self.seen[gid], unknown=unknown, stable=live,
                            fallback=spec.fallback, has_app=spec.app is not None)
        now = self.sim.now
        decision = ha.decide(view, now, self.params.ha)
        if decision.action == "wait":
            until = decision.until if decision.until is not None else now + MANAGER_ROUND
            nxt = self.round_at(leader, max(until, now + 1e-6))
            self.sim.at(nxt, partial(self._decide, gid, leader))
        elif decision.action == "place":
            self._place(gid, leader, decision)

    def _place(self, gid: str, leader: str, decision: ha.Decision) -> None:
        sim = self.sim
        candidate = decision.candidates[0]
        record = self.records[gid]

        def propose_place() -> None:
            ensemble = self.cluster.of_group(gid)
            if ensemble.leader != leader:
                return
            ensemble.propose(leader, "place",
                             partial(self._placed, gid, leader, candidate, record, decision))

        if self.scheme == "full":
            propose_place()  # the leader holds every record: it checks capacity itself
            return
        # hakv.node.manager.Manager.allocate: ask the bridge on the candidate for the load.
        if candidate == leader:
            self._allocate(gid, candidate, propose_place)
            return
        c = self.params.msg_cpu
        self.cluster.of_group(gid).count("allocate", 2)  # POST /v1/allocate, its answer
        ask = sim.cpu(leader, c, sim.now) + c + sim.one_way()

        def answered() -> None:
            sim.at(sim.now + sim.one_way(), propose_place)

        sim.at(ask, partial(self._allocate, gid, candidate, answered))

    def _allocate(self, gid: str, node: str, then: Callable[[], None]) -> None:
        """hakv.node.bridge.Bridge.allocate on ``node``: a linearizable read in each group it
        owns (ReadIndex where it leads, a barrier through the log where it follows), then
        the allocation recorded in the asking group; applying it there forwards a notice
        to the node's other groups (the Fig. 3 route of an allocation)."""
        groups = sorted(g.id for g in self.topology.groups_of(node))

        def read(i: int) -> None:
            if i == len(groups):
                record()
                return
            ensemble = self.cluster.of_group(groups[i])
            if ensemble.leader is None or ensemble.electing:
                self.sim.at(self.sim.now + MANAGER_ROUND, partial(read, i))
                return
            if ensemble.leader == node:
                ensemble.read_index("allocate", partial(read, i + 1))
            elif not ensemble.propose(node, "allocate", partial(read, i + 1)):
                self.sim.at(self.sim.now + MANAGER_ROUND, partial(read, i))

        def record() -> None:
            ensemble = self.cluster.of_group(gid)

            def recorded() -> None:
                for hop in route(self.topology, GroupChange(gid, "placement", node=node)).hops:
                    if self.sim.net.up(hop.via_node):
                        self.cluster.of_group(hop.to_group).propose(hop.via_node, "bridge")
                then()

            if not ensemble.propose(node, "allocate", recorded):
                self.sim.at(self.sim.now + MANAGER_ROUND, record)

        read(0)

    def _placed(self, gid: str, leader: str, node: str, record: ha.Placement,
                decision: ha.Decision) -> None:
        sim = self.sim
        new = self._apply(record, "place", sim.now, node=node, expect_token=record.token,
                          expect_renewals=record.renewals, reason=decision.reason)
        self.records[gid] = new
        self.placed_at[gid] = sim.now
        self.placed_on[gid] = node
        # The new runner sees its placement with the next AppendEntries, starts the app
        # (not modelled: no time) and reports it running.
        ensemble = self.cluster.of_group(gid)
        sees = sim.now + (0.0 if node == leader else self.params.heartbeat + sim.one_way())

        def report() -> None:
            if not ensemble.propose(node, "report", partial(self._running, gid, leader)):
                sim.at(sim.now + MANAGER_ROUND, report)

        sim.at(sees, report)

    def _running(self, gid: str, leader: str) -> None:
        record = self.records[gid]
        assert record.node is not None
        self.records[gid] = self._apply(record, "report", self.sim.now, node=record.node,
                                        token=record.token, state="running")
        if self.scheme == "full":
            return  # one leader for every group: leadership cannot follow each app
        ensemble = self.cluster.of_group(gid)
        live, _ = self._classify(leader, self.topology.group(gid).owners)
        target = ha.handover_target(leader, self.records[gid], live)
        if target is not None and ensemble.leader == leader:
            self.sim.at(self.round_at(leader, self.sim.now), partial(ensemble.hand_over, target))

    # ---- replacing the node for good (hakv.core.membership)

    def replace_node(self) -> tuple[int, tuple[tuple[str, str], ...]]:
        """Re-own every group that listed the failed node to a spare node, as ``hakv group
        set-owners`` does: per group, the owner list (a cluster-level write), the spare
        catching up read-only (its status write into the group) and announcing itself
        (``joins/``, a cluster-level write), then each step that plan_membership plans,
        one Raft configuration entry each, its voters recorded (a cluster-level write).
        Full replication: the spare already votes in the one ensemble; each group's owner
        list is one write."""
        sim, x = self.sim, self.failed
        sim.run()
        before = sum(sim.messages.values())
        sphere = replication_set(self.topology, NodeStatusRecord(x))
        voters = set(self.topology.cluster_voters)
        spare = next((n for n in self.topology.node_ids
                      if n not in sphere and n not in voters), None)
        if spare is None:
            return 0, ()
        cluster = self.cluster
        steps_done: list[tuple[str, str]] = []
        groups = [g for g in self.topology.groups if x in g.owners]
        admin = cluster.all_nodes.leader
        assert admin is not None

        def owner_list(i: int) -> None:
            if i == len(groups):
                return
            group = groups[i]
            desired = tuple(spare if o == x else o for o in group.owners)
            if self.scheme == "full":
                cluster.all_nodes.propose(admin, "membership", partial(owner_list, i + 1))
                return
            cluster.all_nodes.propose(admin, "membership", partial(catch_up, i, desired))

        def catch_up(i: int, desired: tuple[str, ...]) -> None:
            ensemble = cluster.of_group(groups[i].id)
            ensemble.add_readonly(spare)
            sim.boot[spare] = sim.now  # it learns the leader within a heartbeat
            sim.at(sim.now + self.params.heartbeat,
                   partial(join, i, desired))

        def join(i: int, desired: tuple[str, ...]) -> None:
            # caught up (its status applied through the group's log), it announces itself
            def announce() -> None:
                cluster.all_nodes.propose(spare, "membership", partial(step, i, desired))

            cluster.of_group(groups[i].id).propose(spare, "membership", announce)

        def step(i: int, desired: tuple[str, ...]) -> None:
            ensemble = cluster.of_group(groups[i].id)
            leader = ensemble.leader
            assert leader is not None
            plan = plan_membership(ensemble.voters, desired, leader=leader)
            if not plan:
                owner_list(i + 1)
                return
            first = plan[0]
            steps_done.append((groups[i].id, str(first)))

            def applied() -> None:
                ensemble.change_voters(first.action, first.node)
                cluster.all_nodes.propose(leader, "membership", partial(step, i, desired))

            ensemble.propose(leader, "membership", applied)

        owner_list(0)
        sim.run()
        return sum(sim.messages.values()) - before, tuple(steps_done)


def node_failure(topology: Topology, scheme: Scheme, params: SimParams,
                 rng: random.Random, node: str | None = None) -> Failure:
    """Crash ``node`` (default: a node that runs an app and is no cluster voter, drawn
    from ``rng``) at time 0 on a settled cluster, and play patent Fig. 4 until every
    consequence has settled; then replace it for good (see :class:`Failure`)."""
    run = _FailureRun(topology, scheme, params, rng, node)
    run.crash()
    run.sim.run()
    sim, cluster, x = run.sim, run.cluster, run.failed
    sim.count("probe", sum(state[3] for state in run.watching.values()))
    messages = sum(sim.messages.values())
    all_node_messages = cluster.all_nodes.messages
    by_category = _categories(sim.messages)
    reacting_ensembles = [e for e in cluster.ensembles.values()
                          if REACTIONS & e.kinds and e is not cluster.all_nodes]
    if scheme == "full":
        reacting_ensembles = [cluster.all_nodes]
    reacting = cluster.groups_in(reacting_ensembles)
    notified_ensembles = [e for e in cluster.group_ensembles
                          if NOTICES & e.kinds and e.name not in reacting]
    elections = tuple(e.name for e in cluster.ensembles.values() if e.elections)
    own = [gid for gid, runner in run.runners.items() if runner == x]
    if any(gid not in run.placed_at for gid in own):
        raise RuntimeError(f"the apps of {x} were not all placed again: {run.placed_at}")
    replace_seconds = max((run.placed_at[g] for g in own), default=0.0)
    sphere = replication_set(topology, NodeStatusRecord(x))
    stored = len(run.stored - {x})
    replace_messages, steps = run.replace_node()
    return Failure(node=x, reacting=reacting, notified=cluster.groups_in(notified_ensembles),
                   elections=elections, elected=tuple(sorted(run.elected.items())),
                   placed=tuple((g, run.placed_on[g]) for g in own),
                   messages=messages, all_node_messages=all_node_messages,
                   by_category=by_category,
                   replace_seconds=replace_seconds, stored_on=stored, sphere=len(sphere - {x}),
                   skipped_hops=run.skipped_hops, replace_node_messages=replace_messages,
                   replace_steps=steps,
                   cluster_marks=tuple(p.origin for p in run.cluster_marks),
                   cluster_marks_skipped=tuple(run.cluster_skipped))


# =========================================================================== partitions


@dataclass(frozen=True)
class Serving:
    """Which groups keep serving under one fault: hakv, a group serves on a side where a
    majority of its owners is up (hakv.core.quorum.has_quorum), whatever the rest of the cluster
    does (I2); full replication, only the side with a majority of all nodes serves, and
    only groups with an owner there (an app runs on its owners). ``split_brain``: groups
    with a quorum on two sides at once (must be 0). ``cluster_quorum``: the cluster-level
    ensemble still has a quorum somewhere."""

    fault: str
    serving: int
    groups: int
    split_brain: int
    cluster_quorum: bool

    @property
    def fraction(self) -> float:
        return self.serving / self.groups if self.groups else 0.0


FAULTS: tuple[tuple[str, tuple[float, ...]], ...] = (
    ("split 50/50", (0.5, 0.5)),
    ("split 60/40", (0.6, 0.4)),
    ("split in thirds", (1 / 3, 1 / 3, 1 / 3)),
    ("10% of nodes down", ()),
)
"""The faults of :func:`serving`: partitions into sides of these shares of the nodes
(drawn at random: placement knows nothing of the network), and random node failures."""
DOWN_SHARE = 0.10


def _cut(nodes: Sequence[str], shares: Sequence[float], rng: random.Random) -> dict[str, int]:
    shuffled = rng.sample(list(nodes), len(nodes))
    sides: dict[str, int] = {}
    start = 0
    for side, share in enumerate(shares):
        end = len(shuffled) if side == len(shares) - 1 else start + round(share * len(shuffled))
        for node in shuffled[start:end]:
            sides[node] = side
        start = end
    return sides


def serving_under(topology: Topology, scheme: Scheme, sides: Mapping[str, int] | None = None,
                  down: Iterable[str] = (), fault: str = "") -> Serving:
    """Which groups can serve with the network cut into ``sides`` (node -> side; default:
    one side) and the ``down`` nodes failed (see :class:`Serving`): each ensemble's quorum
    on each side (hakv.core.quorum.has_quorum over the voters up on that side)."""
    nodes = topology.node_ids
    sim = Sim(SimParams(), random.Random(0), nodes)
    cluster = SimCluster(sim, topology, scheme)
    if sides:
        sim.net.partition(sides)
    for node in down:
        sim.net.set_up(node, False)
    net = sim.net
    count = split = 0
    global_sides = cluster.all_nodes.quorum_sides()
    for group in topology.groups:
        if scheme == "hakv":
            found = cluster.of_group(group.id).quorum_sides()
        else:  # the majority side runs every group that has an owner there
            found = tuple(s for s in global_sides
                          if any(net.up(o) and net.side(o) == s for o in group.owners))
        count += bool(found)
        split += len(found) > 1
    return Serving(fault, count, len(topology.groups), split, bool(global_sides))


def serving(topology: Topology, scheme: Scheme, rng: random.Random) -> tuple[Serving, ...]:
    """Each fault of :data:`FAULTS`, cut or failed at random (the same draws for both
    schemes, given the same ``rng`` state)."""
    nodes = topology.node_ids
    out = []
    for fault, shares in FAULTS:
        if shares:
            out.append(serving_under(topology, scheme, sides=_cut(nodes, shares, rng),
                                     fault=fault))
        else:
            down = rng.sample(list(nodes), round(DOWN_SHARE * len(nodes)))
            out.append(serving_under(topology, scheme, down=down, fault=fault))
    return tuple(out)


# =========================================================================== steady state


@dataclass(frozen=True)
class Load:
    """Messages per second (sent plus received) on a settled cluster whose apps all run
    and renew their leases: the busiest node, and the whole cluster. ``busiest_cpu`` is
    the busiest node's raft thread at ``msg_cpu`` a message, in cores (1.0 or more: it
    is saturated). ``renewal`` is how long a lease renewal takes to commit (inf: never).

    hakv: each group's leader is its app's runner; a renewal every ``renew_interval`` is
    its own write, with heartbeats between (a group that renews is never quiet); the
    cluster ensemble is quiet, so its leader sends node heartbeats (hakv.raft.host
    ``RaftHost._send_node_heartbeats``, a round every NODE_HEARTBEAT heartbeat periods):
    every round to a peer it votes with in some ensemble (the other cluster voters, its
    groups' other owners), every READONLY_ROUNDS-th round to a peer it meets only through
    read-only members; each peer answers ("followed") at the same cadence. (The model
    holds while that cadence keeps a read-only connection alive: CONNECTION_SILENCE.)
    Full replication: every renewal is forwarded to the one leader, which sends rounds
    back to back, as long as its CPU needs for each, every round to all N-1 followers
    plus the commit notice.

    After a node fails nothing here grows: the cluster ensemble's leader drops the
    disconnected read-only follower (pysyncobj) and goes quiet again; each group that
    lists the node adds its leader's probes, one per failure timeout once backed off.
    """

    busiest: str
    busiest_rate: float
    busiest_cpu: float
    total_rate: float
    renewal: float


def _group_rounds(params: SimParams) -> float:
    """AppendEntries rounds per second of a group whose app renews its lease: the renewal,
    and a heartbeat each heartbeat period without one (never quiet: QUIESCE_AFTER x 0.1 s
    exceeds the renewal interval)."""
    renew, hb = params.ha.renew_interval, params.heartbeat
    return math.ceil(renew / hb - 1e-9) / renew


def _rates(topology: Topology, scheme: Scheme, params: SimParams
           ) -> tuple[defaultdict[str, float], float]:
    rates: defaultdict[str, float] = defaultdict(float)
    nodes = topology.node_ids
    hb = params.heartbeat
    c = params.msg_cpu
    rounds = _group_rounds(params)
    renewal = math.inf
    live = list(nodes)
    if scheme == "hakv":
        for group in topology.groups:
            leader, followers = group.owners[0], group.owners[1:]
            rates[leader] += rounds * 2 * len(followers)
            for follower in followers:
                rates[follower] += rounds * 2
        voters = topology.cluster_voters
        leader = voters[0]
        period = NODE_HEARTBEAT * hb
        readonly_period = READONLY_ROUNDS * period
        timeout = max(CONNECTION_SILENCE, params.raft.election_timeout_max)
        if readonly_period >= timeout:
            raise ValueError(f"node heartbeats to read-only peers every {readonly_period:g}s "
                             f"would not keep a connection alive ({timeout:g}s timeout)")
        # Peers the leader votes with (hakv.raft.host: ``voting``): every round, both ways.
        voting = set(voters) | {o for g in topology.groups_of(leader) for o in g.owners}
        voting.discard(leader)
        for node in live:
            if node == leader:
                continue
            beat = 2 / (period if node in voting else readonly_period)  # "led" and back
            rates[leader] += beat
            rates[node] += beat
        f = max(len(topology.groups[0].owners) - 1, 0)
        need = quorum.majority(f + 1) - 1
        renewal = f * c + 2 * params.link_delay + params.fsync + need * c
    else:
        leader = nodes[0]
        f = len(live) - 1
        arrivals = len(topology.groups) / params.ha.renew_interval
        base = 2 * params.link_delay + params.fsync
        # Every renewal is forwarded to the leader (two messages, 2c of its CPU). A round
        # sends AppendEntries to f followers and reads their acks, then the commit notice
        # and its acks: 4f messages, 4fc of CPU. While renewals keep coming the rounds go
        # back to back, each as long as the leader's CPU needs, carrying a batch.
        forwarding = 2 * c * arrivals
        if forwarding >= 1:
            rates[leader] += 1 / c  # saturated by the forwards alone
            renewal = math.inf
        else:
            period = max(base, 4 * f * c / (1 - forwarding))
            if arrivals * period >= 1:  # batches, back to back: no gap for a heartbeat
                renew_rounds, beats = 1 / period, 0.0
            else:  # a round per renewal, heartbeats in the gaps longer than hb
                renew_rounds, beats = arrivals, max(0.0, 1 / hb - arrivals)
            batched = beats == 0.0 and arrivals * period >= 1
            rates[leader] += renew_rounds * 4 * f + beats * 2 * f + 2 * arrivals
            for node in live:
                if node != leader:
                    rates[node] += renew_rounds * 4 + beats * 2
            need = quorum.majority(f + 1) - 1
            renewal = 1.5 * period if batched else f * c + base + need * c
    return rates, renewal


def steady_load(topology: Topology, scheme: Scheme, params: SimParams) -> Load:
    """The steady-state message rates (see :class:`Load`)."""
    rates, renewal = _rates(topology, scheme, params)
    busiest = max(topology.node_ids, key=rates.__getitem__)  # the first of equals
    return Load(busiest=busiest, busiest_rate=rates[busiest],
                busiest_cpu=rates[busiest] * params.msg_cpu,
                total_rate=sum(rates.values()) / 2, renewal=renewal)
