"""The change router of patent Fig. 3: which ensembles a change goes to, and over which bridges.

::

    302 a change ──► 304 cluster-level? ──yes──► 306 the cluster ensemble (every node sees it)
                           │ no
                           ▼
                     308 the group's ensemble
                           │
                     310 does it concern a node the group shares with other groups?
                           │ yes
                           ▼
                     312 the bridge on that node forwards it to those groups ── and no further

Three kinds of change:

- :class:`ClusterChange` (nodes added/removed/failed/reintegrated, groups defined/deleted,
  networks) goes to ``("_cluster",)``, the cluster ensemble (``CLUSTER_GROUP``).
- :class:`GroupChange` (a group's config, status, key-value data) goes to the group's
  ensemble only. A ``placement`` change that names the node the group's app is placed on
  is an allocation on that node, and is routed like one (below).
- :class:`NodeChange` is about one node X: its status, or an allocation made on X by a
  group G. It goes to every group that lists X, because exactly those groups' owners form
  X's sphere of influence. How it gets there:

  - recorded in group G first (an allocation by G; or X's status as G recorded it): G's
    ensemble, then the bridge on X forwards it to each *other* group that lists X, one
    :class:`BridgeHop` per group. Groups that merely share some other node with those
    groups do not get it: forwarding stops after one hop.
  - X's own status report (``group=None``): X proposes it directly into each of its groups
    (X owns them all, so no bridge hop is needed). This is what hakv.node.process does.

  An allocation on a shared node is also *serialized* by the bridge on that node
  (``Route.serialized_by``), so two groups never overcommit it.

The bridges of a topology (:func:`bridges`): one on each node owned by two or more groups,
connecting every pair of its groups. Nine-node example: 208 bridges 220-226, 210 bridges
222-226, 212 bridges 224-226.

Targets are ordered: the origin first ("_cluster", the origin group, or for a node's own
report its groups in file order), then forwarded groups in file order. Everything is pure;
``python -m hakv.core.routing [TOPOLOGY]`` prints the routing table of docs/replication.md.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from hakv.core.replication import example
from hakv.core.topology import CLUSTER_GROUP, GroupSpec, Topology
from hakv.errors import BadRequestError

__all__ = [
    "BridgeHop",
    "Change",
    "ClusterChange",
    "ClusterChangeKind",
    "GroupChange",
    "GroupChangeKind",
    "NodeChange",
    "NodeChangeKind",
    "Route",
    "bridges",
    "route",
    "routing_table",
]

ClusterChangeKind = Literal[
    "node_added",
    "node_removed",
    "node_failed",
    "node_reintegrated",
    "group_defined",
    "group_deleted",
    "network_changed",
]
GroupChangeKind = Literal["config", "status", "placement", "kv"]
NodeChangeKind = Literal["status", "allocation"]

CLUSTER_CHANGE_KINDS: tuple[str, ...] = get_args(ClusterChangeKind)
GROUP_CHANGE_KINDS: tuple[str, ...] = get_args(GroupChangeKind)
NODE_CHANGE_KINDS: tuple[str, ...] = get_args(NodeChangeKind)


def _check_kind(kind: str, allowed: tuple[str, ...], what: str) -> None:
    if kind not in allowed:
        raise BadRequestError(
            f"{what} kind {kind!r} is not one of: {', '.join(allowed)}", kind=kind
        )


@dataclass(frozen=True)
class ClusterChange:
    """A cluster-level change; ``subject`` names the node, group or network it is about."""

    kind: ClusterChangeKind
    subject: str | None = None

    def __post_init__(self) -> None:
        _check_kind(self.kind, CLUSTER_CHANGE_KINDS, "cluster change")


@dataclass(frozen=True)
class GroupChange:
    """A change to one group's records. For ``placement``, ``node`` is the owner the app
    is (now) placed on, if any: that makes it an allocation on ``node``."""

    group: str
    kind: GroupChangeKind
    node: str | None = None

    def __post_init__(self) -> None:
        _check_kind(self.kind, GROUP_CHANGE_KINDS, "group change")
        if self.node is not None and self.kind != "placement":
            raise BadRequestError(
                f"group change {self.kind}: only a placement change names a node",
                group=self.group,
            )


@dataclass(frozen=True)
class NodeChange:
    """A change about one node: its ``status``, or an ``allocation`` made on it.

    ``group``: the group that made the allocation (required for ``allocation``), or the
    group that recorded the status change; None for the node's own status report.
    """

    node: str
    kind: NodeChangeKind
    group: str | None = None

    def __post_init__(self) -> None:
        _check_kind(self.kind, NODE_CHANGE_KINDS, "node change")
        if self.kind == "allocation" and self.group is None:
            raise BadRequestError(
                f"an allocation on node {self.node} is made by a group: name it (group=...)",
                node=self.node,
            )


Change = ClusterChange | GroupChange | NodeChange


@dataclass(frozen=True)
class BridgeHop:
    """The bridge on ``via_node`` forwards a change from one group's ensemble to another's."""

    via_node: str
    from_group: str
    to_group: str


@dataclass(frozen=True)
class Route:
    """Where a change goes.

    ``targets``: the ensembles that record it ("_cluster" and/or group ids), origin first.
    ``hops``: how it reaches the targets beyond the origin group (empty when there are none).
    ``proposed_by``: the node that proposes it into every target itself (a node's own
    status report), else None. ``serialized_by``: the shared node whose bridge orders it
    against the other groups' allocations on that node, else None.
    """

    change: Change
    targets: tuple[str, ...]
    hops: tuple[BridgeHop, ...] = ()
    proposed_by: str | None = None
    serialized_by: str | None = None

    def render(self) -> str:
        """Plain lines, stable: the format of tests/testdata/routing/*.txt."""
        lines = [f"targets: {' '.join(self.targets) if self.targets else '(none)'}"]
        if self.proposed_by is not None:
            lines.append(f"proposed by {self.proposed_by} into each target")
        lines += [
            f"hop: {hop.from_group} -> {hop.to_group} via bridge {hop.via_node}"
            for hop in self.hops
        ]
        if self.serialized_by is not None:
            lines.append(f"serialized by the bridge on {self.serialized_by}")
        return "\n".join(lines)


def bridges(topology: Topology) -> dict[str, tuple[tuple[str, str], ...]]:
    """Shared node -> the pairs of groups its bridge connects (every pair of its groups).

    Nodes in file order; pairs in group file order. Nodes on fewer than two groups have no
    bridge and are not listed.
    """
    return {
        node: tuple(itertools.combinations(groups, 2))
        for node, groups in topology.shared_nodes().items()
    }


def _owning_group(topology: Topology, group_id: str, node: str) -> GroupSpec:
    spec = topology.group(group_id)
    if node not in spec.owners:
        raise BadRequestError(
            f"group {group_id} does not list node {node} (owners: {', '.join(spec.owners)}); "
            "a group records the status of, and allocates on, its own owners only",
            group=group_id,
            node=node,
        )
    return spec


def _about_node(
    topology: Topology, change: Change, node: str, origin: str | None, allocation: bool
) -> Route:
    """The route of a change about ``node``, first recorded in ``origin`` (None: the node's
    own report, proposed by the node into each of its groups)."""
    groups = tuple(g.id for g in topology.groups_of(node))  # TopologyError if unknown
    shared = len(groups) >= 2
    serialized_by = node if allocation and shared else None
    if origin is None:
        return Route(change, groups, proposed_by=node if groups else None)
    _owning_group(topology, origin, node)
    others = tuple(g for g in groups if g != origin)
    hops = tuple(BridgeHop(node, origin, other) for other in others)
    return Route(change, (origin, *others), hops, serialized_by=serialized_by)


def route(topology: Topology, change: Change) -> Route:
    """The route of ``change`` (patent Fig. 3); see the module docstring for the rules.

    Raises TopologyError for an unknown node, UnknownGroupError for an unknown group and
    BadRequestError for a group that does not list the node the change is about; TypeError
    for an argument that is not a Change (a caller bug).
    """
    if isinstance(change, ClusterChange):
        return Route(change, (CLUSTER_GROUP,))
    if isinstance(change, GroupChange):
        spec = topology.group(change.group)
        if change.kind == "placement" and change.node is not None:
            return _about_node(topology, change, change.node, spec.id, allocation=True)
        return Route(change, (spec.id,))
    if isinstance(change, NodeChange):
        return _about_node(
            topology, change, change.node, change.group, allocation=change.kind == "allocation"
        )
    raise TypeError(f"not a change: {change!r}")


def routing_table(topology: Topology) -> list[tuple[str, Route]]:
    """Representative changes of ``topology`` and their routes, for docs and operators:
    a cluster change, a kv write in each group, each node's own status report, and each
    group's allocation on each of its shared owners."""
    rows: list[tuple[str, Route]] = [
        ("cluster: node_added", route(topology, ClusterChange("node_added"))),
    ]
    for group in topology.groups:
        rows.append((f"group {group.id}: kv write", route(topology, GroupChange(group.id, "kv"))))
    for node in topology.node_ids:
        rows.append((f"node {node}: own status", route(topology, NodeChange(node, "status"))))
    shared = topology.shared_nodes()
    for node, groups in shared.items():
        for gid in groups:
            rows.append(
                (
                    f"node {node}: allocation by {gid}",
                    route(topology, NodeChange(node, "allocation", gid)),
                )
            )
    return rows


def format_routing_table(topology: Topology) -> str:
    """:func:`routing_table` as Markdown."""
    lines = ["| change | targets | bridge hops |", "|---|---|---|"]
    for label, r in routing_table(topology):
        hops = ", ".join(f"{h.from_group} → {h.to_group} via {h.via_node}" for h in r.hops)
        note = f" (proposed by {r.proposed_by})" if r.proposed_by else ""
        if r.serialized_by:
            hops += f"; serialized by {r.serialized_by}"
        lines.append(f"| {label} | {', '.join(r.targets) or '—'}{note} | {hops or '—'} |")
    lines.append("")
    lines.append("| shared node | bridges |")
    lines.append("|---|---|")
    for node, pairs in bridges(topology).items():
        lines.append(f"| {node} | {', '.join(f'{a}–{b}' for a, b in pairs)} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m hakv.core.routing [TOPOLOGY]``: the routing table (default: nine-node)."""
    from hakv.core.topology import load_topology  # I/O only here, never on import

    args = list(sys.argv[1:] if argv is None else argv)
    path = args[0] if args else example()
    print(format_routing_table(load_topology(path)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
