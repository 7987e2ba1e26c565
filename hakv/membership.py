"""Runtime membership: nodes and groups added, removed and re-owned while the cluster runs.

The topology file only *seeds* the cluster-level records (hakv.cluster). From then on the
cluster ensemble is the truth, and these records drive every node (docs/membership.md):

    cluster/name            the cluster's name (present once the records are seeded)
    cluster/epoch           bumped by every operator change; each change compares it, so
                            two operators never clobber each other (the loser retries)
    nodes/<id>              a node: host, ports, capacity (NodeSpec.to_dict())
    groups/<id>             a group: {"id", "owners", "load"}; owners = the *desired* owners
    members/<id>            the group's Raft voters as last committed by its leader:
                            {"voters": [ids], "term": n}; absent = its owners
    joins/<id>/<node>       a new owner that has caught up and waits, as a voter, to be added

Two halves:

- **Pure** (no I/O): :class:`Records` parses the records; :func:`plan_membership` turns
  (current voters, desired owners) into an ordered plan of single-server Raft changes;
  :func:`build_view` makes the Topology a node works with; the ``check_*`` functions
  validate an operator's change with messages that say what to do.
- **I/O**: the operator's side (:func:`add_node`, :func:`remove_node`, :func:`create_group`,
  :func:`delete_group`, :func:`set_owners`, :func:`show`: transactions through the client
  library) and the node's side (:class:`Reconciler`, a thread of every node that reads its
  own copy of the records every ``INTERVAL`` seconds and converges: starts members for
  groups that list the node, lets new owners catch up read-only before they vote, applies
  each owner-list change one Raft step at a time on the group's leader, stops members and
  deletes the data of groups that no longer list the node).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from hakv import codec, errors
from hakv.errors import ConfigError, ConflictError, HakvError, TopologyError, UnknownGroupError
from hakv.topology import (
    CLUSTER_GROUP,
    DEFAULT_CAPACITY,
    DEFAULT_LOAD,
    MIN_OWNERS,
    GroupSpec,
    NodeSpec,
    RaftTuning,
    Topology,
)

if TYPE_CHECKING:
    from hakv.client import Client, Compare, Op
    from hakv.node import Node
    from hakv.raft import Completion, GroupMember

log = logging.getLogger("hakv.membership")

__all__ = [
    "INTERVAL",
    "Records",
    "Reconciler",
    "Step",
    "add_node",
    "build_view",
    "check_add_node",
    "check_group",
    "check_remove_node",
    "create_group",
    "delete_group",
    "plan_membership",
    "read_records",
    "remove_node",
    "set_owners",
    "show",
    "startup_view",
    "with_nodes",
]

NAME_KEY = "cluster/name"
EPOCH_KEY = "cluster/epoch"
NODES = "nodes/"
GROUPS = "groups/"
MEMBERS = "members/"
JOINS = "joins/"
PREFIXES = ("cluster/", NODES, GROUPS, MEMBERS, JOINS)
RANGE_LIMIT = 10000
#: A node reads its own copy of the cluster records without a limit that matters: 10,000
#: (the API's) silently cut a cluster of more nodes short, and membership stalled.
LOCAL_RANGE_LIMIT = 10_000_000

INTERVAL = 0.5  # seconds between two passes of a node's reconciler
STEP_WAIT = 3.0  # seconds a leader waits for one membership step before the next pass
HANDOVER_WITHIN = 2.0  # seconds a leaving leader pauses proposals to hand leadership over
CHANGE_ATTEMPTS = 8  # operator changes re-read and retry this often on a concurrent change


# =========================================================================== pure: records


@dataclass(frozen=True)
class Records:
    """The cluster-level records that drive membership, parsed. Pure data."""

    name: str | None = None
    epoch: str | None = None
    nodes: dict[str, NodeSpec] = field(default_factory=dict)
    groups: dict[str, GroupSpec] = field(default_factory=dict)  # id, owners, load only
    node_records: dict[str, dict[str, Any]] = field(default_factory=dict)  # as stored
    group_records: dict[str, dict[str, Any]] = field(default_factory=dict)  # as stored
    members: dict[str, tuple[str, ...]] = field(default_factory=dict)
    joins: dict[str, frozenset[str]] = field(default_factory=dict)
    revisions: dict[str, int] = field(default_factory=dict)  # key -> mod revision
    problems: tuple[str, ...] = ()  # records that could not be parsed (skipped)

    @classmethod
    def from_items(cls, items: Iterable[tuple[str, str, int]]) -> Records:
        """From (key, value, mod_revision) triples of the cluster ensemble's key space."""
        name = epoch = None
        nodes: dict[str, NodeSpec] = {}
        groups: dict[str, GroupSpec] = {}
        node_records: dict[str, dict[str, Any]] = {}
        group_records: dict[str, dict[str, Any]] = {}
        members: dict[str, tuple[str, ...]] = {}
        joins: dict[str, set[str]] = {}
        revisions: dict[str, int] = {}
        problems: list[str] = []
        for key, value, revision in items:
            revisions[key] = revision
            try:
                if key == NAME_KEY:
                    name = value
                elif key == EPOCH_KEY:
                    epoch = value
                elif key.startswith(NODES):
                    raw = json.loads(value)
                    spec = NodeSpec(id=str(raw["id"]), host=str(raw["host"]),
                                    raft_port=int(raw["raft_port"]),
                                    api_port=int(raw["api_port"]),
                                    capacity=int(raw.get("capacity", DEFAULT_CAPACITY)))
                    nodes[spec.id] = spec
                    node_records[spec.id] = raw
                elif key.startswith(GROUPS):
                    raw = json.loads(value)
                    group = GroupSpec(id=str(raw["id"]),
                                      owners=tuple(str(o) for o in raw["owners"]),
                                      load=int(raw.get("load", DEFAULT_LOAD)))
                    groups[group.id] = group
                    group_records[group.id] = raw
                elif key.startswith(MEMBERS):
                    raw = json.loads(value)
                    members[key[len(MEMBERS):]] = tuple(str(v) for v in raw["voters"])
                elif key.startswith(JOINS):
                    gid, _, node = key[len(JOINS):].partition("/")
                    if gid and node:
                        joins.setdefault(gid, set()).add(node)
            except (ValueError, KeyError, TypeError) as exc:
                problems.append(f"{key}: {type(exc).__name__}: {exc}")
        return cls(name=name, epoch=epoch, nodes=nodes, groups=groups,
                   node_records=node_records, group_records=group_records, members=members,
                   joins={g: frozenset(n) for g, n in joins.items()}, revisions=revisions,
                   problems=tuple(problems))

    @property
    def seeded(self) -> bool:
        """Whether the cluster records exist yet (the voters seed them at first start)."""
        return self.name is not None

    def voters(self, group: str) -> tuple[str, ...]:
        """The group's Raft voters as last recorded (its owners when never changed)."""
        recorded = self.members.get(group)
        if recorded:
            return recorded
        spec = self.groups.get(group)
        return spec.owners if spec is not None else ()

    def groups_listing(self, node: str) -> list[str]:
        return sorted(g for g, spec in self.groups.items() if node in spec.owners)

    def raft_groups_listing(self, node: str) -> list[str]:
        """Groups whose recorded Raft voters still include ``node``."""
        return sorted(g for g in self.groups if node in self.voters(g))

    def revision(self, key: str) -> int:
        return self.revisions.get(key, 0)


