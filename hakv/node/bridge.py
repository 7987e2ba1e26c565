"""Bridges: the work a node on two or more groups does for them (DESIGN.md point 6, I7).

Forwarding. A change about a node recorded in group G (a ``notify``, or an allocation on
that node) lands in G's *outbox*, keyed by the log index that applied it. Every node that
owns both G and another group H runs a bridge that copies G's outbox entries about the
nodes G and H share into H, in log order, one at a time, each acknowledged before the
next. H applies a forwarded entry only if its source index is above H's high-water mark
for (G, that node): so however many bridges forward the same stream, after however many
restarts or failovers, each change arrives in H exactly once and in order, and goes no
further than the groups that list the node it is about.

Allocation. Only the bridge on node X decides allocations that place load on X, one at a
time: it reads, linearizably, what each group it owns has allocated on X (X owns every
group that can place load on X, so it holds all of them), checks X's declared capacity,
and only then records the allocation in the asking group's log. Two groups can therefore
never overcommit X; while X is down, nothing is allocated on it.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from typing import Any

from hakv import errors
from hakv.core import codec, routing
from hakv.core.topology import has_room
from hakv.node.ports import GroupHost, TopologyView

log = logging.getLogger("hakv.node.bridge")

FORWARD_INTERVAL = 0.2  # seconds to the next round after a round that failed
IDLE_INTERVAL = 2.0
"""Seconds between rounds while every outbox is forwarded: a new outbox entry pokes the
bridge at once (GroupStore.on_outbox), so this only backs that up."""

Link = tuple[str, str, tuple[str, ...]]
"""(source group, target group, the nodes both list): the changes about those nodes
flow from the source's outbox into the target."""


class Bridge:
    """The bridge of node ``me`` over the groups it hosts (``groups``), as the cluster
    view (``view``) links them; ``capacity`` is the node's declared capacity."""

    def __init__(self, me: str, groups: GroupHost, view: TopologyView, capacity: int) -> None:
        self.me = me
        self.groups = groups
        self.view = view
        self.capacity = capacity
        self._alloc_lock = threading.Lock()
        self._client = f"bridge-{me}-{uuid.uuid4().hex[:12]}"
        self._seq = itertools.count(1)
        self._wake = threading.Event()
        self.forwarded = 0  # entries this bridge got applied (duplicates not counted)
        self.behind_since: dict[tuple[str, str], float] = {}
        """(source, target) -> when (``time.monotonic``) a round first found an outbox
        entry of that link to forward that is not applied yet; gone once the link is
        caught up. /metrics shows its age as the link's forwarding lag."""
        self._caught_up: dict[str, int] = {}  # source group -> outbox head fully forwarded
        self._links_key: tuple[int, tuple[str, ...]] | None = None
        self._links: list[Link] = []

    # ------------------------------------------------------------------ forwarding

    def links(self) -> list[Link]:
        """Both directions of every link of this node's bridge (hakv.core.routing.bridges)
        between two groups hosted here, each with the nodes the two groups share
        (Topology.shared_nodes); empty on a node that hosts fewer than two groups."""
        topology = self.view.topology
        hosted = self.groups.hosted()
        key = (id(topology), tuple(hosted))
        if self._links_key == key:
            return self._links
        shared = topology.shared_nodes()
        result: list[Link] = []
        for a, b in routing.bridges(topology).get(self.me, ()):
            if a not in hosted or b not in hosted:
                continue
            about = tuple(sorted(n for n, groups in shared.items()
                                 if a in groups and b in groups))
            result += [(a, b, about), (b, a, about)]
        self._links_key, self._links = key, result
        return result

    def run(self, stopping: threading.Event) -> None:
        while not stopping.is_set():
            wait = FORWARD_INTERVAL
            try:
                self.forward_once()
                wait = IDLE_INTERVAL
            except errors.HakvError as exc:  # no quorum somewhere: try again next round
                log.debug("bridge on %s: %s", self.me, exc.message)
            except Exception:
                log.exception("bridge on %s failed a round", self.me)
            self._wake.wait(wait)
            self._wake.clear()

    def poke(self) -> None:
        self._wake.set()

    def forward_once(self) -> int:
        """One round over every link; returns the number of entries applied."""
        applied = 0
        groups = self.groups
        started = time.monotonic()
        heads = {g: groups.store(g).outbox_head() for g in groups.hosted()}
        links = self.links()
        if self.behind_since:  # forget links no longer there (the topology changed)
            current = {(a, b) for a, b, _ in links}
            for gone in [k for k in self.behind_since if k not in current]:
                del self.behind_since[gone]
        for source, target, shared in links:
            if heads.get(source) == self._caught_up.get(source):
                continue  # nothing new in this group's outbox since it was all forwarded
            source_store = groups.store(source)
            target_store = groups.store(target)
            member = groups.member_of(target)
            for about in shared:
                after = target_store.high_water_mark(source, about)
                for change in source_store.outbox(after=after):
                    if change["about"] != about:
                        continue
                    self.behind_since.setdefault((source, target), started)
                    command = codec.forwarded_command(source, change["index"], change)
                    result = member.submit(codec.encode(command)).wait(
                        groups.request_timeout)
                    if isinstance(result, dict) and result.get("applied"):
                        applied += 1
            self.behind_since.pop((source, target), None)  # the link is caught up
        # Every link was walked without an error (an error raises out of this round).
        self._caught_up.update(heads)
        self.forwarded += applied
        return applied

    # ------------------------------------------------------------------ allocation

    def allocate(self, group: str, load: int) -> dict[str, Any]:
        """Set the load ``group`` places on this node, if the node's capacity allows."""
        groups, me = self.groups, self.me
        hosted = groups.hosted()
        if group not in hosted:
            raise errors.BadRequestError(
                f"group {group} does not list node {me}: a group places load only on its "
                "owners")
        with self._alloc_lock:
            others = 0
            for gid in hosted:
                groups.barrier(gid)  # see every allocation committed so far
                if gid != group:
                    others += groups.store(gid).allocation(me)
            capacity = self.capacity
            if not has_room(capacity, others, load):
                raise errors.ConflictError(
                    f"node {me} has capacity {capacity}; other groups hold {others}, so "
                    f"group {group} cannot place {load} on it", node=me, group=group,
                    capacity=capacity, allocated=others)
            body = {"node": me, "load": load}
            payload = codec.encode(codec.write_command("allocation", body, self._client,
                                                       next(self._seq)))
            result = groups.member_of(group).submit(payload).wait(groups.request_timeout)
        if isinstance(result, dict) and "error" in result:
            raise errors.from_wire(result)
        self.poke()
        return {"node": me, "group": group, "load": load, "capacity": capacity,
                "allocated": others + load, "index": (result or {}).get("index")}
