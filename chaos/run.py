"""Run chaos scenarios and write the report (``make chaos``).

::

    python -m chaos.run                       # every scenario in chaos/scenarios/
    python -m chaos.run smoke pause           # by name, or paths to .toml files
    python -m chaos.run --smoke               # the short ones ([scenario] smoke = true)
    python -m chaos.run kill-restart --seed 7 # reproduce a run from its seed
    python -m chaos.run --cleanup             # remove what crashed runs left behind

One scenario, step by step:

1. build the namespaces (``chaos.netns``) and start every node in its own
   (``chaos.cluster``); wait until every group has a leader with quorum, and until the
   groups listed in ``[ha] apps`` run their heartbeat app (``chaos.apps``);
2. start one workload process per group in the client namespace (``chaos.workload``; and
   one per group and coordination workload, ``chaos.workload_coord``: watch, lease, lock) and
   play the fault schedule drawn from the seed (``chaos.nemesis``) for ``duration`` s;
3. heal everything (rules flushed, delayers stopped, paused nodes resumed, killed nodes
   restarted), wait for every group's quorum, let the workers finish, then read every set
   once more, and record where each app runs once it settled;
4. tear down (nodes stopped, namespaces deleted — also on error and on SIGINT/SIGTERM);
5. run every checker on the merged history: linearizability per register, no lost
   acknowledged add, group isolation (when asked); with ``[ha] apps``, single-runner on the
   heartbeat file (no two placements at once, tokens never go backwards) and ha-placement
   (after the run each app runs on exactly one node, the one its record names); with the
   coordination workloads, ``watch``, ``lease`` (against docs/api.md's bound) and
   ``fencing`` on their records.

Writes ``DIR/report.md``, ``DIR/<scenario>.png`` and ``DIR/<scenario>/`` (history.jsonl,
faults.json, node logs). Exit status: 0 all passed (or skipped: not root), 1 a checker or
the harness failed, 2 bad arguments or scenario files.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from chaos import delay, workload_access
from chaos.apps import final_placements, heartbeat_spec, wait_apps_running, with_apps
from chaos.checkers import (
    check_final_placement,
    check_heartbeats,
    check_history,
    check_sets,
    check_untouched,
    parse_heartbeat_file,
)
from chaos.checkers._records import dump_records, load_records
from chaos.checkers.access import AccessFinal, AccessOp, check_access
from chaos.checkers.fencing import FencedWrite, Grant, check_fencing
from chaos.checkers.lease import LeaseRecord, check_leases
from chaos.checkers.watch import WatchRecord, WatchWrite, check_watch
from chaos.cluster import ChaosCluster, repo_env
from chaos.history import CheckResult, History
from chaos.nemesis import Nemesis, schedule
from chaos.netns import Network, Skip, cleanup_stale, preflight
from chaos.report import ScenarioResult, plot_timeline, write_report
from chaos.scenario import (
    Scenario,
    ScenarioError,
    all_scenarios,
    find_scenario,
    load_scenario,
)
from chaos.workload import WorkerSpec
from chaos.workload_coord import COORD_KINDS, CoordSpec, parse_record
from hakv.client.client import Client
from hakv.core.leases import expiry_bound

__all__ = ["main", "run_scenario"]

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "run" / "chaos"
_MARKER = ".hakv-chaos"

Log = Callable[[str], None]


def _say(msg: str) -> None:
    print(msg, flush=True)


def _prepare_dir(path: Path) -> None:
    """A fresh scenario directory; only one this harness made before is wiped."""
    if path.exists():
        if not (path / _MARKER).exists():
            raise ScenarioError(f"{path} exists and was not made by the chaos harness; "
                                "choose another --out")
        shutil.rmtree(path)
    path.mkdir(parents=True)
    (path / _MARKER).write_text("made by python -m chaos.run\n")


def _command(sc: Scenario, seed: int) -> str:
    src = Path(sc.source)
    try:
        shown = str(src.resolve().relative_to(REPO))
    except ValueError:
        shown = str(src)
    return f"python -m chaos.run {shlex.quote(shown)} --seed {seed}"


class _Workers:
    """Workload processes in the client namespace, by exact pid."""

    def __init__(self, net: Network, workdir: Path) -> None:
        self.net = net
        self.dir = workdir / "work"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.outputs: list[Path] = []
        self.coord_outputs: dict[str, list[Path]] = {}
        #: Extra environment of every worker: the cluster's client TLS files
        #: (``ChaosCluster.client_env``), set once the cluster exists.
        self.env: dict[str, str] = {}

    def spawn(self, spec: WorkerSpec | CoordSpec, name: str) -> None:
        spec_path = self.dir / f"{name}.json"
        spec.out = str(self.dir / f"{name}.jsonl")
        spec_path.write_text(spec.to_json())
        module = "chaos.workload_coord" if isinstance(spec, CoordSpec) else "chaos.workload"
        with open(self.dir / f"{name}.log", "ab") as log:
            proc = self.net.popen(self.net.client.ns,
                                  [sys.executable, "-m", module, "--spec", str(spec_path)],
                                  what=f"workload {name}", stdin=subprocess.DEVNULL,
                                  stdout=log, stderr=subprocess.STDOUT,
                                  env=repo_env(self.env),
                                  start_new_session=True)
        self.procs.append(proc)
        if isinstance(spec, CoordSpec):
            self.coord_outputs.setdefault(spec.kind, []).append(Path(spec.out))
        else:
            self.outputs.append(Path(spec.out))

    def wait(self, deadline: float) -> list[str]:
        """Wait for every worker until ``deadline``; SIGTERM, then SIGKILL the late ones.
        Returns problems (exit codes)."""
        problems = []
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
                problems.append(f"workload pid {proc.pid} overran its deadline and was "
                                "stopped")
            if proc.returncode not in (0, None, -signal.SIGTERM):
                problems.append(f"workload pid {proc.pid} exited {proc.returncode} "
                                f"(see {self.dir})")
        self.procs = []
        return problems

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        self.procs = []

    def histories(self) -> History:
        ops = []
        for path in self.outputs:
            if path.exists():
                ops.extend(History.load(path).ops)
        ops.sort(key=lambda op: op.invoke)
        return History(ops)

    def coord_records(self) -> tuple[dict[str, list[object]], list[str]]:
        """The coordination workloads' records per kind, and problems reading them."""
        out: dict[str, list[object]] = {}
        problems = []
        for kind, paths in self.coord_outputs.items():
            recs = out.setdefault(kind, [])
            for path in paths:
                if not path.exists():
                    problems.append(f"{kind} workload wrote no records ({path})")
                    continue
                try:
                    recs.extend(load_records(path, parse_record))
                except ValueError as err:
                    problems.append(f"{kind} workload: {err}")
        return out, problems


