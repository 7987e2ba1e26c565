"""Faults as data, a schedule drawn from a seed, and the thread that plays it.

A ``Fault`` says what to break, when, and for how long::

    Fault(index=0, kind="isolate", start=3.0, duration=4.0, nodes=("leader:g1",))

Kinds (``FAULT_KINDS``):

=========== ==================================================================================
isolate     ``nodes[0]`` loses every link to every other node (both ways)
bridge      like isolate, aimed at a node that sits on two or more groups
partition   the nodes in ``nodes`` (a minority of ``group``) are cut off from all others
one-way     packets from ``nodes[0]`` to ``nodes[1]`` are dropped; the way back works
ring        majorities ring over ``group``'s owners in the order ``nodes``: each node keeps
            links to its ring neighbours within distance d (so it sees a majority), the
            other links are cut -- every node sees a majority, no two the same one. With 3
            owners no such ring exists; then the link ``nodes[0]``--``nodes[1]`` is cut and
            the third owner is the only one that sees everybody (Jepsen's "bridge").
kill        kill -9 ``nodes[0]``; restart it on its data dir when the fault ends
pause       SIGSTOP ``nodes[0]``; SIGCONT when the fault ends
loss        every packet between ``nodes[0]`` and any other node is dropped with
            ``probability`` (iptables ``statistic --mode random``)
delay       every packet ``nodes[0]`` sends to another node leaves ``delay`` seconds late
            (± ``jitter``): an NFQUEUE rule in its namespace and a delayer process
            (chaos/delay.py), since ``tc netem`` is not available in this kernel
=========== ==================================================================================

``nodes`` may hold tokens resolved when the fault starts: ``leader:G`` (the current leader
of group G, asked from the nodes), ``follower:G`` (an owner of G that is not its leader,
drawn from a generator seeded with the run seed and the fault index) and ``runner:G`` (the
node its placement record says runs G's app). What they resolved to is recorded in the
fault's window for the report.

A fault whose kind cannot run here (``delay`` without NetfilterQueue) is *skipped* with
the reason in its window's notes, the log and the report; it is never silently a no-op.

``schedule(scenario, seed)`` is pure: the same scenario and seed give the same faults.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chaos.netns import Delay, Link, cut_both
from chaos.scenario import FAULT_KINDS, Scenario
from hakv.core.topology import Topology

if TYPE_CHECKING:
    from chaos.cluster import ChaosCluster

__all__ = ["FAULT_KINDS", "Fault", "FaultWindow", "Nemesis", "links_for", "schedule"]

PROCESS_KINDS = ("kill", "pause")
DELAY_QUEUE_BASE = 1000  # NFQUEUE queue number of fault i: DELAY_QUEUE_BASE + i


def hash_seed(seed: int, index: int) -> int:
    """A per-fault seed for the delayer's jitter draws (stable across runs)."""
    return (seed * 1_000_003 + index) % (2**31)


@dataclass(frozen=True)
class Fault:
    index: int
    kind: str
    start: float
    duration: float
    nodes: tuple[str, ...]
    group: str | None = None
    probability: float | None = None
    delay: float | None = None
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}")
        if (self.kind == "delay") != (self.delay is not None):
            raise ValueError("delay (seconds) goes with, and only with, a delay fault")

    @property
    def end(self) -> float:
        return self.start + self.duration

    def describe(self, nodes: Sequence[str] | None = None) -> str:
        ns = list(nodes if nodes is not None else self.nodes)
        if self.kind in ("isolate", "bridge", "kill", "pause"):
            what = f"{self.kind} {ns[0]}"
        elif self.kind == "loss":
            what = f"loss {self.probability:.0%} on {ns[0]}"
        elif self.kind == "delay":
            jitter = f" ±{self.jitter * 1000:.0f}" if self.jitter else ""
            what = f"delay {(self.delay or 0) * 1000:.0f}{jitter} ms on {ns[0]}"
        elif self.kind == "one-way":
            what = f"one-way cut {ns[0]} -> {ns[1]}"
        elif self.kind == "partition":
            what = f"partition {{{', '.join(ns)}}} | rest"
        elif len(ns) <= 2:
            what = f"ring (bridge) over {self.group}: cut {ns[0]} -- {ns[1]}"
        else:
            what = f"majorities ring over {self.group}: {' - '.join(ns)}"
        return what

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "kind": self.kind, "start": self.start,
                "duration": self.duration, "nodes": list(self.nodes), "group": self.group,
                "probability": self.probability, "delay": self.delay, "jitter": self.jitter}


