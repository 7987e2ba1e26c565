"""Running every scenario for a set of cluster sizes, and printing or plotting the results.

This module's room: the grid of configurations (N nodes x M owners x scheme), one seed
per scenario derived from the run's seed, and the two outputs: a Markdown table (rows:
metrics, columns: configurations) and, on request, a PNG plot (matplotlib, imported only
then, Agg backend). Formatting is deterministic: the same seed gives the same bytes.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from hakv.sim.cluster import SCHEMES, Scheme, chain_topology
from hakv.sim.model import SimParams
from hakv.sim.scenarios import (
    Failure,
    Load,
    Serving,
    Startup,
    WriteCost,
    node_failure,
    serving,
    startup,
    steady_load,
    write_costs,
)

__all__ = ["Config", "Result", "format_table", "plot", "run_all", "run_config", "scenario_rng"]


@dataclass(frozen=True)
class Config:
    nodes: int
    owners: int
    scheme: Scheme

    @property
    def label(self) -> str:
        return f"{self.nodes:,} nodes, M={self.owners}, {self.scheme}"


@dataclass(frozen=True)
class Result:
    config: Config
    groups: int
    startup: Startup
    writes: WriteCost
    failure: Failure
    serving: tuple[Serving, ...]
    load: Load


def scenario_rng(seed: int, nodes: int, owners: int, scenario: str) -> random.Random:
    """The random source of one scenario. The scheme is not part of it: hakv and full
    replication meet the same boot times, the same failed node and the same cuts."""
    return random.Random(f"hakv.sim/{seed}/{nodes}/{owners}/{scenario}")


def run_config(config: Config, seed: int, params: SimParams | None = None) -> Result:
    """Every scenario for one configuration."""
    params = params or SimParams()
    params.validate()
    n, m, scheme = config.nodes, config.owners, config.scheme
    topology = chain_topology(n, m, raft=params.raft, ha=params.ha)
    up = startup(topology, scheme, params, scenario_rng(seed, n, m, "startup"))
    writes = write_costs(topology, scheme, params, scenario_rng(seed, n, m, "writes"))
    failure = node_failure(topology, scheme, params, scenario_rng(seed, n, m, "failure"))
    faults = serving(topology, scheme, scenario_rng(seed, n, m, "serving"))
    load = steady_load(topology, scheme, params)
    return Result(config, len(topology.groups), up, writes, failure, faults, load)


def run_all(nodes: Sequence[int], owners: Sequence[int], seed: int,
            params: SimParams | None = None) -> tuple[Result, ...]:
    """Every configuration: for each N, for each M, hakv then full replication."""
    return tuple(run_config(Config(n, m, scheme), seed, params)
                 for n in nodes for m in owners for scheme in SCHEMES)


# --------------------------------------------------------------------------- the table


def _int(value: float) -> str:
    return f"{round(value):,}"


def _secs(value: float) -> str:
    return f"{value:.2f}"


def _pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def _ms(value: float) -> str:
    return "never" if math.isinf(value) else f"{1000 * value:.1f}"


def _serving(fault: str) -> Callable[[Result], str]:
    def cell(result: Result) -> str:
        row = next(s for s in result.serving if s.fault == fault)
        return _pct(row.fraction)
    return cell


ROWS: tuple[tuple[str, Callable[[Result], str]], ...] = (
    ("groups", lambda r: _int(r.groups)),
    ("up: messages, group ensembles", lambda r: _int(r.startup.group_messages)),
    ("up: messages, all-node ensemble", lambda r: _int(r.startup.all_node_messages)),
    ("up: messages, patent's count (one write per status event, hakv.core.replication)",
     lambda r: _int(r.startup.formula_messages)),
    ("up: seconds until every group serves", lambda r: _secs(r.startup.groups_ready)),
    ("up: seconds until the last start-up write", lambda r: _secs(r.startup.seconds)),
    ("messages per group write", lambda r: _int(r.writes.group_write)),
    ("messages per cluster-level write", lambda r: _int(r.writes.cluster_write)),
    ("a cluster-level write commits in (ms)", lambda r: _ms(r.writes.cluster_commit)),
    ("node failure: groups that react", lambda r: _int(len(r.failure.reacting))),
    ("node failure: nodes that store its new status", lambda r: _int(r.failure.stored_on)),
    ("node failure: messages, group ensembles and probes",
     lambda r: _int(r.failure.messages - r.failure.all_node_messages)),
    ("node failure: messages, all-node ensemble", lambda r: _int(r.failure.all_node_messages)),
    ("node failure: seconds to re-place its apps", lambda r: _secs(r.failure.replace_seconds)),
    ("node failure: messages to replace it (set-owners)",
     lambda r: _int(r.failure.replace_node_messages)),
    ("serving: split 50/50", _serving("split 50/50")),
    ("serving: split 60/40", _serving("split 60/40")),
    ("serving: split in thirds", _serving("split in thirds")),
    ("serving: 10 % of nodes down", _serving("10% of nodes down")),
    ("steady, apps renewing leases: busiest node, messages/s", lambda r: _int(r.load.busiest_rate)),
    ("steady: busiest node, CPU at msg_cpu (cores)", lambda r: f"{r.load.busiest_cpu:.2f}"),
    ("steady: a lease renewal commits in (ms)", lambda r: _ms(r.load.renewal)),
)


def format_table(results: Sequence[Result]) -> str:
    """One Markdown table: a row per metric, a column per configuration."""
    header = ["metric", *(r.config.label for r in results)]
    lines = ["| " + " | ".join(header) + " |",
             "|---|" + "---:|" * len(results)]
    for name, cell in ROWS:
        lines.append("| " + " | ".join([name, *(cell(r) for r in results)]) + " |")
    return "\n".join(lines)


def format_details(results: Sequence[Result]) -> str:
    """Per configuration: messages by category, the failed node and its groups."""
    lines = []
    for r in results:
        f = r.failure
        lines.append(f"## {r.config.label}")
        lines.append("up, messages by kind: " + ", ".join(
            f"{k} {v:,}" for k, v in r.startup.by_category))
        lines.append(f"up: {r.startup.status_writes:,} status writes, "
                     f"{r.startup.events:,} events; the seed committed at "
                     f"{_secs(r.startup.seeded)} s; the last node that missed messages of "
                     f"the all-node ensemble had them at {_secs(r.startup.records_everywhere)} s")
        lines.append(f"failure of {f.node}: reacting {', '.join(f.reacting[:8])}"
                     f"{' ...' if len(f.reacting) > 8 else ''}; elections "
                     f"{', '.join(f.elections) or 'none'}; notified "
                     f"{', '.join(f.notified) or 'none'}; placed "
                     f"{', '.join(f'{g} on {n}' for g, n in f.placed) or 'nothing'}")
        lines.append("failure, messages by kind: " + ", ".join(
            f"{k} {v:,}" for k, v in f.by_category))
        if r.config.scheme == "hakv":
            lines.append("failure in the cluster ensemble: marked by "
                         f"{', '.join(f.cluster_marks) or 'nobody'}; found recorded "
                         f"already by {', '.join(f.cluster_marks_skipped) or 'nobody'}")
        lines.append(f"replacing {f.node}: " + (", ".join(
            f"{g} {s}" for g, s in f.replace_steps) or "no Raft step (the spare votes already)"))
        lines.append(f"steady: busiest {r.load.busiest}, cluster total "
                     f"{_int(r.load.total_rate)} messages/s")
        lines.append("cluster-level quorum: " + ", ".join(
            f"{s.fault} {'yes' if s.cluster_quorum else 'no'}" for s in r.serving))
        lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the plot


def plot(results: Sequence[Result], path: str, msg_cpu: float | None = None) -> None:
    """Four panels, written as a PNG to ``path``: start-up messages (with the patent's
    count), the messages one node failure causes, and the busiest node's steady message
    rate against N (log-log); the share of groups serving under each fault at the
    largest N. ``msg_cpu``: draw the rate at which one core is saturated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    owners = sorted({r.config.owners for r in results})
    sizes = sorted({r.config.nodes for r in results})
    colours = {("hakv", 3): "tab:blue", ("hakv", 5): "tab:green",
               ("full", 3): "tab:orange", ("full", 5): "tab:red"}
    fig, axes = plt.subplots(2, 2, figsize=(12, 9))

    def series(scheme: str, m: int, value: Callable[[Result], float]) -> list[float]:
        by_n = {r.config.nodes: value(r) for r in results
                if r.config.scheme == scheme and r.config.owners == m}
        return [by_n[n] for n in sizes]

    def lines(ax: Any, total: Callable[[Result], float],
              part: Callable[[Result], float] | None, part_label: str) -> None:
        for m in owners:
            for scheme, marker in (("hakv", "o-"), ("full", "s--")):
                colour = colours.get((scheme, m))
                ax.plot(sizes, series(scheme, m, total), marker, color=colour,
                        label=f"{'hakv' if scheme == 'hakv' else 'full replication'}, M={m}")
            if part is not None:
                ax.plot(sizes, series("hakv", m, part), "o:", color=colours.get(("hakv", m)),
                        label=f"hakv, M={m}: {part_label}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("nodes N")
        ax.grid(True, which="both", alpha=0.3)

    ax = axes[0][0]
    lines(ax, lambda r: r.startup.group_messages + r.startup.all_node_messages,
          lambda r: r.startup.group_messages, "group ensembles only")
    ax.plot(sizes, [n * 2 * (n - 1) for n in sizes], "-", color="grey", lw=3, alpha=0.4,
            label="patent: N x 2(N-1), full replication")
    ax.set_title("messages to bring the cluster up", fontsize=10)
    ax.legend(fontsize=7)
    ax = axes[0][1]
    lines(ax, lambda r: r.failure.messages,
          lambda r: r.failure.messages - r.failure.all_node_messages,
          "group ensembles and probes only")
    ax.set_title("messages one node failure causes", fontsize=10)
    ax.legend(fontsize=7)
    ax = axes[1][0]
    lines(ax, lambda r: r.load.busiest_rate, None, "")
    if msg_cpu:
        ax.axhline(1 / msg_cpu, color="grey", lw=3, alpha=0.4,
                   label=f"one core at {msg_cpu * 1e6:g} us a message")
    ax.set_title("busiest node, messages/s, steady state (apps renewing leases)", fontsize=10)
    ax.legend(fontsize=7)
    ax = axes[1][1]
    largest = sizes[-1]
    faults = [s.fault for s in results[0].serving]
    columns = [r for r in results if r.config.nodes == largest]
    width = 0.8 / max(len(columns), 1)
    for i, r in enumerate(columns):
        values = [100 * next(s for s in r.serving if s.fault == f).fraction for f in faults]
        ax.bar([j + i * width for j in range(len(faults))], values, width,
               color=colours.get((r.config.scheme, r.config.owners)),
               label=f"{r.config.scheme}, M={r.config.owners}")
    ax.set_xticks([j + width * (len(columns) - 1) / 2 for j in range(len(faults))])
    ax.set_xticklabels(faults, fontsize=8)
    ax.set_ylabel("% of groups serving")
    ax.set_ylim(0, 120)
    ax.set_yticks(range(0, 101, 20))
    ax.set_title(f"groups that keep serving, N = {largest:,}", fontsize=10)
    ax.legend(fontsize=7, ncol=len(columns), loc="upper center")
    fig.suptitle("hakv simulation (python -m hakv.sim): per-group ensembles against one "
                 "all-node ensemble")
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
