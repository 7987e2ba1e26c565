"""Plain-English answers to "where does this live, and why?" (``hakv explain node|group ID``).

Each explanation is built from the pure core only: placement (hakv.core.replication), routing and
bridges (hakv.core.routing), and the failure handling of patent Fig. 4 (:func:`failure_effects`).
The functions return text; the CLI prints it.

Fig. 4, as computed here: when nodes fail, only the groups that list one of them react. A
group with a majority of its owners still up keeps serving; if its app ran on a failed
owner, it restarts on the first live owner by precedence. A group without a majority
suspends its services until enough owners return. Before the failure, the app of each
group is taken to run on its first owner (all owners up).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from hakv.core.replication import (
    GroupRecord,
    NodeStatusRecord,
    messages_per_write,
    messages_per_write_full,
    records_on,
    replication_set,
)
from hakv.core.routing import bridges
from hakv.core.topology import GroupSpec, Topology

__all__ = ["GroupEffect", "explain_group", "explain_node", "failure_effects"]


@dataclass(frozen=True)
class GroupEffect:
    """What one group does when some of its owners fail (patent Fig. 4)."""

    group: str
    failed_owners: tuple[str, ...]
    live_owners: tuple[str, ...]
    quorum_size: int
    runner_before: str
    runner_after: str | None  # None: services suspended

    @property
    def has_quorum(self) -> bool:
        return len(self.live_owners) >= self.quorum_size

    @property
    def moved(self) -> bool:
        return self.runner_after is not None and self.runner_after != self.runner_before

    def describe(self, *, name: bool = True) -> str:
        """One sentence: owners left against the quorum, and what the group does."""
        owners = len(self.failed_owners) + len(self.live_owners)
        head = (
            f"{self.group + ': ' if name else ''}{len(self.live_owners)} of {owners} owners "
            f"left, quorum is {self.quorum_size}: "
        )
        if self.runner_after is None:
            return head + (
                "no quorum, so it suspends its services (stops its app, refuses writes) "
                "until enough owners return, then reintegrates them and resumes."
            )
        if self.moved:
            return head + (
                f"keeps serving; its app, which ran on {self.runner_before}, restarts on "
                f"{self.runner_after} (the next live owner by precedence)."
            )
        return head + f"keeps serving; its app stays on {self.runner_before}."


def failure_effects(topology: Topology, failed: Iterable[str]) -> tuple[GroupEffect, ...]:
    """The reaction of every group that lists a failed node, in file order (Fig. 4).

    Groups that list none of ``failed`` are not in the result: they do not react.
    """
    down = set(failed)
    for node in down:
        topology.node(node)  # TopologyError for an unknown node
    effects = []
    for group in topology.groups:
        hit = tuple(o for o in group.owners if o in down)
        if not hit:
            continue
        live = tuple(o for o in group.owners if o not in down)
        runner = live[0] if len(live) >= group.quorum_size else None
        effects.append(GroupEffect(group.id, hit, live, group.quorum_size, group.owners[0], runner))
    return tuple(effects)


def _words(items: Sequence[str], conj: str = "and") -> str:
    items = list(items)
    if not items:
        return "none"
    if len(items) == 1:
        return items[0]
    return f"{', '.join(items[:-1])} {conj} {items[-1]}"


def _ordered(topology: Topology, nodes: Iterable[str]) -> list[str]:
    wanted = set(nodes)
    return [n for n in topology.node_ids if n in wanted]


def _chain(group: GroupSpec) -> str:
    return " > ".join(group.owners)


def _fig4(topology: Topology, node: str) -> list[str]:
    effects = failure_effects(topology, [node])
    lines = [f"If {node} fails (patent Fig. 4), only the groups that list it react:"]
    if not effects:
        lines = [f"If {node} fails (patent Fig. 4), no group reacts: no group lists it."]
    lines += [f"- {effect.describe()}" for effect in effects]
    reacting = {e.group for e in effects}
    quiet = [g.id for g in topology.groups if g.id not in reacting]
    if quiet and effects:
        verb = "does" if len(quiet) == 1 else "do"
        lines.append(
            f"Group{'s' if len(quiet) > 1 else ''} {_words(quiet)} {verb} not list {node}: "
            "no election, stall or error there; they only see the cluster-level event "
            f"\"node {node} failed\"."
        )
    return lines


def explain_node(topology: Topology, node: str) -> str:
    """Where node ``node``'s records and the records on its disk are replicated, and why."""
    spec = topology.node(node)
    groups = topology.groups_of(node)
    held = records_on(topology, node)
    sphere = _ordered(topology, replication_set(topology, NodeStatusRecord(node)))
    lines: list[str] = []

    if groups:
        owned = [
            f"{g.id} (owner {g.owners.index(node) + 1} of {len(g.owners)}: {_chain(g)})"
            for g in groups
        ]
        lines.append(
            f"Node {node} owns {len(groups)} group{'s' if len(groups) > 1 else ''}: "
            f"{_words(owned)}."
        )
    else:
        lines.append(f"Node {node} owns no group.")
    lines.append("")

    lines.append("On its disk:")
    if held.groups:
        lines.append(
            f"- the records of group{'s' if len(held.groups) > 1 else ''} "
            f"{_words(held.groups)}, because it is one of "
            f"{'their' if len(held.groups) > 1 else 'its'} owners; a group's records "
            "live on its owners and nowhere else."
        )
    else:
        lines.append("- no group's records: it owns no group.")
    lines.append(
        f"- the status records of {_words(held.node_status)}: every node it shares a group "
        "with (its sphere of influence), itself included."
    )
    voters = " ".join(topology.cluster_voters)
    if held.cluster_role == "voter":
        lines.append(
            "- the cluster-level records (nodes, group definitions, networks), like every "
            f"node; it is a voter of the cluster ensemble (voters: {voters})."
        )
    else:
        lines.append(
            "- the cluster-level records (nodes, group definitions, networks), like every "
            f"node; it follows the cluster ensemble read-only (voters: {voters})."
        )
    lines.append("")

    if groups:
        why = "; ".join(f"{g.id}: {' '.join(g.owners)}" for g in groups)
        lines.append(
            f"Its own status is replicated on its sphere of influence, {' '.join(sphere)}, "
            f"because those nodes share a group with it ({why}). It proposes the status into "
            f"{_words([g.id for g in groups])} itself. A copy is also kept in the cluster "
            "ensemble (DESIGN.md I1)."
        )
    else:
        lines.append(
            f"Its status has no group to live in: its sphere of influence is {node} alone. "
            "Its status is kept in the cluster ensemble (DESIGN.md I1)."
        )
    lines.append("")

    pairs = bridges(topology).get(node)
    if pairs:
        names = [g.id for g in groups]
        lines.append(
            f"Bridge: {node} is shared by {_words(names)}. Its bridge forwards changes about "
            f"{node} (its status, allocations made on it) from the group where they are "
            f"recorded to the other{'s' if len(names) > 2 else ''}, and no further; it "
            f"serializes the allocation decisions of {_words(names)} that place load on "
            f"{node} (capacity {spec.capacity}), so they never overcommit it."
        )
    else:
        lines.append(f"Bridge: none; {node} is on fewer than two groups.")
    lines.append("")
    lines += _fig4(topology, node)
    return "\n".join(lines)


