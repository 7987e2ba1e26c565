"""The node's side of runtime membership (docs/membership.md): the start-up view and the
Reconciler thread."""

from __future__ import annotations

import itertools
import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from hakv.core import codec
from hakv.core.membership import (
    GROUPS,
    JOINS,
    LOCAL_RANGE_LIMIT,
    MEMBERS,
    PREFIXES,
    Records,
    Step,
    _json,
    build_view,
    plan_membership,
)
from hakv.core.topology import (
    CLUSTER_GROUP,
    NodeSpec,
    Topology,
)
from hakv.errors import ConfigError, HakvError, TopologyError
from hakv.node.ports import AdoptableView, Clock, Completion, MemberControl, RaftMember

log = logging.getLogger("hakv.core.membership")

INTERVAL = 0.5  # seconds between two passes of a node's reconciler
STEP_WAIT = 3.0  # seconds a leader waits for one membership step before the next pass
HANDOVER_WITHIN = 2.0  # seconds a leaving leader pauses proposals to hand leadership over

# =========================================================================== I/O: start-up


def _local_records(data_dir: str) -> Records | None:
    """This node's own copy of the cluster records (a previous run), read-only."""
    state = Path(data_dir) / "cluster" / "state"
    if not (state / "data.mdb").is_file():
        return None
    from hakv.storage.store import GroupStore

    try:
        store = GroupStore(state, CLUSTER_GROUP)
    except HakvError as exc:
        log.warning("cannot read this node's copy of the cluster records: %s", exc.message)
        return None
    try:
        items = []
        for prefix in PREFIXES:
            kvs, _more, _rev = store.range_at(prefix, LOCAL_RANGE_LIMIT)
            items += [(kv["key"], kv["value"], kv["mod_revision"]) for kv in kvs]
    finally:
        store.close()
    records = Records.from_items(items)
    return records if records.seeded else None


def _remote_records(endpoints: Sequence[str], timeout: float) -> Records:
    from hakv.client.admin import read_records
    from hakv.client.client import Client

    with Client(list(endpoints), timeout=timeout) as client:
        return read_records(client)


def startup_view(file_topology: Topology, node_id: str, data_dir: str,
                 seeds: Sequence[str] | None = None, timeout: float = 15.0) -> Topology:
    """The topology a node starts with: the file plus the runtime changes.

    The records come from the node's own copy of the cluster ensemble (data dir) when it
    has one; a node that is not in the file and has none (it was added with ``hakv cluster
    add-node``) asks the running cluster: ``seeds`` or else the nodes of the file. Groups
    get their recorded Raft voters as owners: the members to restart; the reconciler
    takes the node from there to the desired owners.
    """
    records = _local_records(data_dir)
    if records is None and not file_topology.has_node(node_id):
        endpoints = list(seeds or [n.api_address for n in file_topology.nodes])
        try:
            records = _remote_records(endpoints, timeout)
        except HakvError as exc:
            raise ConfigError(
                f"node {node_id} is not in the topology file, so it must look itself up in "
                f"the cluster records, but the cluster did not answer ({exc.message})"
            ) from None
    if records is None or not records.seeded:
        return file_topology
    if node_id not in records.nodes and node_id not in file_topology.cluster_voters:
        raise ConfigError(
            f"node {node_id} is not a node of cluster {file_topology.cluster!r}: add it "
            f"with `hakv cluster add-node {node_id} --host ... --raft-port ... "
            "--api-port ...` first (or it was removed with hakv cluster remove-node)")
    try:
        return build_view(file_topology, records, actual=True)
    except TopologyError as exc:
        raise ConfigError(f"the cluster records do not form a valid topology: {exc.message}"
                          ) from None


# =========================================================================== I/O: reconciler


@dataclass
class _Join:
    """A new owner catching up: read-only first, then a voter waiting to be added."""

    peers: tuple[str, ...]
    stage: Literal["readonly", "voter"] = "readonly"
    status: Completion | None = None
    announced: float = 0.0  # when the joins/ record was last written


@dataclass
class _Pending:
    """A membership step proposed by this node as the group's leader."""

    step: Step
    term: int
    done: Completion


