"""Failover time: kill -9 of the node running a group's app -> the app running and checked
healthy on another owner.

    python -m bench.failover [--trials 20] [--dir DIR] [--lease 1.0] [--json]
                             [--election-timeout 0.4,1.0] [--insecure] [--json-file F]

Starts three real node processes (hakv.dev.local) with one group (owners n1 > n2 > n3) whose
app is tests/apps/heartbeat.py with its check command, default [ha] settings unless
given. Each trial waits for a steady state (app running, every node up and recorded up),
then SIGKILLs the node running the app and measures, on the wall clock all processes of
this machine share:

    placed     kill -> the new placement is in the group's log (the "place" event)
    beating    kill -> the first heartbeat of the new fencing token
    healthy    kill -> the new runner reported it running: its check passed (the number
               the issue's target is about)

It then restarts the killed node (fallback "stay": the app does not move back) and goes
on. Whether the killed runner also led the group's Raft ensemble is noted per trial (then
an election comes first). Every trial's heartbeats are checked for overlap and token
order (chaos/checkers/single_runner). p99 of fewer than 100 trials is their maximum.
The harness asks the nodes over HTTPS as the run's client (plain HTTP with ``--insecure``).
``--json-file F`` also writes the JSON of ``--json`` (trials, summary, conditions) to F;
``python -m bench.figures failover-distribution F`` draws its distribution.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.cluster import add_insecure_option, local_cluster, post
from bench.machine import describe
from chaos.checkers.single_runner import check_heartbeats, parse_heartbeat_file
from hakv.dev.local import LocalCluster
from tests.support import free_ports, wait_for

GROUP = "g"
NODES = ["n1", "n2", "n3"]
HEARTBEAT = Path(__file__).resolve().parents[1] / "tests" / "apps" / "heartbeat.py"


def topology(directory: Path, beats: Path, ha: dict[str, float], check_interval: float,
             raft: dict[str, float] | None = None) -> Path:
    ports = free_ports(2 * len(NODES))
    lines = ["[cluster]", 'name = "bench-failover"', ""]
    if raft:
        lines += ["[raft]", *(f"{k} = {v}" for k, v in raft.items()), ""]
    if ha:
        lines += ["[ha]", *(f"{k} = {v}" for k, v in ha.items()), ""]
    for i, node in enumerate(NODES):
        lines += ["[[nodes]]", f'id = "{node}"', 'host = "127.0.0.1"',
                  f"raft_port = {ports[2 * i]}", f"api_port = {ports[2 * i + 1]}", ""]
    run = json.dumps([sys.executable, str(HEARTBEAT), "run"])
    check = json.dumps([sys.executable, str(HEARTBEAT), "check"])
    lines += ["[[groups]]", f'id = "{GROUP}"', f"owners = {json.dumps(NODES)}",
              "[groups.app]", f"start = {run}", f"check = {check}",
              f"check_interval = {check_interval}",
              f'env = {{ HEARTBEAT_FILE = {json.dumps(str(beats))} }}', ""]
    path = directory / "topology.toml"
    path.write_text("\n".join(lines))
    return path


def ask(cluster: LocalCluster, op: str, body: dict[str, Any]) -> dict[str, Any]:
    for node in NODES:
        if not cluster.is_running(node):
            continue
        try:
            status, answer = post(cluster.endpoint(node), op, {"group": GROUP, **body},
                                  cluster.client_tls(), 5)
        except OSError:
            continue
        if status == 200:
            return answer
    raise RuntimeError(f"no node answered /v1/{op}")


def steady(cluster: LocalCluster) -> dict[str, Any] | None:
    """The placement when the app runs and every node is up and recorded up."""
    view = ask(cluster, "placement", {})
    p = view["placement"]
    states = {n: (view["node_status"].get(n) or {}).get("status", {}).get("state")
              for n in NODES}
    if p["state"] != "running" or any(s != "up" for s in states.values()):
        return None
    return view


def leader(cluster: LocalCluster) -> str | None:
    with cluster.client() as c:
        return c.cluster_status()["groups"][GROUP]["leader"]  # type: ignore[no-any-return]


def trial(cluster: LocalCluster, beats: Path, settle: float) -> dict[str, Any]:
    wait_for(lambda: steady(cluster), 60, interval=0.1, what="a steady state")
    time.sleep(settle)
    view = wait_for(lambda: steady(cluster), 60, interval=0.1, what="a steady state")
    old = view["placement"]
    victim = old["node"]
    led = leader(cluster) == victim
    killed_at = time.time()
    cluster.kill(victim)

    def healthy() -> dict[str, Any] | None:
        p = ask(cluster, "placement", {})["placement"]
        return p if p["state"] == "running" and p["token"] > old["token"] else None

    new = wait_for(healthy, 60, interval=0.05, what="the app running elsewhere")
    evs = ask(cluster, "events", {})["events"]
    placed = next(e["time"] for e in evs
                  if e.get("action") == "place" and e["token"] == new["token"])
    running = next(e["time"] for e in evs if e.get("action") == "report"
                   and e["token"] == new["token"] and e["state"] == "running")
    first_beat = min((b.time for b in parse_heartbeat_file(beats)
                      if b.token == new["token"]), default=float("nan"))
    cluster.start(victim)
    return {"killed": victim, "to": new["node"], "runner_led": led,
            "placed": placed - killed_at, "beating": first_beat - killed_at,
            "healthy": running - killed_at}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--dir", default=None, help="run dir (default: a temporary one)")
    parser.add_argument("--lease", type=float, default=None, help="[ha] lease (s)")
    parser.add_argument("--failure-timeout", type=float, default=None)
    parser.add_argument("--check-interval", type=float, default=0.5)
    parser.add_argument("--election-timeout", default=None, metavar="MIN,MAX",
                        help="[raft] election_timeout_min,max (default 0.4,1.0)")
    parser.add_argument("--settle", type=float, default=1.0,
                        help="seconds of steady state before each kill")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--json-file", default=None, metavar="F",
                        help="also write the JSON of --json (with the run's conditions) to F")
    parser.add_argument("--nodes-from", default=None, metavar="TREE",
                        help="run the nodes of this hakv source tree (bench.ab: A/B)")
    add_insecure_option(parser)
    args = parser.parse_args(argv)
    ha: dict[str, float] = {}
    if args.lease is not None:
        ha.update(lease=args.lease, renew_interval=args.lease / 4)
    if args.failure_timeout is not None:
        ha["failure_timeout"] = args.failure_timeout
    raft: dict[str, float] = {}
    if args.election_timeout:
        low, high = (float(x) for x in args.election_timeout.split(","))
        raft.update(election_timeout_min=low, election_timeout_max=high)
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="hakv-failover-"))
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    beats = base / "beats.txt"
    cluster = local_cluster(base / "run", args.nodes_from, insecure=args.insecure)
    results = []
    machine = describe(str(base))
    if not args.json:
        print(machine, flush=True)
    try:
        cluster.up(topology(base, beats, ha, args.check_interval, raft), wait=60)
        for i in range(args.trials):
            r = trial(cluster, beats, args.settle)
            results.append(r)
            if not args.json:
                print(f"trial {i + 1:3d}: {r['killed']} -> {r['to']}  placed "
                      f"{r['placed']:.3f}s  beating {r['beating']:.3f}s  healthy "
                      f"{r['healthy']:.3f}s{'  (runner led the group)' if r['runner_led'] else ''}",
                      flush=True)
        check = check_heartbeats(parse_heartbeat_file(beats))
    finally:
        cluster.down()
    summary: dict[str, Any] = {"trials": len(results), "single_runner": check.ok,
                               "single_runner_details": check.details}
    for key in ("placed", "beating", "healthy"):
        values = [r[key] for r in results]
        summary[key] = {"p50": statistics.median(values), "p90": pct(values, 0.9),
                        "p99": pct(values, 0.99),
                        "min": min(values), "max": max(values)}
    led = [r["healthy"] for r in results if r["runner_led"]]
    summary["runner_led_trials"] = len(led)
    conditions = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine, "cpus": os.cpu_count(), "settle": args.settle,
        "check_interval": args.check_interval, "ha": ha or "defaults",
        "raft": raft or "defaults", "transport": "plain HTTP (--insecure)" if args.insecure
        else "HTTPS with client certificates, mutual TLS between nodes"}
    if args.json_file:
        Path(args.json_file).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_file).write_text(json.dumps(
            {"summary": summary, "trials": results, "conditions": conditions}, indent=1) + "\n")
        if not args.json:
            print(f"wrote {args.json_file}")
    if args.json:
        print(json.dumps({"summary": summary, "trials": results, "conditions": conditions},
                         indent=2))
    else:
        print(f"\n{len(results)} trials (kill -9 of the runner -> app healthy elsewhere):")
        for key in ("placed", "beating", "healthy"):
            s = summary[key]
            print(f"  {key:8s} p50 {s['p50']:.3f}s  p90 {s['p90']:.3f}s  "
                  f"p99 {s['p99']:.3f}s  "
                  f"(min {s['min']:.3f}s, max {s['max']:.3f}s)")
        print(f"  the killed runner led the group in {len(led)} trials")
        print(f"  single runner: {'ok' if check.ok else 'VIOLATED'}: {check.details}")
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)
    return 0 if check.ok else 1


if __name__ == "__main__":
    sys.exit(main())
