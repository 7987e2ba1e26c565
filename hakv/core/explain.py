"""Plain-English answers to "where does this live, and why?" (``hakv explain node|group ID``).

Each explanation is built from the pure core only: replication (hakv.core.replication),
routing and bridges (hakv.core.routing), and the failure handling of patent Fig. 4
(:func:`failure_effects`), which asks the HA manager's own rules (hakv.core.ha.decide),
so what it says is what the manager would do. The functions return text; the CLI prints
it.

Fig. 4, as computed here: when nodes fail, only the groups that list one of them react. A
group without a majority of its owners suspends its services until enough owners return.
A group with one keeps serving, and its leader decides as the HA manager does: if the app
ran on a failed owner, it restarts, once the lease has surely expired, on the first live
owner by precedence that may run it (not where it failed beyond its restart limit, not on
a node without room for its load, a requested move target first), and not at all while
the group is in maintenance; if it runs elsewhere, it stays, unless a move or a fallback
is due. Before the failure, each group's app is taken to run where the records given say,
or else where initial placement puts it with all owners up: on the first owner with room.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from hakv.core import ha
from hakv.core.quorum import has_quorum
from hakv.core.replication import (
    GroupRecord,
    NodeStatusRecord,
    messages_per_write,
    messages_per_write_full,
    records_on,
    replication_set,
)
from hakv.core.routing import bridges
from hakv.core.topology import GroupSpec, Topology, file_order

__all__ = ["GroupEffect", "explain_group", "explain_node", "failure_effects", "initial_runners"]


@dataclass(frozen=True)
class GroupEffect:
    """What one group does when some of its owners fail (patent Fig. 4).

    ``runner_after`` is None when the app runs nowhere: the group has no quorum (its
    services are suspended), or it has one but its app is not restarted (``note`` says
    why). ``note`` is empty when the HA manager does the plain thing (keep the app where
    it runs, or restart it on the next live owner by precedence); otherwise it gives the
    manager's reason (maintenance, a full node, an owner where the app failed, a move, a
    fallback).
    """

    group: str
    failed_owners: tuple[str, ...]
    live_owners: tuple[str, ...]
    quorum_size: int
    runner_before: str | None
    runner_after: str | None
    note: str = ""

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
        if not self.has_quorum:
            return head + (
                "no quorum, so it suspends its services (stops its app, refuses writes) "
                "until enough owners return, then reintegrates them and resumes."
            )
        before = self.runner_before
        if self.runner_after is None:
            if before is None:
                return head + f"keeps serving; its app runs nowhere: {self.note}."
            return head + (
                f"keeps serving; its app, which ran on {before}, is not restarted: "
                f"{self.note}."
            )
        if self.moved:
            where = f"which ran on {before}" if before is not None else "which ran nowhere"
            verb = "moves to" if before is not None and before not in self.failed_owners else (
                "restarts on" if before is not None else "starts on")
            return head + (
                f"keeps serving; its app, {where}, {verb} {self.runner_after} "
                f"({self.note or 'the next live owner by precedence'})."
            )
        return head + f"keeps serving; its app stays on {before}" + (
            f" ({self.note})." if self.note else "."
        )


def _running(node: str) -> ha.Placement:
    return ha.Placement(node=node, state="running", token=1)


def _has_room(topology: Topology, held: Mapping[str, dict[str, int]], node: str,
              group: GroupSpec) -> bool:
    """The bridge's rule (hakv.node.bridge): the group's load fits on ``node`` next to
    what the other groups hold there."""
    others = sum(load for gid, load in held.get(node, {}).items() if gid != group.id)
    return topology.node(node).fits(others, group.load)


def _place(topology: Topology, group: GroupSpec, decision: ha.Decision,
           held: Mapping[str, dict[str, int]]) -> tuple[str | None, list[str]]:
    """The manager's place step (hakv.node.manager.Manager.place): the first candidate
    with room; the full ones it skipped, in words."""
    full: list[str] = []
    for candidate in decision.candidates:
        if _has_room(topology, held, candidate, group):
            return candidate, full
        others = sum(v for g, v in held.get(candidate, {}).items() if g != group.id)
        full.append(f"{candidate} is full (capacity {topology.node(candidate).capacity}, "
                    f"{others} held by other groups, load {group.load})")
    return None, full


def initial_runners(topology: Topology) -> dict[str, str | None]:
    """Where each group's app runs with every owner up: initial placement
    (:func:`hakv.core.ha.decide`) on the first owner with room, groups taken in file order
    (at runtime they race for the last unit of a node's capacity; exactly one gets it)."""
    held: dict[str, dict[str, int]] = {}
    runners: dict[str, str | None] = {}
    for group in topology.groups:
        view = ha.GroupView(group.owners, ha.Placement(), frozenset(group.owners), 0.0)
        node, _ = _place(topology, group, ha.decide(view, 0.0, topology.ha), held)
        runners[group.id] = node
        if node is not None:
            held.setdefault(node, {})[group.id] = group.load
    return runners


def _passed_over(group: GroupSpec, record: ha.Placement, live: frozenset[str], chosen: str,
                 full: Sequence[str], stop_reason: str) -> list[str]:
    """Why the app goes to ``chosen`` rather than the next live owner by precedence."""
    words = [stop_reason] if stop_reason else []
    if record.target == chosen and not stop_reason:
        words.append(f"a move to {chosen} is requested")
    for owner in group.owners[: group.owners.index(chosen)]:
        if owner in live and owner in record.failed_on:
            words.append(f"its app failed on {owner} beyond its restart limit")
    return words + list(full)


def _react(topology: Topology, group: GroupSpec, before: ha.Placement,
           down: frozenset[str], held: dict[str, dict[str, int]],
           in_window: bool) -> tuple[str | None, str]:
    """Run the group leader's decisions (:func:`hakv.core.ha.decide`) on the record
    ``before`` with ``down`` failed, until it waits: (runner after, note)."""
    tuning = topology.ha
    live = frozenset(o for o in group.owners if o not in down)
    runner = before.node if before.holds_lease else None
    # A failed runner renews no more: its leader decides once the lease has surely expired.
    now = tuning.takeover_wait if runner in down else 0.0
    plain = next(o for o in group.owners if o in live)
    record, stop_reason = before, ""
    while True:  # at most: stop (for a move or a fallback), then place
        view = ha.GroupView(group.owners, record, live, 0.0, stable=live,
                            fallback=group.fallback, in_window=in_window)
        decision = ha.decide(view, now, tuning)
        if decision.action == "stop":
            stop_reason = decision.reason
            record = replace(record, state="stopped", reason=decision.reason)
            continue
        if decision.action == "place":
            chosen, full = _place(topology, group, decision, held)
            if chosen is None:
                return None, f"no live owner has room for its load ({'; '.join(full)})"
            if runner is not None:
                held.get(runner, {}).pop(group.id, None)
            held.setdefault(chosen, {})[group.id] = group.load
            words = _passed_over(group, record, live, chosen, full, stop_reason)
            if chosen != plain and not words:
                words = [decision.reason]
            return chosen, "; ".join(words)
        if decision.action == "unplace":
            failed = [o for o in group.owners if o in live and o in record.failed_on]
            return None, (f"its app failed beyond its restart limit on every live owner "
                          f"({', '.join(failed)}); `hakv group cleanup {group.id}` lets it "
                          "run there again")
        # wait or none
        after = runner if runner not in down else None
        if record.maintenance:
            return after, (f"the group is in maintenance, so hakv does not manage its app; "
                           f"`hakv group maintenance {group.id} off` resumes that")
        if after is not None and decision.reason == f"{after} holds the lease":
            return after, ""
        return after, decision.reason


def failure_effects(topology: Topology, failed: Iterable[str],
                    placements: Mapping[str, ha.Placement] | None = None, *,
                    minute_of_day: int | None = None) -> tuple[GroupEffect, ...]:
    """The reaction of every group that lists a failed node, in file order (Fig. 4).

    Groups that list none of ``failed`` are not in the result: they do not react. A group
    without a majority of live owners suspends; a group with one decides as its leader's
    HA manager would (:func:`hakv.core.ha.decide`, then the manager's place step: the
    first candidate with room for the group's load). ``placements``: each group's
    placement record before the failure (maintenance, where its app failed, a requested
    move); a group not in it runs where :func:`initial_runners` puts it. The load of every
    app that runs counts against its node's capacity; groups react in file order.
    ``minute_of_day`` is the leader's local time for fallback windows (None: inside any
    window). A group without ``[groups.app]`` is explained as if it had one: the patent's
    group services move by the same rules.
    """
    down = frozenset(failed)
    for node in down:
        topology.node(node)  # TopologyError for an unknown node
    records = dict(placements or {})
    initial = initial_runners(topology)
    held: dict[str, dict[str, int]] = {}
    before: dict[str, ha.Placement] = {}
    for group in topology.groups:
        record = records.get(group.id)
        if record is None:
            first = initial[group.id]
            record = _running(first) if first is not None else ha.Placement()
        before[group.id] = record
        if record.holds_lease and record.node is not None:
            held.setdefault(record.node, {})[group.id] = group.load
    effects = []
    for group in topology.groups:
        hit = tuple(o for o in group.owners if o in down)
        if not hit:
            continue
        live = tuple(o for o in group.owners if o not in down)
        record = before[group.id]
        runner_before = record.node if record.holds_lease else None
        if not has_quorum(group.owners, live):
            effects.append(GroupEffect(group.id, hit, live, group.quorum_size, runner_before,
                                       None))
            continue
        in_window = True if minute_of_day is None else ha.in_window(group.fallback_window,
                                                                    minute_of_day)
        after, note = _react(topology, group, record, down, held, in_window)
        effects.append(GroupEffect(group.id, hit, live, group.quorum_size, runner_before,
                                   after, note))
    return tuple(effects)


def _words(items: Sequence[str], conj: str = "and") -> str:
    items = list(items)
    if not items:
        return "none"
    if len(items) == 1:
        return items[0]
    return f"{', '.join(items[:-1])} {conj} {items[-1]}"


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
    sphere = file_order(replication_set(topology, NodeStatusRecord(node)), topology.node_ids)
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
    owners = file_order(replication_set(topology, GroupRecord(group.id)), topology.node_ids)
    tolerated = m - group.quorum_size
    runner = initial_runners(topology)[group.id]
    where = (f"its app runs on {runner}" if runner is not None
             else "no owner has room for its app")
    lines = [
        f"Group {group.id}: owners in precedence order {_chain(group)}; with all of them up, "
        f"{where} (load {group.load}).",
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
