"""The tools the benchmarks' claims rest on: the interpreter pick, the etcd reference and
bench.ab's choice of builds and modes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _version_of(python: str) -> tuple[int, int]:
    out = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:2])"],
                         capture_output=True, text=True, check=True).stdout.split()
    return int(out[0]), int(out[1])


def test_pick_python_names_a_python_of_at_least_3_11_that_can_make_a_venv() -> None:
    picked = subprocess.run(["sh", str(ROOT / "tools" / "pick-python")], capture_output=True,
                            text=True, check=True, timeout=60).stdout.strip()
    assert Path(picked).is_absolute() and Path(picked).exists()
    assert _version_of(picked) >= (3, 11)
    subprocess.run([picked, "-c", "import ensurepip, venv"], check=True)


def test_pick_python_never_picks_an_interpreter_older_than_3_11(tmp_path: Path) -> None:
    """A too-old 'python3' first on PATH is passed over: another qualifying interpreter (from
    /usr/bin) is picked, or, with none, it says so and fails."""
    fake = tmp_path / "python3"
    fake.write_text("#!/bin/sh\nexec " + sys.executable + " -c 'import sys; sys.exit(1)'\n")
    fake.chmod(0o755)
    result = subprocess.run(["/bin/sh", str(ROOT / "tools" / "pick-python")], capture_output=True,
                            text=True, env={"PATH": str(tmp_path)}, timeout=60)
    picked = result.stdout.strip()
    if result.returncode == 0:  # found one in /usr/bin: it must still qualify
        assert picked != str(fake) and picked.startswith("/usr/bin/")
        assert _version_of(picked) >= (3, 11)
    else:
        assert "no CPython >= 3.11" in result.stderr


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("etcd") is None,
                    reason="no etcd binary (apt-get install etcd-server) to compare against")
def test_the_etcd_reference_cluster_elects_a_leader_and_serves_puts_and_gets(
        tmp_path: Path) -> None:
    from bench.etcd import EtcdClient, EtcdCluster

    cluster = EtcdCluster(tmp_path / "etcd")
    try:
        cluster.up()
        leader = cluster.leader_endpoint()
        assert leader in cluster.endpoints
        with EtcdClient(leader) as client:
            client.put("k", "v1")
            assert client.get("k") == "v1"
            assert client.get("missing") is None
    finally:
        cluster.down()
    assert all(p.poll() is not None for p in cluster.procs) and not cluster.procs


# --------------------------------------------------------------------------- bench.ab


def _fake_tree(root: Path, help_text: str) -> Path:
    """A source tree whose ``python -m hakv ...`` prints ``help_text`` for ``--help`` and
    otherwise says it is the fake (and its arguments)."""
    pkg = root / "hakv"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text(
        "import sys\n"
        f"print({help_text!r} if '--help' in sys.argv else 'fake hakv ' + ' '.join(sys.argv[1:]))\n")
    return root


def test_ab_knows_what_tls_a_build_has_from_its_help(tmp_path: Path) -> None:
    from bench.cluster import tls_support

    assert tls_support(None) == "api" and tls_support(str(ROOT)) == "api"
    assert tls_support(str(_fake_tree(tmp_path / "old", "--data-dir --secret-file"))) == "none"
    assert tls_support(str(_fake_tree(tmp_path / "raft", "--certs-dir --insecure"))) == "raft"


def test_the_nodes_of_another_tree_import_its_hakv_even_run_from_this_one(
        tmp_path: Path) -> None:
    """``python -m`` puts the working directory ahead of PYTHONPATH: from this repository
    (where bench.ab runs everything) a node of build A imported this tree's hakv."""
    from bench.cluster import local_cluster

    tree = _fake_tree(tmp_path / "old", "no tls here")
    lc = local_cluster(tmp_path / "run", str(tree), insecure=True)
    cmd = lc._command("n1")
    assert cmd[1] == "-P" and "--insecure" not in cmd and "--certs-dir" not in cmd
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.startswith("fake hakv node "), (out.stdout, out.stderr)
    with pytest.raises(SystemExit, match="--insecure"):
        local_cluster(tmp_path / "run2", str(tree))
    assert "--insecure" in local_cluster(tmp_path / "run3", str(ROOT), insecure=True)._command("n1")


