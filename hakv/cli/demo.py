"""``make demo``: the patent's nine-node example, running locally, written to and looked at.

``python -m hakv.cli.demo --dir DIR [--topology FILE]``:

1. starts ``examples/nine-node.toml`` as local processes under DIR (stopping what an
   earlier demo left running there first);
2. writes one key to each resource group through the client library, reads it back;
3. prints the cluster status (as ``hakv status`` does);
4. prints, from each node's data dir (as ``hakv inspect`` does), which nodes hold each
   group's keys: exactly the group's owners;
5. tells the patent's failover story (Fig. 4; on the nine-node example only): gives each
   group a small app (examples/apps/beacon.py), shows where each runs, kills node 208
   (kill -9) and times group 226's app restarting on 210 while groups 222 and 224 notice
   nothing (same leader, same term); then the two-of-nine case: with only 202 and 208 up,
   group 220 (a majority of its owners) serves and runs its app, group 226 does not;
6. brings every node back, leaves the cluster running and says how to use and stop it
   (``make demo-down``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import hakv
from hakv.cli.render import fail_line, render_status, render_table, start_progress
from hakv.core.topology import Topology, load_topology
from hakv.dev.local import LocalCluster, NodesNotReadyError
from hakv.errors import DataDirError, HakvError, InternalError
from hakv.storage.inspect import inspect_data_dir

DEMO_KEY = "demo/greeting"


def _default_topology() -> Path:
    return Path(hakv.__file__).resolve().parent.parent / "examples" / "nine-node.toml"


def _looks_like_run_dir(path: Path) -> bool:
    """Only what ``hakv local`` creates: safe to wipe."""
    allowed = {"topology.toml", "topology.tmp", "data", "logs", "pids", "secret", "added",
               "certs", "INSECURE", "failover.json"}
    return path.is_dir() and {p.name for p in path.iterdir()} <= allowed


def _prepare(lc: LocalCluster, topology: Topology) -> None:
    if lc.running():
        print(f"stopping the cluster still running in {lc.dir} ...")
        lc.down()
    if lc.exists():
        try:
            same = load_topology(lc.topology_path).fingerprint() == topology.fingerprint()
        except HakvError:
            same = False
        if not same:
            if not _looks_like_run_dir(lc.dir):
                raise DataDirError(
                    f"{lc.dir} holds another cluster and other files; give the demo "
                    "another --dir (make demo DEMO_DIR=...)"
                )
            print(f"{lc.dir} held another cluster: starting afresh")
            shutil.rmtree(lc.dir)


def _holders(lc: LocalCluster, topology: Topology) -> dict[str, list[str]]:
    """Group id -> the nodes whose data dir holds DEMO_KEY of that group."""
    holders: dict[str, list[str]] = {g.id: [] for g in topology.groups}
    for node in topology.node_ids:
        dump: dict[str, Any] | None = None
        for _ in range(5):  # the node is running: a concurrent commit can disturb a read
            try:
                dump = inspect_data_dir(lc.data_dir(node))
                break
            except DataDirError:
                time.sleep(0.1)
        if dump is None:
            continue
        for gid, store in dump["group_stores"].items():
            keys = {kv.get("key") for kv in store.get("kvs") or []}
            if DEMO_KEY in keys and gid in holders:
                holders[gid].append(node)
    return holders


def run(run_dir: str, topology_path: str) -> int:
    topology = load_topology(topology_path)
    lc = LocalCluster(run_dir)
    _prepare(lc, topology)

    print(f"starting {len(topology.nodes)} nodes of {topology_path} under {lc.dir} ...")
    with start_progress("nodes answering /v1/health") as progress:
        lc.up(topology_path, wait=60, progress=progress)
    print("all nodes answer /v1/health\n")

    rows = []
    with lc.client(timeout=20) as client:
        for group in topology.groups:
            value = f"hello from group {group.id}, owned by {', '.join(group.owners)}"
            put = client.put(group.id, DEMO_KEY, value)
            kv = client.get(group.id, DEMO_KEY)
            if kv.value != value:
                raise InternalError(f"group {group.id}: read back {kv.value!r}, wrote {value!r}")
            rows.append([group.id, DEMO_KEY, put.revision, kv.value])
        print("wrote one key per group and read it back (linearizable reads):\n")
        print(render_table(["GROUP", "KEY", "REVISION", "VALUE"], rows))
        status = client.cluster_status()

    print("\n$ hakv status\n")
    print(render_status(status))

    # Followers apply a committed write a moment after the leader answered: wait a little
    # until every owner has it, so the table shows the steady state.
    deadline = time.monotonic() + 5
    holders = _holders(lc, topology)
    while time.monotonic() < deadline and any(
        sorted(holders[g.id]) != sorted(g.owners) for g in topology.groups
    ):
        time.sleep(0.2)
        holders = _holders(lc, topology)

    print(
        f"\nwhere each group's key lives (hakv inspect of every node's data dir, {DEMO_KEY!r}):\n"
    )
    placement = []
    for group in topology.groups:
        held = holders[group.id]
        strangers = sorted(set(held) - set(group.owners))
        placement.append(
            [
                group.id,
                group.owners,
                held or None,
                strangers or "none",
                "yes" if sorted(held) == sorted(group.owners) else "NO",
            ]
        )
    print(
        render_table(
            ["GROUP", "OWNERS", "HELD BY", "NON-OWNERS HOLDING IT", "ONLY OWNERS"], placement
        )
    )

    print("\nwhat each node's disk holds (node status records: exactly its sphere of influence):\n")
    node_rows = []
    for node in topology.node_ids:
        sphere = sorted(topology.sphere_of_influence(node))
        dump: dict[str, Any] | None = None
        for _ in range(25):  # status records land a moment after start-up
            try:
                dump = inspect_data_dir(lc.data_dir(node))
            except DataDirError:
                dump = None
            if dump is not None and dump["node_status"] == sphere:
                break
            time.sleep(0.2)
        status_held = dump["node_status"] if dump else None
        cluster_keys = len((dump or {}).get("cluster_store", {}).get("kvs") or []) if dump else 0
        node_rows.append([node, dump["groups"] if dump else None, status_held, sphere,
                          "yes" if status_held == sphere else "NO", cluster_keys])
    print(render_table(["NODE", "GROUPS", "NODE STATUS HELD", "SPHERE OF INFLUENCE",
                        "EXACTLY", "CLUSTER RECORDS"], node_rows))

    if {"202", "208", "210"} <= set(topology.node_ids) and all(
            topology.has_group(g) for g in STORY_GROUPS):
        _failover_story(lc, topology)

    print(
        f"""