class Reconciler:
    """Converges one node's members to the cluster records (module docstring).

    Runs in its own thread (``run``), one pass every ``INTERVAL`` seconds; every Raft
    configuration change it makes on a group's leader is a single step awaited before
    the next one.
    """

    def __init__(self, spec: NodeSpec, groups: MemberControl, view: AdoptableView,
                 clock: Clock, own_status: Callable[[], dict[str, Any]], started_at: float,
                 interval: float = INTERVAL) -> None:
        self.spec = spec  # this node (kept in the view even if the records lack it)
        self.me = spec.id
        self.groups = groups
        self.view = view
        self.clock = clock
        self.own_status = own_status  # this node's status record, and since when
        self.started_at = started_at
        self.interval = interval
        self._client = f"membership-{spec.id}-{uuid.uuid4().hex[:12]}"
        self._seq = itertools.count(1)
        self._joins: dict[str, _Join] = {}
        self._pending: dict[str, _Pending] = {}
        self._publish: dict[str, Completion | None] = {}
        self._warned: str | None = None
        self._cache: tuple[int, Records, Topology | None] | None = None
        self._hosted: list[str] = []
        self._marks_seen = -1  # cluster revision at which this node's own mark was read
        self.passes = 0

    # ---------------------------------------------------------------- loop

    def run(self, stopping: threading.Event) -> None:
        while not stopping.wait(self.interval):
            try:
                self.reconcile_once(stopping)
            except HakvError as exc:
                log.info("membership on %s: %s", self.me, exc.message)
            except Exception:
                if stopping.is_set():
                    return
                log.exception("membership pass on %s failed", self.me)

    def reconcile_once(self, stopping: threading.Event | None = None) -> None:
        groups = self.groups
        revision = groups.store(CLUSTER_GROUP).revision()
        if self._cache is not None and self._cache[0] == revision:
            _, records, maybe_view = self._cache  # nothing changed: skip the parsing
        else:
            records = self._read_local()
            try:
                maybe_view = build_view(self.view.topology, records, keep=[self.spec])
                self._warned = None
            except TopologyError as exc:
                maybe_view = None
                if self._warned != exc.message:
                    log.error("cluster records do not form a valid topology; membership "
                              "waits for a fix: %s", exc.message)
                    self._warned = exc.message
            self._cache = (revision, records, maybe_view)
        if not records.seeded or maybe_view is None:
            return
        view = maybe_view
        me = self.me
        if me not in records.nodes and me not in view.cluster_voters:
            log.warning("node %s has been removed from the cluster; stop it", me)
        # 1. stop what this node must no longer host (before the view drops the group)
        for gid in groups.hosted():
            if self._must_stop(gid, view, records):
                self._stop_group(gid)
        # 2. adopt the records' nodes and groups
        if view != self.view.topology:
            self.view.adopt(view)
        # 3. start members for the groups that list this node
        for group in view.groups_of(me):
            if groups.member(group.id) is None and not (stopping and stopping.is_set()):
                self._start_group(group.id, view, records)
        # 4. new owners catching up; status records into newly hosted groups
        for gid in sorted(self._joins):
            if groups.member(gid) is not None:
                self._progress_join(gid, view, records)
            else:
                self._joins.pop(gid, None)
        hosted = groups.hosted()
        if hosted != self._hosted:  # the node's status lists its groups
            self._hosted = hosted
            if not hosted:  # no sphere of influence: the cluster ensemble keeps it
                self._publish[CLUSTER_GROUP] = None
        if revision != self._marks_seen:
            # The cluster ensemble records failures and reintegrations, not start-ups
            # (docs/replication.md). A node marked down there that is up again says so
            # itself: the group leader that would record it may be this very node.
            self._marks_seen = revision
            mark = groups.store(CLUSTER_GROUP).node_statuses().get(me)
            state = ((mark or {}).get("status") or {}).get("state")
            if mark is not None and state != "up":
                self._publish.setdefault(CLUSTER_GROUP, None)
        self._publish_status()
        # 5. as a group's leader: record its voters, apply the next step of its plan
        for gid in hosted:
            if stopping is not None and stopping.is_set():
                return
            stable = (view.has_group(gid) and not records.joins.get(gid)
                      and set(records.voters(gid)) == set(view.group(gid).owners))
            if not stable or gid in self._pending:
                self._lead(gid, view, records)
        self.passes += 1

    # ---------------------------------------------------------------- reading/writing

    def _read_local(self) -> Records:
        store = self.groups.store(CLUSTER_GROUP)
        items: list[tuple[str, str, int]] = []
        for prefix in PREFIXES:
            kvs, _more, _rev = store.range_at(prefix, LOCAL_RANGE_LIMIT)
            items += [(kv["key"], kv["value"], kv["mod_revision"]) for kv in kvs]
        return Records.from_items(items)

    def _cluster_txn(self, compare: list[dict[str, Any]], success: list[dict[str, Any]],
                     wait: float = 3.0) -> bool:
        body = {"group": CLUSTER_GROUP, "compare": compare, "success": success, "failure": []}
        payload = codec.encode(codec.write_command("txn", body, self._client, next(self._seq)))
        result = self.groups.member_of(CLUSTER_GROUP).submit(payload).wait(wait)
        return isinstance(result, dict) and bool(result.get("succeeded"))

    # ---------------------------------------------------------------- hosting

    def _must_stop(self, gid: str, view: Topology, records: Records) -> bool:
        me = self.me
        if not view.has_group(gid):
            return True  # the group was deleted
        if me in view.group(gid).owners:
            return False
        # No longer an owner: stop once the leader has removed us from the Raft voters
        # (a joiner that was never added stops at once).
        return me not in records.voters(gid)

    def _stop_group(self, gid: str) -> None:
        log.info("group %s no longer lists node %s: stopping its member and deleting its "
                 "data", gid, self.me)
        self._joins.pop(gid, None)
        self._pending.pop(gid, None)
        self._publish.pop(gid, None)
        self.groups.unhost_group(gid, delete_data=True)

    def _addresses(self, view: Topology, ids: Iterable[str]) -> list[str]:
        return [view.node(i).raft_address for i in ids
                if i != self.me and view.has_node(i)]

    def _start_group(self, gid: str, view: Topology, records: Records) -> None:
        me = self.me
        voters = records.voters(gid)
        peers = self._addresses(view, voters)
        if me in voters:
            # A voter already (a new group's initial owner, or restarting): start as one.
            log.info("hosting group %s as a voter (peers %s)", gid, peers)
            self.groups.host_group(gid, peers, voter=True)
            self._publish[gid] = None
        else:
            # A new owner: follow the log read-only until caught up, then vote.
            log.info("new owner of group %s: catching up read-only from %s", gid, peers)
            self.groups.host_group(gid, peers, voter=False)
            self._joins[gid] = _Join(peers=tuple(voters))

    def _status_payload(self) -> bytes:
        return codec.encode(codec.node_status_command(self.me, self.own_status(),
                                                      self.started_at))

    def _progress_join(self, gid: str, view: Topology, records: Records) -> None:
        groups, me = self.groups, self.me
        join = self._joins[gid]
        voters = records.voters(gid)
        if me in voters:
            if not groups.is_voter(gid):
                self._restart_as_voter(gid, view, records)
            log.info("node %s is now a voter of group %s", me, gid)
            self._joins.pop(gid, None)
            return
        if join.stage == "readonly":
            if tuple(voters) != join.peers:
                # The voters changed (another step finished): follow the current ones.
                groups.unhost_group(gid)
                groups.host_group(gid, self._addresses(view, voters), voter=False)
                self._joins[gid] = _Join(peers=tuple(voters))
                return
            status = join.status
            if status is None or (status.done() and _failed(status)):
                # Our status record goes through the leader into the log; once this
                # member has applied it, it holds the log up to a recent point.
                join.status = groups.member_of(gid).submit(self._status_payload())
                groups.wake()
                return
            if not status.done():
                return
            self._restart_as_voter(gid, view, records)
            join.stage = "voter"
        now = self.clock.monotonic()
        if me not in records.joins.get(gid, ()) and now - join.announced > 1.0:
            # Tell the leader (through the cluster records) that we are ready to vote.
            join.announced = now
            self._cluster_txn([{"key": GROUPS + gid, "target": "version", "op": ">",
                                "value": 0}],  # not for a group deleted meanwhile
                              [{"op": "put", "key": f"{JOINS}{gid}/{me}",
                                "value": _json({"at": self.clock.wall()})}])

    def _restart_as_voter(self, gid: str, view: Topology, records: Records) -> None:
        peers = self._addresses(view, records.voters(gid))
        self.groups.unhost_group(gid)
        self.groups.host_group(gid, peers, voter=True)
        self.groups.hold_elections(gid)
        log.info("group %s: caught up; restarted as a voter, waiting for the leader to add "
                 "node %s", gid, self.me)

    def _publish_status(self) -> None:
        for gid, done in list(self._publish.items()):
            member = self.groups.member(gid)
            if member is None:
                self._publish.pop(gid, None)
            elif done is None or (done.done() and _failed(done)):
                self._publish[gid] = member.submit(self._status_payload())
                self.groups.wake()
            elif done.done():
                self._publish.pop(gid, None)

    # ---------------------------------------------------------------- leading

    def _lead(self, gid: str, view: Topology, records: Records) -> None:
        groups = self.groups
        member = groups.raft_member(gid)
        if member is None or not groups.is_voter(gid):
            return
        pending = self._pending.get(gid)
        if not member.leads():  # a cheap read; the details come from the raft thread
            self._pending.pop(gid, None)
            return
        info = groups.membership(gid)
        if not info["leader"]:
            self._pending.pop(gid, None)
            return
        if pending is not None:
            if not pending.done.done() and pending.term == info["term"]:
                return  # one step at a time
            self._pending.pop(gid, None)
            if pending.done.done() and not _failed(pending.done):
                log.info("group %s: membership step %s done", gid, pending.step)
            info = groups.membership(gid)
        if not info["settled"] or not view.has_group(gid):
            return
        by_address = {n.raft_address: n.id for n in view.nodes}
        owners = view.group(gid).owners
        self._forget_departed_status(gid, member, owners)
        actual = _in_order([by_address.get(a, a) for a in info["voters"]], owners)
        me = self.me
        stale_joins = [n for n in records.joins.get(gid, ()) if n in actual or n not in owners]
        if set(records.voters(gid)) != set(actual) or stale_joins:
            self._record_voters(gid, actual, info["term"], records, stale_joins)
        steps = plan_membership(actual, owners, leader=me)
        if not steps:
            return
        step = steps[0]
        if step.action == "add":
            if step.node not in records.joins.get(gid, ()):
                return  # the new owner is still catching up read-only
            address = view.node(step.node).raft_address
        else:
            if step.node == me:
                self._hand_over(gid, member, view, actual)
                return
            address = view.node(step.node).raft_address if view.has_node(step.node) \
                else step.node
        log.info("group %s: membership step %s (voters now %s)", gid, step, actual)
        done = member.change_membership(step.action, address)
        groups.wake()
        self._pending[gid] = _Pending(step=step, term=info["term"], done=done)
        try:
            done.wait(STEP_WAIT)
        except HakvError:
            return  # checked again next pass
        self._pending.pop(gid, None)
        after = groups.membership(gid)
        if after["leader"]:
            actual = _in_order([by_address.get(a, a) for a in after["voters"]], owners)
            fresh = self._read_local()
            self._record_voters(gid, actual, after["term"], fresh,
                                [n for n in fresh.joins.get(gid, ()) if n in actual])

    def _forget_departed_status(self, gid: str, member: RaftMember,
                                owners: Sequence[str]) -> None:
        """Drop status records of nodes that no longer own the group (I1: a node's status
        lives only in its sphere of influence). Idempotent, retried every pass."""
        store = self.groups.store(gid)
        for departed in sorted(set(store.node_statuses()) - set(owners)):
            payload = codec.encode(codec.node_status_forget_command(departed))
            try:
                member.submit(payload).wait(STEP_WAIT)
            except HakvError:
                return  # next pass

    def _record_voters(self, gid: str, voters: list[str], term: int, records: Records,
                       joins_done: Iterable[str]) -> None:
        key = MEMBERS + gid
        ok = self._cluster_txn(
            [{"key": key, "target": "mod_revision", "op": "==",
              "value": records.revision(key)}],
            [{"op": "put", "key": key, "value": _json({"voters": voters, "term": term})},
             *({"op": "delete", "key": f"{JOINS}{gid}/{n}"} for n in sorted(set(joins_done)))])
        if ok:
            log.info("group %s: Raft voters recorded as %s", gid, ", ".join(voters))

    def _hand_over(self, gid: str, member: RaftMember, view: Topology,
                   actual: list[str]) -> None:
        """The leader is to be removed: hand leadership to a remaining owner first (a
        pysyncobj leader cannot remove itself)."""
        if member.handing_over():
            return
        owners = view.group(gid).owners
        remaining = [o for o in owners if o in actual and o != self.me]
        if not remaining:
            return
        candidate = remaining[0]
        address = view.node(candidate).raft_address
        self.groups.hand_over_leadership(gid, address, HANDOVER_WITHIN)
        self.groups.wake()
        log.info("group %s: leader %s leaves the group; handing leadership to %s",
                 gid, self.me, candidate)


def _in_order(voters: Iterable[str], owners: Sequence[str]) -> list[str]:
    """Voters in owner (precedence) order, then any others sorted."""
    voters = set(voters)
    return [o for o in owners if o in voters] + sorted(voters - set(owners))


def _failed(done: Completion) -> bool:
    try:
        done.wait(0)
    except HakvError:
        return True
    return False