def _spec(sc: Scenario, cluster: ChaosCluster, group: str, index: int, mode: str,
          start: float, until: float, seed: int) -> WorkerSpec:
    w = sc.workload
    return WorkerSpec(mode=mode, out="", group=group, group_index=index,
                      endpoints=cluster.endpoints(group), clients=w.clients, start=start,
                      until=until, seed=seed, mix=list(w.mix), keys=w.keys,
                      key_rotate=w.key_rotate, timeout=w.timeout, think=w.think, reads=w.reads)


COORD_DRAIN = 6.0
"""Seconds (on top of 2 client timeouts) the watch and lease workloads go on observing after
the faults are healed: watchers drain, expiring leases are seen gone."""


def _coord_spec(sc: Scenario, cluster: ChaosCluster, kind: str, group: str, index: int,
                start: float, until: float, seed: int) -> CoordSpec:
    cfg = getattr(sc.workload, kind)
    options = {k: v for k, v in asdict(cfg).items() if k != "groups"}
    options["election_timeout"] = sc.topology.raft.election_timeout_max
    endpoints = cluster.endpoints(group)
    if kind == "access":  # through every node: owners serve, the others forward
        options["nodes"] = list(sc.topology.node_ids)
        options["certs_dir"] = str(cluster.certs_dir)
        endpoints = [cluster.endpoint(n) for n in sc.topology.node_ids]
    return CoordSpec(kind=kind, out="", group=group, group_index=index,
                     endpoints=endpoints, start=start, until=until,
                     drain_until=until + 2 * sc.workload.timeout + COORD_DRAIN, seed=seed,
                     timeout=sc.workload.timeout, options=options)