# =========================================================================== pure: planning


@dataclass(frozen=True)
class Step:
    """One single-server Raft configuration change."""

    action: Literal["add", "remove"]
    node: str

    def __str__(self) -> str:
        return f"{'+' if self.action == 'add' else '-'}{self.node}"


def plan_membership(current: Sequence[str], desired: Sequence[str],
                    leader: str | None = None, min_members: int = MIN_OWNERS) -> list[Step]:
    """The steps that take a group's Raft voters from ``current`` to ``desired``.

    - one voter at a time (Raft's single-server changes: the old and the new majority
      always overlap, so no joint consensus is needed);
    - add before remove: each replacement adds the new owner first, then removes an old
      one, so the group never has fewer voters than at the start or the end (and never
      fewer than ``min_members``);
    - owners are added in the desired (precedence) order; ``leader`` is removed last (a
      leader cannot remove itself: it hands over leadership first, see Reconciler).

    ValueError if ``desired`` lists fewer than ``min_members`` distinct nodes.
    """
    wanted = list(dict.fromkeys(desired))
    if len(wanted) < min_members:
        raise ValueError(f"a group needs at least {min_members} owners, got {wanted}")
    now = list(dict.fromkeys(current))
    adds = [n for n in wanted if n not in now]
    removes = [n for n in now if n not in wanted]
    if leader in removes:
        removes.remove(leader)
        removes.append(leader)
    steps: list[Step] = []
    size = len(now)
    while adds or removes:
        if adds:
            steps.append(Step("add", adds.pop(0)))
            size += 1
        if removes and (size - 1 >= min_members or not adds):
            steps.append(Step("remove", removes.pop(0)))
            size -= 1
    return steps


