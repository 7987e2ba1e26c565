"""Durable writes and linearizable reads through the public client against a local 3-node group.

    python -m bench.throughput [--seconds 5] [--clients 1,16,64] [--procs 2] [--repeat 1]
                               [--etcd auto|yes|no] [--insecure] [--json] [--json-file F]

Starts three real node processes (hakv.dev.local), then for each client count runs that many
client threads, each with its own ``hakv.Client``, doing sequential puts (100-byte values)
and then linearizable gets for ``--seconds``. Prints ops/s, p50 and p99 latency. Client
threads share their process's GIL, so ``--procs`` spreads them over several load
processes (2 by default: one per core of the machine the targets were measured on).
``--repeat N`` measures every cell N times and prints the median run with the range of
ops/s: on a shared 2-core machine the same build varies by ±15 % between runs.

The nodes serve their API over HTTPS and every load client presents the run's client
certificate (``LocalCluster.client_tls``), as a production client does; ``--insecure``
runs nodes and clients on plain TCP (``bench.ab --tls-vs-insecure`` compares the two).

The target is etcd 3.4's rate *on the same machine* (issue 2). With an etcd binary
installed (``apt-get install etcd-server``), each cell is also measured against a 3-member
etcd started beside the group, alternating with hakv, and the table gains etcd's ops/s and
p50 and the ratio hakv/etcd (bench/etcd.py).

``--json`` prints one JSON object instead of the table; ``--json-file F`` prints the table
and also writes that object to F, with the conditions of the run (``python -m
bench.figures throughput F`` draws it).
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing as mp
import os
import shutil
import ssl
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from bench.cluster import add_insecure_option, leader_of, local_cluster
from bench.etcd import EtcdClient, EtcdCluster, EtcdMissing, etcd_binary, etcd_version
from bench.machine import describe
from hakv.client.client import Client
from hakv.security.tls import client_context
from tests.support import wait_for, write_topology

GROUP = "bench"
VALUE = "x" * 100


class _Load(Protocol):
    """What a load thread needs of a client: the system under test behind it."""

    def put(self, key: str, value: str) -> None: ...
    def get(self, key: str) -> None: ...
    def close(self) -> None: ...


class _HakvLoad:
    """One load thread's client for the hakv group (the public client library)."""

    def __init__(self, endpoints: list[str], tls: ssl.SSLContext | None) -> None:
        self.client = Client(endpoints, timeout=10.0, tls=tls or False)

    def put(self, key: str, value: str) -> None:
        self.client.put(GROUP, key, value)

    def get(self, key: str) -> None:
        self.client.get(GROUP, key)

    def close(self) -> None:
        self.client.close()


class _EtcdLoad:
    """One load thread's client for the reference etcd, on its leader (bench/etcd.py)."""

    def __init__(self, endpoints: list[str], tls: ssl.SSLContext | None) -> None:
        self.client = EtcdClient(endpoints[0])  # plain HTTP: etcd runs without TLS here

    def put(self, key: str, value: str) -> None:
        self.client.put(key, value)

    def get(self, key: str) -> None:
        self.client.get(key)

    def close(self) -> None:
        self.client.close()


LOADS: dict[str, Callable[[list[str], ssl.SSLContext | None], _Load]] = {
    "hakv": _HakvLoad, "etcd": _EtcdLoad}

#: (CA, certificate, key) of the cluster's client identity; None: plain HTTP.
TlsPaths = tuple[str, str, str] | None


def _worker(system: str, endpoints: list[str], op: str, seconds: float, threads: int,
            out: mp.Queue, tls_files: TlsPaths) -> None:  # type: ignore[type-arg]
    latencies: list[float] = []
    tls = client_context(*tls_files) if tls_files else None  # one per load process
    lock = threading.Lock()
    start_at = time.monotonic() + 0.2

    def run(tid: int) -> None:
        mine: list[float] = []
        client = LOADS[system](endpoints, tls)
        try:
            client.put(f"k{tid}", VALUE)
            while time.monotonic() < start_at:
                time.sleep(0.001)
            end = start_at + seconds
            while time.monotonic() < end:
                t0 = time.perf_counter()
                if op == "put":
                    client.put(f"k{tid}", VALUE)
                else:
                    client.get(f"k{tid}")
                mine.append(time.perf_counter() - t0)
        finally:
            client.close()
        with lock:
            latencies.extend(mine)

    ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out.put(latencies)


def measure(system: str, endpoints: list[str], op: str, clients: int, seconds: float,
            procs: int, tls_files: TlsPaths = None) -> dict[str, float]:
    procs = max(1, min(procs, clients))
    per = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    q: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    ps = [mp.Process(target=_worker, args=(system, endpoints, op, seconds, n, q, tls_files))
          for n in per]
    for p in ps:
        p.start()
    lat: list[float] = []
    for _ in ps:
        lat.extend(q.get())
    for p in ps:
        p.join()
    lat.sort()
    return {
        "ops_per_s": len(lat) / seconds,
        "p50_ms": 1000 * statistics.median(lat),
        "p99_ms": 1000 * lat[int(0.99 * (len(lat) - 1))],
    }


