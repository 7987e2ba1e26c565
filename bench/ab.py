"""One benchmark, two builds, one run: A/B in alternation, so the machine's drift (±30 %
within an hour here) hits both alike.

    python -m bench.ab --base REV [--rounds 3] [--bench throughput,failover,idle]
                       [--clients 16,64] [--seconds 5] [--trials 10] [--groups 20]
                       [--insecure]
    python -m bench.ab --tls-vs-insecure [--base REV] [...]

A is the hakv of git revision REV (checked out in a temporary ``git worktree``), B is this
tree. Each round runs every benchmark on A, then on B (the order alternates between
rounds), each time with the benchmark code of *this* tree and only the node processes
taken from the build under test (``--nodes-from``): the load, the measurements and the
client library are the same for both, so a difference is the nodes'. Prints, per metric,
the median of the rounds for A and B and the ratio B/A.

Both builds serve their API over HTTPS with client certificates (the default since TLS),
or both run plain with ``--insecure``. When REV's nodes do not serve HTTPS (it predates
TLS: its ``hakv node --help`` has no ``--certs-dir``; or TLS on the raft port only: its
``hakv --help`` has no ``--cacert``; bench.cluster.tls_support) both run insecure, and a
note says so: the comparison stays like for like.

``--tls-vs-insecure`` measures what TLS costs instead: one build (this tree, or REV's with
``--base``) in both modes, A = ``--insecure``, B = TLS (API and raft), alternating as
above; B/A is the cost.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.cluster import TlsSupport, tls_support

ROOT = Path(__file__).resolve().parent.parent

Metrics = dict[str, float]


@dataclass(frozen=True)
class Arm:
    """One side of the comparison: the source tree whose nodes run, and in which mode."""

    tree: str
    insecure: bool


def _run(module: str, args: list[str], arm: Arm) -> Any:
    """``python -m MODULE ARGS --nodes-from TREE [--insecure] --json`` from this tree: its
    JSON."""
    cmd = [sys.executable, "-m", module, *args, "--nodes-from", arm.tree,
           *(["--insecure"] if arm.insecure else []), "--json"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    if proc.returncode not in (0, 1):  # failover exits 1 when single-runner is violated
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1] if module != "bench.failover"
                      else proc.stdout)


def throughput(arm: Arm, opts: argparse.Namespace) -> Metrics:
    out = _run("bench.throughput", ["--etcd", "no", "--clients", opts.clients,
                                    "--seconds", str(opts.seconds)], arm)
    m: Metrics = {}
    for c in out["cells"]:
        m[f"{c['op']} {c['clients']:>3} clients  ops/s"] = c["ops_per_s"]
        m[f"{c['op']} {c['clients']:>3} clients  p50 ms"] = c["p50_ms"]
    return m


def failover(arm: Arm, opts: argparse.Namespace) -> Metrics:
    out = _run("bench.failover", ["--trials", str(opts.trials)], arm)
    s = out["summary"]
    if not s["single_runner"]:
        raise RuntimeError(f"failover on {arm.tree}: single runner VIOLATED: "
                           f"{s['single_runner_details']}")
    return {"failover healthy p50 s": s["healthy"]["p50"],
            "failover placed p50 s": s["placed"]["p50"]}


def idle(arm: Arm, opts: argparse.Namespace) -> Metrics:
    out = _run("bench.idle", ["--groups", str(opts.groups), "--seconds", str(opts.idle_seconds)],
               arm)
    return {"idle settled % core/node": statistics.mean(out["settled"].values()),
            "idle after traffic % core/node": statistics.mean(out["after_traffic"].values())}


BENCHES: dict[str, Callable[[Arm, argparse.Namespace], Metrics]] = {
    "throughput": throughput, "failover": failover, "idle": idle}


_NOT_HTTPS = {
    "none": "predates TLS (its `hakv node --help` has no --certs-dir)",
    "raft": "has TLS on the raft port only, its API is plain HTTP (its `hakv --help` has "
            "no --cacert)",
}


def plan(tls_vs_insecure: bool, insecure: bool, base_tree: str | None,
         base_tls: TlsSupport) -> tuple[dict[str, Arm], str | None]:
    """The two arms {"A": ..., "B": ...} and a note to print (or None).

    A/B of two builds: A = ``base_tree``, B = this tree, both TLS unless ``insecure``, both
    insecure when the base does not serve HTTPS (``base_tls``, bench.cluster.tls_support).
    ``tls_vs_insecure``: one build (``base_tree`` if given, else this tree), A insecure,
    B TLS. SystemExit for what cannot be measured."""
    root = str(ROOT)
    if tls_vs_insecure:
        if insecure:
            raise SystemExit("bench.ab: --tls-vs-insecure runs both modes; drop --insecure")
        tree = base_tree or root
        if base_tree is not None and base_tls != "api":
            raise SystemExit(f"bench.ab: --tls-vs-insecure: the base build "
                             f"{_NOT_HTTPS[base_tls]}")
        return {"A": Arm(tree, True), "B": Arm(tree, False)}, None
    if base_tree is None:
        raise SystemExit("bench.ab: give --base REV (or --tls-vs-insecure)")
    note = None
    if base_tls != "api" and not insecure:
        insecure = True
        note = (f"note: the base build {_NOT_HTTPS[base_tls]}: both builds run --insecure "
                "(plain HTTP API and raft), like for like")
    return {"A": Arm(base_tree, insecure), "B": Arm(root, insecure)}, note


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", default=None,
                    help="git revision of build A (B = this tree); required but with "
                         "--tls-vs-insecure, where it names the one build measured")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bench", default="throughput,failover,idle")
    ap.add_argument("--clients", default="16,64")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--groups", type=int, default=20)
    ap.add_argument("--idle-seconds", type=float, default=10.0)
    ap.add_argument("--insecure", action="store_true",
                    help="run both builds without TLS (plain HTTP API, plain raft)")
    ap.add_argument("--tls-vs-insecure", action="store_true",
                    help="the cost of TLS: one build (this tree, or --base REV) insecure "
                         "as A and with TLS as B")
    opts = ap.parse_args(argv)
    benches = [b.strip() for b in opts.bench.split(",") if b.strip()]
    unknown = [b for b in benches if b not in BENCHES]
    if unknown:
        ap.error(f"unknown benchmark(s) {unknown}; choose from {sorted(BENCHES)}")
    if opts.base is None and not opts.tls_vs_insecure:
        ap.error("give --base REV (or --tls-vs-insecure)")
    work = Path(tempfile.mkdtemp(prefix="hakv-ab-"))
    tree_a: str | None = None
    rev_a = ""
    rev_b = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                           capture_output=True, text=True, check=True).stdout.strip()
    results: dict[str, dict[str, list[float]]] = {"A": {}, "B": {}}
    try:
        if opts.base is not None:
            tree_a = str(work / "a")
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q",
                            tree_a, opts.base], check=True)
            rev_a = subprocess.run(["git", "-C", tree_a, "rev-parse", "--short", "HEAD"],
                                   capture_output=True, text=True, check=True).stdout.strip()
        arms, note = plan(opts.tls_vs_insecure, opts.insecure, tree_a, tls_support(tree_a))
        if note:
            print(note, file=sys.stderr, flush=True)
        for rnd in range(opts.rounds):
            order = ["A", "B"] if rnd % 2 == 0 else ["B", "A"]
            for bench in benches:
                for side in order:
                    m = BENCHES[bench](arms[side], opts)
                    for k, v in m.items():
                        results[side].setdefault(k, []).append(v)
                    print(f"round {rnd + 1} {bench} {side}: "
                          + ", ".join(f"{k.strip()} {v:.2f}" for k, v in m.items()),
                          file=sys.stderr, flush=True)
    finally:
        if tree_a is not None:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", tree_a],
                           check=False)
        shutil.rmtree(work, ignore_errors=True)

    def mode(arm: Arm) -> str:
        return "insecure" if arm.insecure else "TLS"

    if opts.tls_vs_insecure:
        build = f"{opts.base} ({rev_a})" if opts.base is not None else f"this tree ({rev_b})"
        print(f"one build, {build}: A = insecure, B = TLS (B/A: the cost of TLS); median of "
              f"{opts.rounds} rounds, A and B alternating; cpus {os.cpu_count()}")
    else:
        print(f"A = {opts.base} ({rev_a}, {mode(arms['A'])}), B = this tree ({rev_b}, "
              f"{mode(arms['B'])}); median of {opts.rounds} rounds, A and B alternating; "
              f"cpus {os.cpu_count()}")
        if note:
            print(note)
    print(f"{'metric':<34}{'A':>10}{'B':>10}{'B/A':>8}")
    for key in results["A"]:
        a = statistics.median(results["A"][key])
        b = statistics.median(results["B"][key])
        print(f"{key:<34}{a:>10.2f}{b:>10.2f}{(b / a if a else float('nan')):>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