# =========================================================================== pure: views


def _ordered(first: Sequence[str], rest: Iterable[str]) -> list[str]:
    """``first`` in its order, then the rest sorted (a set: linear, at 10,000 nodes the
    list it was took 0.4 s per view, on every node at every cluster-record change)."""
    seen = set(first)
    return list(first) + sorted(i for i in rest if i not in seen)


def build_view(base: Topology, records: Records, *, actual: bool = False,
               keep: Sequence[NodeSpec] = ()) -> Topology:
    """The Topology a node works with: ``base``'s cluster name, Raft and HA tuning and
    cluster voters (fixed by the file), with the nodes and groups of the records (every
    field of a record, through the topology file's own parser and rules).

    Owners are the desired ones, or with ``actual`` the recorded Raft voters (what a node
    restarts its members with). ``keep``: node specs to keep when the records lack them
    (the node itself after its removal; the cluster voters are always kept). Raises
    TopologyError when the records do not make a valid topology.
    """
    if not records.seeded:
        return base
    nodes: dict[str, dict[str, Any]] = dict(records.node_records)
    for kept in [*keep, *(base.node(v) for v in base.cluster_voters if base.has_node(v))]:
        nodes.setdefault(kept.id, kept.to_dict())
    groups = []
    for gid in _ordered([g for g in base.group_ids if g in records.groups], records.groups):
        raw = dict(records.group_records[gid])
        if actual:
            raw["owners"] = list(records.voters(gid))
        groups.append(raw)
    data = base.to_dict()
    data["nodes"] = [nodes[n] for n in _ordered([n for n in base.node_ids if n in nodes], nodes)]
    data["groups"] = groups
    return Topology.from_dict(data, source="the cluster records")


def with_nodes(base: Topology, specs: Iterable[NodeSpec]) -> Topology:
    """``base`` plus nodes it lacks (hakv.local: nodes added at runtime)."""
    extra = [s for s in specs if not base.has_node(s.id)]
    if not extra:
        return base
    view = dataclasses.replace(base, nodes=base.nodes + tuple(extra))
    view.validate()
    return view


# =========================================================================== pure: checks


def _id_problem(kind: str, value: str) -> str | None:
    """Reuse the topology file's id rules (ids end up in paths and URLs)."""
    nodes: list[dict[str, Any]] = [{"id": "n-1", "host": "h", "raft_port": 1, "api_port": 2},
                                   {"id": "n-2", "host": "h", "raft_port": 3, "api_port": 4}]
    probe: dict[str, Any] = {"cluster": {"name": "x"}, "nodes": nodes}
    if kind == "group":
        probe["groups"] = [{"id": value, "owners": ["n-1", "n-2"]}]
    else:
        probe["nodes"] = [{"id": value, "host": "h", "raft_port": 1, "api_port": 2}]
    try:
        Topology.from_dict(probe, source=f"{kind} id")
    except TopologyError as exc:
        return exc.message.removeprefix(f"{kind} id: ")
    return None


def _need_seeded(records: Records) -> None:
    if not records.seeded:
        raise errors.UnavailableError(
            "the cluster records are not seeded yet (the cluster voters write them at first "
            "start); retry in a moment")


def check_add_node(records: Records, spec: NodeSpec) -> None:
    """Why ``spec`` cannot join the cluster, as a BadRequestError; None if it can."""
    _need_seeded(records)
    if spec.id.startswith("_"):
        raise errors.BadRequestError(f"node id {spec.id!r}: ids starting with '_' are reserved")
    problem = _id_problem("node", spec.id)
    if problem:
        raise errors.BadRequestError(problem)
    if spec.id in records.nodes:
        raise errors.ConflictError(f"node {spec.id} already exists in the cluster "
                                   f"({records.nodes[spec.id].raft_address})", node=spec.id)
    candidate = Topology(cluster=records.name or "x", nodes=(*records.nodes.values(), spec),
                         groups=(), raft=RaftTuning(), cluster_voters=(spec.id,))
    try:
        candidate.validate()
    except TopologyError as exc:
        raise errors.BadRequestError(exc.message, node=spec.id) from None


