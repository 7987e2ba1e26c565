"""One benchmark, two builds, one run: A/B in alternation, so the machine's drift (±30 %
within an hour here) hits both alike.

    python -m bench.ab --base REV [--rounds 3] [--bench throughput,failover,idle]
                       [--clients 16,64] [--seconds 5] [--trials 10] [--groups 20]

A is the hakv of git revision REV (checked out in a temporary ``git worktree``), B is this
tree. Each round runs every benchmark on A, then on B (the order alternates between
rounds), each time with the benchmark code of *this* tree and only the node processes
taken from the build under test (``--nodes-from``): the load, the measurements and the
client library are the same for both, so a difference is the nodes'. Prints, per metric,
the median of the rounds for A and B and the ratio B/A.

Metrics: throughput (bench.throughput: ops/s and p50 of durable puts and linearizable gets
per client count), failover (bench.failover: p50 of kill -> app healthy elsewhere),
idle (bench.idle: mean % of a core per node, settled and after client traffic).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

Metrics = dict[str, float]


def _run(module: str, args: list[str], tree: str) -> Any:
    """``python -m MODULE ARGS --nodes-from TREE --json`` from this tree: its JSON."""
    cmd = [sys.executable, "-m", module, *args, "--nodes-from", tree, "--json"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    if proc.returncode not in (0, 1):  # failover exits 1 when single-runner is violated
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1] if module != "bench.failover"
                      else proc.stdout)


def throughput(tree: str, opts: argparse.Namespace) -> Metrics:
    out = _run("bench.throughput", ["--etcd", "no", "--clients", opts.clients,
                                    "--seconds", str(opts.seconds)], tree)
    m: Metrics = {}
    for c in out["cells"]:
        m[f"{c['op']} {c['clients']:>3} clients  ops/s"] = c["ops_per_s"]
        m[f"{c['op']} {c['clients']:>3} clients  p50 ms"] = c["p50_ms"]
    return m


def failover(tree: str, opts: argparse.Namespace) -> Metrics:
    out = _run("bench.failover", ["--trials", str(opts.trials)], tree)
    s = out["summary"]
    if not s["single_runner"]:
        raise RuntimeError(f"failover on {tree}: single runner VIOLATED: "
                           f"{s['single_runner_details']}")
    return {"failover healthy p50 s": s["healthy"]["p50"],
            "failover placed p50 s": s["placed"]["p50"]}


def idle(tree: str, opts: argparse.Namespace) -> Metrics:
    out = _run("bench.idle", ["--groups", str(opts.groups), "--seconds", str(opts.idle_seconds)],
               tree)
    return {"idle settled % core/node": statistics.mean(out["settled"].values()),
            "idle after traffic % core/node": statistics.mean(out["after_traffic"].values())}


BENCHES: dict[str, Callable[[str, argparse.Namespace], Metrics]] = {
    "throughput": throughput, "failover": failover, "idle": idle}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="git revision of build A (B = this tree)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bench", default="throughput,failover,idle")
    ap.add_argument("--clients", default="16,64")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--groups", type=int, default=20)
    ap.add_argument("--idle-seconds", type=float, default=10.0)
    opts = ap.parse_args(argv)
    benches = [b.strip() for b in opts.bench.split(",") if b.strip()]
    unknown = [b for b in benches if b not in BENCHES]
    if unknown:
        ap.error(f"unknown benchmark(s) {unknown}; choose from {sorted(BENCHES)}")
    work = Path(tempfile.mkdtemp(prefix="hakv-ab-"))
    tree_a = str(work / "a")
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", tree_a,
                    opts.base], check=True)
    rev_a = subprocess.run(["git", "-C", tree_a, "rev-parse", "--short", "HEAD"],
                           capture_output=True, text=True, check=True).stdout.strip()
    rev_b = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                           capture_output=True, text=True, check=True).stdout.strip()
    builds = {"A": tree_a, "B": str(ROOT)}
    results: dict[str, dict[str, list[float]]] = {"A": {}, "B": {}}
    try:
        for rnd in range(opts.rounds):
            order = ["A", "B"] if rnd % 2 == 0 else ["B", "A"]
            for bench in benches:
                for build in order:
                    m = BENCHES[bench](builds[build], opts)
                    for k, v in m.items():
                        results[build].setdefault(k, []).append(v)
                    print(f"round {rnd + 1} {bench} {build}: "
                          + ", ".join(f"{k.strip()} {v:.2f}" for k, v in m.items()),
                          file=sys.stderr, flush=True)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", tree_a],
                       check=False)
        shutil.rmtree(work, ignore_errors=True)
    print(f"A = {opts.base} ({rev_a}), B = this tree ({rev_b}); median of {opts.rounds} "
          f"rounds, A and B alternating; cpus {os.cpu_count()}")
    print(f"{'metric':<34}{'A':>10}{'B':>10}{'B/A':>8}")
    for key in results["A"]:
        a = statistics.median(results["A"][key])
        b = statistics.median(results["B"][key])
        print(f"{key:<34}{a:>10.2f}{b:>10.2f}{(b / a if a else float('nan')):>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