def _setup_access(sc: Scenario, cluster: ChaosCluster) -> None:
    """The access workload's users, roles and seed keys (chaos.workload_access.setup), set
    by the cluster's root identity from the client namespace before the run starts."""
    endpoints = {n: cluster.endpoint(n) for n in sc.topology.node_ids}

    def setup() -> None:
        with Client(list(endpoints.values()), timeout=5, tls=cluster.client_tls) as root:
            workload_access.setup(root, list(sc.coord_groups("access")), cluster.certs_dir,
                                  endpoints)

    cluster.pool.submit(setup).result(timeout=90)


def lease_bound(sc: Scenario) -> Callable[[float], float]:
    """The bound the lease check holds a scenario to: docs/api.md's ttl + k(C + E) + M, E
    the topology's election_timeout_max, k ``[workload.lease] leader_changes``."""
    e, k = sc.topology.raft.election_timeout_max, sc.workload.lease.leader_changes
    return lambda ttl: expiry_bound(ttl, e, leader_changes=k)


def run_scenario(sc: Scenario, out: Path, seed: int | None = None, log: Log = _say
                 ) -> ScenarioResult:
    """Run one scenario (needs root: raises Skip otherwise) and check its history."""
    seed = sc.seed if seed is None else seed
    workdir = out / sc.name
    result = ScenarioResult(name=sc.name, source=sc.source, seed=seed,
                            description=sc.description, topology=sc.topology_ref,
                            duration=sc.duration, expect_violation=sc.checks.expect_violation,
                            workdir=str(workdir), command=_command(sc, seed))
    faults = schedule(sc, seed)
    preflight()
    _prepare_dir(workdir)
    log(f"== {sc.name} (seed {seed}): {len(faults)} faults over {sc.duration:g}s, "
        f"dir {workdir}")
    unavailable: dict[str, str] = {}
    if any(f.kind == "delay" for f in faults):
        why = delay.available()
        if why is not None:
            unavailable["delay"] = why
            log(f"   delay faults will be SKIPPED: {why}")
    topology = sc.topology
    ha_groups = list(sc.ha.apps)
    if ha_groups:
        result.beats_path = str(workdir / "heartbeats.log")
        Path(result.beats_path).touch()
        spec = heartbeat_spec(Path(result.beats_path), sc.ha.interval, sc.ha.check_interval)
        topology = with_apps(topology, ha_groups, spec)
    t_setup = time.monotonic()
    net = Network(list(sc.topology.node_ids))
    cluster: ChaosCluster | None = None
    workers = _Workers(net, workdir)
    nemesis: Nemesis | None = None
    groups = list(sc.workload_groups)
    reg_groups = list(sc.register_groups)
    coord = [(kind, g) for kind in COORD_KINDS for g in sc.coord_groups(kind)]
    index = {g: i for i, g in enumerate(sc.topology.group_ids)}
    try:
        net.create()
        cluster = ChaosCluster(net, topology, workdir, env=dict(sc.node_env))
        workers.env = cluster.client_env()  # workloads speak HTTPS as the cluster's client
        cluster.start_all()
        cluster.wait_quorum(timeout=30)
        if ha_groups:
            runners = wait_apps_running(cluster, ha_groups, timeout=30)
            log("   apps running: " + ", ".join(f"{g} on {n}" for g, n in runners.items()))
        if sc.coord_groups("access"):
            _setup_access(sc, cluster)
        t0 = time.monotonic() + 0.5
        result.t0 = t0
        result.t0_wall = time.time() + (t0 - time.monotonic())
        result.timings["setup"] = t0 - t_setup
        until = t0 + sc.duration
        for g in reg_groups:
            workers.spawn(_spec(sc, cluster, g, index[g], "run", t0, until, seed), g)
        for kind, g in coord:
            workers.spawn(_coord_spec(sc, cluster, kind, g, index[g], t0, until, seed),
                          f"{g}-{kind}")
        nemesis = Nemesis(cluster, faults, seed, t0, log=log, unavailable=unavailable)
        result.windows = nemesis.windows
        nemesis.start()
        while time.monotonic() < until:
            time.sleep(min(0.5, max(0.0, until - time.monotonic())))
        nemesis.heal_everything()
        result.errors.extend(nemesis.errors)
        grace = until + 2 * sc.workload.timeout + 10
        if coord:
            grace += COORD_DRAIN + 2 * sc.workload.timeout
        result.errors.extend(workers.wait(grace))
        t_final = time.monotonic()
        cluster.wait_quorum(timeout=30)
        cluster.wait_converged(groups, timeout=20)
        for g in reg_groups:
            workers.spawn(_spec(sc, cluster, g, index[g], "final", t0,
                                time.monotonic() + 20, seed), f"{g}-final")
        result.errors.extend(workers.wait(time.monotonic() + 40))
        if ha_groups:
            result.finals = final_placements(cluster, ha_groups)
        result.timings["run"] = t_final - t0
        result.timings["heal+final"] = time.monotonic() - t_final
    except Exception as err:
        result.errors.append(f"{type(err).__name__}: {err}")
        log(f"harness error: {err}")
    finally:
        if nemesis is not None:
            nemesis.stop.set()
        workers.kill_all()
        if cluster is not None:
            cluster.stop_all()
        net.destroy()
    result.history = workers.histories()
    result.history.dump(workdir / "history.jsonl")
    result.coord, problems = workers.coord_records()
    result.errors.extend(problems)
    for kind, recs in result.coord.items():
        dump_records(workdir / f"{kind}.jsonl", recs)
    (workdir / "faults.json").write_text(json.dumps([w.to_dict() for w in result.windows],
                                                    indent=1))
    t_check = time.monotonic()
    result.checks, result.skipped = run_checks(sc, result)
    result.timings["check"] = time.monotonic() - t_check
    plot, note = plot_timeline(result, out / f"{sc.name}.png")
    result.plot, result.plot_note = plot, note
    for c in result.checks:
        log(f"   {c.name}: {result.verdict(c)}")
    log(f"== {sc.name}: {'PASS' if result.ok else 'FAIL'}")
    return result


