"""Prometheus metrics of a node: what ``GET /metrics`` serves (docs/operations.md, "Metrics").

Written with ``prometheus_client``, on a registry per node (``NodeMetrics.registry``),
never the library's global one: the tests run several nodes in one process.

Two kinds of metrics:

- **Read at scrape time** by ``NodeCollector`` (a custom collector: ``collect`` yields
  metric families built from what the node reports right now). Raft state, quorum,
  counters the members keep, LMDB space, peer contact, HA placement. Nothing is
  recorded between scrapes, so an idle node does no metrics work at all.
- **Recorded as they happen**: the latency histograms (journal fsync, LMDB commit, peer
  round trips, writes, linearizable reads). ``NodeMetrics`` owns them; the raft layer,
  the stores and the client API call ``fsync_observer(group)``, ``commit_observer(group)``,
  ``observe_peer_rtt(address, seconds)`` and ``observe_request(op, group, seconds)``.

Counters the raft thread keeps per message (messages sent and received per peer) are
plain ints in dicts (hakv.raft.wire ``NodeListener.sent``/``received``), copied here at
scrape time: no lock and no allocation on the hot path.

Plus the process metrics of ``prometheus_client.ProcessCollector`` (CPU, RSS, open file
descriptors) and ``PlatformCollector`` (``python_info``), on the same registry.

The collector reads the node through narrow ports, defined here (``MetricsSource``,
``MemberStats``, ``StoreStats``): ``hakv.node.process.Node`` implements them; the tests
use an in-memory twin. A scrape runs on an API worker thread, like ``/v1/status``.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from hakv.core import ha
from hakv.core.quorum import majority
from hakv.core.topology import CLUSTER_GROUP, GroupSpec, Topology
from hakv.raft.settings import CONNECTION_SILENCE

log = logging.getLogger("hakv.node.metrics")

__all__ = ["CONTENT_TYPE", "LOCAL_APP_STATES", "MemberStats", "MetricsSource", "NodeCollector",
           "NodeMetrics", "StoreStats", "render"]

#: The Prometheus text format, version 0.0.4: what every Prometheus server and promtool
#: read (prometheus_client's own CONTENT_TYPE_LATEST names a newer version in recent
#: releases; the bytes are the same for hakv's metric names).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: A peer counts as connected when a raft message from it arrived this recently: pysyncobj
#: drops a connection that read nothing for as long (``CONNECTION_SILENCE``), and node
#: heartbeats reach every peer that shares a group well within it, quiet groups included.
CONNECTED_WITHIN = CONNECTION_SILENCE

#: States of the app supervisor on this node (hakv.node.supervisor.LocalApp.state).
LOCAL_APP_STATES = ("idle", "starting", "running", "stopping", "fenced", "failed", "exited")

#: Histogram buckets, in seconds. The fsync buckets are etcd's (1 ms .. 8.192 s, so its
#: alert thresholds carry over); requests start lower (0.5 ms .. 8.192 s): a local write
#: takes about a millisecond, and the request timeout (3 s) still falls inside.
FSYNC_BUCKETS = tuple(0.001 * 2**i for i in range(14))
REQUEST_BUCKETS = tuple(0.0005 * 2**i for i in range(15))
#: Peer round trips: etcd's buckets (0.1 ms .. 3.2768 s), so its alert carries over.
RTT_BUCKETS = tuple(0.0001 * 2**i for i in range(16))

WRITE_OPS = frozenset({"put", "delete", "txn"})
READ_OPS = frozenset({"get", "range"})


# =========================================================================== ports


class MemberStats(Protocol):
    """A group member as the metrics read it (hakv.raft.member.GroupMember)."""

    def status(self) -> dict[str, Any]:
        """role, leader_address, term, commit_index, raft_applied, quorum, log_entries,
        quiesced (GroupMember.status)."""
        ...

    def counters(self) -> dict[str, int]:
        """leader_changes, proposals_committed, proposals_failed, proposals_pending: kept
        by the member since it started (GroupMember.counters)."""
        ...


class StoreStats(Protocol):
    """A group's store as the metrics read it (hakv.storage.store.GroupStore)."""

    path: Path
    """The LMDB environment's directory (``data.mdb``; the group's ``snapshot`` is beside it)."""

    def placement(self) -> ha.Placement: ...

    def space(self) -> tuple[int, int]:
        """(LMDB map size, bytes up to the last page in use), in bytes."""
        ...


