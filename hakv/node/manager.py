"""The resource group manager: what the leader of each group does for its app (patent
Fig. 4, DESIGN.md points 4-5, invariants I2 and I3). Decisions are hakv.core.ha's; this module
gathers what they need and carries them out through the group's log.

Every node runs one manager thread. Each round (every ``ROUND`` seconds), for every group
the node owns:

1. **Watch the lease** (every owner, leader or not): note on this node's monotonic clock
   when the placement record's (token, renewal count) was first seen. A follower that
   becomes leader therefore knows how long the runner has been silent; a node that just
   started assumes "just now" (hakv.core.ha.observe).
2. Only if this node is the group's Raft leader with quorum:
   a. **Failure detection.** An owner whose raft messages reach this node is alive; one
      that has sent none for ``probe_interval`` is probed on its client API
      (``/v1/health``) every ``probe_interval``; an owner that has shown no sign of life
      (neither) for ``failure_timeout`` is down. Raft traffic flows at least every
      heartbeat between owners of a group with a leader (AppendEntries and acks, or node
      heartbeats for quiet groups), so on a healthy cluster no HTTP probe is sent.
      The Raft leader of every group that lists it sees it, so the whole sphere of
      influence learns it: each such leader records it down in its group (a node-status
      record, which is an event), and in the cluster ensemble; reachable again, it is
      recorded up (reintegration).
   b. **Decide** (hakv.core.ha.decide): initial placement on the highest-precedence live owner;
      failover when the runner's lease has surely expired, or at once when the runner
      reported the app failed (beyond its restart limit) or stopped; a requested move or
      a fallback (policy ``return``, optional time window) by first asking the runner to
      stop; nothing while the group is in maintenance.
   c. **Act**: a placement first asks the bridge on the target node for the group's load
      (capacity serialization of shared nodes, hakv.node.bridge), then proposes the placement
      as a compare-and-set on (token, renewal count): a renewal that commits meanwhile
      makes it fail, never overlap. Allocations left on nodes that no longer run the app
      are released.

Without quorum a group's leader steps down (Raft), so nothing here runs for it: no
placement, no marks. Its runner cannot renew its lease and stops its app (hakv.node.supervisor);
when quorum returns, the new leader finds the lease expired (or the runner's "suspended"
report) and places the app again: the group resumes on its own.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import math
import random
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hakv import errors
from hakv.core import codec, ha
from hakv.core.topology import CLUSTER_GROUP
from hakv.node.ports import (
    Allocator,
    Clock,
    GroupHost,
    LocalApps,
    PeerApi,
    PeerUnreachable,
    RaftContact,
    TopologyView,
)

log = logging.getLogger("hakv.node.manager")

ROUND = 0.05  # seconds between two manager rounds of a group with an app...
SLOW_ROUND = 0.5  # ...and of one without (node marks only): idle groups cost little
HANDOVER_COOLDOWN = 10.0  # seconds between two leadership hand-overs of a group
HANDOVER_WITHIN = 2.0
ALLOCATE_PATIENCE = 3.0  # seconds to wait for a candidate's bridge before the next one
PROPOSE_TIMEOUT = 2.0
ALLOCATE_TIMEOUT = 3.0  # seconds to wait for another node's bridge to answer
WATCH_IDLE = 10.0  # a peer nobody asked about for this long is no longer probed
HA_OPS = frozenset({"placement", "events", "ha"})
"""Client API operations served here (docs/ha.md): placement and events (reads), ha
(operator actions: move, maintenance, cleanup)."""


# =========================================================================== probing


def raft_evidence_window(tuning: ha.HaTuning) -> float:
    """How long a raft message from a peer counts as its sign of life for the prober.

    Half the failure timeout (never less than one probe interval): a peer's raft traffic
    comes at least every node-heartbeat period (0.2 s by default), the same as the probe
    interval, so with no slack any late heartbeat (a busy machine, a GC pause) set off an
    HTTP probe, and the probe's own work made the next heartbeats later still. The other
    half of the failure timeout leaves room for the probes that confirm a silent peer."""
    return max(tuning.probe_interval, tuning.failure_timeout / 2)


def probe_backoff(tuning: ha.HaTuning, failures: int) -> float:
    """Seconds between HTTP probes of a peer after ``failures`` unanswered ones in a row:
    the probe interval, doubling per failure up to the failure timeout. A dead or frozen
    peer costs a probe or two per failure timeout, not five a second for as long as it is
    gone; it still comes back within one failure timeout (its raft traffic is noticed
    between probes too)."""
    return min(max(tuning.failure_timeout, tuning.probe_interval),
               tuning.probe_interval * 2 ** min(failures, 16))


STALLED = 1.0
"""Seconds between two rounds of the manager loop (it sleeps at most SLOW_ROUND) beyond
which it distrusts its own view of its peers' silence for a failure timeout."""
MARK_STAGGER = 0.5
"""Seconds between the group leaders that record the same node's failure in the cluster
ensemble: every group that lists the node sees it, and each mark is a write to all N
nodes. The leader of the node's first group records it at once, the next one
MARK_STAGGER later if it is not recorded by then (say, that group has no quorum)."""