def _median_run(runs: list[dict[str, float]]) -> tuple[dict[str, float], str]:
    """The median run and, with several runs, the range of ops/s."""
    runs = sorted(runs, key=lambda r: r["ops_per_s"])
    spread = f"{runs[0]['ops_per_s']:.0f}-{runs[-1]['ops_per_s']:.0f}" if len(runs) > 1 else ""
    return runs[len(runs) // 2], spread


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--clients", default="1,16,64")
    ap.add_argument("--procs", type=int, default=2, help="load-generator processes")
    ap.add_argument("--repeat", type=int, default=1, help="runs per cell (median shown)")
    ap.add_argument("--etcd", choices=("auto", "yes", "no"), default="auto",
                    help="also measure a 3-member etcd 3.4 here, alternating with hakv "
                         "(auto: when an etcd binary is installed)")
    ap.add_argument("--dir", default=None)
    ap.add_argument("--nodes-from", default=None, metavar="TREE",
                    help="run the nodes of this hakv source tree (bench.ab: A/B of two builds)")
    ap.add_argument("--json", action="store_true", help="one JSON object: the cells")
    ap.add_argument("--json-file", default=None, metavar="F",
                    help="also write the JSON object (cells and conditions) to F")
    add_insecure_option(ap)
    args = ap.parse_args()
    base = Path(args.dir or tempfile.mkdtemp(prefix="hakv-bench-"))
    if base.exists() and args.dir:
        shutil.rmtree(base / "run", ignore_errors=True)
    base.mkdir(parents=True, exist_ok=True)
    topo = write_topology(base, ["b1", "b2", "b3"], {GROUP: ["b1", "b2", "b3"]}, cluster="bench")
    cluster = local_cluster(base / "run", args.nodes_from, insecure=args.insecure)
    etcd = None
    cells: list[dict[str, Any]] = []
    say = (lambda *a, **k: None) if args.json else print
    if args.etcd != "no":
        try:
            etcd_binary()
            etcd = EtcdCluster(base / "etcd")
        except EtcdMissing as exc:
            if args.etcd == "yes":
                raise SystemExit(str(exc)) from None
            say(f"not comparing with etcd: {exc}")
    cluster.up(str(topo), wait=30)
    try:
        endpoints = cluster.endpoints()
        tls = cluster.client_tls()
        files = cluster.client_files()
        tls_files: TlsPaths = (str(files[0]), str(files[1]), str(files[2])) if files else None
        wait_for(lambda: leader_of(endpoints, GROUP, tls), 20, what="a leader")
        leader = leader_of(endpoints, GROUP, tls)
        ordered = [e for e, n in zip(endpoints, cluster.node_ids(), strict=True) if n == leader]
        ordered += [e for e in endpoints if e not in ordered]
        systems = [("hakv", ordered)]
        if etcd is not None:
            etcd.up()
            etcd_leader = etcd.leader_endpoint()
            assert etcd_leader is not None
            systems.append(("etcd", [etcd_leader]))
        repeat = max(1, args.repeat)
        machine = describe(str(base))
        say(machine)
        say(f"3-node group on 127.0.0.1, {args.seconds:.0f}s per cell, 100-byte values, "
              f"{args.procs} load process(es), "
              + ("plain HTTP (--insecure)" if tls is None else "HTTPS with client certificates")
              + (f", median of {repeat} runs per cell" if repeat > 1 else "")
              + (", etcd 3.4 (3 members, JSON gateway) measured in alternation"
                 if etcd is not None else ""))
        header = f"{'operation':<26}{'clients':>8}{'ops/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
        if repeat > 1:
            header += f"{'range':>12}"
        if etcd is not None:
            header += f"{'etcd ops/s':>12}{'etcd p50':>10}{'hakv/etcd':>11}"
        say(header)
        for op, label in (("put", "durable write (put)"), ("get", "linearizable read (get)")):
            for n in [int(c) for c in args.clients.split(",")]:
                runs: dict[str, list[dict[str, float]]] = {name: [] for name, _ in systems}
                for _ in range(repeat):
                    for name, eps in systems:
                        runs[name].append(measure(name, eps, op, n, args.seconds, args.procs,
                                                  tls_files if name == "hakv" else None))
                r, spread = _median_run(runs["hakv"])
                cell: dict[str, Any] = {"op": op, "clients": n, **r,
                                        "runs": [x["ops_per_s"] for x in runs["hakv"]]}
                cells.append(cell)
                line = f"{label:<26}{n:>8}{r['ops_per_s']:>10.0f}{r['p50_ms']:>9.2f}" \
                       f"{r['p99_ms']:>9.2f}"
                if repeat > 1:
                    line += f"{spread:>12}"
                if etcd is not None:
                    e, _ = _median_run(runs["etcd"])
                    cell["etcd"] = {**e, "runs": [x["ops_per_s"] for x in runs["etcd"]]}
                    line += f"{e['ops_per_s']:>12.0f}{e['p50_ms']:>10.2f}" \
                            f"{r['ops_per_s'] / e['ops_per_s']:>10.0%}"
                say(line, flush=True)
        result = {"cells": cells, "conditions": {
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine, "cpus": os.cpu_count(), "seconds": args.seconds,
            "procs": args.procs, "repeat": repeat, "value_bytes": len(VALUE),
            "hakv_transport": "plain HTTP (--insecure)" if tls is None
            else "HTTPS with client certificates",
            "etcd": None if etcd is None else f"{etcd_version()}, 3 members, plain HTTP "
                                              "JSON gateway, default settings"}}
        if args.json_file:
            Path(args.json_file).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json_file).write_text(json.dumps(result, indent=1) + "\n")
            say(f"wrote {args.json_file}")
        if args.json:
            print(json.dumps(result))
    finally:
        cluster.down()
        if etcd is not None:
            etcd.down()


if __name__ == "__main__":
    main()