def test_ab_compares_like_with_like_and_measures_tls_on_one_build() -> None:
    from bench.ab import Arm, plan

    root = str(ROOT)
    arms, note = plan(False, False, "/a", "api")
    assert arms == {"A": Arm("/a", False), "B": Arm(root, False)} and note is None
    arms, note = plan(False, True, "/a", "api")
    assert arms == {"A": Arm("/a", True), "B": Arm(root, True)} and note is None
    for support, why in (("none", "predates TLS"), ("raft", "raft port only")):
        arms, note = plan(False, False, "/a", support)  # type: ignore[arg-type]
        assert arms == {"A": Arm("/a", True), "B": Arm(root, True)}
        assert note is not None and why in note and "--insecure" in note
    arms, note = plan(True, False, None, "api")
    assert arms == {"A": Arm(root, True), "B": Arm(root, False)} and note is None
    assert plan(True, False, "/a", "api")[0] == {"A": Arm("/a", True), "B": Arm("/a", False)}
    with pytest.raises(SystemExit, match="predates TLS"):
        plan(True, False, "/a", "none")
    with pytest.raises(SystemExit, match="drop --insecure"):
        plan(True, True, None, "api")


def test_figures_draw_the_topology_and_a_failover_timeline(tmp_path: Path) -> None:
    """docs/img/nine-node.png and failover.png come from `python -m bench.figures`."""
    import json as _json

    from bench import figures

    figures.topology(figures.ROOT / "examples" / "nine-node.toml", tmp_path / "t.png")
    assert (tmp_path / "t.png").stat().st_size > 10_000
    run = tmp_path / "run"
    run.mkdir()
    (run / "failover.json").write_text(_json.dumps({
        "killed": 100.0, "node": "208", "group": "226",
        "events": [{"kind": "placement", "action": "place", "time": 101.7, "node": "210",
                    "state": "starting", "token": 2},
                   {"kind": "placement", "action": "report", "time": 101.9, "node": "210",
                    "state": "running", "token": 2}],
        "unaffected": {"222": {"before": ["204", 1], "after": ["204", 1]}}}))
    figures.failover(run, tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 10_000


# ------------------------------------------- bench.figures: throughput and failover plots
# (issue 16, point 7) Drawn from small JSON fixtures shaped like the files
# `bench.throughput --json-file` and `bench.failover --json-file` write; no benchmark runs.

def _throughput_fixture(with_etcd: bool) -> dict[str, object]:
    cells = []
    for op, base in (("put", 500.0), ("get", 1500.0)):
        for n in (1, 16, 64):
            hakv = {"ops_per_s": base * n ** 0.4, "p50_ms": 1.0, "p99_ms": 2.0,
                    "runs": [base * n ** 0.4 * f for f in (0.9, 1.0, 1.1)]}
            cell: dict[str, object] = {"op": op, "clients": n, **hakv}
            if with_etcd:
                cell["etcd"] = {"ops_per_s": 0.8 * base * n ** 0.3, "p50_ms": 1.2,
                                "p99_ms": 2.5}
            cells.append(cell)
    return {"cells": cells, "conditions": {
        "date": "2026-12-06 19:00 UTC", "machine": "machine now: fdatasync p50 0.15 ms",
        "cpus": 2, "seconds": 3.0, "procs": 2, "repeat": 3, "value_bytes": 100,
        "hakv_transport": "plain HTTP (--insecure)",
        "etcd": "etcd 3.4.23, 3 members, plain HTTP JSON gateway" if with_etcd else None}}


@pytest.mark.parametrize("with_etcd", [True, False])
def test_figures_draw_throughput_against_etcd_from_its_json(tmp_path: Path,
                                                            with_etcd: bool) -> None:
    import json as _json

    from bench import figures

    data = tmp_path / "throughput.json"
    data.write_text(_json.dumps(_throughput_fixture(with_etcd)))
    assert figures.main(["throughput", str(data), str(tmp_path / "t.png")]) == 0
    assert (tmp_path / "t.png").stat().st_size > 10_000


def test_figures_draw_the_failover_distribution_from_its_json(tmp_path: Path) -> None:
    import json as _json

    from bench import figures

    trials = [{"killed": "n1", "to": "n2", "runner_led": i % 3 == 0, "placed": 1.0 + i / 50,
               "beating": 1.2 + i / 50, "healthy": 1.3 + i / 50 + (0.8 if i == 19 else 0)}
              for i in range(20)]
    data = tmp_path / "failover.json"
    data.write_text(_json.dumps({"summary": {"trials": 20, "single_runner": True},
                                 "trials": trials, "conditions": {"ha": "defaults"}}))
    assert figures.main(["failover-distribution", str(data), str(tmp_path / "d.png")]) == 0
    assert (tmp_path / "d.png").stat().st_size > 10_000
    healthy = [t["healthy"] for t in trials]
    assert figures._pct(healthy, 0.5) == sorted(healthy)[10]
    assert figures._pct(healthy, 0.99) == max(healthy)  # p99 of < 100 trials: the max
