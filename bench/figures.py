"""The pictures of the docs, drawn from the project's own data (matplotlib):

    python -m bench.figures topology [examples/nine-node.toml] [docs/img/nine-node.png]
    python -m bench.figures failover [/tmp/hakv-demo] [docs/img/failover.png]

``topology``: the patent's Fig. 2 from a topology file: nodes, each group's owners
(precedence order numbered), shared nodes (in two groups: the bridges) drawn darker.
Nodes are placed on a grid by the order of the file (3 per row for the nine-node example).

``failover``: the timeline of the demo's kill of node 208 (``make demo`` writes
RUN_DIR/failover.json): group 226's placement events against the seconds since the
kill, and the leaders and terms of groups 222 and 224 before and after.
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
    args = parser.parse_args(argv)
    if args.what == "topology":
        topology(Path(args.file), Path(args.out))
    else:
        failover(Path(args.run_dir), Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