def is_failover(rec: ha.Placement) -> bool:
    """Whether placing the app anew after ``rec`` is a failover: its runner still held
    the lease (so the leader places only because it expired: the runner is lost or not
    renewing), or the app failed there beyond its restart limit (hakv.core.ha.decide's
    two urgent cases). A first placement, a stopped app (a move, a fallback, a node that
    shut down cleanly) or a suspended one is not."""
    return rec.holds_lease or (rec.state == "failed" and rec.node is not None)


def mark_rank(groups_of_node: list[str], group: str) -> int:
    """The place of ``group`` among the groups that list a node (topology order): who
    records that node's failure or reintegration in the cluster ensemble first."""
    return groups_of_node.index(group) if group in groups_of_node else len(groups_of_node)


def jittered(period: float, rng: random.Random, spread: float = 0.2) -> float:
    """``period`` +- ``spread``: probers of many nodes do not stay in lock-step."""
    return period * (1.0 + spread * (2.0 * rng.random() - 1.0))


@dataclass
class _Peer:
    node: str
    watched_at: float
    asked_at: float
    last_ok: float | None = None
    up_since: float | None = None
    failures: int = 0  # HTTP probes in a row that got no answer


def _spawn_thread(loop: Callable[[], None], name: str) -> None:
    threading.Thread(target=loop, name=name, daemon=True).start()


