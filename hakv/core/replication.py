"""Replication: which records each node must store (invariant I1), and what a write costs.

("Placement" is where a group's *app* runs: hakv.core.ha.Placement. Here it is where
*records* live.)

Three kinds of record, three rules (DESIGN.md "The idea" 1-3; patent Figs. 2A-2H)::

    record                     replicated on                       carried by
    GroupRecord(g)             the owners of g                     g's ensemble
    NodeStatusRecord(x)        the sphere of influence of x        the ensembles of x's groups
                               (every node sharing a group with x) (+ a copy in the cluster
                                                                    ensemble)
    ClusterRecord(name)        every node                          the cluster ensemble
                               (voters store it, the others follow it read-only)

Nothing here reads a file, a clock or a socket: a :class:`~hakv.core.topology.Topology` in,
frozen answers out. ``python -m hakv.core.replication [TOPOLOGY]`` prints where the records
of a topology (default: the nine-node example) are replicated and the messages-per-write
comparison table of docs/replication.md.

Message counts are counted from hakv.raft.host's code and checked by a measurement (see
:func:`write_messages`): they are what hakv sends, not a textbook figure.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from hakv.core.topology import CLUSTER_GROUP, Topology, file_order

__all__ = [
    "ClusterCopy",
    "ClusterRecord",
    "GroupRecord",
    "NodeRecords",
    "NodeStatusRecord",
    "Record",
    "Replication",
    "StartupMessages",
    "WriteMessages",
    "cluster_startup_messages",
    "cluster_startup_messages_full",
    "comparison_table",
    "messages_per_write",
    "messages_per_write_full",
    "records_on",
    "replication_of",
    "replication_set",
    "startup_messages",
    "write_messages",
]

EXAMPLE = "examples/nine-node.toml"
"""The default topology of ``python -m``, relative to the repository (see :func:`example`)."""


def example() -> str:
    """The path of :data:`EXAMPLE` in this checkout (hakv/core/ is two levels down)."""
    return str(Path(__file__).resolve().parents[2] / EXAMPLE)


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class GroupRecord:
    """A resource group's configuration, status and key-value data."""

    group: str


@dataclass(frozen=True)
class NodeStatusRecord:
    """A node's own status record (up/down, load, capacity, last change)."""

    node: str


@dataclass(frozen=True)
class ClusterRecord:
    """A cluster-level record: a node added or removed, a node's failure or reintegration,
    a network, a group definition. ``name`` only labels it; all are replicated alike."""

    name: str


Record = GroupRecord | NodeStatusRecord | ClusterRecord


class ClusterCopy(enum.Enum):
    """How a record relates to the cluster ensemble."""

    NONE = "none"
    """Not in the cluster ensemble at all (group records)."""
    ALSO = "also"
    """Replicated by group ensembles, and also recorded in the cluster ensemble, which every
    node follows (node status: DESIGN.md I1 "... only within its sphere of influence (and in
    the cluster ensemble)"). The replication set counts the group ensembles' copies."""
    ONLY = "only"
    """The cluster ensemble is where it lives (cluster records)."""


@dataclass(frozen=True)
class Replication:
    """Where one record is replicated, and through which ensembles.

    ``nodes`` is the replication set; ``ensembles`` lists the ensembles that carry it
    (group ids in file order, or the cluster ensemble's ``"_cluster"``, which is
    hakv.core.topology.CLUSTER_GROUP: the ``_`` prefix is reserved, so it never clashes
    with a group id).
    """

    record: Record
    nodes: frozenset[str]
    ensembles: tuple[str, ...]
    cluster: ClusterCopy


def replication_of(topology: Topology, record: Record) -> Replication:
    """Where ``record`` is replicated (see the table in the module docstring).

    Raises UnknownGroupError / TopologyError for a group or node not in the topology (a
    user's id), and TypeError for an argument that is not a Record (a caller bug).

    A node on no group has only itself in its sphere of influence and no group ensemble
    to carry its status: ``ensembles`` is then empty.
    """
    if isinstance(record, GroupRecord):
        spec = topology.group(record.group)
        return Replication(record, frozenset(spec.owners), (spec.id,), ClusterCopy.NONE)
    if isinstance(record, NodeStatusRecord):
        groups = tuple(g.id for g in topology.groups_of(record.node))
        return Replication(
            record, topology.sphere_of_influence(record.node), groups, ClusterCopy.ALSO
        )
    if isinstance(record, ClusterRecord):
        return Replication(
            record, frozenset(topology.node_ids), (CLUSTER_GROUP,), ClusterCopy.ONLY
        )
    raise TypeError(f"not a record: {record!r}")


def replication_set(topology: Topology, record: Record) -> frozenset[str]:
    """The nodes whose disks hold ``record``.

    - ``GroupRecord(g)``: the owners of g, and no other node.
    - ``NodeStatusRecord(x)``: the sphere of influence of x (``Topology.sphere_of_influence``);
      see :func:`replication_of` for the cluster ensemble's share (``ClusterCopy.ALSO``).
    - ``ClusterRecord``: every node (voters store it, the others follow it read-only).
    """
    return replication_of(topology, record).nodes