The cluster keeps running. Try:
  hakv explain node 208 --dir {lc.dir}    # where its records live, and why
  {lc.env_line()}
  hakv status
  hakv get 220 {DEMO_KEY}
  hakv local kill 208 --dir {lc.dir}      # kill -9 a shared node; groups 220 and 226 keep quorum
  hakv inspect {lc.data_dir("202")}
Stop it with:
  make demo-down        (or: hakv local down --dir {lc.dir})"""
    )
    return 0


STORY_GROUPS = ("220", "222", "224", "226")
BEACON = Path(hakv.__file__).resolve().parent.parent / "examples" / "apps" / "beacon.py"


def _step(text: str) -> float:
    print(f"\n== {text}")
    return time.monotonic()


def _placements(client: Any) -> dict[str, dict[str, Any]]:
    groups = client.cluster_status()["groups"]
    return {g: (groups.get(g) or {}).get("app") or {} for g in STORY_GROUPS}


def _wait(what: str, predicate: Any, timeout: float) -> float:
    """Poll ``predicate`` every 0.1 s; seconds it took (InternalError after ``timeout``)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if predicate():
                return time.monotonic() - start
        except HakvError:
            pass
        time.sleep(0.1)
    raise InternalError(f"demo: {what} did not happen within {timeout:g} s")


