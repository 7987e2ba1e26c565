"""The chaos harness: pure parts (schedules, fault shapes, scenario files) always; namespaces,
real runs and the broken-build self-test as root (skipped with the reason otherwise)."""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

from chaos import netns
from chaos.cluster import make_certs
from chaos.history import CheckResult, History, Operation
from chaos.nemesis import Fault, FaultWindow, links_for, ring_cuts, schedule
from chaos.report import ScenarioResult, write_report
from chaos.scenario import (
    FAULT_KINDS,
    ScenarioError,
    all_scenarios,
    find_scenario,
    load_scenario,
    parse_scenario,
)
from chaos.workload import WorkerSpec, classify
from hakv import errors
from hakv.core.topology import load_topology
from hakv.dev.local import LOCAL_CA_ENV
from hakv.security import certs
from tests.chaos_support import (
    EXAMPLES,
    caught_violation,
    killed_harness,
    need_root,
    process_gone,
    run_shipped_scenario,
    throwaway_network,
)

# --------------------------------------------------------------------------- scenarios


MIXED = """
[scenario]
name = "t"
topology = "nine-node"
duration = 60
seed = 5

[nemesis]
kinds = ["isolate", "bridge", "partition", "one-way", "ring", "loss", "kill", "pause", "delay"]
targets = ["202", "208", "214", "leader:220"]
groups = ["220"]
"""


def test_every_shipped_scenario_parses_and_has_a_schedule() -> None:
    names = set()
    for path in all_scenarios():
        sc = load_scenario(path)
        names.add(sc.name)
        faults = schedule(sc)
        assert faults, f"{path} has no faults"
        for f in faults:
            assert 0 <= f.start and f.end <= sc.duration + 1e-9, (path, f)
    assert {"smoke", "partition-leader", "kill-restart", "pause", "nine-node-mixed",
            "stale-reads-selftest", "ha-runner", "ha-runner-selftest"} <= names
    mixed = load_scenario(find_scenario("network-mixed"))
    assert "delay" in mixed.nemesis.kinds
    assert "delay" in {f.kind for f in schedule(mixed)}
    smoke = load_scenario(find_scenario("smoke"))
    assert smoke.smoke and smoke.duration <= 20


def test_schedule_is_a_pure_function_of_the_seed() -> None:
    sc = parse_scenario(MIXED, base=EXAMPLES)
    a, b = schedule(sc, 5), schedule(sc, 5)
    assert a == b
    assert schedule(sc, 6) != a
    assert schedule(sc) == a  # the scenario's own seed
    kinds = {f.kind for seed in range(20) for f in schedule(sc, seed)}
    assert kinds == set(FAULT_KINDS)
    for seed in range(20):
        faults = schedule(sc, seed)
        for f, nxt in zip(faults, faults[1:], strict=False):
            assert f.end < nxt.start  # a generated schedule never overlaps faults
        assert faults[-1].end <= sc.duration - sc.nemesis.end_margin + 1e-9


def test_random_faults_stay_on_their_targets() -> None:
    sc = parse_scenario(MIXED, base=EXAMPLES)
    topo = sc.topology
    allowed = {"202", "208", "214", "leader:220", "follower:220"}
    for seed in range(30):
        for f in schedule(sc, seed):
            if f.kind in ("one-way", "ring"):
                assert set(f.nodes) <= set(topo.group("220").owners) | allowed
            else:
                assert set(f.nodes) <= allowed, f
            if f.kind == "bridge":
                assert f.nodes == ("208",)  # the only bridge among the targets