class MetricsSource(Protocol):
    """The node as /metrics reads it (hakv.node.process.Node)."""

    node_id: str

    def hosted(self) -> list[str]:
        """The resource groups hosted here (the cluster ensemble is always hosted too)."""
        ...

    def member(self, group: str) -> MemberStats | None: ...

    def store(self, group: str) -> StoreStats: ...

    def last_heard(self, raft_address: str) -> float | None:
        """When a raft message from that node last arrived (``time.monotonic``)."""
        ...


class TopologySource(Protocol):
    """The current view of the cluster (hakv.node.ports.TopologyView)."""

    @property
    def topology(self) -> Topology: ...

    def group_spec(self, group: str) -> GroupSpec | None: ...


# =========================================================================== the collector


@dataclass
class _Families:
    """The metric families of one scrape, in the order they are first named."""

    gauges: dict[str, GaugeMetricFamily] = field(default_factory=dict)
    counters: dict[str, CounterMetricFamily] = field(default_factory=dict)
    order: list[Metric] = field(default_factory=list)

    def gauge(self, name: str, doc: str, labels: Iterable[str]) -> GaugeMetricFamily:
        family = self.gauges.get(name)
        if family is None:
            family = self.gauges[name] = GaugeMetricFamily(name, doc, labels=list(labels))
            self.order.append(family)
        return family

    def counter(self, name: str, doc: str, labels: Iterable[str]) -> CounterMetricFamily:
        family = self.counters.get(name)
        if family is None:
            family = self.counters[name] = CounterMetricFamily(name, doc, labels=list(labels))
            self.order.append(family)
        return family


@dataclass(frozen=True)
class _GroupRead:
    """What one scrape read of one group."""

    group: str
    status: dict[str, Any]
    counters: dict[str, int]
    space: tuple[int, int]
    data_bytes: int | None
    snapshot_bytes: int | None
    placement: ha.Placement | None  # groups with an app only
    local: dict[str, Any] | None
    ha_counts: Mapping[str, int] | None  # groups with an app only