def check_remove_node(records: Records, node_id: str, cluster_voters: Sequence[str]) -> None:
    """Why ``node_id`` cannot be removed now; None if it can."""
    _need_seeded(records)
    if node_id not in records.nodes:
        raise errors.NotFoundError(f"node {node_id} is not in the cluster", node=node_id)
    if node_id in cluster_voters:
        raise errors.BadRequestError(
            f"node {node_id} is a voter of the cluster ensemble (cluster_voters: "
            f"{', '.join(cluster_voters)}); the cluster voters are fixed by the topology file "
            "and cannot be removed at runtime", node=node_id)
    listed = records.groups_listing(node_id)
    if listed:
        raise errors.BadRequestError(
            f"node {node_id} still owns group {', '.join(listed)}; move each group to other "
            f"owners first (hakv group set-owners GROUP --owners ...) or delete it",
            node=node_id, groups=listed)
    voting = records.raft_groups_listing(node_id)
    if voting:
        raise errors.UnavailableError(
            f"node {node_id} is no longer an owner, but group {', '.join(voting)} has not "
            "yet removed it from its Raft membership; retry in a few seconds "
            "(hakv cluster show)", node=node_id, groups=voting)


def check_group(records: Records, group_id: str, owners: Sequence[str], load: int,
                *, creating: bool) -> None:
    """Why a group ``group_id`` with ``owners`` cannot be created / re-owned; None if ok."""
    _need_seeded(records)
    if group_id.startswith("_"):
        raise errors.BadRequestError(
            f"group id {group_id!r} starts with '_', which is reserved for hakv's own "
            f"ensembles (the cluster ensemble is {CLUSTER_GROUP!r})", group=group_id)
    problem = _id_problem("group", group_id)
    if problem:
        raise errors.BadRequestError(problem, group=group_id)
    if creating and group_id in records.groups:
        raise errors.ConflictError(
            f"group {group_id} already exists (owners "
            f"{', '.join(records.groups[group_id].owners)}); use hakv group set-owners",
            group=group_id)
    if not creating and group_id not in records.groups:
        raise errors.UnknownGroupError(f"group {group_id} does not exist", group=group_id)
    if creating and any(k.startswith(f"{JOINS}{group_id}/") for k in records.revisions):
        raise errors.UnavailableError(
            f"group {group_id} was deleted recently and its owners are still cleaning up; "
            "retry in a few seconds", group=group_id)
    if isinstance(load, bool) or not isinstance(load, int) or load < 0:
        raise errors.BadRequestError(f"load must be an integer >= 0, got {load!r}")
    if len(owners) < MIN_OWNERS:
        raise errors.BadRequestError(
            f"group {group_id} needs at least {MIN_OWNERS} owners, got "
            f"{len(owners)} ({', '.join(owners) or 'none'})", group=group_id)
    seen: set[str] = set()
    for owner in owners:
        if owner in seen:
            raise errors.BadRequestError(
                f"owner {owner} is listed twice; each node may appear once in an owner list",
                group=group_id, node=owner)
        seen.add(owner)
        if owner not in records.nodes:
            known = ", ".join(sorted(records.nodes)) or "none"
            raise errors.BadRequestError(
                f"owner {owner} is not a node of the cluster (nodes: {known}); add it first "
                "with hakv cluster add-node", group=group_id, node=owner)


# =========================================================================== I/O: operators


def read_records(client: Client) -> Records:
    """The cluster records, read linearizably (the epoch first: see ``_change``)."""
    items: list[tuple[str, str, int]] = []
    for prefix in PREFIXES:
        result = client.range(CLUSTER_GROUP, prefix, limit=RANGE_LIMIT)
        if result.more:
            raise errors.InternalError(f"more than {RANGE_LIMIT} records under {prefix}")
        items += [(kv.key, kv.value, kv.mod_revision) for kv in result.kvs]
    return Records.from_items(items)


def _next_epoch(records: Records) -> str:
    try:
        return str(int(records.epoch or "0") + 1)
    except ValueError:
        return "1"