def run_checks(sc: Scenario, r: ScenarioResult) -> tuple[list[CheckResult],
                                                        list[tuple[str, str]]]:
    ops = list(r.history)
    checks: list[CheckResult] = []
    skipped: list[tuple[str, str]] = []
    if not sc.register_groups:
        why = "no register workload in this scenario ([workload] kinds)"
        skipped += [("linearizable-register", why), ("lost-writes-set", why)]
    elif sc.checks.linearizable:
        regs = [op for op in ops if op.kind in ("read", "write", "cas")]
        if not any(op.status == "ok" for op in regs):
            checks.append(CheckResult("linearizable-register", False,
                                      "vacuous: no acknowledged register operation"))
        else:
            checks.append(check_history(regs))
    if sc.checks.lost_writes and sc.register_groups:
        checks.append(check_sets([op for op in ops if op.kind in ("add", "read_set")]))
    if sc.checks.isolation:
        affected = sorted({g for w in r.windows for g in w.affected_groups})
        windows = [(w.start, w.end if w.end is not None else w.start) for w in r.windows
                   if w.start is not None]
        run_ops = [op for op in ops if op.kind != "read_set"]
        checks.append(check_untouched(run_ops, affected, windows, sc.checks.max_latency))
    if sc.ha.apps:
        try:
            beats = parse_heartbeat_file(r.beats_path) if r.beats_path else []
        except (OSError, ValueError) as err:
            checks.append(CheckResult("single-runner", False, f"heartbeat file: {err}"))
        else:
            r.heartbeats = beats
            checks.append(check_heartbeats(beats))
            checks.append(check_final_placement(r.finals, beats))
    else:
        why = "no [ha] apps in this scenario (no app writes heartbeats)"
        skipped += [("single-runner", why), ("ha-placement", why)]
    checks_c, skipped_c = coord_checks(sc, r.coord)
    return checks + checks_c, skipped + skipped_c