def _version() -> str:
    try:
        return importlib.metadata.version("hakv")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class NodeCollector:
    """Builds the node's metric families at scrape time from its ports.

    ``local_app(group)`` is the supervisor's view of the group's app here
    (hakv.node.supervisor ``local_status``); ``ha_counters(group)`` the HA events of the
    group counted on this node (``failovers``: placements it made as the group's leader
    that were failovers, hakv.node.manager; ``lease_renewals_failed``, ``fence_events``:
    of the app's runner here, hakv.node.supervisor); ``forwarded()`` the entries the
    bridge got applied; ``bridge_behind()`` when (on ``clock``) each bridge link that is
    behind first found an entry to forward (hakv.node.bridge ``behind_since``);
    ``peer_messages()`` the raft messages sent and received per peer raft address
    (hakv.raft.wire ``NodeListener``); ``certificate_not_after()`` the expiry of the
    node's TLS certificate (None: no TLS); ``watches()`` the watch hub's counts
    (hakv.node.watch ``WatchHub.stats``: active, parked, forwarded). ``clock`` is the one
    ``last_heard`` uses."""

    def __init__(self, source: MetricsSource, view: TopologySource, *,
                 local_app: Callable[[str], dict[str, Any] | None] | None = None,
                 ha_counters: Callable[[str], Mapping[str, int]] | None = None,
                 forwarded: Callable[[], int] | None = None,
                 bridge_behind: Callable[[], Mapping[Any, float]] | None = None,
                 peer_messages: Callable[[], tuple[Mapping[str, int], Mapping[str, int]]]
                 | None = None,
                 certificate_not_after: Callable[[], dt.datetime | None] | None = None,
                 watches: Callable[[], Mapping[str, int]] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.source = source
        self.view = view
        self.local_app = local_app
        self.ha_counters = ha_counters
        self.forwarded = forwarded
        self.bridge_behind = bridge_behind
        self.peer_messages = peer_messages
        self.certificate_not_after = certificate_not_after
        self.watches = watches
        self.clock = clock
        self.version = _version()

    def describe(self) -> list[Metric]:
        """Nothing up front: the registry must not scrape the node when it is built."""
        return []

    def collect(self) -> Iterator[Metric]:
        source = self.source
        topology = self.view.topology
        now = self.clock()
        f = _Families()
        f.gauge("hakv_node_info", "This node: its id, cluster and hakv version (always 1).",
                ["node", "cluster", "version"]).add_metric(
                    [source.node_id, topology.cluster, self.version], 1)
        by_address = {n.raft_address: n.id for n in topology.nodes}
        # Seconds since each node's last raft message (None: never heard).
        silence: dict[str, float | None] = {}
        for spec in topology.nodes:
            if spec.id == source.node_id:
                continue
            heard = source.last_heard(spec.raft_address)
            silence[spec.id] = None if heard is None else max(0.0, now - heard)
        peers: set[str] = set()  # nodes this node shares a group with: always shown
        for gid in [*source.hosted(), CLUSTER_GROUP]:
            member = source.member(gid)
            if member is None:
                continue  # no longer hosted
            try:
                read = self._read(gid, member, source.store(gid))
            except Exception:  # a store closed meanwhile, a group removed: skip it this time
                log.debug("metrics of group %s not read", gid, exc_info=True)
                continue
            voters = self._group(f, read, topology, by_address, silence)
            peers.update(v for v in voters if v != source.node_id)
        self._peers(f, silence, peers, by_address)
        self._node(f, now)
        yield from f.order

    # -- one group -------------------------------------------------------------------------

    def _read(self, gid: str, member: MemberStats, store: StoreStats) -> _GroupRead:
        """Everything the group's metrics show, read before any is written: a group whose
        store closes meanwhile is left out of the scrape whole, never half."""
        spec = self.view.group_spec(gid)
        has_app = spec is not None and spec.app is not None
        return _GroupRead(
            group=gid, status=member.status(), counters=member.counters(),
            space=store.space(), data_bytes=_size(store.path / "data.mdb"),
            snapshot_bytes=_size(store.path.parent / "snapshot"),
            placement=store.placement() if has_app else None,
            local=self.local_app(gid) if has_app and self.local_app is not None else None,
            ha_counts=(self.ha_counters(gid) if has_app and self.ha_counters is not None
                       else None))

    def _group(self, f: _Families, read: _GroupRead, topology: Topology,
               by_address: dict[str, str], silence: dict[str, float | None]) -> tuple[str, ...]:
        gid, st, counters = read.group, read.status, read.counters
        me = self.source.node_id
        if gid == CLUSTER_GROUP:
            voters = tuple(topology.cluster_voters)
        else:
            voters = tuple(topology.group(gid).owners) if topology.has_group(gid) else ()
        role = st.get("role")
        leader_address = st.get("leader_address")
        leader = by_address.get(leader_address) if leader_address else None
        g = [gid]
        f.gauge("hakv_server_has_leader",
                "Whether this member knows a leader of its group (1) or not (0).",
                ["group"]).add_metric(g, 1 if leader_address else 0)
        f.gauge("hakv_server_is_leader", "Whether this member is its group's Raft leader.",
                ["group"]).add_metric(g, 1 if role == "leader" else 0)
        f.gauge("hakv_server_is_learner",
                "Whether this member is read-only (receives the log, never votes).",
                ["group"]).add_metric(g, 1 if role == "read-only" else 0)
        info = f.gauge("hakv_server_leader_info",
                       "The leader this member knows of its group, by node id (always 1; "
                       "no series without a leader).", ["group", "leader"])
        if leader_address:
            info.add_metric([gid, leader or leader_address], 1)
        f.counter("hakv_server_leader_changes_seen_total",
                  "Leader changes this member has seen since it started.",
                  ["group"]).add_metric(g, counters.get("leader_changes", 0))
        f.counter("hakv_server_proposals_committed_total",
                  "Proposals made on this member that committed and applied.",
                  ["group"]).add_metric(g, counters.get("proposals_committed", 0))
        f.counter("hakv_server_proposals_failed_total",
                  "Proposals made on this member that failed (no leader, leader change, "
                  "queue full, outcome unknown).",
                  ["group"]).add_metric(g, counters.get("proposals_failed", 0))
        f.gauge("hakv_server_proposals_pending",
                "Proposals made on this member not resolved yet.",
                ["group"]).add_metric(g, counters.get("proposals_pending", 0))
        term, commit, applied = (int(st.get("term") or 0), int(st.get("commit_index") or 0),
                                 int(st.get("raft_applied") or 0))
        f.gauge("hakv_raft_term", "The member's current Raft term.",
                ["group"]).add_metric(g, term)
        f.gauge("hakv_raft_commit_index", "The highest log index known committed.",
                ["group"]).add_metric(g, commit)
        f.gauge("hakv_raft_applied_index", "The highest log index applied to the store.",
                ["group"]).add_metric(g, applied)
        f.gauge("hakv_raft_apply_lag",
                "Log entries committed but not applied here yet (commit - applied index).",
                ["group"]).add_metric(g, max(0, commit - applied))
        f.gauge("hakv_raft_quiesced",
                "Whether the group is idle and its leader has stopped heartbeating it "
                "(leader only).", ["group"]).add_metric(g, 1 if st.get("quiesced") else 0)
        f.gauge("hakv_raft_log_entries", "Entries in the member's Raft log (since the last "
                "compaction).", ["group"]).add_metric(g, int(st.get("log_entries") or 0))
        f.gauge("hakv_raft_snapshot_size_bytes",
                "Size of the group's last snapshot file (0: none yet).",
                ["group"]).add_metric(g, read.snapshot_bytes or 0)
        # Quorum: the voting membership, and how many of it this node is in contact with.
        connected = sum(1 for v in voters
                        if (v == me and role != "read-only")
                        or (v != me and _within(silence.get(v), CONNECTED_WITHIN)))
        f.gauge("hakv_group_has_quorum",
                "Whether this member has a leader and a quorum behind it (as /v1/status).",
                ["group"]).add_metric(g, 1 if st.get("quorum") else 0)
        f.gauge("hakv_group_voters", "Voting members of the group (its owners).",
                ["group"]).add_metric(g, len(voters))
        f.gauge("hakv_group_quorum_size", "Voting members needed for a quorum (a majority).",
                ["group"]).add_metric(g, majority(len(voters)) if voters else 0)
        f.gauge("hakv_group_members_connected",
                "Voting members this node is in contact with, itself included when it "
                f"votes (a raft message within the last {CONNECTED_WITHIN:g} s).",
                ["group"]).add_metric(g, connected)
        # LMDB.
        map_size, used = read.space
        f.gauge("hakv_mvcc_db_total_size_in_bytes",
                "Size of the group's LMDB data file (data.mdb).",
                ["group"]).add_metric(g, read.data_bytes or 0)
        f.gauge("hakv_lmdb_map_size_bytes",
                "The LMDB map size (doubled automatically when half of it is used).",
                ["group"]).add_metric(g, map_size)
        f.gauge("hakv_lmdb_map_used_bytes", "Bytes of the LMDB map up to its last used page.",
                ["group"]).add_metric(g, used)
        if read.placement is not None:
            self._app(f, gid, read.placement, read.local, read.ha_counts)
        return voters

    def _app(self, f: _Families, gid: str, rec: ha.Placement,
             local: dict[str, Any] | None, counts: Mapping[str, int] | None) -> None:
        g = [gid]
        states = f.gauge("hakv_ha_app_state",
                         "The state of the group's placement record (1 for the current "
                         "state); the same on every owner.", ["group", "state"])
        for state in (*ha.STATES, *([] if rec.state in ha.STATES else [rec.state])):
            states.add_metric([gid, state], 1 if rec.state == state else 0)
        f.gauge("hakv_ha_app_runs_here",
                "Whether the placement record puts the app on this node, in a live state "
                "(starting, running or stopping).",
                ["group"]).add_metric(
                    g, 1 if rec.holds_lease and rec.node == self.source.node_id else 0)
        f.gauge("hakv_ha_fencing_token",
                "The fencing token of the current placement (grows by one per placement).",
                ["group"]).add_metric(g, rec.token)
        f.counter("hakv_ha_placements_total",
                  "Placements of the group's app since the group was created (the fencing "
                  "token: initial placement, failovers, moves, re-placements).",
                  ["group"]).add_metric(g, rec.token)
        f.gauge("hakv_ha_app_restarts",
                "Restarts in place of the current placement.", ["group"]).add_metric(
                    g, rec.restarts)
        if counts is not None:
            f.counter("hakv_ha_failovers_total",
                      "Failovers this node made as the group's leader: placements away from "
                      "a runner whose lease expired (lost, or not renewing) or on which the "
                      "app failed beyond its restart limit. Sum over the owners.",
                      ["group"]).add_metric(g, counts.get("failovers", 0))
            f.counter("hakv_ha_lease_renewals_failed_total",
                      "Lease renewals of the app's runner on this node that did not commit "
                      "(no quorum, timeout, or refused: the lease was lost).",
                      ["group"]).add_metric(g, counts.get("lease_renewals_failed", 0))
            f.counter("hakv_ha_fence_events_total",
                      "Times the fence keeper on this node killed the group's app because "
                      "its lease ran out (self-fencing).",
                      ["group"]).add_metric(g, counts.get("fence_events", 0))
        f.gauge("hakv_ha_maintenance", "Whether the group is in maintenance (not managed).",
                ["group"]).add_metric(g, 1 if rec.maintenance else 0)
        if local is None:
            return
        state = str(local.get("state") or "idle")
        here = f.gauge("hakv_ha_local_app_state",
                       "What this node's supervisor does for the group's app (1 for the "
                       "current state).", ["group", "state"])
        for each in (*LOCAL_APP_STATES, *([] if state in LOCAL_APP_STATES else [state])):
            here.add_metric([gid, each], 1 if each == state else 0)
        lease_left = local.get("lease_left")
        if isinstance(lease_left, int | float):
            f.gauge("hakv_ha_lease_remaining_seconds",
                    "Seconds left on the lease of the app running here.",
                    ["group"]).add_metric(g, float(lease_left))

    # -- peers and the node ----------------------------------------------------------------

    def _peers(self, f: _Families, silence: dict[str, float | None], peers: set[str],
               by_address: dict[str, str]) -> None:
        heard = f.gauge("hakv_network_peer_last_heard_seconds",
                        "Seconds since the last raft message from the peer node.", ["peer"])
        connected = f.gauge("hakv_network_peer_connected",
                            "Whether a raft message from the peer arrived within the last "
                            f"{CONNECTED_WITHIN:g} s.", ["peer"])
        shown = peers | {p for p, s in silence.items() if s is not None}
        for peer in sorted(shown):
            seconds = silence.get(peer)
            if seconds is not None:
                heard.add_metric([peer], round(seconds, 6))
            connected.add_metric([peer], 1 if _within(seconds, CONNECTED_WITHIN) else 0)
        if self.peer_messages is None:
            return
        sent_by, received_by = self.peer_messages()
        # Copies first (the raft thread adds peers meanwhile), then by node id (an address
        # no node of the topology has, such as a departed node's, as it is).
        counts: dict[str, list[int]] = {p: [0, 0] for p in shown}
        for i, by in enumerate((dict(sent_by), dict(received_by))):
            for address, n in by.items():
                peer = by_address.get(address, address)
                if peer != self.source.node_id:
                    counts.setdefault(peer, [0, 0])[i] += n
        sent = f.counter("hakv_network_peer_sent_messages_total",
                         "Raft messages this node handed to its connection to the peer "
                         "(every group, node heartbeats included).", ["peer"])
        received = f.counter("hakv_network_peer_received_messages_total",
                             "Raft messages this node received from the peer (every group, "
                             "node heartbeats included).", ["peer"])
        for peer in sorted(counts):
            sent.add_metric([peer], counts[peer][0])
            received.add_metric([peer], counts[peer][1])

    def _node(self, f: _Families, now: float) -> None:
        if self.forwarded is not None:
            f.counter("hakv_bridge_forwarded_total",
                      "Outbox entries this node's bridge got applied in another group.",
                      []).add_metric([], self.forwarded())
        if self.bridge_behind is not None:
            behind = dict(self.bridge_behind())
            f.gauge("hakv_bridge_forwarding_lag_seconds",
                    "How long this node's bridge has been behind: seconds since it first "
                    "found an outbox entry it has not got applied in the other group yet "
                    "(0: every link caught up).",
                    []).add_metric([], round(max(0.0, now - min(behind.values())), 6)
                                   if behind else 0.0)
        if self.watches is not None:
            counts = self.watches()
            watchers = f.gauge(
                "hakv_watchers",
                "Long-poll watches on this node now: served here (being read or parked "
                "until their group commits), of which parked, and forwarded to an owner.",
                ["state"])
            for state in ("active", "parked", "forwarded"):
                watchers.add_metric([state], counts.get(state, 0))
        if self.certificate_not_after is not None:
            not_after = self.certificate_not_after()
            if not_after is not None:
                f.gauge("hakv_tls_certificate_not_after_timestamp_seconds",
                        "When the node's TLS certificate expires (Unix time).",
                        []).add_metric([], not_after.timestamp())


def _within(seconds: float | None, window: float) -> bool:
    return seconds is not None and seconds < window


def _size(path: Path) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


# =========================================================================== the registry


class NodeMetrics:
    """A node's metrics: its own registry with the scrape-time collector, the process
    collectors and the latency histograms. ``render()`` is the body of ``GET /metrics``."""

    def __init__(self, source: MetricsSource, view: TopologySource, *,
                 local_app: Callable[[str], dict[str, Any] | None] | None = None,
                 ha_counters: Callable[[str], Mapping[str, int]] | None = None,
                 forwarded: Callable[[], int] | None = None,
                 bridge_behind: Callable[[], Mapping[Any, float]] | None = None,
                 peer_messages: Callable[[], tuple[Mapping[str, int], Mapping[str, int]]]
                 | None = None,
                 certificate_not_after: Callable[[], dt.datetime | None] | None = None,
                 watches: Callable[[], Mapping[str, int]] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 process: bool = True) -> None:
        self.registry = CollectorRegistry()
        self.view = view
        self.collector = NodeCollector(source, view, local_app=local_app,
                                       ha_counters=ha_counters, forwarded=forwarded,
                                       bridge_behind=bridge_behind,
                                       peer_messages=peer_messages,
                                       certificate_not_after=certificate_not_after,
                                       watches=watches, clock=clock)
        self.registry.register(self.collector)
        if process:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
        self.fsync = Histogram(
            "hakv_disk_wal_fsync_duration_seconds",
            "Time to fdatasync a group's Raft journal (before its acks and votes leave).",
            ["group"], registry=self.registry, buckets=FSYNC_BUCKETS)
        self.commits = Histogram(
            "hakv_disk_backend_commit_duration_seconds",
            "Time to commit a batch of applied entries to the group's LMDB store (its "
            "fsync included).",
            ["group"], registry=self.registry, buckets=FSYNC_BUCKETS)
        self.peer_rtt = Histogram(
            "hakv_network_peer_round_trip_time_seconds",
            "Round trips to the peer, measured on raft traffic that flows anyway: a "
            "leader's heartbeat to its ack, a node heartbeat to the peer's echo of it.",
            ["peer"], registry=self.registry, buckets=RTT_BUCKETS)
        self._rtt_by_address: dict[str, Any] = {}  # raft address -> the peer's histogram
        self.writes = Histogram(
            "hakv_server_write_duration_seconds",
            "Time from a write's start on this node (put, delete, txn of a group hosted "
            "here) to its commit and apply.",
            ["group"], registry=self.registry, buckets=REQUEST_BUCKETS)
        self.reads = Histogram(
            "hakv_server_linearizable_read_duration_seconds",
            "Time from a linearizable read's start on this node (get, range) until it may "
            "be served (ReadIndex round or barrier).",
            ["group"], registry=self.registry, buckets=REQUEST_BUCKETS)

    def fsync_observer(self, group: str) -> Callable[[float], None]:
        """The function a member calls with the seconds each journal fsync took."""
        observe: Callable[[float], None] = self.fsync.labels(group).observe
        return observe

    def commit_observer(self, group: str) -> Callable[[float], None]:
        """The function a store calls with the seconds each batch commit took."""
        observe: Callable[[float], None] = self.commits.labels(group).observe
        return observe

    def observe_peer_rtt(self, address: str, seconds: float) -> None:
        """A round trip to the peer at raft ``address`` took ``seconds`` (the raft thread
        calls it, at most once per heartbeat and peer). Labelled by the peer's node id,
        looked up once per address (an address no node has keeps itself as the label,
        looked up again next time)."""
        child = self._rtt_by_address.get(address)
        if child is None:
            peer = next((n.id for n in self.view.topology.nodes
                         if n.raft_address == address), None)
            child = self.peer_rtt.labels(peer or address)
            if peer is not None:
                self._rtt_by_address[address] = child
        child.observe(seconds)

    def observe_request(self, op: str, group: str, seconds: float) -> None:
        """A write (put, delete, txn) or linearizable read (get, range) took ``seconds``;
        other ops are not recorded."""
        if op in WRITE_OPS:
            self.writes.labels(group).observe(seconds)
        elif op in READ_OPS:
            self.reads.labels(group).observe(seconds)

    def forget(self, group: str) -> None:
        """Drop the histograms of a group no longer hosted here."""
        for histogram in (self.fsync, self.commits, self.writes, self.reads):
            try:
                histogram.remove(group)
            except KeyError:
                pass

    def render(self) -> tuple[bytes, str]:
        return render(self.registry)


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The registry in the Prometheus text format, and its Content-Type."""
    return generate_latest(registry), CONTENT_TYPE