def _change(client: Client, build: Any) -> dict[str, Any]:
    """Run an operator change as a transaction guarded by the epoch.

    ``build(records) -> (compares, ops, summary)`` validates against freshly read records
    (raising a HakvError to refuse); the transaction applies only if no other change
    happened since the read (``cluster/epoch`` unchanged), else it is rebuilt and retried.
    """
    from hakv.client import Compare, Op

    for _ in range(CHANGE_ATTEMPTS):
        records = read_records(client)
        compares, ops, summary = build(records)
        epoch = _next_epoch(records)
        result = client.txn(
            CLUSTER_GROUP,
            [Compare.value(EPOCH_KEY, "==", records.epoch), *compares],
            [*ops, Op.put(EPOCH_KEY, epoch)],
        )
        if result.succeeded:
            return {**summary, "epoch": int(epoch), "revision": result.revision}
        time.sleep(0.05)
    raise ConflictError(
        f"the cluster configuration kept changing under this command ({CHANGE_ATTEMPTS} "
        "attempts); retry")


def _json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True)


def add_node(client: Client, spec: NodeSpec) -> dict[str, Any]:
    """Add a node record; the node then starts with ``hakv node --node ID`` (it looks its
    own address up in the cluster records)."""
    from hakv.client import Compare, Op

    def build(records: Records) -> tuple[list[Compare], list[Op], dict[str, Any]]:
        check_add_node(records, spec)
        key = NODES + spec.id
        return ([Compare.version(key, "==", 0)], [Op.put(key, _json(spec.to_dict()))],
                {"node": spec.to_dict()})

    return _change(client, build)


def remove_node(client: Client, node_id: str) -> dict[str, Any]:
    """Remove a node record: refused while a group lists it or the node votes anywhere."""
    from hakv.client import Compare, Op

    voters = _cluster_voters(client)

    def build(records: Records) -> tuple[list[Compare], list[Op], dict[str, Any]]:
        check_remove_node(records, node_id, voters)
        key = NODES + node_id
        return ([Compare.mod_revision(key, "==", records.revision(key))], [Op.delete(key)],
                {"node": node_id})

    return _change(client, build)


def _cluster_voters(client: Client) -> list[str]:
    status = client.status()
    owners = ((status.get("groups") or {}).get(CLUSTER_GROUP) or {}).get("owners")
    if not isinstance(owners, list):
        raise errors.InternalError("/v1/status did not report the cluster ensemble's voters")
    return [str(o) for o in owners]


def create_group(client: Client, group_id: str, owners: Sequence[str],
                 load: int = DEFAULT_LOAD) -> dict[str, Any]:
    """Create a group: its record and its initial Raft voters (all its owners)."""
    from hakv.client import Compare, Op

    owners = list(owners)

    def build(records: Records) -> tuple[list[Compare], list[Op], dict[str, Any]]:
        check_group(records, group_id, owners, load, creating=True)
        spec = GroupSpec(id=group_id, owners=tuple(owners), load=load)
        return (
            [Compare.version(GROUPS + group_id, "==", 0),
             Compare.version(MEMBERS + group_id, "==", 0)],
            [Op.put(GROUPS + group_id, _json(spec.to_dict())),
             Op.put(MEMBERS + group_id, _json({"voters": owners, "term": 0}))],
            {"group": spec.to_dict()},
        )

    return _change(client, build)


def delete_group(client: Client, group_id: str) -> dict[str, Any]:
    """Delete a group: every owner stops its member and deletes the group's data."""
    from hakv.client import Compare, Op

    def build(records: Records) -> tuple[list[Compare], list[Op], dict[str, Any]]:
        _need_seeded(records)
        if group_id not in records.groups:
            raise errors.UnknownGroupError(f"group {group_id} does not exist", group=group_id)
        keys = [GROUPS + group_id, MEMBERS + group_id,
                *(k for k in records.revisions if k.startswith(f"{JOINS}{group_id}/"))]
        return ([Compare.mod_revision(GROUPS + group_id, "==", records.revision(GROUPS +
                                                                                group_id))],
                [Op.delete(k) for k in keys],
                {"group": group_id, "owners": list(records.groups[group_id].owners)})

    return _change(client, build)


def set_owners(client: Client, group_id: str, owners: Sequence[str]) -> dict[str, Any]:
    """Change a group's owners; its leader then changes the Raft membership step by step."""
    from hakv.client import Compare, Op

    owners = list(owners)

    def build(records: Records) -> tuple[list[Compare], list[Op], dict[str, Any]]:
        spec = records.groups.get(group_id)
        check_group(records, group_id, owners, spec.load if spec else 0, creating=False)
        assert spec is not None
        record = {**records.group_records[group_id], "owners": owners}  # keeps app etc.
        compares = [Compare.mod_revision(GROUPS + group_id, "==",
                                         records.revision(GROUPS + group_id))]
        ops = [Op.put(GROUPS + group_id, _json(record))]
        if group_id not in records.members:
            # Never changed at runtime: its Raft voters are the owners before this change.
            compares.append(Compare.version(MEMBERS + group_id, "==", 0))
            ops.append(Op.put(MEMBERS + group_id,
                              _json({"voters": list(spec.owners), "term": 0})))
        voters = records.voters(group_id)
        steps = plan_membership(voters, owners)
        return compares, ops, {"group": group_id, "owners": owners,
                               "previous_owners": list(spec.owners),
                               "plan": [str(s) for s in steps]}

    return _change(client, build)