class Prober:
    """Probes the client API of the owners this node's groups need to know about, one
    thread per peer, only while some group it leads asks for it.

    ``spawn(loop, name)`` runs a peer's probe loop (a daemon thread; tests run none and
    call ``probe_once`` themselves); ``rng`` jitters the probe periods."""

    def __init__(self, contact: RaftContact, view: TopologyView, peers: PeerApi,
                 clock: Clock, spawn: Callable[[Callable[[], None], str], None] = _spawn_thread,
                 rng: random.Random | None = None) -> None:
        self.contact = contact
        self.view = view
        self.peers = peers
        self.clock = clock
        self._spawn = spawn
        self._peers: dict[str, _Peer] = {}
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self._random = rng or random.Random()

    def watch(self, peer: str, now: float) -> None:
        with self._lock:
            state = self._peers.get(peer)
            if state is not None:
                state.asked_at = now
                return
            state = _Peer(peer, watched_at=now, asked_at=now)
            self._peers[peer] = state
        self._spawn(functools.partial(self._probe_loop, state), f"probe-{peer}")

    def peer(self, node: str) -> _Peer | None:
        """What the prober knows of ``node`` (None: not watched)."""
        return self._peers.get(node)

    def _probe_loop(self, peer: _Peer) -> None:
        try:
            while not self.stopping.is_set():
                wait = self.probe_once(peer)
                if wait is None:
                    break
                self.stopping.wait(wait)
        finally:
            self.peers.close()  # this thread's connections
            with self._lock:
                if self._peers.get(peer.node) is peer:
                    del self._peers[peer.node]

    def probe_once(self, peer: _Peer) -> float | None:
        """One look at ``peer``: seconds until the next one, or None when nobody asked
        about it for WATCH_IDLE or it left the topology (its loop ends)."""
        tuning = self.view.tuning()
        started = self.clock.monotonic()
        if started - peer.asked_at > WATCH_IDLE:
            return None
        topology = self.view.topology
        if not topology.has_node(peer.node):
            return None
        heard = self._raft_contact(peer.node)
        window = raft_evidence_window(tuning)
        if heard is not None and started - heard < window:
            # Its raft messages arrive: alive, and no HTTP probe is needed. Look again when
            # this evidence runs out (``classify`` reads the raft contact itself
            # meanwhile), not every probe interval.
            peer.failures = 0
            self._record_ok(peer, heard, tuning.failure_timeout)
            return jittered(max(tuning.probe_interval, heard + window - started),
                            self._random)
        timeout = max(0.05, min(tuning.failure_timeout / 2, 2 * tuning.probe_interval))
        if self.peers.healthy(topology.node(peer.node).api_address, peer.node, timeout):
            peer.failures = 0
            self._record_ok(peer, self.clock.monotonic(), tuning.failure_timeout)
        else:
            peer.failures += 1
        period = jittered(probe_backoff(tuning, peer.failures), self._random)
        return max(0.0, started + period - self.clock.monotonic())

    @staticmethod
    def _record_ok(peer: _Peer, at: float, failure_timeout: float) -> None:
        if peer.last_ok is None or at - peer.last_ok > failure_timeout:
            peer.up_since = at
        peer.last_ok = at if peer.last_ok is None else max(peer.last_ok, at)

    def _raft_contact(self, peer: str) -> float | None:
        """When a raft message from ``peer`` last reached this node (None: never)."""
        topology = self.view.topology
        if not topology.has_node(peer):
            return None
        return self.contact.last_heard(topology.node(peer).raft_address)

    def classify(self, owners: tuple[str, ...], me: str, now: float,
                 failure_timeout: float) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
        """(live, unknown, stable) among ``owners``; this node is live and stable."""
        live, unknown, stable = {me}, set(), {me}
        for owner in owners:
            if owner == me:
                continue
            self.watch(owner, now)
            peer = self._peers.get(owner)
            if peer is None:
                unknown.add(owner)
                continue
            heard = self._raft_contact(owner)
            if heard is not None and (peer.last_ok is None or heard > peer.last_ok):
                self._record_ok(peer, heard, failure_timeout)  # raft traffic: alive now
            if peer.last_ok is not None and now - peer.last_ok < failure_timeout:
                live.add(owner)
                if peer.up_since is not None and now - peer.up_since >= failure_timeout:
                    stable.add(owner)
            elif peer.last_ok is None and now - peer.watched_at < failure_timeout:
                unknown.add(owner)
        return frozenset(live), frozenset(unknown), frozenset(stable)


# =========================================================================== the manager