def _failover_story(lc: LocalCluster, topology: Topology) -> None:
    """Step 5 of the module docstring: the patent's Fig. 4, timed."""
    app = {"start": [sys.executable, str(BEACON), "run"],
           "check": [sys.executable, str(BEACON), "check"], "check_interval": 0.3}
    with lc.client(timeout=10) as client:
        t0 = _step("each group gets an app (examples/apps/beacon.py): it runs on the first "
                   "live owner, under a fencing token")
        for gid in STORY_GROUPS:
            client.admin.set_app(gid, app)
        took = _wait("every app running", lambda: all(
            p.get("state") == "running" for p in _placements(client).values()), 60)
        print(f"all four apps running {took:.1f} s after `hakv group set-app` "
              f"({time.monotonic() - t0:.1f} s)")
        if _placements(client)["226"].get("node") != "208":
            # A re-run on the same run dir: the app stayed where an earlier failover put it
            # (fallback "stay"). Move it back to its first owner, as an operator would.
            client.admin.move("226", "208", reason="the demo starts from the first owner")
            took = _wait("group 226's app to run on 208", lambda: (
                (p := _placements(client)["226"]).get("state") == "running"
                and p.get("node") == "208"), 30)
            print(f"moved group 226's app back to 208 ({took:.1f} s; `hakv group move`)")
        print()
        status = client.cluster_status()
        print(render_status(status).split("\n\n")[1])
        before = {g: (status["groups"][g]["leader"], status["groups"][g]["term"])
                  for g in ("222", "224")}
        on_208 = sorted(g for g, p in _placements(client).items() if p.get("node") == "208")

        _step(f"kill -9 node 208 (a shared node: owner of 220 and 226; it runs the app of "
              f"{', '.join(on_208) or 'no group'})")
        killed = time.monotonic()
        killed_wall = time.time()
        lc.kill("208")
        took = _wait("group 226's app to run elsewhere", lambda: (
            (p := _placements(client)["226"]).get("state") == "running"
            and p.get("node") not in (None, "208")), 30)
        p226 = _placements(client)["226"]
        print(f"group 226's app runs on {p226['node']} (token {p226['token']}) "
              f"{took:.1f} s after the kill (failover by precedence: 208, 210, 212)")
        status = client.cluster_status()
        after = {g: (status["groups"][g]["leader"], status["groups"][g]["term"])
                 for g in ("222", "224")}
        for g in ("222", "224"):
            same = "noticed nothing" if after[g] == before[g] else "CHANGED"
            print(f"group {g}: leader {after[g][0]}, term {after[g][1]} (before: leader "
                  f"{before[g][0]}, term {before[g][1]}): {same}")
        print(f"({time.monotonic() - killed:.1f} s since the kill)")
        # The timeline, for the picture (python -m bench.figures failover DIR OUT.png).
        timeline = {"killed": killed_wall, "node": "208", "group": "226",
                    "events": [e for e in client.admin.events("226")
                               if e.get("time", 0) >= killed_wall - 1.0],
                    "unaffected": {g: {"before": before[g], "after": after[g]}
                                   for g in ("222", "224")}}
        (lc.dir / "failover.json").write_text(json.dumps(timeline, indent=1))

    t0 = _step("the two-of-nine case: only 202 and 208 up")
    lc.start("208")
    lc.wait_healthy(["208"], 30)
    others = [n for n in topology.node_ids if n not in ("202", "208")]
    for node in others:
        lc.stop(node)
    with lc.client(timeout=10) as client:
        took = _wait("group 220 to take a write", lambda: client.put(
            "220", "demo/two-of-nine", "served by 202 and 208") is not None, 30)
        print(f"group 220 (owners 202, 208, 214: two of three up) takes writes "
              f"({took:.1f} s after the others stopped)")
        took = _wait("group 220's app to run", lambda: (
            (p := _placements(client)["220"]).get("state") == "running"
            and p.get("node") in ("202", "208")), 30)
        p220 = _placements(client)["220"]
        print(f"group 220's app runs on {p220['node']} (token {p220['token']})")
    with lc.client(timeout=2) as client:
        try:
            client.put("226", "demo/two-of-nine", "x")
            print("group 226: took a write (unexpected: 208 alone is not a majority)")
        except HakvError as err:
            print(f"group 226 (owners 208, 210, 212: one of three up) refuses: {err.code} "
                  "(no majority, so no app runs either: its lease cannot be renewed)")
    print(f"({time.monotonic() - t0:.1f} s)")

    _step("bringing every node back")
    for node in others:
        lc.start(node)
    lc.wait_healthy(topology.node_ids, 60)
    print("all nine nodes answer again")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hakv.cli.demo", description="Run the nine-node demo."
    )
    parser.add_argument("--dir", default="/tmp/hakv-demo", help="run directory of the demo")
    parser.add_argument(
        "--topology", default=str(_default_topology()), help="topology file (default: nine-node)"
    )
    args = parser.parse_args(argv)
    try:
        return run(args.dir, args.topology)
    except HakvError as err:
        if isinstance(err, NodesNotReadyError) and err.tails:
            print(err.log_tails(), file=sys.stderr)
        print(fail_line(err.code, err.message), file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":
    sys.exit(main())