def test_fault_links() -> None:
    topo = load_topology(EXAMPLES / "three-node.toml")
    iso = links_for(Fault(0, "isolate", 0, 1, ("n1",)), ["n1"], topo)
    assert {(lk.src, lk.dst) for lk in iso} == {("n1", "n2"), ("n2", "n1"), ("n1", "n3"),
                                                ("n3", "n1")}
    one = links_for(Fault(0, "one-way", 0, 1, ("n2", "n3")), ["n2", "n3"], topo)
    assert [(lk.src, lk.dst) for lk in one] == [("n2", "n3")]
    loss = links_for(Fault(0, "loss", 0, 1, ("n1",), probability=0.3), ["n1"], topo)
    assert len(loss) == 4 and all(lk.probability == 0.3 for lk in loss)
    bridge = links_for(Fault(0, "ring", 0, 1, ("n1", "n2"), group="g1"), ["n1", "n2"], topo)
    assert {(lk.src, lk.dst) for lk in bridge} == {("n1", "n2"), ("n2", "n1")}
    assert links_for(Fault(0, "kill", 0, 1, ("n1",)), ["n1"], topo) == []


@pytest.mark.parametrize("n", [4, 5, 7, 9])
def test_majorities_ring_every_node_sees_a_different_majority(n: int) -> None:
    order = [f"n{i}" for i in range(n)]
    cut = {frozenset(p) for p in ring_cuts(order)}
    seen = [frozenset(b for b in order if b == a or frozenset((a, b)) not in cut)
            for a in order]
    assert all(len(s) > n // 2 for s in seen)
    if n >= 5:
        assert len(set(seen)) == n  # no two nodes see the same majority


@pytest.mark.parametrize("text, message", [
    ("[scenario]\nname='x'\n", "topology is required"),
    ("[scenario]\nname='x'\ntopology='three-node'\nduraton=3\n", "did you mean 'duration'"),
    ("[scenario]\nname='x'\ntopology='no-such'\n", "no-such"),
    ("[scenario]\nname='x'\ntopology='three-node'\n[nemesis]\nkinds=['isolat']\n",
     "unknown fault kind 'isolat'; did you mean 'isolate'"),
    ("[scenario]\nname='x'\ntopology='three-node'\n[nemesis]\ntargets=['n9']\n",
     "node 'n9' is not in the topology"),
    ("[scenario]\nname='x'\ntopology='three-node'\n[nemesis]\ntargets=['leader:zz']\n",
     "names group 'zz'"),
    ("[scenario]\nname='x'\ntopology='three-node'\nduration=10\n[[faults]]\nat=8\n"
     "duration=5\nkind='kill'\nnode='n1'\n", "after the scenario's duration"),
    ("[scenario]\nname='x'\ntopology='three-node'\n[[faults]]\nat=1\nduration=1\n"
     "kind='loss'\nnode='n1'\n", "needs probability"),
    ("[scenario]\nname='x'\ntopology='three-node'\n[[faults]]\nat=1\nduration=1\n"
     "kind='one-way'\nnode='n1'\n", "nodes = [FROM, TO]"),
    ("[scenario]\nname='x'\ntopology='three-node'\n[workload]\nreads='local'\n",
     "reads must be one of failover, node-local"),
    ("[scenario]\nname='x'\ntopology='three-node'\n[workload]\nmix={read=0}\n",
     "must not all be 0"),
    ("[scenario]\nname='x'\ntopology='three-node'\n[checks]\nexpect_violation=['lin']\n",
     "unknown checker 'lin'"),
    ("[scenario]\nname='x'\ntopology='three-node'\n[nemesis]\nloss=[0.5, 2]\n",
     "at most 1.0"),
    ("[scenario\n", "not valid TOML"),
])
def test_scenario_errors_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, source="bad.toml", base=EXAMPLES)
    assert message in info.value.message
    assert info.value.message.startswith("bad.toml: ")


def test_missing_scenario_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="does not exist"):
        load_scenario(tmp_path / "nope.toml")


# --------------------------------------------------------------------------- workload, report