@dataclass(frozen=True)
class NodeRecords:
    """What one node stores: the summary ``hakv inspect`` must match on disk (I1).

    ``groups``: the groups whose records it holds (file order); ``node_status``: the nodes
    whose status records it holds (file order; it is the node's own sphere of influence,
    because sharing a group is symmetric); ``cluster``: always True, every node holds the
    cluster-level records; ``cluster_role``: ``voter`` or ``follower`` (read-only).
    """

    node: str
    groups: tuple[str, ...]
    node_status: tuple[str, ...]
    cluster: bool
    cluster_role: Literal["voter", "follower"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "groups": list(self.groups),
            "node_status": list(self.node_status),
            "cluster": self.cluster,
            "cluster_role": self.cluster_role,
        }


def records_on(topology: Topology, node: str) -> NodeRecords:
    """The records ``node`` must store (TopologyError if the node is unknown).

    Computed from the record side, so it is by construction the inverse of
    :func:`replication_set`: ``g in records_on(t, n).groups`` iff
    ``n in replication_set(t, GroupRecord(g))``, and likewise for node status.
    """
    topology.node(node)
    groups = tuple(
        g.id for g in topology.groups if node in replication_set(topology, GroupRecord(g.id))
    )
    status = tuple(
        x for x in topology.node_ids if node in replication_set(topology, NodeStatusRecord(x))
    )
    role: Literal["voter", "follower"] = "voter" if node in topology.cluster_voters else "follower"
    return NodeRecords(node, groups, status, cluster=True, cluster_role=role)


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class WriteMessages:
    """The Raft messages one write costs in an ensemble of ``members`` nodes.

    Counted from hakv.raft.host + pysyncobj 0.3.17, for a write that is alone in the log
    (no other write in flight):

    1. the leader appends the entry and at once sends one AppendEntries carrying it to
       each follower (``GroupMember._checkCommandsToApply``): ``entry = M-1``;
    2. each follower journals it, fsyncs, and acks (``next_node_idx``, success):
       ``entry_acks = M-1``; with a majority the leader commits and applies;
    3. the commit index rides on the next AppendEntries or heartbeat, which goes out anyway
       (``GroupMember.tick``): ``commit_notice = 0`` and ``commit_notice_acks = 0``. Only a
       write forwarded by a follower (its caller waits until that follower applied it) gets
       an AppendEntries with the commit index at once (``GroupMember.notify_commit``), and
       its ack: M-1 each more.

    ``total`` = ``commit_path`` = 2(M-1), what the writer waits for. Measured: a lone write
    in a 3-member group sends 2+2 = 4 messages, in a 5-member group 8 (tests/test_replication.py,
    ``test_messages_per_write_is_what_hakv_raft_sends``, counts them on real members).

    Under concurrent load the leader batches every queued proposal into one AppendEntries
    per follower per tick, and a tick's commit notice carries the entries proposed since:
    a round of B writes costs about these numbers once, so per write they divide by B. The
    ratio between two ensemble sizes, (M-1)/(N-1), does not change.

    Periodic heartbeats (one AppendEntries + ack per follower per ``heartbeat_period``, 0.1 s)
    are a cost of the ensemble existing, not of the write, and are not counted.
    """

    members: int
    entry: int
    entry_acks: int
    commit_notice: int
    commit_notice_acks: int

    @property
    def commit_path(self) -> int:
        return self.entry + self.entry_acks

    @property
    def total(self) -> int:
        return self.entry + self.entry_acks + self.commit_notice + self.commit_notice_acks