def set_app(client: Client, group_id: str, app: Mapping[str, Any],
            fallback: str | None = None, fallback_window: str | None = None) -> dict[str, Any]:
    """Set (or replace) a group's app spec at runtime: the ``[groups.app]`` table of the
    topology file, as a mapping, checked by the same rules. The group's owners pick it up
    from the cluster records within a second (docs/ha.md)."""
    from hakv import ha
    from hakv.client import Compare, Op

    def build(records: Records) -> tuple[list[Compare], list[Op], dict[str, Any]]:
        if group_id not in records.groups:
            raise UnknownGroupError(f"group {group_id} is not in the cluster records "
                                    "(hakv cluster show lists the groups)", group=group_id)
        where = f"group {group_id}"
        ha.parse_app(dict(app), where)  # TopologyError naming the broken rule
        record = {**records.group_records[group_id], "app": dict(app)}
        if fallback is not None:
            record["fallback"] = fallback
        if fallback_window is not None:
            record["fallback_window"] = fallback_window
        ha.parse_fallback(record, where)
        compares = [Compare.mod_revision(GROUPS + group_id, "==",
                                         records.revision(GROUPS + group_id))]
        return compares, [Op.put(GROUPS + group_id, _json(record))], {
            "group": group_id, "app": record["app"], "fallback": record.get("fallback", "stay"),
            "fallback_window": record.get("fallback_window")}

    return _change(client, build)


def show(client: Client) -> dict[str, Any]:
    """The cluster records as an operator sees them (``hakv cluster show``)."""
    records = read_records(client)
    groups = []
    for gid in sorted(records.groups):
        spec = records.groups[gid]
        voters = records.voters(gid)
        steps = plan_membership(voters, spec.owners) if len(spec.owners) >= MIN_OWNERS else []
        groups.append({
            "id": gid, "owners": list(spec.owners), "load": spec.load,
            "raft_voters": list(voters),
            "pending": [str(s) for s in steps],
            "caught_up": sorted(records.joins.get(gid, ())),
            "state": "stable" if not steps else "changing",
        })
    nodes = []
    for nid in sorted(records.nodes):
        nodes.append({**records.nodes[nid].to_dict(), "groups": records.groups_listing(nid)})
    return {"cluster": records.name, "epoch": int(records.epoch or 0), "nodes": nodes,
            "groups": groups, "problems": list(records.problems)}


# =========================================================================== I/O: start-up


