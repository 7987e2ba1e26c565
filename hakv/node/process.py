"""The node process: every group member of one node, its raft thread and its client API.

A node's loop, step by step (the raft thread, ``RaftHost.run``):

1. tick every group member: elections, heartbeats, proposals, messages in, entries applied
   into each group's LMDB batch;
2. fsync every journal that changed, then send the acks that waited for it (group commit);
3. commit every store batch, then resolve the requests whose results it holds (the
   client API answers them from there);
4. start the linearizable reads that arrived (a ReadIndex probe round per group led here,
   a read barrier per other group) and serve those a probe round confirmed;
5. sleep in ``poll`` until a peer message, a client request or the next tick is due;
   API requests are read and started in that poll (hakv.node.api).

Requests that may block (forwarding, HA operations, status) run on the API's worker
threads, which hand commands to the raft thread and wait for their outcome.

Data directory layout::

    DIR/node.json                      {"format", "cluster", "node", "topology_fingerprint"}
    DIR/groups/<group>/state/          LMDB store of the group (hakv.storage.store)
    DIR/groups/<group>/raft.journal    Raft log, term and vote (+ .meta)
    DIR/groups/<group>/snapshot        last snapshot (hakv.storage.machine)
    DIR/cluster/                       the same, for this node's member of the cluster ensemble
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from hakv import errors
from hakv.core import access, backup, codec, leases
from hakv.core import watch as watch_core
from hakv.core.seed import seed_transactions
from hakv.core.topology import CLUSTER_GROUP, Topology, load_topology
from hakv.failpoints import NONE as NO_FAILPOINTS
from hakv.failpoints import Failpoints
from hakv.node.api import ApiServer
from hakv.node.bridge import Bridge
from hakv.node.lessor import Lessor
from hakv.node.manager import HA_OPS, Manager, Prober
from hakv.node.metrics import NodeMetrics
from hakv.node.peer import Peers
from hakv.node.ports import Pending, SystemClock
from hakv.node.reconciler import Reconciler, startup_view
from hakv.node.snapshots import SnapshotStreams
from hakv.node.supervisor import Supervisor
from hakv.node.view import ClusterView
from hakv.node.watch import WatchHub
from hakv.raft.completion import commit_timed_out
from hakv.raft.host import RaftHost
from hakv.raft.member import GroupMember
from hakv.raft.settings import RaftSettings
from hakv.raft.tls import RaftTls
from hakv.raft.wire import NodeListener
from hakv.security.tls import TlsConfig, TlsFiles
from hakv.storage.journal import check_group_journal
from hakv.storage.machine import StoreMachine
from hakv.storage.store import GroupStore

_POLICY_TTL = 0.25  # seconds a node reuses its reading of the access records
log = logging.getLogger("hakv.node.process")

DATA_FORMAT = 1
_BARRIER = codec.encode(codec.BARRIER)


def status_home(hosted: set[str]) -> set[str]:
    """Where a node's own status record goes: the groups it owns (its sphere of
    influence), or the cluster ensemble when it owns none (then no other node keeps it)."""
    return set(hosted) if hosted else {CLUSTER_GROUP}


def read_secret(path: str | None) -> str | None:
    """The cluster secret from ``path`` (or $HAKV_SECRET_FILE); None when neither is set."""
    path = path or os.environ.get("HAKV_SECRET_FILE") or None
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            secret = f.read().strip()
        mode = os.stat(path).st_mode
    except (OSError, UnicodeDecodeError) as exc:
        raise errors.ConfigError(f"cannot read the cluster secret file {path}: {exc}") from None
    if len(secret) < 16:
        raise errors.ConfigError(
            f"the cluster secret in {path} is {len(secret)} characters; use at least 16 "
            "random characters (e.g. `head -c 32 /dev/urandom | base64 > FILE`)")
    if mode & 0o077:
        log.warning("cluster secret file %s is readable by other users; chmod 600 it", path)
    return secret


def settings_from(topology: Topology, secret: str | None = None,
                  failpoints: Failpoints = NO_FAILPOINTS) -> RaftSettings:
    t = topology.raft
    return RaftSettings(
        election_timeout_min=t.election_timeout_min,
        election_timeout_max=t.election_timeout_max,
        leader_fallback_timeout=t.leader_fallback_timeout,
        connection_retry=t.connection_retry,
        log_compaction_entries=int(os.environ.get("HAKV_LOG_COMPACTION_ENTRIES", "20000")),
        unsafe_stock_replication=failpoints.stock_replication,
        secret=secret,
    )


def prepare_data_dir(path: str, topology: Topology, node_id: str) -> None:
    """Create or check the data dir: refuse one that belongs to another node or cluster."""
    meta_path = os.path.join(path, "node.json")
    if os.path.isdir(path) and os.listdir(path) and not os.path.exists(meta_path):
        raise errors.DataDirError(
            f"{path} is not empty and has no node.json: not a hakv data dir. "
            "Point --data-dir at an empty or hakv-owned directory."
        )
    if os.path.exists(meta_path):
        try:
            with open(meta_path, encoding="utf-8") as f:
                meta = json.load(f)
            if not isinstance(meta, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            raise errors.DataDirError(
                f"{meta_path} is unreadable or corrupt ({exc}); restore it or move the "
                "data dir away to resync the node from its peers"
            ) from None
        if meta.get("format") != DATA_FORMAT:
            raise errors.DataDirError(
                f"{path} has data format {meta.get('format')!r}; this hakv reads {DATA_FORMAT}"
            )
        if meta.get("cluster") != topology.cluster:
            raise errors.DataDirError(
                f"{path} belongs to cluster {meta.get('cluster')!r}, not {topology.cluster!r}: "
                "wrong --data-dir or wrong --topology?"
            )
        if meta.get("node") != node_id:
            raise errors.DataDirError(
                f"{path} belongs to node {meta.get('node')!r}, not {node_id!r}: "
                "wrong --data-dir or wrong --node?"
            )
        if meta.get("topology_fingerprint") != topology.fingerprint():
            log.warning("topology changed since this data dir was last used")
    os.makedirs(os.path.join(path, "groups"), exist_ok=True)
    meta = {
        "format": DATA_FORMAT,
        "cluster": topology.cluster,
        "node": node_id,
        "topology_fingerprint": topology.fingerprint(),
    }
    tmp = meta_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(meta, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, meta_path)


class Node:
    """One hakv node: members for its groups, a raft thread, an API server.

    The composition root: it builds the components and hands each the ports it uses
    (hakv.node.ports), never itself. It is the ``GroupHost`` (with ``MemberControl`` and
    ``RaftContact``) and the API's ``Service``; ``view`` is the ``TopologyView``, ``peers``
    the ``PeerApi``, ``clock`` the ``Clock``."""

    def __init__(
        self, topology: Topology, node_id: str, data_dir: str, request_timeout: float = 3.0,
        secret: str | None = None, failpoints: Failpoints = NO_FAILPOINTS,
        tls: TlsConfig | None = None,
    ) -> None:
        self.seed_topology = topology  # the file: seeds the cluster records, once
        topology = startup_view(topology, node_id, data_dir)  # + runtime changes
        self.view = ClusterView(self.seed_topology, topology)
        self.clock = SystemClock()
        self.spec = topology.node(node_id)
        self.node_id = node_id
        self.data_dir = data_dir
        self.request_timeout = request_timeout
        self.started_at = time.time()
        self._stopping = threading.Event()
        self.failpoints = failpoints  # tests only (hakv.failpoints); logged by run_node
        self.unsafe_local_reads = failpoints.local_reads
        prepare_data_dir(data_dir, topology, node_id)
        self.settings = settings_from(topology, secret, failpoints)
        self.tls = tls
        self._tls_marks: tuple[tuple[int, int, int], ...] | None = (
            None if tls is None else _file_marks(tls.files))
        peer_tls = None if tls is None else tls.client  # HTTPS to the other nodes' APIs
        raft_tls = None if tls is None else RaftTls(tls.server, tls.client,
                                                      node_at=self._node_at,
                                                      admits=self._admits)
        self.host = RaftHost(self.spec.host, self.spec.raft_port, _BARRIER, secret,
                             tls=raft_tls)
        # GET /metrics (hakv.node.metrics): this node's own registry, read at scrape time
        # through the MetricsSource port (this Node), plus the latency histograms.
        self.metrics = NodeMetrics(
            self, self.view,
            local_app=lambda group: self.supervisor.local_status(group),
            ha_counters=lambda group: {**self.supervisor.counters(group),
                                       "failovers": self.manager.failovers.get(group, 0)},
            forwarded=lambda: self.bridge.forwarded,
            bridge_behind=lambda: self.bridge.behind_since,
            peer_messages=lambda: (self.host.listener.sent, self.host.listener.received),
            certificate_not_after=lambda: None if self.tls is None else self.tls.not_after,
            watches=lambda: self.watches.stats())
        self.host.on_rtt = self.metrics.observe_peer_rtt  # peer round trips (raft thread)
        # The bridge first: a member's store pokes it when its outbox grows.
        self.bridge = Bridge(node_id, self, self.view, self.spec.capacity)
        # The watch hub too: a member's store wakes it when it commits events.
        retention, compact_interval = watch_core.retention_from(
            os.environ.get(watch_core.RETENTION_ENV))
        self._watch_peers = Peers(timeout=request_timeout + 2.0, tls=peer_tls)
        self.watches = WatchHub(self.view, self._watch_peers,
                                self.host.post, hosts=self.hosts, store=self.store,
                                barrier=self.barrier, hosted=lambda: list(self.machines),
                                retention=retention, compact_interval=compact_interval,
                                skip_every=failpoints.watch_skip_every)
        self.machines: dict[str, StoreMachine] = {}
        self.members: dict[str, GroupMember] = {}  # the resource groups this node owns
        for group in topology.groups_of(node_id):
            directory = os.path.join(data_dir, "groups", group.id)
            peers = [topology.node(o).raft_address for o in group.owners if o != node_id]
            self.members[group.id] = self._add_member(group.id, directory,
                                                      self.spec.raft_address, peers)
        # The cluster ensemble: a voter here if listed in cluster_voters, else read-only.
        voters = topology.cluster_voters
        self.cluster_voter = node_id in voters
        self.cluster_member = self._add_member(
            CLUSTER_GROUP, os.path.join(data_dir, "cluster"),
            self.spec.raft_address if self.cluster_voter else None,
            [topology.node(v).raft_address for v in voters if v != node_id])
        # The components, each with the ports it uses (hakv.node.ports).
        self.peers = Peers(timeout=request_timeout + 2.0, tls=peer_tls)  # other nodes' APIs
        self.supervisor = Supervisor(  # runs the apps placed here (hakv.node.supervisor)
            node_id, self, self.view, self.clock, data_dir, self.spec.api_address,
            no_fence=failpoints.no_fence, ca_file=None if tls is None else str(tls.files.ca))
        self.manager = Manager(  # places the apps of the groups led here (hakv.node.manager)
            node_id, self, self.view, self.clock,
            Prober(self, self.view, self.peers, self.clock), self.peers,
            allocator=self.bridge, apps=self.supervisor)
        self.lessor = Lessor(  # lease timers of groups led here
            self, self.clock, checkpoints=not failpoints.lease_no_checkpoint)
        self.reconciler = Reconciler(self.spec, self, self.view, self.clock,
                                     self.own_status, self.started_at)
        self.snapshots = SnapshotStreams(node_id)  # online snapshots, page by page
        self.api = ApiServer((self.spec.host, self.spec.api_port), node_id, self, self.view,
                             self.peers, allocator=self.bridge,
                             tls=None if tls is None else tls.api_server)
        self.api.watches = self.watches  # /v1/watch (hakv.node.watch)
        self._policy: tuple[float, int, access.Policy] | None = None
        self.api.policy = self.access_policy  # who may do what (hakv.core.access)
        self.api.metrics = self.metrics  # GET /metrics; request latencies
        self.api.unsafe_access_forwarded = failpoints.access_forwarded

    @property
    def topology(self) -> Topology:
        """The current view: the file plus the runtime changes (``view``)."""
        return self.view.topology

    def _add_member(self, group: str, directory: str, self_address: str | None,
                    peers: list[str]) -> GroupMember:
        os.makedirs(directory, exist_ok=True)
        # pysyncobj would trip over a damaged log, or forget a damaged term and vote.
        check_group_journal(directory, group)
        machine = StoreMachine(group, directory)

        def factory(listener: NodeListener, poller: Any) -> GroupMember:
            member = GroupMember(group, self_address, peers, machine, directory, listener,
                                 poller, self.settings)
            member.on_fsync = self.metrics.fsync_observer(group)
            return member

        machine.store.on_outbox = self.bridge.poke
        machine.store.on_commit = self.metrics.commit_observer(group)
        machine.store.on_history = functools.partial(self.watches.on_commit, group)
        self.machines[group] = machine
        return self.host.add_member(factory)

    # ------------------------------------------------------------------ GroupHost

    def hosted(self) -> list[str]:
        return sorted(self.members)

    def store(self, group: str) -> GroupStore:
        machine = self.machines.get(group)
        if machine is None:
            raise errors.UnknownGroupError(f"node {self.node_id} does not own group {group}")
        return machine.store

    def barrier(self, group: str) -> None:
        self.linearizable_barrier(self.member_of(group))

    def hand_over_leadership(self, group: str, address: str, within: float) -> None:
        member = self.member(group)
        if member is not None:
            self.host.call_in_loop(functools.partial(member.hand_over_leadership, address,
                                                     within))

    def wake(self) -> None:
        self.host.wake()

    def last_heard(self, raft_address: str) -> float | None:
        return self.host.last_heard.get(raft_address)

    # ------------------------------------------------------------------ MemberControl
    # Runtime membership (hakv.node.reconciler calls these).

    def raft_member(self, group: str) -> GroupMember | None:
        return self.member(group)

    def is_voter(self, group: str) -> bool:
        member = self.member(group)
        return member is not None and member.selfNode is not None

    def membership(self, group: str) -> dict[str, Any]:
        info: dict[str, Any] = self.host.call_in_loop(self.member_of(group).membership)
        return info

    def hold_elections(self, group: str) -> None:
        self.host.call_in_loop(self.member_of(group).hold_elections_until_leader)

    def host_group(self, group: str, peers: list[str], voter: bool) -> GroupMember:
        """Start a member of ``group`` now: a voter, or a read-only one (a new owner
        catching up: it receives the log but neither votes nor counts for quorum)."""
        member = self._add_member(group, os.path.join(self.data_dir, "groups", group),
                                  self.spec.raft_address if voter else None, peers)
        self.members[group] = member
        self.host.wake()
        return member

    def unhost_group(self, group: str, delete_data: bool = False) -> None:
        """Stop ``group``'s member (destroyed in the raft thread) and close its store
        (and delete the group's data dir)."""
        self.members.pop(group, None)
        self.host.remove_member(group)
        machine = self.machines.pop(group, None)
        if machine is not None:
            machine.close()
        self.metrics.forget(group)
        if delete_data:
            shutil.rmtree(os.path.join(self.data_dir, "groups", group), ignore_errors=True)

    def access_policy(self) -> access.Policy:
        """The users and roles of this node's copy of the cluster records (hakv.core.access),
        read again when the copy changed, at most every ``_POLICY_TTL`` s: a grant or a
        revocation takes effect on every node within that plus the replication lag."""
        now = time.monotonic()
        cached = self._policy
        if cached is not None and now - cached[0] < _POLICY_TTL:
            return cached[2]
        machine = self.machines.get(CLUSTER_GROUP)
        if machine is None:
            return access.Policy()
        store = machine.store
        index = store.applied_index()
        if cached is not None and cached[1] == index:
            self._policy = (now, index, cached[2])
            return cached[2]
        kvs, _ = store.range(access.PREFIX, 100_000)
        policy = access.Policy.from_records((kv["key"], kv["value"]) for kv in kvs)
        self._policy = (now, index, policy)
        return policy

    def _app_summary(self, gid: str, store: GroupStore) -> dict[str, Any] | None:
        """Where the group's app runs as this member's copy of the placement record says
        (for ``hakv status``; the leader's copy is the one shown), None without an app."""
        spec = self.view.group_spec(gid)
        if spec is None or spec.app is None:
            return None
        placement = store.placement()
        return {"node": placement.node, "state": placement.state, "token": placement.token,
                "maintenance": placement.maintenance}

    def tls_files_changed(self) -> bool:
        """Whether the certificate, key or CA bundle file changed (size, mtime or inode)
        since the material in use was read; the run loop checks every
        ``HAKV_TLS_RELOAD_CHECK`` seconds (default 10) and reloads then, as on SIGHUP."""
        if self.tls is None:
            return False
        now = _file_marks(self.tls.files)
        if self._tls_marks is None:
            self._tls_marks = now
        return now != self._tls_marks

    def reload_tls(self) -> bool:
        """Read the certificate, key and CA bundle again (SIGHUP): new connections on both
        ports, and to peers, use them; open ones keep theirs. Bad new material is logged
        and the old stays in use. Whether the new material was taken."""
        old = self.tls
        if old is None:
            log.warning("SIGHUP: this node runs --insecure; there is no TLS material to reload")
            return False
        self._tls_marks = _file_marks(old.files)  # a bad file is reported once, not again
        try:
            new = TlsConfig(old.files, now=dt.datetime.now(dt.UTC))
            if (new.kind, new.identity) != ("node", self.node_id):
                raise errors.CertificateError(
                    f"{old.files.cert} is now the certificate of {new.kind} {new.identity}")
        except errors.HakvError as exc:
            log.error("SIGHUP: TLS material not reloaded, keeping the old: %s", exc.message)
            return False
        self.tls = new
        raft_tls = self.host.listener.tls
        if raft_tls is not None:
            raft_tls.server, raft_tls.client = new.server, new.client
        self.api.tls = new.api_server
        self.peers.tls = self._watch_peers.tls = new.client
        log.info("SIGHUP: reloaded TLS material: certificate %s valid until %s",
                 new.files.cert, new.not_after.isoformat())
        return True

    def _node_at(self, raft_address: str) -> str | None:
        """The node the current topology puts at a raft address (hakv.raft.tls)."""
        for spec in self.view.topology.nodes:
            if spec.raft_address == raft_address:
                return spec.id
        return None

    def _admits(self, group: str, node_id: str) -> bool:
        """Whether ``node_id`` may carry raft traffic for ``group`` to this node: every node
        of the cluster for the cluster ensemble (its read-only followers included), a
        group's owners (joining ones too: they are owners in the records) for a group."""
        topology = self.view.topology
        if group == CLUSTER_GROUP:
            return topology.has_node(node_id)
        return topology.has_group(group) and node_id in topology.group(group).owners

    def start(self) -> None:
        if self.tls is not None:
            log.info("the raft and API ports use TLS as %s %s (certificate %s, valid "
                     "until %s)", self.tls.kind, self.tls.identity, self.tls.files.cert,
                     self.tls.not_after.isoformat())
        else:
            log.warning("INSECURE: started with --insecure: the raft and API ports take "
                        "plain TCP, without TLS; anyone who reaches them can read and "
                        "change every group. Use only on a network you trust "
                        "(docs/security.md)")
            if self.settings.secret is None:
                log.warning("no cluster secret either (--secret-file / HAKV_SECRET_FILE): "
                            "whoever reaches the raft port can make this node unpickle "
                            "what they send (run code)")
        self.host.timers.append(self.api.expire)
        self.api.attach(self.host.poller, self.host.post)  # before the raft thread runs
        self.host.start()
        self._publisher = threading.Thread(target=self._publish_status, name="status",
                                           daemon=True)
        self._publisher.start()
        if self.cluster_voter:
            threading.Thread(target=self._seed_cluster_records, name="seed",
                             daemon=True).start()
        # Always running: a node may become shared at runtime (docs/membership.md); with
        # fewer than two groups a round finds no link and costs nothing.
        threading.Thread(target=self.bridge.run, args=(self._stopping,), name="bridge",
                         daemon=True).start()
        threading.Thread(target=self.reconciler.run, args=(self._stopping,),
                         name="membership", daemon=True).start()
        self.supervisor.start()
        self.watches.start()
        self.manager.start()
        self.lessor.start()
        log.info(
            "node %s up: raft %s, api %s, groups %s",
            self.node_id,
            self.spec.raft_address,
            self.spec.api_address,
            sorted(self.members),
        )

    def own_status(self) -> dict[str, Any]:
        return {"state": "up", "since": self.started_at, "capacity": self.spec.capacity,
                "load": 0, "groups": sorted(self.members)}

    def _seed_cluster_records(self) -> None:
        """Write the topology's cluster-level records into the cluster ensemble, once.

        Only the voter that leads the cluster ensemble proposes; the others wait until
        their copy shows each chunk's marker. When all three voters proposed every chunk,
        the transactions' guards kept the records right, but each proposal was still an
        entry replicated to all N nodes: three times the seeding cost. The leader
        proposes every chunk not yet applied at once, so Raft carries them in a few
        rounds rather than one round (to every node) per chunk."""
        store = self.machines[CLUSTER_GROUP].store
        client = f"seed-{self.seed_topology.fingerprint()[:16]}"
        chunks = [(body["compare"][0]["key"],
                   codec.encode(codec.write_command("txn", body, client, n + 1)))
                  for n, body in enumerate(seed_transactions(self.seed_topology))]
        while chunks and not self._stopping.is_set():
            chunks = [(marker, payload) for marker, payload in chunks
                      if store.get_at(marker)[0] is None]  # not applied here yet
            if not chunks:
                return
            if not self.cluster_member.leads():
                self._stopping.wait(0.25)
                continue
            pending = [self.cluster_member.submit(payload) for _, payload in chunks]
            self.host.wake()
            for done in pending:
                try:
                    done.wait(self.request_timeout)
                except errors.HakvError:
                    self._stopping.wait(0.5)  # no quorum, or outcome unknown: look again
                    break

    def _publish_status(self) -> None:
        """Put this node's status into every group it owns, so that exactly its sphere of
        influence (the owners of those groups) stores it (DESIGN.md point 2, I1).

        Not into the cluster ensemble (see ``status_home``): it records failures and
        reintegrations (hakv.node.manager), which are cluster-level events; a start-up record
        per node there cost N entries replicated to all N nodes (the patent's N^2), and
        every node re-read the cluster records after each of them."""
        pending = status_home(set(self.members))
        while pending and not self._stopping.is_set():
            status = self.own_status()
            for gid in sorted(pending):
                payload = codec.encode(codec.node_status_command(self.node_id, status,
                                                                 self.started_at))
                try:
                    self.member_of(gid).submit(payload).wait(self.request_timeout)
                except errors.HakvError:
                    continue  # no quorum yet: try again
                pending.discard(gid)
            self._stopping.wait(0.5)

    def stop(self) -> None:
        self._stopping.set()
        self.manager.stop()
        self.lessor.stop()
        self.watches.close()
        self.snapshots.close()
        self.supervisor.shutdown()  # stops the apps here, and says so (docs/ha.md)
        try:
            self.host.call_in_loop(self.api.close)
        except errors.HakvError:
            self.api.close()  # the raft thread did not answer: close it from here
        self.host.stop()
        for machine in self.machines.values():
            machine.close()

    # ------------------------------------------------------------------ serving

    def member(self, group: str) -> GroupMember | None:
        """The local member of ``group`` (every node has one of the cluster ensemble)."""
        if group == CLUSTER_GROUP:
            return self.cluster_member
        return self.members.get(group)

    def member_of(self, group: str) -> GroupMember:
        member = self.member(group)
        if member is None:
            raise errors.UnknownGroupError(f"node {self.node_id} does not own group {group}")
        return member

    def hosts(self, group: str) -> bool:
        return self.member(group) is not None

    def serve(self, op: str, group: str, body: dict[str, Any]) -> dict[str, Any]:
        """Serve a request for a group hosted here, blocking until its answer (any thread
        but the raft thread, which uses ``begin``)."""
        if op in HA_OPS:
            return self.manager.serve(op, group, body)
        if op in leases.READ_OPS:
            return self.lessor.serve(op, group, body)
        member = self.member_of(group)
        if op == "snapshot":
            return self._snapshot(group, member, body)
        if op == "restore":
            return self._restore(group, member, body)
        if op == "changes":
            store = self.machines[group].store
            if not body.get("serializable"):
                self.linearizable_barrier(member)
            return {"outbox": store.outbox(), "inbox": store.inbox()}
        started = self.begin(op, group, body)
        if isinstance(started, dict):
            return started
        try:
            started.completion.wait(self.request_timeout)
        except errors.OutcomeUnknownError:
            raise started.timed_out() from None
        return started.finish()

    def begin(self, op: str, group: str, body: dict[str, Any],
              on_done: Callable[[], None] | None = None) -> dict[str, Any] | Pending:
        """Start a get, range, put, delete or txn (or notify) on the local member of
        ``group`` without blocking: the answer itself, or a ``Pending`` whose completion
        (``on_done`` runs in the raft thread when it resolves) leads to the answer."""
        member = self.member_of(group)
        store = self.machines[group].store
        if op in ("get", "range"):
            request = codec.read_request(op, body)

            def read() -> dict[str, Any]:
                if op == "get":
                    kv, revision = store.get_at(request["key"])
                    if kv is None:
                        raise errors.NotFoundError(
                            f"key {request['key']!r} not found in group {group}",
                            group=group,
                            key=request["key"],
                        )
                    return {"kv": kv, "revision": revision}
                kvs, more, revision = store.range_at(request["prefix"], request["limit"])
                return {"kvs": kvs, "more": more, "revision": revision}

            if request.get("serializable") or self.unsafe_local_reads:
                return read()
            barrier = member.read_barrier(on_done)
            self.host.wake()

            def after_barrier() -> dict[str, Any]:
                barrier.outcome()  # raises the barrier's error, if any
                return read()

            return Pending(barrier, after_barrier, lambda: self._read_timed_out(group),
                           time.monotonic() + self.request_timeout)
        client, seq = codec.client_and_seq(body)
        if client is None or seq is None:
            # No retry protection asked for (e.g. curl); its session is evicted first.
            client, seq = "anon-" + uuid.uuid4().hex, 1
        payload = codec.encode(codec.write_command(op, body, client, seq))
        done = member.submit(payload, on_done)
        return Pending(done, lambda: _write_answer(done.outcome()),
                       lambda: commit_timed_out(self.request_timeout),
                       time.monotonic() + self.request_timeout)

    def _snapshot(self, group: str, member: GroupMember, body: dict[str, Any]
                  ) -> dict[str, Any]:
        """A page of an online snapshot (hakv.node.snapshots). Without a ``cursor``: start
        one — every key of ``group`` from one read transaction here, after a read barrier
        (unless ``serializable``), so it holds every write acknowledged before the
        request — and answer its header and first page; with one: the next page."""
        cursor = body.get("cursor")
        if cursor is not None:
            if not isinstance(cursor, str) or not cursor:
                raise errors.BadRequestError('field "cursor": expected the string a page '
                                             "of this snapshot answered")
            return self.snapshots.next(cursor, self.request_timeout)
        if not body.get("serializable"):
            self.linearizable_barrier(member)
        owners = (self.topology.cluster_voters if group == CLUSTER_GROUP
                  else self.topology.group(group).owners)
        header = {"group": group, "source": self.node_id, "owners": list(owners),
                  "created_at": time.time()}
        return self.snapshots.start(self.machines[group].store.backup_pages, header,
                                    self.request_timeout)

    def _restore(self, group: str, member: GroupMember, body: dict[str, Any]
                 ) -> dict[str, Any]:
        """One step of an online restore (hakv.core.backup), through the group's log."""
        if group == CLUSTER_GROUP:
            raise errors.BadRequestError(
                "the cluster ensemble is not restored from a snapshot: its records come "
                "from the topology file and `hakv cluster`/`hakv group` commands")
        done = member.submit(codec.encode(backup.restore_command(body)))
        self.host.wake()
        return _write_answer(done.wait(self.request_timeout))

    def _read_timed_out(self, group: str) -> errors.HakvError:
        return errors.NoQuorumError(
            f"group {group} could not confirm a linearizable read within "
            f"{self.request_timeout:.1f}s (no quorum?); retry, or read with serializable",
            group=group,
        )

    def linearizable_barrier(self, member: GroupMember) -> None:
        """Return once everything committed before this call is applied here."""
        done = member.read_barrier()
        self.host.wake()
        try:
            done.wait(self.request_timeout)
        except errors.OutcomeUnknownError:
            raise self._read_timed_out(member.group) from None

    def health(self) -> dict[str, Any]:
        poller = self.host.poller
        return {"ok": True, "node": self.node_id, "cluster": self.topology.cluster,
                # the raft thread's wake-ups since start: an idle node's stay few
                "loop": {"wakeups": poller.polls, "events": poller.events,
                         "descriptors": poller.registered(), "dropped": poller.dropped}}

    def status(self) -> dict[str, Any]:
        address_to_node = {n.raft_address: n.id for n in self.topology.nodes}
        groups = {}
        for gid, member in [*self.members.items(), (CLUSTER_GROUP, self.cluster_member)]:
            st = member.status()
            leader_addr = st.pop("leader_address")
            store = self.machines[gid].store
            owners = (self.topology.cluster_voters if gid == CLUSTER_GROUP
                      else self.topology.group(gid).owners)
            groups[gid] = {
                "owners": list(owners),
                "leader": address_to_node.get(leader_addr) if leader_addr else None,
                "applied_index": store.applied_index(),
                "revision": store.revision(),
                **st,
            }
            if gid != CLUSTER_GROUP:
                groups[gid]["app"] = self._app_summary(gid, store)
        statuses: dict[str, Any] = {}
        for gid in self.members:
            statuses.update(self.machines[gid].store.node_statuses())
        return {"node": self.node_id, "cluster": self.topology.cluster, "groups": groups,
                "sphere_of_influence": sorted(self.topology.sphere_of_influence(self.node_id)),
                "node_status": statuses}


def _write_answer(result: Any) -> dict[str, Any]:
    if isinstance(result, dict) and "error" in result:
        raise errors.from_wire(result)
    if not isinstance(result, dict):
        raise errors.OutcomeUnknownError(
            "the write was applied by an earlier attempt; retry with the same client/seq"
        )
    return result


def _file_marks(files: TlsFiles) -> tuple[tuple[int, int, int], ...]:
    """(size, mtime ns, inode) of each TLS file; zeros for one that is missing."""
    marks = []
    for path in (files.ca, files.cert, files.key):
        try:
            st = os.stat(path)
            marks.append((st.st_size, st.st_mtime_ns, st.st_ino))
        except OSError:
            marks.append((0, 0, 0))
    return tuple(marks)


def node_tls(certs_dir: str | None, node_id: str, insecure: bool) -> TlsConfig | None:
    """The node's TLS material from ``certs_dir``, None with ``insecure``; a node without
    either refuses to start (secure by default, docs/security.md)."""
    if certs_dir and insecure:
        raise errors.ConfigError("give either --certs-dir or --insecure, not both")
    if insecure:
        return None  # Node.start says so, loudly
    if not certs_dir:
        raise errors.ConfigError(
            "no TLS material: start the node with --certs-dir DIR (env HAKV_CERTS_DIR) "
            "holding ca.crt and node.<id>.crt/.key (make them with `hakv certs init-ca` and "
            f"`hakv certs node {node_id} --host ...`), or with --insecure to run without "
            "TLS on a network you trust")
    files = TlsFiles.node(certs_dir, node_id)
    config = TlsConfig(files, now=dt.datetime.now(dt.UTC))
    if (config.kind, config.identity) != ("node", node_id):
        raise errors.CertificateError(
            f"{files.cert} is the certificate of {config.kind} {config.identity}, not of node "
            f"{node_id}: issue one with `hakv certs node {node_id} --host ...`",
            cert=str(files.cert))
    return config


def run_node(topology_path: str, node_id: str, data_dir: str,
             secret_file: str | None = None, *, certs_dir: str | None = None,
             insecure: bool = False) -> int:
    """Run a node until SIGTERM/SIGINT. Raises HakvError on a bad topology or data dir,
    on missing or bad TLS material, and when neither ``certs_dir`` nor ``insecure``."""
    logging.basicConfig(
        level=os.environ.get("HAKV_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # The raft thread and the other threads (API workers, manager, bridge) hand work to
    # each other; the default 5 ms GIL switch interval would add up to 5 ms to each.
    sys.setswitchinterval(0.0005)
    failpoints = Failpoints.from_environ(os.environ)  # read once; refused unless a test
    failpoints.warn(log)
    topology = load_topology(topology_path)
    tls = node_tls(certs_dir, node_id, insecure)
    node = Node(topology, node_id, data_dir, secret=read_secret(secret_file),
                failpoints=failpoints, tls=tls)
    stopping = threading.Event()
    reload = threading.Event()

    def _on_signal(signum: int, _frame: Any) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGHUP, lambda _s, _f: reload.set())
    node.start()
    check_every = float(os.environ.get("HAKV_TLS_RELOAD_CHECK", "10"))
    next_check = time.monotonic() + check_every
    while not stopping.wait(0.5):
        if time.monotonic() >= next_check:
            next_check = time.monotonic() + check_every
            if node.tls_files_changed():
                log.info("TLS files changed on disk: reloading them")
                reload.set()
        if reload.is_set():
            reload.clear()
            node.reload_tls()
    log.info("node %s stopping", node_id)
    node.stop()
    return 0
