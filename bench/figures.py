"""The pictures of the docs, drawn from the project's own data (matplotlib):

    python -m bench.figures topology [examples/nine-node.toml] [docs/img/nine-node.png]
    python -m bench.figures failover [/tmp/hakv-demo] [docs/img/failover.png]
    python -m bench.figures throughput [docs/bench/throughput.json]
                                       [docs/img/throughput-vs-etcd.png]
    python -m bench.figures failover-distribution [docs/bench/failover.json]
                                                  [docs/img/failover-distribution.png]

``topology``: the patent's Fig. 2 from a topology file: nodes, each group's owners
(precedence order numbered), shared nodes (in two groups: the bridges) drawn darker.
Nodes are placed on a grid by the order of the file (3 per row for the nine-node example).

``failover``: the timeline of the demo's kill of node 208 (``make demo`` writes
RUN_DIR/failover.json): group 226's placement events against the seconds since the
kill, and the leaders and terms of groups 222 and 224 before and after.

``throughput``: ops/s of hakv and of etcd 3.4 against the number of clients, durable
writes and linearizable reads, each point labelled with the ratio hakv/etcd, from the JSON
of ``python -m bench.throughput --json-file F`` (both measured in the same run, in
alternating cells; the run's conditions come from the file).

``failover-distribution``: the distribution of kill -9 -> app healthy elsewhere over the
trials of ``python -m bench.failover --json-file F``: a histogram with p50, p90 and p99
marked, and the cumulative distribution of the three times it measures.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def topology(path: Path, out: Path) -> None:
    from hakv.core.topology import load_topology

    topo = load_topology(path)
    nodes = list(topo.node_ids)
    cols = max(1, round(math.sqrt(len(nodes))))
    pos = {n: (i % cols, -(i // cols)) for i, n in enumerate(nodes)}
    shared = set(topo.shared_nodes())
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 6))
    colors = plt.get_cmap("tab10")
    for k, group in enumerate(topo.groups):
        xs = [pos[o][0] for o in group.owners]
        ys = [pos[o][1] for o in group.owners]
        pad = 0.32 + 0.05 * (k % 3)
        box = plt.Rectangle((min(xs) - pad, min(ys) - pad), max(xs) - min(xs) + 2 * pad,
                            max(ys) - min(ys) + 2 * pad, fill=False, lw=2.2,
                            ec=colors(k), ls="-" if k % 2 == 0 else "--")
        ax.add_patch(box)
        ax.text(max(xs) + pad, max(ys) + pad + 0.04, f"group {group.id}", color=colors(k),
                ha="right", va="bottom", fontsize=10, fontweight="bold")
        for rank, owner in enumerate(group.owners, 1):
            x, y = pos[owner]
            ax.text(x + 0.17 + 0.09 * (k % 2), y - 0.2, str(rank), color=colors(k), fontsize=8)
    for node, (x, y) in pos.items():
        ax.add_patch(plt.Circle((x, y), 0.16, color="#444" if node in shared else "#bbb",
                                zorder=3))
        ax.text(x, y, node, ha="center", va="center", zorder=4, fontsize=9,
                color="white" if node in shared else "black")
    ax.set_xlim(-0.8, cols - 0.2)
    ax.set_ylim(-(len(nodes) - 1) // cols - 0.8, 0.9)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(f"{topo.cluster}: {len(nodes)} nodes, {len(topo.groups)} groups; dark: "
                 "shared nodes (bridges); numbers: failover precedence", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def failover(run_dir: Path, out: Path) -> None:
    path = run_dir / "failover.json"
    if not path.exists():
        sys.exit(f"{path} does not exist: run `make demo` first (it writes it)")
    data = json.loads(path.read_text())
    killed = float(data["killed"])
    events = [e for e in data["events"] if e.get("kind") == "placement"]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.2))
    ax.axvline(0, color="red", lw=2)
    ax.text(0.02, 0.92, f"kill -9 node {data['node']}", color="red", transform=ax.get_xaxis_transform())
    for i, e in enumerate(events):
        t = float(e["time"]) - killed
        label = f"{e.get('action', '')} {e.get('state', '')} on {e.get('node')} (token {e.get('token')})"
        ax.plot([t], [0], "o", color="tab:blue")
        ax.annotate(label, (t, 0), xytext=(t, 0.35 + 0.3 * (i % 3)), fontsize=8,
                    arrowprops={"arrowstyle": "-", "color": "0.6"}, ha="left")
    end = max([float(e["time"]) - killed for e in events] + [1.0])
    ax.set_xlim(-0.2, end + 1.5)
    ax.set_ylim(-0.3, 1.4)
    ax.set_yticks([])
    ax.set_xlabel("seconds since the kill")
    quiet = ", ".join(f"{g}: leader {v['after'][0]} term {v['after'][1]} (unchanged)"
                      if v["after"] == v["before"] else f"{g}: CHANGED"
                      for g, v in data["unaffected"].items())
    ax.set_title(f"group {data['group']}'s app fails over; groups {quiet}", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


CAVEAT = ("2 shared virtual cores whose speed drifts by ±30 % within an hour: "
          "read the ratios of one run, not the absolute numbers")


def _pct(values: list[float], q: float) -> float:
    """The same percentile as bench.failover's summary (p99 of < 100 trials: the max)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def throughput(data_file: Path, out: Path) -> None:
    data = json.loads(data_file.read_text())
    cond = data.get("conditions", {})
    ops = [("put", "durable writes (put)"), ("get", "linearizable reads (get)")]
    ops = [(op, label) for op, label in ops if any(c["op"] == op for c in data["cells"])]
    if not ops:
        sys.exit(f"{data_file}: no cells")
    plt = _plt()
    fig, axes = plt.subplots(1, len(ops), figsize=(5.2 * len(ops), 4.4), squeeze=False)
    for ax, (op, label) in zip(axes[0], ops, strict=True):
        cells = sorted((c for c in data["cells"] if c["op"] == op), key=lambda c: c["clients"])
        xs = [c["clients"] for c in cells]
        series = [("hakv", "tab:blue", "o", cells)]
        etcd = [c.get("etcd") for c in cells]
        if all(etcd):
            series.append(("etcd 3.4", "tab:gray", "s", etcd))
        for name, color, marker, rows in series:
            ys = [r["ops_per_s"] for r in rows]
            runs = [r.get("runs") or [r["ops_per_s"]] for r in rows]
            err = [[y - min(rs) for y, rs in zip(ys, runs, strict=True)],
                   [max(rs) - y for y, rs in zip(ys, runs, strict=True)]]
            ax.errorbar(xs, ys, yerr=err if any(len(rs) > 1 for rs in runs) else None,
                        color=color, marker=marker, lw=2, capsize=3, label=name)
        if all(etcd):
            for x, c, e in zip(xs, cells, etcd, strict=True):
                ratio = c["ops_per_s"] / e["ops_per_s"]
                top = max(*(c.get("runs") or [c["ops_per_s"]]),
                          *(e.get("runs") or [e["ops_per_s"]]))
                ax.annotate(f"{ratio:.2f}×", (x, top), xytext=(0, 6),
                            textcoords="offset points", ha="center", va="bottom", fontsize=9,
                            fontweight="bold", color="tab:blue" if ratio >= 1 else "tab:red",
                            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none"})
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs)
        ax.set_xticklabels([str(x) for x in xs])
        ax.set_ylim(0, 1.2 * max(max(*(c.get("runs") or [c["ops_per_s"]]),
                                     *((c.get("etcd") or {}).get("runs") or [0]),
                                     (c.get("etcd") or {}).get("ops_per_s", 0))
                                 for c in cells))
        ax.set_xlabel("concurrent clients (each: one key, sequential requests)")
        ax.set_ylabel("ops/s")
        ax.set_title(label + ("; labels: hakv/etcd" if all(etcd) else ""), fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=9)
    repeat = cond.get("repeat", 1)
    fig.suptitle(
        "3-node hakv group vs 3-member etcd on 127.0.0.1, same run, alternating cells"
        + (f", median of {repeat} runs (bars: range)" if repeat > 1 else ""), fontsize=10)
    notes = [f"{cond.get('date', '')}; {cond.get('seconds', '?')} s per cell, "
             f"{cond.get('value_bytes', 100)}-byte values, {cond.get('procs', '?')} load "
             f"processes; hakv: {cond.get('hakv_transport', '?')}; "
             f"{cond.get('etcd') or 'etcd not measured'}",
             f"{cond.get('machine', '')}", CAVEAT]
    fig.text(0.01, 0.01, "\n".join(n for n in notes if n), fontsize=7, color="0.3", va="bottom")
    fig.tight_layout(rect=(0, 0.1, 1, 0.95))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def failover_distribution(data_file: Path, out: Path) -> None:
    data = json.loads(data_file.read_text())
    trials = data["trials"]
    if not trials:
        sys.exit(f"{data_file}: no trials")
    cond = data.get("conditions", {})
    healthy = [t["healthy"] for t in trials]
    plt = _plt()
    fig, (hist, cdf) = plt.subplots(1, 2, figsize=(10.4, 4.4))
    led = [t["healthy"] for t in trials if t.get("runner_led")]
    other = [t["healthy"] for t in trials if not t.get("runner_led")]
    width = 0.1
    lo = width * math.floor(min(healthy) / width)
    bins = [lo + width * i for i in range(int((max(healthy) - lo) / width) + 2)]
    hist.hist([led, other], bins=bins, stacked=True, color=["tab:blue", "tab:cyan"],
              label=[f"runner also led the group's Raft ({len(led)})",
                     f"runner was a follower ({len(other)})"])
    marks = [("p50", 0.5, "tab:green"), ("p90", 0.9, "tab:orange"), ("p99", 0.99, "tab:red")]
    for name, q, color in marks:
        v = _pct(healthy, q)
        hist.axvline(v, color=color, lw=1.8, ls="--", label=f"{name} {v:.2f} s")
    hist.set_xlabel("kill -9 of the runner -> app healthy on another owner (s)")
    hist.set_ylabel("trials")
    hist.yaxis.get_major_locator().set_params(integer=True)
    hist.set_ylim(0, 1.45 * hist.get_ylim()[1])  # room for the legend
    hist.legend(fontsize=8, loc="upper right", framealpha=0.95)
    hist.set_title(f"{len(trials)} failovers" + (" (p99 of < 100 trials: the max)"
                                                 if len(trials) < 100 else ""), fontsize=10)
    for key, label, color in (("placed", "placed (new placement in the log)", "0.6"),
                              ("beating", "first heartbeat of the new token", "tab:purple"),
                              ("healthy", "healthy (its check passed)", "tab:blue")):
        values = sorted(t[key] for t in trials if not math.isnan(t[key]))
        if values:
            ys = [0.0] + [(i + 1) / len(values) for i in range(len(values))]
            cdf.step([values[0], *values], ys, where="post", color=color, lw=2, label=label)
    for _name, q, color in marks:
        cdf.axhline(q, color=color, lw=0.8, ls=":")
    cdf.set_ylim(0, 1.02)
    cdf.set_xlabel("seconds since the kill")
    cdf.set_ylabel("fraction of trials")
    cdf.set_title("cumulative distribution", fontsize=10)
    cdf.legend(fontsize=8, loc="lower right")
    cdf.grid(alpha=0.3)
    ok = data.get("summary", {}).get("single_runner")
    fig.suptitle("Failover time, 3 local nodes, one group with the heartbeat app "
                 f"(single runner: {'ok' if ok else 'VIOLATED' if ok is False else '?'})",
                 fontsize=10)
    settings = ", ".join(f"{k} {v}" for k, v in (("[ha]", cond.get("ha")),
                                                   ("[raft]", cond.get("raft")),
                                                   ("check every", cond.get("check_interval")))
                         if v is not None)
    notes = [f"{cond.get('date', '')}; {settings}; {cond.get('transport', '')}",
             cond.get("machine", ""), CAVEAT.replace("ratios of one run", "shape")]
    fig.text(0.01, 0.01, "\n".join(n for n in notes if n), fontsize=7, color="0.3", va="bottom")
    fig.tight_layout(rect=(0, 0.1, 1, 0.95))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.figures", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    t = sub.add_parser("topology")
    t.add_argument("file", nargs="?", default=str(ROOT / "examples" / "nine-node.toml"))
    t.add_argument("out", nargs="?", default=str(ROOT / "docs" / "img" / "nine-node.png"))
    f = sub.add_parser("failover")
    f.add_argument("run_dir", nargs="?", default="/tmp/hakv-demo")
    f.add_argument("out", nargs="?", default=str(ROOT / "docs" / "img" / "failover.png"))
    th = sub.add_parser("throughput")
    th.add_argument("data", nargs="?", default=str(ROOT / "docs" / "bench" / "throughput.json"))
    th.add_argument("out", nargs="?", default=str(ROOT / "docs" / "img" / "throughput-vs-etcd.png"))
    fd = sub.add_parser("failover-distribution")
    fd.add_argument("data", nargs="?", default=str(ROOT / "docs" / "bench" / "failover.json"))
    fd.add_argument("out", nargs="?",
                    default=str(ROOT / "docs" / "img" / "failover-distribution.png"))
    args = parser.parse_args(argv)
    if args.what == "topology":
        topology(Path(args.file), Path(args.out))
    elif args.what == "failover":
        failover(Path(args.run_dir), Path(args.out))
    elif args.what == "throughput":
        throughput(Path(args.data), Path(args.out))
    else:
        failover_distribution(Path(args.data), Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