def _local_records(data_dir: str) -> Records | None:
    """This node's own copy of the cluster records (a previous run), read-only."""
    state = Path(data_dir) / "cluster" / "state"
    if not (state / "data.mdb").is_file():
        return None
    from hakv.store import GroupStore

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
    from hakv.client import Client

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

    def __init__(self, node: Node, interval: float = INTERVAL) -> None:
        self.node = node
        self.interval = interval
        self._client = f"membership-{node.node_id}-{uuid.uuid4().hex[:12]}"
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
                log.info("membership on %s: %s", self.node.node_id, exc.message)
            except Exception:
                if stopping.is_set():
                    return
                log.exception("membership pass on %s failed", self.node.node_id)

    def reconcile_once(self, stopping: threading.Event | None = None) -> None:
        node = self.node
        revision = node.machines[CLUSTER_GROUP].store.revision()
        if self._cache is not None and self._cache[0] == revision:
            _, records, maybe_view = self._cache  # nothing changed: skip the parsing
        else:
            records = self._read_local()
            try:
                maybe_view = build_view(node.topology, records, keep=[node.spec])
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
        me = node.node_id
        if me not in records.nodes and me not in view.cluster_voters:
            log.warning("node %s has been removed from the cluster; stop it", me)
        # 1. stop what this node must no longer host (before the view drops the group)
        for gid in sorted(node.members):
            if self._must_stop(gid, view, records):
                self._stop_group(gid)
        # 2. adopt the records' nodes and groups
        if view != node.topology:
            node.set_view(view)
        # 3. start members for the groups that list this node
        for group in view.groups_of(me):
            if group.id not in node.members and not (stopping and stopping.is_set()):
                self._start_group(group.id, view, records)
        # 4. new owners catching up; status records into newly hosted groups
        for gid in sorted(self._joins):
            if gid in node.members:
                self._progress_join(gid, view, records)
            else:
                self._joins.pop(gid, None)
        hosted = sorted(node.members)
        if hosted != self._hosted:  # the node's status lists its groups
            self._hosted = hosted
            if not hosted:  # no sphere of influence: the cluster ensemble keeps it
                self._publish[CLUSTER_GROUP] = None
        if revision != self._marks_seen:
            # The cluster ensemble records failures and reintegrations, not start-ups
            # (docs/placement.md). A node marked down there that is up again says so
            # itself: the group leader that would record it may be this very node.
            self._marks_seen = revision
            mark = node.machines[CLUSTER_GROUP].store.node_statuses().get(me)
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
        store = self.node.machines[CLUSTER_GROUP].store
        items: list[tuple[str, str, int]] = []
        for prefix in PREFIXES:
            kvs, _more, _rev = store.range_at(prefix, LOCAL_RANGE_LIMIT)
            items += [(kv["key"], kv["value"], kv["mod_revision"]) for kv in kvs]
        return Records.from_items(items)

    def _cluster_txn(self, compare: list[dict[str, Any]], success: list[dict[str, Any]],
                     wait: float = 3.0) -> bool:
        body = {"group": CLUSTER_GROUP, "compare": compare, "success": success, "failure": []}
        payload = codec.encode(codec.write_command("txn", body, self._client, next(self._seq)))
        result = self.node.cluster_member.submit(payload).wait(wait)
        return isinstance(result, dict) and bool(result.get("succeeded"))

    # ---------------------------------------------------------------- hosting

    def _must_stop(self, gid: str, view: Topology, records: Records) -> bool:
        me = self.node.node_id
        if not view.has_group(gid):
            return True  # the group was deleted
        if me in view.group(gid).owners:
            return False
        # No longer an owner: stop once the leader has removed us from the Raft voters
        # (a joiner that was never added stops at once).
        return me not in records.voters(gid)

    def _stop_group(self, gid: str) -> None:
        node = self.node
        log.info("group %s no longer lists node %s: stopping its member and deleting its "
                 "data", gid, node.node_id)
        self._joins.pop(gid, None)
        self._pending.pop(gid, None)
        self._publish.pop(gid, None)
        node.unhost_group(gid)
        shutil.rmtree(os.path.join(node.data_dir, "groups", gid), ignore_errors=True)

    def _addresses(self, view: Topology, ids: Iterable[str]) -> list[str]:
        return [view.node(i).raft_address for i in ids
                if i != self.node.node_id and view.has_node(i)]

    def _start_group(self, gid: str, view: Topology, records: Records) -> None:
        me = self.node.node_id
        voters = records.voters(gid)
        peers = self._addresses(view, voters)
        if me in voters:
            # A voter already (a new group's initial owner, or restarting): start as one.
            log.info("hosting group %s as a voter (peers %s)", gid, peers)
            self.node.host_group(gid, peers, voter=True)
            self._publish[gid] = None
        else:
            # A new owner: follow the log read-only until caught up, then vote.
            log.info("new owner of group %s: catching up read-only from %s", gid, peers)
            self.node.host_group(gid, peers, voter=False)
            self._joins[gid] = _Join(peers=tuple(voters))

    def _status_payload(self) -> bytes:
        node = self.node
        return codec.encode(codec.node_status_command(node.node_id, node.own_status(),
                                                      node.started_at))

    def _progress_join(self, gid: str, view: Topology, records: Records) -> None:
        node = self.node
        me = node.node_id
        join = self._joins[gid]
        member = node.members[gid]
        voters = records.voters(gid)
        if me in voters:
            if member.selfNode is None:
                self._restart_as_voter(gid, view, records)
            log.info("node %s is now a voter of group %s", me, gid)
            self._joins.pop(gid, None)
            return
        if join.stage == "readonly":
            if tuple(voters) != join.peers:
                # The voters changed (another step finished): follow the current ones.
                node.unhost_group(gid)
                node.host_group(gid, self._addresses(view, voters), voter=False)
                self._joins[gid] = _Join(peers=tuple(voters))
                return
            status = join.status
            if status is None or (status.done() and _failed(status)):
                # Our status record goes through the leader into the log; once this
                # member has applied it, it holds the log up to a recent point.
                join.status = node.members[gid].submit(self._status_payload())
                node.host.wake()
                return
            if not status.done():
                return
            self._restart_as_voter(gid, view, records)
            join.stage = "voter"
        if me not in records.joins.get(gid, ()) and time.monotonic() - join.announced > 1.0:
            # Tell the leader (through the cluster records) that we are ready to vote.
            join.announced = time.monotonic()
            self._cluster_txn([{"key": GROUPS + gid, "target": "version", "op": ">",
                                "value": 0}],  # not for a group deleted meanwhile
                              [{"op": "put", "key": f"{JOINS}{gid}/{me}",
                                "value": _json({"at": time.time()})}])

    def _restart_as_voter(self, gid: str, view: Topology, records: Records) -> None:
        node = self.node
        peers = self._addresses(view, records.voters(gid))
        node.unhost_group(gid)
        member = node.host_group(gid, peers, voter=True)
        node.host.call_in_loop(member.hold_elections_until_leader)
        log.info("group %s: caught up; restarted as a voter, waiting for the leader to add "
                 "node %s", gid, node.node_id)

    def _publish_status(self) -> None:
        for gid, done in list(self._publish.items()):
            member = self.node.member(gid)
            if member is None:
                self._publish.pop(gid, None)
            elif done is None or (done.done() and _failed(done)):
                self._publish[gid] = member.submit(self._status_payload())
                self.node.host.wake()
            elif done.done():
                self._publish.pop(gid, None)

    # ---------------------------------------------------------------- leading

    def _lead(self, gid: str, view: Topology, records: Records) -> None:
        node = self.node
        member: GroupMember | None = node.members.get(gid)
        if member is None or member.selfNode is None:
            return
        pending = self._pending.get(gid)
        if not member._isLeader():  # a cheap read; the details come from the raft thread
            self._pending.pop(gid, None)
            return
        info = node.host.call_in_loop(member.membership)
        if not info["leader"]:
            self._pending.pop(gid, None)
            return
        if pending is not None:
            if not pending.done.done() and pending.term == info["term"]:
                return  # one step at a time
            self._pending.pop(gid, None)
            if pending.done.done() and not _failed(pending.done):
                log.info("group %s: membership step %s done", gid, pending.step)
            info = node.host.call_in_loop(member.membership)
        if not info["settled"] or not view.has_group(gid):
            return
        by_address = {n.raft_address: n.id for n in view.nodes}
        owners = view.group(gid).owners
        self._forget_departed_status(gid, member, owners)
        actual = _in_order([by_address.get(a, a) for a in info["voters"]], owners)
        me = node.node_id
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
        node.host.wake()
        self._pending[gid] = _Pending(step=step, term=info["term"], done=done)
        try:
            done.wait(STEP_WAIT)
        except HakvError:
            return  # checked again next pass
        self._pending.pop(gid, None)
        after = node.host.call_in_loop(member.membership)
        if after["leader"]:
            actual = _in_order([by_address.get(a, a) for a in after["voters"]], owners)
            fresh = self._read_local()
            self._record_voters(gid, actual, after["term"], fresh,
                                [n for n in fresh.joins.get(gid, ()) if n in actual])

    def _forget_departed_status(self, gid: str, member: GroupMember,
                                owners: Sequence[str]) -> None:
        """Drop status records of nodes that no longer own the group (I1: a node's status
        lives only in its sphere of influence). Idempotent, retried every pass."""
        store = self.node.machines[gid].store
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

    def _hand_over(self, gid: str, member: GroupMember, view: Topology,
                   actual: list[str]) -> None:
        """The leader is to be removed: hand leadership to a remaining owner first (a
        pysyncobj leader cannot remove itself)."""
        if member.handing_over():
            return
        owners = view.group(gid).owners
        remaining = [o for o in owners if o in actual and o != self.node.node_id]
        if not remaining:
            return
        candidate = remaining[0]
        address = view.node(candidate).raft_address
        self.node.host.call_in_loop(
            functools.partial(member.hand_over_leadership, address, HANDOVER_WITHIN))
        self.node.host.wake()
        log.info("group %s: leader %s leaves the group; handing leadership to %s",
                 gid, self.node.node_id, candidate)


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