def explain_group(topology: Topology, group_id: str) -> str:
    """Where group ``group_id``'s records are replicated, and why; its quorum and bridges."""
    group = topology.group(group_id)
    m = len(group.owners)
    n = len(topology.node_ids)
    owners = _ordered(topology, replication_set(topology, GroupRecord(group.id)))
    tolerated = m - group.quorum_size
    lines = [
        f"Group {group.id}: owners in precedence order {_chain(group)}; with all of them up, "
        f"its app runs on {group.owners[0]} (load {group.load}).",
        "",
        f"Its records (configuration, status, key-value data) are replicated on exactly its "
        f"{m} owners, {' '.join(owners)}, and on no other node: the group is its own Raft "
        "ensemble over its owner list.",
        f"Quorum: {group.quorum_size} of {m} owners must be up and connected for it to serve; "
        f"it survives {tolerated} owner failure{'s' if tolerated != 1 else ''}, whatever "
        "happens in the rest of the cluster.",
        f"A write costs {messages_per_write(m)} messages (2 x ({m}-1)), against "
        f"{messages_per_write_full(n)} for one ensemble over all {n} nodes.",
        "",
    ]
    shared = topology.shared_nodes()
    links = []
    for node in group.owners:
        others = [g for g in shared.get(node, ()) if g != group.id]
        if others:
            links.append(f"{node} also owns {_words(others)}")
    if links:
        lines.append(
            f"Shared nodes: {'; '.join(links)}. The bridge on each forwards changes about "
            f"that node (its status, allocations on it) between {group.id} and those "
            "groups, and no further."
        )
    else:
        lines.append("Shared nodes: none; no change of this group is forwarded anywhere.")
    linked = {g for node in group.owners for g in shared.get(node, ())}
    apart = [g.id for g in topology.groups if g.id not in linked and g.id != group.id]
    if apart:
        lines.append(
            f"It shares no node with {_words(apart)}: a failure in one of them causes no "
            f"election, stall or error in {group.id}, and the other way round."
        )
    lines.append("")
    lines.append("If one owner fails (patent Fig. 4):")
    for node in group.owners:
        (effect,) = [e for e in failure_effects(topology, [node]) if e.group == group.id]
        lines.append(f"- {node} fails: {effect.describe(name=False)}")
    return "\n".join(lines)