# --------------------------------------------------------------------------- schedule


def bridge_nodes(topo: Topology) -> list[str]:
    return [n for n in topo.node_ids if len(topo.groups_of(n)) >= 2]


def schedule(scenario: Scenario, seed: int | None = None) -> list[Fault]:
    """The faults of a scenario: its explicit ``[[faults]]``, or a random mix drawn from
    ``seed`` (default: the scenario's) following ``[nemesis]``. Pure and deterministic."""
    seed = scenario.seed if seed is None else seed
    if scenario.faults:
        specs = sorted(scenario.faults, key=lambda f: f.at)
        return [Fault(i, f.kind, f.at, f.duration, f.nodes, f.group, f.probability,
                      f.delay, f.jitter) for i, f in enumerate(specs)]
    cfg = scenario.nemesis
    if not cfg.kinds:
        return []
    topo = scenario.topology
    rng = random.Random(f"nemesis:{seed}")
    end = scenario.duration - cfg.end_margin
    faults: list[Fault] = []
    t = cfg.start
    while t + cfg.duration[0] <= end:
        duration = round(min(rng.uniform(*cfg.duration), end - t), 3)
        kind = rng.choice(cfg.kinds)
        nodes, group, prob = _draw(kind, rng, topo, cfg.targets, cfg.groups, cfg.loss)
        delay, jitter = None, 0.0
        if kind == "delay":  # drawn after the rest: schedules without delays are unchanged
            delay, jitter = round(rng.uniform(*cfg.delay), 3), cfg.jitter
        faults.append(Fault(len(faults), kind, round(t, 3), duration, nodes, group, prob,
                            delay, jitter))
        t += duration + rng.uniform(*cfg.gap)
    return faults


def _leader_tokens(targets: Sequence[str], group: str) -> bool:
    return f"leader:{group}" in targets