def test_worker_spec_round_trips_and_errors_are_classified() -> None:
    spec = WorkerSpec(mode="run", out="/x", group="g1", group_index=2,
                      endpoints=["10.231.0.10:8000"], mix=[("read", 1.0)])
    assert WorkerSpec.from_json(spec.to_json()) == spec
    assert classify(errors.OutcomeUnknownError("t"))[0] == "unknown"
    assert classify(errors.NoQuorumError("q")) == ("fail", "no_quorum")
    assert classify(errors.UnavailableError("u"))[0] == "fail"
    assert classify(errors.BadRequestError("b"))[0] == "fail"
    assert classify(errors.InternalError("i"))[0] == "unknown"
    assert classify(RuntimeError("boom"))[0] == "unknown"


def test_the_cluster_certificates_come_from_the_session_ca_or_a_new_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The chaos cluster signs with HAKV_LOCAL_CA_DIR's CA when set (the test session's:
    the session's own client is then trusted too), else with a CA of its own; either way
    it makes its client ``root``, which its harness and workloads use."""
    topo = load_topology(EXAMPLES / "three-node.toml")
    now = dt.datetime.now(dt.UTC)
    shared = os.environ.get(LOCAL_CA_ENV)
    assert shared, "tests/conftest.py sets a session CA"
    d = tmp_path / "certs"
    for _ in range(2):  # a second run in the same workdir overwrites
        make_certs(d, topo)
    assert (d / "ca.crt").read_bytes() == (Path(shared) / "ca.crt").read_bytes()
    for cert in ["client.root.crt", *(f"node.{n}.crt" for n in topo.node_ids)]:
        certs.verify(d / cert, d / "ca.crt", now)
    assert certs.identity_of(certs.load_cert(d / "client.root.crt")) == ("user", "root")
    monkeypatch.delenv(LOCAL_CA_ENV)
    own = tmp_path / "own"
    make_certs(own, topo)
    assert (own / "ca.crt").read_bytes() != (Path(shared) / "ca.crt").read_bytes()
    certs.verify(own / "client.root.crt", own / "ca.crt", now)


def test_report_renders_without_a_cluster(tmp_path: Path) -> None:
    ops = [Operation(1, "write", "k", "g1", "v", None, 10.0, 10.1, "ok"),
           Operation(1, "read", "k", "g1", None, "old", 10.2, 10.3, "ok")]
    r = ScenarioResult(name="demo", source="chaos/scenarios/demo.toml", seed=3, t0=10.0,
                       duration=5, history=History(ops), command="python -m chaos.run x")
    w = FaultWindow(Fault(0, "isolate", 1.0, 2.0, ("leader:g1",)), nodes=("n1",),
                    affected_groups=("g1",), start=11.0, end=13.0)
    r.windows = [w]
    r.checks = [CheckResult("linearizable-register", False, "g1/k: not linearizable", ops)]
    r.expect_violation = ("linearizable-register",)
    r.plot_note = "matplotlib is not installed"
    text = write_report([r], tmp_path, ["python", "-m", "chaos.run"]).read_text()
    assert "isolate n1" in text and "| 1.00 | 3.00 |" in text
    assert "broken build caught" in text and r.ok
    r.expect_violation = ()
    assert not r.ok


# --------------------------------------------------------------------------- namespaces


@pytest.fixture
def network() -> Iterator[netns.Network]:
    need_root()
    with throwaway_network(["a", "b", "c"]) as net:
        yield net


def _serve_once(net: netns.Network, node: str, port: int) -> None:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((net.address(node), port))
    srv.listen(16)
    srv.settimeout(5)
    try:
        while True:
            conn, _ = srv.accept()
            conn.sendall(b"ok")
            conn.close()
    except OSError:
        pass
    finally:
        srv.close()


def _reach(net: netns.Network, pools: dict[str, ThreadPoolExecutor], src: str, dst: str,
           port: int) -> bool:
    def attempt() -> bool:
        try:
            with socket.create_connection((net.address(dst), port), timeout=0.5) as s:
                return s.recv(2) == b"ok"
        except OSError:
            return False
    return pools[src].submit(attempt).result()


def test_cuts_and_loss_drop_only_what_they_name_and_heal(network: netns.Network) -> None:
    net = network
    pools = {n: ThreadPoolExecutor(2, initializer=netns.enter_netns,
                                   initargs=(net.ns_of(n) if n != "client" else net.client.ns,))
             for n in ("a", "b", "c", "client")}
    try:
        pools["b"].submit(_serve_once, net, "b", 9100)
        time.sleep(0.2)
        assert _reach(net, pools, "a", "b", 9100) and _reach(net, pools, "c", "b", 9100)
        net.apply("f1", [netns.Link("a", "b")])  # one way: a -> b
        assert not _reach(net, pools, "a", "b", 9100)
        assert _reach(net, pools, "c", "b", 9100)
        assert _reach(net, pools, "client", "b", 9100)  # clients are never cut off
        net.apply("f2", [netns.Link("c", "b", 1.0)])  # "loss" with p = 1
        assert "statistic" in net.rules("b")
        assert not _reach(net, pools, "c", "b", 9100)
        net.heal("f1")
        assert _reach(net, pools, "a", "b", 9100)
        assert not _reach(net, pools, "c", "b", 9100)
        net.heal_all()
        assert _reach(net, pools, "c", "b", 9100)
        assert "hakv-" not in net.rules("b")
    finally:
        for p in pools.values():
            p.shutdown(wait=False)


def test_cleanup_removes_what_a_killed_run_left(tmp_path: Path) -> None:
    need_root()
    script = (
        "import sys, time\n"
        "from chaos import netns\n"
        "net = netns.Network(['x', 'y'])\n"
        "net.create()\n"
        "p = net.popen(net.ns_of('x'), ['sleep', '300'], what='sleeper')\n"
        "print(net.run_id, p.pid, flush=True)\n"
        "time.sleep(300)\n"
    )
    with killed_harness(script) as (run_id, sleeper):
        left = [ns for ns in netns.list_namespaces() if run_id in ns]
        assert len(left) == 4  # hub, client, x, y
        log = netns.cleanup_stale()
        assert not [ns for ns in netns.list_namespaces() if run_id in ns], log
        assert process_gone(int(sleeper))
        assert not (netns.STATE_DIR / f"{run_id}.json").exists()


# --------------------------------------------------------------------------- real runs


def _run(name: str, tmp_path: Path, **changes: object) -> ScenarioResult:
    return run_shipped_scenario(name, tmp_path, budget=40, changes=changes)


@pytest.mark.slow
def test_smoke_scenario_passes_every_checker(tmp_path: Path) -> None:
    r = _run("smoke", tmp_path)
    assert not r.errors, r.errors
    assert {c.name for c in r.checks} == {"linearizable-register", "lost-writes-set"}
    for c in r.checks:
        assert c.ok, c.details
    assert len(r.windows) == 3 and all(w.end is not None for w in r.windows)
    assert sum(1 for op in r.history if op.status == "ok") > 200
    assert r.ok


@pytest.mark.slow
def test_broken_build_stale_reads_are_rejected(tmp_path: Path) -> None:
    """HAKV_UNSAFE_LOCAL_READS=1 + isolated leader: the linearizability checker rejects."""
    lin = caught_violation(_run("stale-reads-selftest", tmp_path), "linearizable-register")
    assert lin.counterexample


@pytest.mark.slow
def test_same_scenario_on_the_correct_build_passes(tmp_path: Path) -> None:
    """Control for the test above: without the unsafe knob the same run is linearizable,
    so the rejection is the broken build's doing, not the harness's."""
    sc = load_scenario(find_scenario("stale-reads-selftest"))
    env = tuple((k, v) for k, v in sc.node_env if k != "HAKV_UNSAFE_LOCAL_READS")
    r = _run("stale-reads-selftest", tmp_path, node_env=env,
             checks=replace(sc.checks, expect_violation=()))
    assert not r.errors, r.errors
    for c in r.checks:
        assert c.ok, c.details