def coord_checks(sc: Scenario, coord: dict[str, list[object]]
                 ) -> tuple[list[CheckResult], list[tuple[str, str]]]:
    """The watch, lease and fencing checkers on the coordination workloads' records."""
    checks: list[CheckResult] = []
    skipped: list[tuple[str, str]] = []
    for kind, checker in (("watch", "watch"), ("lease", "lease"), ("lock", "fencing"),
                          ("access", "access")):
        if not sc.coord_groups(kind):
            skipped.append((checker, f"no {kind} workload in this scenario "
                                     "([workload] kinds)"))
            continue
        recs = coord.get(kind, [])
        if kind == "watch":
            checks.append(check_watch([x for x in recs if isinstance(x, WatchWrite)],
                                      [x for x in recs if isinstance(x, WatchRecord)]))
        elif kind == "lease":
            checks.append(check_leases([x for x in recs if isinstance(x, LeaseRecord)],
                                       lease_bound(sc)))
        elif kind == "access":
            checks.append(check_access([x for x in recs if isinstance(x, AccessOp)],
                                       [x for x in recs if isinstance(x, AccessFinal)]))
        else:
            checks.append(check_fencing([x for x in recs if isinstance(x, Grant)],
                                        [x for x in recs if isinstance(x, FencedWrite)]))
    return checks, skipped


# --------------------------------------------------------------------------- CLI


def _on_sigterm(_sig: int, _frame: Any) -> None:
    raise SystemExit(128 + signal.SIGTERM)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m chaos.run",
                                     description="Run hakv chaos scenarios (docs/chaos.md).")
    parser.add_argument("scenarios", nargs="*",
                        help="scenario names (chaos/scenarios/NAME.toml) or .toml paths; "
                             "default: all")
    parser.add_argument("--seed", type=int, default=None,
                        help="override every scenario's seed (reproduce a run)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"report directory (default {DEFAULT_OUT})")
    parser.add_argument("--smoke", action="store_true",
                        help="only scenarios marked smoke = true")
    parser.add_argument("--cleanup", action="store_true",
                        help="remove namespaces and processes left by dead runs, then exit")
    args = parser.parse_args(argv)

    if args.cleanup:
        try:
            preflight()
        except Skip as skip:
            _say(f"chaos: cleanup skipped: {skip.reason}")
            return 0
        done = cleanup_stale()
        _say("\n".join(done) if done else "chaos: nothing to clean up")
        return 0

    try:
        paths = [find_scenario(s) for s in args.scenarios] or all_scenarios()
        scenarios = [load_scenario(p) for p in paths]
    except ScenarioError as err:
        _say(f"chaos: {err.message}")
        return 2
    if args.smoke:
        scenarios = [s for s in scenarios if s.smoke]
    if not scenarios:
        _say("chaos: no scenario to run")
        return 2
    try:
        preflight()
    except Skip as skip:
        _say(f"chaos: SKIPPED: {skip.reason}")
        return 0

    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    # SIGINT even when started in the background of a script (which ignores it there)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    results: list[ScenarioResult] = []
    try:
        stale = cleanup_stale()
        if stale:
            _say("chaos: cleaned up after dead runs:\n  " + "\n  ".join(stale))
        for sc in scenarios:
            results.append(run_scenario(sc, args.out, args.seed))
    except (KeyboardInterrupt, SystemExit) as stop:
        _say(f"chaos: interrupted ({type(stop).__name__}); namespaces and processes of "
             "the current run were removed")
        return 130 if isinstance(stop, KeyboardInterrupt) else 143
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
        if results:
            path = write_report(results, args.out, ["python", "-m", "chaos.run", *argv])
            _say(f"chaos: report written to {path}")
    failed = [r.name for r in results if not r.ok]
    if failed:
        _say(f"chaos: FAILED: {', '.join(failed)}")
        return 1
    _say(f"chaos: all {len(results)} scenario(s) passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