def _draw(kind: str, rng: random.Random, topo: Topology, targets: Sequence[str],
          groups: Sequence[str], loss: tuple[float, float]
          ) -> tuple[tuple[str, ...], str | None, float | None]:
    pool = list(targets) or list(topo.node_ids)
    group_pool = list(groups) or list(topo.group_ids)
    if kind in ("isolate", "kill", "pause", "delay"):
        return (rng.choice(pool),), None, None
    if kind == "loss":
        return (rng.choice(pool),), None, round(rng.uniform(*loss), 3)
    if kind == "bridge":
        bridges = bridge_nodes(topo)
        if not bridges:
            raise ValueError("a bridge fault needs a node on two or more groups; "
                             "this topology has none")
        # a leader token qualifies only if every owner of its group is a bridge
        cands = [t for t in pool if t in bridges or (
            t.startswith("leader:") and set(topo.group(t[7:]).owners) <= set(bridges))]
        cands = cands or bridges
        return (rng.choice(cands),), None, None
    group = rng.choice(group_pool)
    owners = list(topo.group(group).owners)
    if kind == "partition":
        size = max(1, (len(owners) - 1) // 2)
        if _leader_tokens(pool, group):
            return ("leader:" + group,) + ("follower:" + group,) * (size - 1), group, None
        cands = [o for o in owners if o in pool] or owners
        side = rng.sample(cands, min(size, len(cands)))
        return tuple(side), group, None
    if kind == "one-way":
        if _leader_tokens(pool, group):
            pair = ("leader:" + group, "follower:" + group)
            return (pair if rng.random() < 0.5 else pair[::-1]), group, None
        src = rng.choice([o for o in owners if o in pool] or owners)
        dst = rng.choice([o for o in owners if o != src])
        return (src, dst), group, None
    # ring
    if len(owners) <= 3:
        if _leader_tokens(pool, group):
            return ("leader:" + group, "follower:" + group), group, None
        return tuple(rng.sample(owners, 2)), group, None
    return tuple(rng.sample(owners, len(owners))), group, None


def links_for(fault: Fault, nodes: Sequence[str], topo: Topology) -> list[Link]:
    """The directed link rules of a network fault, with ``nodes`` already resolved."""
    everyone = list(topo.node_ids)
    if fault.kind in ("isolate", "bridge"):
        return [lk for other in everyone if other != nodes[0]
                for lk in cut_both(nodes[0], other)]
    if fault.kind == "loss":
        p = fault.probability
        return [lk for other in everyone if other != nodes[0]
                for lk in (Link(nodes[0], other, p), Link(other, nodes[0], p))]
    if fault.kind == "partition":
        side = set(nodes)
        return [lk for a in nodes for b in everyone if b not in side for lk in cut_both(a, b)]
    if fault.kind == "one-way":
        return [Link(nodes[0], nodes[1])]
    if fault.kind == "ring":
        if len(nodes) <= 3:
            return cut_both(nodes[0], nodes[1])
        return [lk for a, b in ring_cuts(list(nodes)) for lk in cut_both(a, b)]
    return []  # kill, pause: process faults; delay: not a drop rule (Network.apply_delay)


def ring_cuts(order: list[str]) -> list[tuple[str, str]]:
    """Pairs to cut so that each node in the ring keeps exactly its neighbours within ring
    distance d = ceil((n // 2) / 2): itself plus 2d >= n // 2 others, a majority."""
    n = len(order)
    d = -(-(n // 2) // 2)
    cuts = []
    for i in range(n):
        for j in range(i + 1, n):
            dist = min(j - i, n - (j - i))
            if dist > d:
                cuts.append((order[i], order[j]))
    return cuts


def faulted_nodes(fault: Fault, nodes: Sequence[str], links: Sequence[Link]) -> set[str]:
    """Nodes a fault aims at: for the isolation check, groups holding none of them must not
    notice the fault."""
    if fault.kind == "ring":
        return {lk.src for lk in links} | {lk.dst for lk in links}
    return set(nodes)


# --------------------------------------------------------------------------- playing it


@dataclass
class FaultWindow:
    """What a fault did, on the run's clock (time.monotonic)."""

    fault: Fault
    nodes: tuple[str, ...] = ()
    affected_groups: tuple[str, ...] = ()
    start: float | None = None
    end: float | None = None
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None  # why the fault was not injected (its kind cannot run here)

    @property
    def description(self) -> str:
        return self.fault.describe(self.nodes or self.fault.nodes)

    def to_dict(self) -> dict[str, Any]:
        return {"fault": self.fault.to_dict(), "nodes": list(self.nodes),
                "affected_groups": list(self.affected_groups), "start": self.start,
                "end": self.end, "notes": self.notes, "skipped": self.skipped,
                "description": self.description}


class Nemesis:
    """Plays a schedule against a ``ChaosCluster`` from a thread; ``heal_everything()``
    ends every active fault (network rules, paused and killed nodes)."""

    def __init__(self, cluster: ChaosCluster, faults: Sequence[Fault], seed: int,
                 t0: float, log: Callable[[str], None] = print,
                 unavailable: dict[str, str] | None = None) -> None:
        self.cluster = cluster
        self.unavailable = dict(unavailable or {})  # fault kind -> why it cannot run here
        self.faults = list(faults)
        self.seed = seed
        self.t0 = t0
        self.log = log
        self.windows = [FaultWindow(f) for f in self.faults]
        self._active: set[int] = set()
        self._lock = threading.Lock()
        self.stop = threading.Event()
        self.errors: list[str] = []
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="nemesis", daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        events = sorted(
            [(f.start, 1, f.index) for f in self.faults]
            + [(f.end, 0, f.index) for f in self.faults])
        for at, is_apply, index in events:
            if self.stop.wait(max(0.0, self.t0 + at - time.monotonic())):
                return
            try:
                if is_apply:
                    self._apply(self.windows[index])
                else:
                    self._heal(self.windows[index])
            except Exception as err:  # keep going: the report shows it, the run fails
                msg = f"fault {index} ({self.windows[index].description}): {err!r}"
                self.errors.append(msg)
                self.windows[index].notes.append(f"error: {err}")
                self.log(f"nemesis error: {msg}")

    def _resolve(self, fault: Fault) -> tuple[str, ...]:
        rng = random.Random(f"resolve:{self.seed}:{fault.index}")
        topo = self.cluster.topology
        out: list[str] = []
        leaders: dict[str, str] = {}
        for token in fault.nodes:
            what, _, group = token.partition(":")
            if not group:
                out.append(token)
                continue
            if what == "runner":
                runner = self.cluster.runner(group, wait=3.0)
                if runner is None:
                    runner = topo.group(group).owners[0]
                    self.windows[fault.index].notes.append(
                        f"no runner of {group} found; used its first owner {runner}")
                out.append(runner)
                continue
            if group not in leaders:
                leader = self.cluster.leader(group, wait=3.0)
                if leader is None:
                    leader = topo.group(group).owners[0]
                    self.windows[fault.index].notes.append(
                        f"no leader of {group} found; used its first owner {leader}")
                leaders[group] = leader
            if what == "leader":
                out.append(leaders[group])
            else:
                cands = [o for o in topo.group(group).owners
                         if o != leaders[group] and o not in out]
                out.append(rng.choice(cands))
        return tuple(out)

    def _apply(self, window: FaultWindow) -> None:
        fault = window.fault
        why = self.unavailable.get(fault.kind)
        if why is not None:
            window.skipped = why
            window.notes.append(f"SKIPPED: {why}")
            self.log(f"[{time.monotonic() - self.t0:7.2f}s] fault {fault.index} "
                     f"({window.description}) SKIPPED: {why}")
            return
        nodes = self._resolve(fault)
        window.nodes = nodes
        topo = self.cluster.topology
        links = links_for(fault, nodes, topo)
        hit = faulted_nodes(fault, nodes, links)
        window.affected_groups = tuple(g.id for g in topo.groups if hit & set(g.owners))
        with self._lock:
            self._active.add(fault.index)
        window.start = time.monotonic()
        if fault.kind == "kill":
            self.cluster.kill(nodes[0])
        elif fault.kind == "pause":
            self.cluster.pause(nodes[0])
        elif fault.kind == "delay":
            assert fault.delay is not None
            others = tuple(n for n in topo.node_ids if n != nodes[0])
            pid = self.cluster.net.apply_delay(
                f"f{fault.index}", Delay(nodes[0], others, fault.delay, fault.jitter),
                queue=DELAY_QUEUE_BASE + fault.index, seed=hash_seed(self.seed, fault.index),
                log=self.cluster.log_path(f"delay-f{fault.index}"))
            window.notes.append(f"delayer pid {pid}")
        else:
            self.cluster.net.apply(f"f{fault.index}", links)
        self.log(f"[{window.start - self.t0:7.2f}s] fault {fault.index}: {window.description}")

    def _heal(self, window: FaultWindow) -> None:
        fault = window.fault
        with self._lock:
            if fault.index not in self._active:
                return
            self._active.discard(fault.index)
        nodes = window.nodes
        if fault.kind == "kill":
            took = self.cluster.restart(nodes[0])
            window.notes.append(f"restarted {nodes[0]}; healthy after {took:.2f}s")
        elif fault.kind == "pause":
            self.cluster.resume(nodes[0])
        else:
            self.cluster.net.heal(f"f{fault.index}")
        window.end = time.monotonic()
        self.log(f"[{window.end - self.t0:7.2f}s] healed {fault.index}: {window.description}")

    def heal_everything(self) -> None:
        """Stop the schedule and end every active fault; then flush every rule and make
        sure every node runs and none is paused."""
        self.stop.set()
        self.join(30.0)
        with self._lock:
            active = sorted(self._active, reverse=True)
        for index in active:
            try:
                self._heal(self.windows[index])
            except Exception as err:
                self.errors.append(f"healing fault {index}: {err!r}")
        self.cluster.net.heal_all()
        self.cluster.ensure_all_running()
