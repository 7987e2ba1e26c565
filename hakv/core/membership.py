"""Runtime membership: nodes and groups added, removed and re-owned while the cluster runs.

The topology file only *seeds* the cluster-level records (hakv.core.seed). From then on the
cluster ensemble is the truth, and these records drive every node (docs/membership.md):

    cluster/name            the cluster's name (present once the records are seeded)
    cluster/epoch           bumped by every operator change; each change compares it, so
                            two operators never clobber each other (the loser retries)
    nodes/<id>              a node: host, ports, capacity (NodeSpec.to_dict())
    groups/<id>             a group: {"id", "owners", "load"}; owners = the *desired* owners
    members/<id>            the group's Raft voters as last committed by its leader:
                            {"voters": [ids], "term": n}; absent = its owners
    joins/<id>/<node>       a new owner that has caught up and waits, as a voter, to be added

Here the pure part (no I/O): :class:`Records` parses the records; :func:`plan_membership`
turns (current voters, desired owners) into an ordered plan of single-server Raft
changes; :func:`build_view` makes the Topology a node works with; the ``check_*``
functions validate an operator's change with messages that say what to do.

The I/O lives above: the operator's side in :mod:`hakv.client.admin` (transactions
through the client library) and the node's side in :mod:`hakv.node.reconciler` (a thread
of every node that reads its own copy of the records and converges).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from hakv import errors
from hakv.core.topology import (
    CLUSTER_GROUP,
    DEFAULT_CAPACITY,
    DEFAULT_LOAD,
    MIN_OWNERS,
    GroupSpec,
    NodeSpec,
    RaftTuning,
    Topology,
    file_order,
)
from hakv.errors import TopologyError

log = logging.getLogger("hakv.core.membership")

__all__ = [
    "Records",
    "Step",
    "build_view",
    "check_add_node",
    "check_group",
    "check_remove_node",
    "plan_membership",
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


def _json(obj: Any) -> str:
    """A record's value: JSON with sorted keys (one spelling per value)."""
    return json.dumps(obj, sort_keys=True)


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

    ValueError if ``desired`` lists fewer than ``min_members`` distinct nodes: a caller
    bug, since an operator's owner list is checked first (:func:`check_group` raises a
    BadRequestError that says what to do) and a recorded one passed the topology rules.
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
    for gid in file_order(records.groups, base.group_ids):
        raw = dict(records.group_records[gid])
        if actual:
            raw["owners"] = list(records.voters(gid))
        groups.append(raw)
    data = base.to_dict()
    data["nodes"] = [nodes[n] for n in file_order(nodes, base.node_ids)]
    data["groups"] = groups
    return Topology.from_dict(data, source="the cluster records")


def with_nodes(base: Topology, specs: Iterable[NodeSpec]) -> Topology:
    """``base`` plus nodes it lacks (hakv.dev.local: nodes added at runtime)."""
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
