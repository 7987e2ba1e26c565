"""Idle cost of many groups on one node: CPU of node processes hosting G groups each.

    python -m bench.idle [--groups 20] [--seconds 20]

Three local nodes each own every one of G groups (so each hosts G Raft members, all on
one raft port and one raft thread). After every group has a leader, the nodes are left
idle and their CPU time (utime+stime from /proc) is measured over ``--seconds``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from hakv.local import LocalCluster
from tests.support import leader_of, wait_for, write_topology

NODES = ["i1", "i2", "i3"]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--groups", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="hakv-idle-"))
    groups = {f"g{i:02d}": NODES for i in range(args.groups)}
    topo = write_topology(base, NODES, groups, cluster="idle")
    cluster = LocalCluster(base / "run")
    cluster.up(str(topo), wait=60)
    try:
        endpoints = cluster.endpoints()
        for g in groups:
            wait_for(lambda g=g: leader_of(endpoints, g), 60, what=f"a leader of {g}")
        time.sleep(2.0)  # let start-up work (status records, first heartbeats) settle
        pids = {n: cluster.pid(n) for n in NODES}
        before = {n: cpu_seconds(p) for n, p in pids.items() if p}
        time.sleep(args.seconds)
        after = {n: cpu_seconds(p) for n, p in pids.items() if p}
        print(f"{args.groups} groups per node, 3 nodes, idle for {args.seconds:.0f}s")
        print(f"{'node':<6}{'CPU % of one core':>20}")
        for n in NODES:
            pct = 100 * (after[n] - before[n]) / args.seconds
            print(f"{n:<6}{pct:>20.2f}")
    finally:
        cluster.down()


if __name__ == "__main__":
    main()