def _positive(value: int, what: str) -> int:
    """``value``, or ValueError: a caller bug (ensemble sizes come from a validated
    topology, whose groups have at least two owners), never a user's input."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be an integer >= 1, got {value!r}")
    return value


def write_messages(members: int) -> WriteMessages:
    """The breakdown of one write in an ensemble of ``members`` (see :class:`WriteMessages`)."""
    followers = _positive(members, "members") - 1
    return WriteMessages(members, followers, followers, 0, 0)


def messages_per_write(m_owners: int) -> int:
    """Messages one write to a group of ``m_owners`` costs: 2(M-1).

    (M-1) AppendEntries carrying the entry + (M-1) acks; the new commit index rides on the
    next AppendEntries or heartbeat. The cluster size N does not appear: only the group's
    owners take part. M=3: 4; M=5: 8.
    """
    return write_messages(m_owners).total


def messages_per_write_full(n_nodes: int) -> int:
    """The same write with one ensemble over all N nodes (full replication): 2(N-1).

    This is the Raft counterpart of the patent's "2N messages per write" for a fully
    replicated database under two-phase commit; counted the same way as
    :func:`messages_per_write`, so the two are directly comparable. N=9: 16; N=1000: 1998.

    hakv's own cluster ensemble pays this for each cluster-level record: its voters and
    its read-only followers all receive and ack every entry (the commit waits only for a
    majority of the voters). Cluster-level records are rare (node added, failed, ...).
    """
    return write_messages(n_nodes).total


@dataclass(frozen=True)
class StartupMessages:
    """Messages to bring a whole topology up, one status write per node per ensemble.

    ``group_messages``: each node's "up" status written into each group that lists it (as
    hakv.node.process does): sum over groups g of M_g writes x 2(M_g-1). Grows with N only through
    the number of groups, i.e. linearly for a fixed M.

    ``cluster_messages``: the cluster ensemble records failures and reintegrations, not
    start-ups, so only a node that owns no group (its status has no other home) writes
    its "up" there: 2(N-1) messages each, none for a topology whose every node owns a
    group. One entry per node there would cost N x 2(N-1), as much as full replication
    (the patent's N^2), and every node re-reads the cluster records after each entry.
    """

    group_messages: int
    cluster_messages: int

    @property
    def total(self) -> int:
        return self.group_messages + self.cluster_messages


def startup_messages(topology: Topology) -> StartupMessages:
    """:class:`StartupMessages` for ``topology``, counted without batching."""
    group = sum(len(g.owners) * messages_per_write(len(g.owners)) for g in topology.groups)
    n = len(topology.node_ids)
    homeless = sum(1 for node in topology.node_ids if not topology.groups_of(node))
    return StartupMessages(group, homeless * messages_per_write_full(n) if n else 0)


def cluster_startup_messages(n_nodes: int, m_owners: int) -> int:
    """Bringing up N nodes, each on one group of M owners: N x 2(M-1) messages.

    Each node's coming up is one write in its group (the group part of
    :class:`StartupMessages` for a cluster cut into N/M disjoint groups). Linear in N.
    """
    return _positive(n_nodes, "n_nodes") * messages_per_write(m_owners)


def cluster_startup_messages_full(n_nodes: int) -> int:
    """Bringing up N nodes with every node's status fully replicated: N x 2(N-1).

    N status events, each replicated to all N nodes: the patent's "on the order of N^2"
    (Raft-counted; under the patent's 2PC count it is N x 2N).
    """
    return _positive(n_nodes, "n_nodes") * messages_per_write_full(n_nodes)


def comparison_table(
    owners: Sequence[int] = (3, 5), cluster_sizes: Sequence[int] = (9, 100, 1000)
) -> str:
    """The messages-per-write table of docs/replication.md, as Markdown."""
    lines = [
        "| M owners | N nodes | per write, group of M | per write, one ensemble of N "
        "| full ÷ group | startup, groups of M | startup, full |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in owners:
        for n in cluster_sizes:
            group, full = messages_per_write(m), messages_per_write_full(n)
            lines.append(
                f"| {m} | {n:,} | {group:,} | {full:,} | {full / group:,.1f}× "
                f"| {cluster_startup_messages(n, m):,} | {cluster_startup_messages_full(n):,} |"
            )
    return "\n".join(lines)


def replication_report(topology: Topology) -> str:
    """Where every group's and node's records are replicated, as plain text (for
    ``python -m``)."""
    lines = [f"cluster {topology.cluster}: {len(topology.node_ids)} nodes, "
             f"{len(topology.groups)} groups, cluster voters {' '.join(topology.cluster_voters)}"]
    lines.append("")
    lines.append("group records (replicated on the owners only):")
    for g in topology.groups:
        lines.append(f"  {g.id:>6}: {' '.join(g.owners)}")
    lines.append("")
    lines.append("node status records (replicated on the sphere of influence):")
    for node in topology.node_ids:
        sphere = replication_set(topology, NodeStatusRecord(node))
        lines.append(f"  {node:>6}: {' '.join(file_order(sphere, topology.node_ids))}")
    lines.append("")
    lines.append("what each node stores:")
    for node in topology.node_ids:
        rec = records_on(topology, node)
        lines.append(
            f"  {node:>6}: groups {' '.join(rec.groups) or '-'}; "
            f"node status of {' '.join(rec.node_status)}; cluster records ({rec.cluster_role})"
        )
    lines.append("")
    start = startup_messages(topology)
    lines.append(
        f"startup: {start.group_messages:,} messages for every node's status write in each "
        f"of its groups, against {cluster_startup_messages_full(len(topology.node_ids)):,} "
        f"with full replication; recording each start as its own cluster-level record would "
        f"add {start.cluster_messages:,}"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m hakv.core.replication [TOPOLOGY]``: replication report + comparison table."""
    from hakv.core.topology import load_topology  # I/O only here, never on import

    args = list(sys.argv[1:] if argv is None else argv)
    path = args[0] if args else example()
    print(replication_report(load_topology(path)))
    print()
    print("messages per write (counted from hakv.raft.host; see WriteMessages):")
    print()
    print(comparison_table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
