"""Idle cost of many groups on one node: CPU of node processes hosting G groups each.

    python -m bench.idle [--groups 20] [--seconds 20] [--insecure]

Three local nodes each own every one of G groups (so each hosts G Raft members, all on
one raft port and one raft thread). After every group has a leader and 2 s of rest, the
nodes are left idle and their CPU time (utime+stime from /proc) is measured over
``--seconds``: "settled" (the cluster was talked to only by the start-up health checks and
the leader polls). Then clients talk to every node (``bench.scale.client_traffic``:
status and health calls on fresh connections, puts to the first group through a
keep-alive ``hakv.Client`` that is then closed, a ``Connection: close`` request, a
connection closed without a request, one reset mid-request), and after 2 s the same idle
window is measured again: "after traffic". An idle figure taken only on a cluster nobody
has talked to would hide any cost that client connections leave behind (issue 12).
Clients speak HTTPS with the run's client certificate (plain HTTP with ``--insecure``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from bench.cluster import add_insecure_option, leader_of, local_cluster
from bench.scale import client_traffic, cpu_percent
from tests.support import wait_for, write_topology

NODES = ["i1", "i2", "i3"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--groups", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--nodes-from", default=None, metavar="TREE",
                    help="run the nodes of this hakv source tree (bench.ab: A/B of two builds)")
    ap.add_argument("--json", action="store_true", help="one JSON object: % of a core per node")
    add_insecure_option(ap)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="hakv-idle-"))
    groups = {f"g{i:02d}": NODES for i in range(args.groups)}
    topo = write_topology(base, NODES, groups, cluster="idle")
    cluster = local_cluster(base / "run", args.nodes_from, insecure=args.insecure)
    try:
        cluster.up(str(topo), wait=60)
        endpoints = cluster.endpoints()
        tls = cluster.client_tls()
        for g in groups:
            wait_for(lambda g=g: leader_of(endpoints, g, tls), 60, what=f"a leader of {g}")
        time.sleep(2.0)  # let start-up work (status records, first heartbeats) settle
        pids = {}
        for n in NODES:
            pid = cluster.pid(n)
            if pid is None:
                raise RuntimeError(f"node {n} is not running:\n{cluster.log_tail(n)}")
            pids[n] = pid
        settled = cpu_percent(pids, args.seconds)
        traffic = client_traffic(endpoints, next(iter(groups)), nodes=len(endpoints), tls=tls)
        time.sleep(2.0)
        after = cpu_percent(pids, args.seconds)
        if args.json:
            print(json.dumps({"settled": settled, "after_traffic": after,
                              "traffic_errors": traffic["errors"]}))
            return
        print(f"{args.groups} groups per node, 3 nodes, idle for {args.seconds:.0f}s, "
              f"before and after client traffic ({traffic['actions']} client actions on "
              f"{traffic['nodes']} nodes, {len(traffic['errors'])} failed)")
        print(f"{'node':<6}{'settled, % of a core':>22}{'after traffic, % of a core':>28}")
        for n in NODES:
            print(f"{n:<6}{settled[n]:>22.2f}{after[n]:>28.2f}")
        for err in traffic["errors"]:
            print(f"  traffic error: {err}")
    finally:
        cluster.down()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