class Manager:
    """The per-node resource group manager thread (see the module docstring).

    ``me`` is this node; ``groups`` the groups hosted here; ``prober`` tells live owners
    from silent ones; ``peers`` reaches other nodes' bridges, ``allocator`` this node's;
    ``apps`` is this node's supervisor (shown in a placement view)."""

    def __init__(self, me: str, groups: GroupHost, view: TopologyView, clock: Clock,
                 prober: Prober, peers: PeerApi, allocator: Allocator,
                 apps: LocalApps) -> None:
        self.me = me
        self.groups = groups
        self.view = view
        self.clock = clock
        self.prober = prober
        self.peers = peers
        self.allocator = allocator
        self.apps = apps
        self.stopping = self.prober.stopping
        self.watches: dict[str, ha.LeaseWatch] = {}
        self.leading: dict[str, float] = {}
        self.decisions: dict[str, ha.Decision] = {}
        self._client = f"ha-{self.me}-{uuid.uuid4().hex[:12]}"
        self._seq = itertools.count(1)
        self._cluster_marks: dict[str, str] = {}
        self._cluster_queue: dict[str, dict[str, Any]] = {}
        self._cluster_wake = threading.Event()
        self._cluster_not_before: dict[str, float] = {}  # node -> when to record its mark
        self._distrust_until = 0.0  # after a stall of this thread: mark nobody down
        self._handover_at: dict[str, float] = {}
        self._alloc_waits: dict[tuple[str, str], float] = {}
        self.failovers: dict[str, int] = {}
        """Group -> placements this node made (as the group's leader) that moved the app
        away from a runner whose lease expired or on which it failed: failovers, as
        opposed to first placements, moves, fallbacks, resumptions. For /metrics."""

    def start(self) -> None:
        threading.Thread(target=self.run, name="manager", daemon=True).start()
        threading.Thread(target=self._cluster_marker, name="cluster-marks", daemon=True).start()

    def stop(self) -> None:
        self.stopping.set()
        self._cluster_wake.set()

    def run(self) -> None:
        due: dict[str, float] = {}
        clock = self.clock
        last = clock.monotonic()
        while not self.stopping.is_set():
            now = clock.monotonic()
            if now - last > STALLED:
                # This thread did not run for a while (the process was frozen, starved of
                # CPU, or paused by the collector): the silence it sees from its peers is
                # its own. Mark nobody down until it has had a failure timeout to hear
                # them again (a thawed leader marked its live peers down, in its group
                # and in the cluster ensemble).
                self._distrust_until = now + self.view.tuning().failure_timeout
                log.warning("manager on %s did not run for %.1fs: no node is marked down "
                            "for the next %.1fs", self.me, now - last,
                            self._distrust_until - now)
            last = now
            for gid in self.groups.hosted():
                now = clock.monotonic()
                if due.get(gid, 0.0) > now:
                    continue
                # Slow rounds fall on a shared grid, so idle groups wake the thread together.
                due[gid] = (math.floor(now / SLOW_ROUND) + 1) * SLOW_ROUND
                try:
                    if self.tick(gid):
                        due[gid] = now + ROUND
                except errors.HakvError as exc:
                    log.debug("group %s: manager round: %s", gid, exc.message)
                except Exception:
                    log.exception("group %s: manager round failed", gid)
            soonest = min(due.values(), default=clock.monotonic() + ROUND)
            self.stopping.wait(min(SLOW_ROUND, max(0.005, soonest - clock.monotonic())))

    # ------------------------------------------------------------------ one group

    def _propose(self, gid: str, cmd: dict[str, Any], timeout: float = PROPOSE_TIMEOUT) -> Any:
        return self.groups.member_of(gid).submit(codec.encode(cmd)).wait(timeout)

    def tick(self, gid: str) -> bool:
        """One round for one group; True if the group has an app (next round soon)."""
        member = self.groups.member(gid)
        gspec = self.view.group_spec(gid)
        if member is None or gspec is None:
            return False
        if gspec.app is None and not member.leads():
            self.leading.pop(gid, None)
            return False  # no app to watch, and node marks are the leader's
        store = self.groups.store(gid)
        rec = store.placement()
        now = self.clock.monotonic()
        watch = ha.observe(self.watches.get(gid), rec, now)
        self.watches[gid] = watch
        st = member.status()
        if not (st.get("role") == "leader" and st.get("quorum")):
            self.leading.pop(gid, None)
            return gspec.app is not None
        self.leading.setdefault(gid, now)
        tuning = self.view.tuning()
        live, unknown, stable = self.prober.classify(gspec.owners, self.me, now,
                                                     tuning.failure_timeout)
        if now < self._distrust_until:  # see run(): silence seen after a stall of our own
            unknown = unknown | (frozenset(gspec.owners) - live)
        statuses = store.node_statuses()
        for node, state in ha.node_marks(gspec.owners, self.me, live, unknown, statuses):
            self.mark(gid, node, state, statuses, tuning)
        if gspec.app is None:
            return False
        self.hand_over(gid, gspec.owners, rec, live, now)
        self.release_allocations(gid, rec, gspec.owners)
        view = ha.GroupView(
            owners=gspec.owners, placement=rec, live=live, lease_seen_at=watch.seen_at,
            unknown=unknown, stable=stable, fallback=gspec.fallback,
            in_window=ha.in_window(gspec.fallback_window, self.clock.minute_of_day()))
        decision = ha.decide(view, now, tuning)
        previous = self.decisions.get(gid)
        if previous is None or previous.action != decision.action:
            log.info("group %s: %s: %s", gid, decision.action, decision.reason)
        self.decisions[gid] = decision
        if decision.action != "place":
            for key in [k for k in self._alloc_waits if k[0] == gid]:
                del self._alloc_waits[key]
        if decision.action == "place":
            self.place(gid, rec, decision, gspec.load)
        elif decision.action == "unplace":
            self._propose(gid, ha.command("unplace", self.clock.wall(), state=decision.state,
                                          expect_token=rec.token,
                                          expect_renewals=rec.renewals,
                                          reason=decision.reason))
        elif decision.action == "stop":
            self._propose(gid, ha.command("stop", self.clock.wall(), expect_token=rec.token,
                                          reason=decision.reason))
        return True

    def hand_over(self, gid: str, owners: tuple[str, ...], rec: ha.Placement,
                  live: frozenset[str], now: float) -> None:
        """Hand the group's Raft leadership to the node that runs its app (when the raft
        layer offers hand-over; hakv.core.ha.handover_target says why)."""
        target = ha.handover_target(self.me, rec, live)
        if target is None or now - self._handover_at.get(gid, -HANDOVER_COOLDOWN) < HANDOVER_COOLDOWN:
            return
        if self.groups.member(gid) is None:
            return
        self._handover_at[gid] = now
        address = self.view.topology.node(target).raft_address
        log.info("group %s: handing Raft leadership to %s, which runs the app", gid, target)
        self.groups.hand_over_leadership(gid, address, HANDOVER_WITHIN)

    def place(self, gid: str, rec: ha.Placement, decision: ha.Decision, load: int) -> None:
        """Place on the first candidate whose bridge grants the load. A candidate that
        cannot answer yet (one of its groups is electing a leader, say: the bridge then
        cannot be sure of that group's allocation) is waited for, up to ALLOCATE_PATIENCE,
        before the next one by precedence is tried; a full one is skipped at once."""
        refused = []
        now = self.clock.monotonic()
        for candidate in decision.candidates:
            verdict, why = self.allocate(gid, candidate, load)
            if verdict == "retry":
                since = self._alloc_waits.setdefault((gid, candidate), now)
                if now - since < ALLOCATE_PATIENCE:
                    return  # next round
            if verdict != "ok":
                refused.append(f"{candidate}: {why}")
                continue
            self._alloc_waits.pop((gid, candidate), None)
            reason = decision.reason
            if refused:
                reason += f" (skipped {'; '.join(refused)})"
            result = self._propose(gid, ha.command(
                "place", self.clock.wall(), node=candidate, expect_token=rec.token,
                expect_renewals=rec.renewals, reason=reason))
            if isinstance(result, dict) and result.get("applied"):
                log.info("group %s: placed on %s (token %d): %s", gid, candidate,
                         rec.token + 1, reason)
                if is_failover(rec):
                    self.failovers[gid] = self.failovers.get(gid, 0) + 1
            else:
                log.info("group %s: placement on %s not applied: %s", gid, candidate,
                         (result or {}).get("why") if isinstance(result, dict) else result)
            return
        if rec.node is None and rec.state == "failed":
            return
        self._propose(gid, ha.command(
            "unplace", self.clock.wall(), state="failed", expect_token=rec.token,
            expect_renewals=rec.renewals,
            reason=f"{decision.reason}; no owner could take it ({'; '.join(refused)})"))

    def allocate(self, gid: str, node: str, load: int) -> tuple[str, str]:
        """Ask the bridge on ``node`` for ``load`` for the group: ("ok", ""), ("retry",
        why) when it cannot decide now, ("refused", why) when full or unreachable."""
        if load <= 0 or self.groups.store(gid).allocation(node) >= load:
            return "ok", ""
        try:
            if node == self.me:
                self.allocator.allocate(gid, load)
                return "ok", ""
            address = self.view.topology.node(node).api_address
            body = json.dumps({"group": gid, "node": node, "load": load}).encode()
            status, raw = self.peers.post(address, "allocate", body, ALLOCATE_TIMEOUT)
            answer = json.loads(raw or b"{}")
        except errors.RetryableError as exc:
            return "retry", exc.message
        except errors.HakvError as exc:
            return "refused", exc.message
        except (PeerUnreachable, ValueError) as exc:
            return "refused", f"unreachable ({exc})"
        if status == 200:
            return "ok", ""
        err = answer.get("error", {}) if isinstance(answer, dict) else {}
        why = str(err.get("message") or f"HTTP {status}")
        return ("retry" if err.get("retryable") else "refused"), why

    def release_allocations(self, gid: str, rec: ha.Placement, owners: tuple[str, ...]) -> None:
        """Release the group's load on owners that do not run its app (any more)."""
        store = self.groups.store(gid)
        for owner in owners:
            if rec.holds_lease and rec.node == owner:
                continue
            if store.allocation(owner) > 0:
                cmd = codec.write_command("allocation", {"node": owner, "load": 0},
                                          self._client, next(self._seq))
                self._propose(gid, cmd)

    def mark(self, gid: str, node: str, state: str, statuses: dict[str, Any],
             tuning: ha.HaTuning) -> None:
        old = (statuses.get(node) or {}).get("status") or {}
        now = self.clock.wall()
        if state == "down":
            reason = (f"unreachable from {self.me} (leader of {gid}) for "
                      f"{tuning.failure_timeout:g}s")
        else:
            reason = f"reachable again from {self.me} (leader of {gid}): reintegrated"
        status = {**old, "state": state, "since": now, "by": self.me, "reason": reason}
        log.warning("group %s: node %s %s: %s", gid, node, state, reason)
        self._propose(gid, codec.node_status_command(node, status, now))
        if self._cluster_marks.get(node) != state:
            self._cluster_marks[node] = state
            self._cluster_queue[node] = status
            self._cluster_not_before[node] = self.clock.monotonic() + MARK_STAGGER * mark_rank(
                [g.id for g in self.view.topology.groups_of(node)], gid)
            self._cluster_wake.set()

    def _cluster_marker(self) -> None:
        """Record node status marks in the cluster ensemble too, whenever it has quorum
        (it may have none while the groups do: that must not hold them up)."""
        while not self.stopping.is_set():
            now = self.clock.monotonic()
            soonest = min([t for t in self._cluster_not_before.values() if t > now],
                          default=now + 1.0)
            self._cluster_wake.wait(min(1.0, max(0.01, soonest - now)))
            self._cluster_wake.clear()
            if not self.mark_cluster_once():
                self._cluster_wake.set()
                self.stopping.wait(0.5)

    def mark_cluster_once(self) -> bool:
        """Record the queued marks that are due in the cluster ensemble; False when one
        could not be submitted (no quorum there: try again soon)."""
        for node, status in list(self._cluster_queue.items()):
            if self._cluster_not_before.get(node, 0.0) > self.clock.monotonic():
                continue  # a leader of an earlier group of this node goes first
            recorded = self.groups.store(CLUSTER_GROUP).node_statuses().get(node)
            if ((recorded or {}).get("status") or {}).get("state") == status["state"]:
                # Another group's leader (the node's whole sphere of influence marks it)
                # recorded it already: one more entry would reach all N nodes.
                if self._cluster_queue.get(node) is status:
                    del self._cluster_queue[node]
                continue
            cmd = codec.node_status_command(node, status, status["since"])
            try:
                self.groups.member_of(CLUSTER_GROUP).submit(codec.encode(cmd)).wait(3.0)
            except errors.HakvError:
                return False
            if self._cluster_queue.get(node) is status:
                del self._cluster_queue[node]
        return True

    # ------------------------------------------------------------------ client API

    def serve(self, op: str, group: str, body: dict[str, Any]) -> dict[str, Any]:
        member = self.groups.member_of(group)
        store = self.groups.store(group)
        if op in ("placement", "events"):
            serializable = body.get("serializable", False)
            if not isinstance(serializable, bool):
                raise errors.BadRequestError("serializable: expected true or false")
            if not serializable:
                self.groups.barrier(group)
            if op == "events":
                after, limit = body.get("after", 0), body.get("limit", 1000)
                for name, value, low in (("after", after, 0), ("limit", limit, 1)):
                    if isinstance(value, bool) or not isinstance(value, int) or value < low:
                        raise errors.BadRequestError(f"{name}: expected an integer >= {low}")
                return {"group": group, "node": self.me,
                        "events": store.events(after=after, limit=min(limit, 10000))}
            return self.placement_view(group)
        action = body.get("action")
        gspec = self.view.group_spec(group)
        fields: dict[str, Any] = {}
        if action == "move":
            target = body.get("target")
            if gspec is None or target not in gspec.owners:
                owners = ", ".join(gspec.owners) if gspec else "?"
                raise errors.BadRequestError(f"target: {target!r} is not an owner of group "
                                             f"{group} (owners: {owners})")
            fields["target"] = target
        elif action == "maintenance":
            on = body.get("on")
            if not isinstance(on, bool):
                raise errors.BadRequestError("on: expected true or false")
            fields["on"] = on
        elif action != "cleanup":
            raise errors.BadRequestError("action: expected move, maintenance or cleanup, "
                                         f"got {action!r}")
        if gspec is None or gspec.app is None:
            raise errors.BadRequestError(f"group {group} has no app: nothing to {action}")
        reason = body.get("reason") or f"requested by an operator (via {self.me})"
        if not isinstance(reason, str):
            raise errors.BadRequestError("reason: expected a string")
        cmd = ha.command(action, self.clock.wall(), reason=reason, **fields)
        result = member.submit(codec.encode(cmd)).wait(self.groups.request_timeout)
        if isinstance(result, dict) and "error" in result:
            raise errors.from_wire(result)
        return {"group": group, **(result if isinstance(result, dict) else {})}

    def placement_view(self, group: str) -> dict[str, Any]:
        member = self.groups.member_of(group)
        store = self.groups.store(group)
        gspec = self.view.group_spec(group)
        st = member.status()
        by_address = {n.raft_address: n.id for n in self.view.topology.nodes}
        leader = by_address.get(st.get("leader_address") or "")
        decision = self.decisions.get(group) if group in self.leading else None
        return {
            "group": group, "node": self.me,
            "owners": list(gspec.owners) if gspec else [],
            "placement": store.placement().to_dict(),
            "node_status": store.node_statuses(),
            "leader": leader, "quorum": bool(st.get("quorum")),
            "app": gspec.app.to_dict() if gspec and gspec.app else None,
            "fallback": gspec.fallback if gspec else "stay",
            "fallback_window": gspec.fallback_window if gspec else None,
            "ha": self.view.tuning().to_dict(),
            "local": self.apps.local_status(group),
            "decision": ({"action": decision.action, "reason": decision.reason}
                         if decision else None),
        }


__all__ = ["HA_OPS", "Manager", "MARK_STAGGER", "Prober", "is_failover", "jittered", "mark_rank", "probe_backoff", "raft_evidence_window"]
