"""The coordination chaos workloads (watch, lease, lock, access): scenario keys, worker
plumbing and the report always; as root, real runs: coord-smoke and access pass every
checker, and each self-test's broken build is rejected while the same run on the correct
build passes."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from chaos.checkers.access import AccessOp, allowed
from chaos.checkers.lease import LeaseRecord
from chaos.checkers.watch import WatchRecord, WatchWrite
from chaos.history import History
from chaos.report import ScenarioResult, coord_counts, write_report
from chaos.run import coord_checks, lease_bound
from chaos.scenario import ScenarioError, find_scenario, load_scenario, parse_scenario
from chaos.workload_coord import CoordSpec, Journal, run_coord
from hakv.core.leases import expiry_bound
from tests.chaos_support import EXAMPLES, caught_violation, run_shipped_scenario

HEAD = "[scenario]\nname='x'\ntopology='three-node'\n"


def test_workload_kinds_and_their_tables_parse() -> None:
    sc = parse_scenario(HEAD + """
[workload]
kinds = ["register", "watch", "lease", "lock"]
groups = ["g1", "g2"]
[workload.watch]
groups = ["g1"]
watchers = 3
[workload.lease]
ttl = 3
leader_changes = 2
[workload.lock]
guard = false
""", base=EXAMPLES)
    assert sc.register_groups == ("g1", "g2")
    assert sc.coord_groups("watch") == ("g1",) and sc.workload.watch.watchers == 3
    assert sc.coord_groups("lease") == ("g1", "g2") and sc.workload.lease.ttl == (3.0, 3.0)
    assert sc.coord_groups("lock") == ("g1", "g2") and not sc.workload.lock.guard
    assert lease_bound(sc)(3.0) == pytest.approx(expiry_bound(3.0, 1.0, leader_changes=2))
    plain = parse_scenario(HEAD, base=EXAMPLES)
    assert plain.workload.kinds == ("register",) and plain.coord_groups("watch") == ()


@pytest.mark.parametrize("text, message", [
    ("[workload]\nkinds=['watches']\n", "unknown workload 'watches'; did you mean 'watch'"),
    ("[workload]\nkinds=[]\n", "at least one workload"),
    ("[workload]\nkinds=['lock', 'lock']\n", "lists a workload twice"),
    ("[workload]\nkinds=['watch']\n[workload.lease]\nclients=2\n",
     "[workload.lease] is given but 'lease' is not in [workload] kinds"),
    ("[workload]\nkinds=['watch']\n[workload.watch]\nwatcher=2\n",
     "did you mean 'watchers'"),
    ("[workload]\nkinds=['watch']\n[workload.watch]\ngroups=['g9']\n", "group 'g9'"),
    ("[workload]\nkinds=['lease']\n[workload.lease]\nttl=[0.5, 2]\n", "at least 1 s"),
    ("[workload]\nkinds=['lease']\n[workload.lease]\nrevoke=2\n", "probability"),
    ("[workload]\nkinds=['lock']\n[workload.lock]\nguard='no'\n", "true or false"),
    ("[workload]\nkinds=['watch']\n[checks]\nexpect_violation=['lease']\n",
     "lease runs only with the lease workload"),
    ("[workload]\nkinds=['watch']\n[checks]\nexpect_violation=['linearizable-register']\n",
     "runs only with the register workload"),
])
def test_workload_errors_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(HEAD + text, source="bad.toml", base=EXAMPLES)
    assert message in info.value.message


def test_journal_keeps_operations_in_flight_as_unknown() -> None:
    j = Journal()
    done = j.begin({"kind": "write", "process": 1, "changes": [
        {"type": "put", "key": "w/a", "value": "v1"}], "status": "unknown",
        "revision": None, "invoke": 1.0, "complete": None})
    j.begin({"kind": "write", "process": 1, "changes": [
        {"type": "put", "key": "w/a", "value": "v2"}], "status": "unknown",
        "revision": None, "invoke": 2.0, "complete": None})
    j.finish(done, status="ok", revision=5, complete=1.5)
    j.add({"kind": "keepalive", "lease": 7, "start": 3.0, "end": None, "status": "unknown"})
    first, second, third = j.records()
    assert isinstance(first, WatchWrite) and first.status == "ok" and first.revision == 5
    assert isinstance(second, WatchWrite) and second.status == "unknown"
    assert isinstance(third, LeaseRecord) and third.kind == "keepalive"


def test_a_worker_that_reaches_nobody_records_nothing_false(tmp_path: Path) -> None:
    """Against an endpoint nobody listens on, each workload ends by its deadlines and
    dumps only records that claim nothing (no ok write, no grant)."""
    for kind in ("watch", "lease", "lock"):
        now = time.monotonic()
        spec = CoordSpec(kind=kind, out=str(tmp_path / f"{kind}.jsonl"), group="g1",
                         group_index=0, endpoints=["127.0.0.1:9"], start=now,
                         until=now + 0.6, drain_until=now + 0.9, timeout=0.3,
                         options={"clients": 1, "writers": 1, "watchers": 1})
        recs = run_coord(spec, threading.Event())
        assert (tmp_path / f"{kind}.jsonl").exists()
        assert all(getattr(r, "status", "fail") != "ok" for r in recs
                   if not isinstance(r, WatchRecord)), recs
        assert time.monotonic() - now < 6


def test_coord_checks_are_skipped_or_vacuous_and_reported(tmp_path: Path) -> None:
    sc = load_scenario(find_scenario("coord-smoke"))
    checks, skipped = coord_checks(sc, {})
    assert {c.name for c in checks} == {"watch", "lease", "fencing"}
    assert all(not c.ok and c.details.startswith("vacuous") for c in checks)
    plain = load_scenario(find_scenario("smoke"))
    assert coord_checks(plain, {})[0] == []
    assert {n for n, _ in coord_checks(plain, {})[1]} == {"watch", "lease", "fencing",
                                                          "access"}
    w = WatchRecord("g1-w0", "start", 1.0, revision=1, prefix="w/", group="g1")
    r = ScenarioResult(name="demo", source="x.toml", seed=1, history=History([]),
                       coord={"watch": [w]}, checks=checks, skipped=skipped)
    assert coord_counts([w]) == {"watcher start": {"seen": 1}}
    text = write_report([r], tmp_path, ["python", "-m", "chaos.run"]).read_text()
    assert "### Coordination workloads" in text and "| watch | watcher start | seen 1 |" in text


# --------------------------------------------------------------------------- real runs


@pytest.mark.slow
def test_coord_smoke_passes_the_watch_lease_and_fencing_checks(tmp_path: Path) -> None:
    r = run_shipped_scenario("coord-smoke", tmp_path, budget=45)
    assert not r.errors, r.errors
    assert {c.name for c in r.checks} == {"watch", "lease", "fencing"}
    for c in r.checks:
        assert c.ok, c.details
    assert len(r.windows) == 3 and all(w.end is not None for w in r.windows)
    counts = {k: coord_counts(v) for k, v in r.coord.items()}
    assert counts["watch"]["write"]["ok"] > 100
    assert counts["watch"]["watcher end"]["seen"] == 2  # both watchers drained
    assert counts["lease"]["observe"]["ok"] > 50
    assert counts["lock"]["write"]["accepted"] > 5
    assert r.ok


def _control(name: str) -> dict[str, object]:
    """The self-test's scenario on the correct build: no failpoint, guarded writes."""
    sc = load_scenario(find_scenario(name))
    env = tuple((k, v) for k, v in sc.node_env if not k.startswith("HAKV_UNSAFE_"))
    wl = replace(sc.workload, lock=replace(sc.workload.lock, guard=True))
    return {"node_env": env, "workload": wl,
            "checks": replace(sc.checks, expect_violation=())}


SELFTESTS = [("watch-selftest", "watch", "never delivered", 30),
             ("lease-selftest", "lease", "after its deletion deadline", 35),
             ("lock-selftest", "fencing", "token", 35)]
#: The access self-test's control is the ``access`` scenario (same topology and workload,
#: more faults): test_access_control_holds_under_faults.
BROKEN = [*SELFTESTS, ("access-selftest", "access", "answered ok for a forbidden", 30)]


@pytest.mark.slow
@pytest.mark.parametrize("name, checker, words, budget", BROKEN)
def test_coord_broken_build_is_rejected(tmp_path: Path, name: str, checker: str, words: str,
                                        budget: float) -> None:
    check = caught_violation(run_shipped_scenario(name, tmp_path, budget=budget), checker)
    assert words in check.details, check.details


@pytest.mark.slow
@pytest.mark.parametrize("name, checker, words, budget", SELFTESTS)
def test_coord_selftest_on_the_correct_build_passes(tmp_path: Path, name: str, checker: str,
                                                    words: str, budget: float) -> None:
    """Control: the same run without the failpoint (guarded writes for the lock) passes,
    so the rejection above is the broken build's doing, not the workload's."""
    r = run_shipped_scenario(name, tmp_path, budget=budget, changes=_control(name))
    assert not r.errors, r.errors
    check = next(c for c in r.checks if c.name == checker)
    assert check.ok, check.details
    assert r.ok


@pytest.mark.slow
def test_access_control_holds_under_faults(tmp_path: Path) -> None:
    """Forbidden operations through owners and a forwarding non-owner, while g1's leader
    is isolated and killed: none answered ok, none took effect; allowed ones worked."""
    r = run_shipped_scenario("access", tmp_path, budget=40)
    assert not r.errors, r.errors
    check = next(c for c in r.checks if c.name == "access")
    assert check.ok, check.details
    ops = [x for x in r.coord["access"] if isinstance(x, AccessOp)]
    through_n4 = {(x.status, allowed(x.user, x.op, x.keys, x.ops)) for x in ops
                  if x.node == "n4"}
    assert {("ok", True), ("denied", False)} <= through_n4, through_n4  # forwarding, both ways
    assert r.ok


def test_coordination_scenarios_are_shipped() -> None:
    for name, checker in (("coord-smoke", None), ("coord", None),
                          ("watch-selftest", "watch"), ("lease-selftest", "lease"),
                          ("lock-selftest", "fencing"), ("access", None),
                          ("access-selftest", "access")):
        sc = load_scenario(find_scenario(name))
        assert set(sc.workload.kinds) <= {"watch", "lease", "lock", "access"}, name
        if checker is not None:
            assert sc.checks.expect_violation == (checker,) and sc.smoke, name
    smoke = load_scenario(find_scenario("coord-smoke"))
    assert smoke.smoke and smoke.duration <= 20
    assert set(smoke.workload.kinds) == {"watch", "lease", "lock"}
    assert dict(load_scenario(find_scenario("watch-selftest")).node_env)[
        "HAKV_UNSAFE_WATCH_SKIP"] == "1"
    assert dict(load_scenario(find_scenario("lease-selftest")).node_env)[
        "HAKV_UNSAFE_LEASE_NO_CHECKPOINT"] == "1"
    assert not load_scenario(find_scenario("lock-selftest")).workload.lock.guard
    assert dict(load_scenario(find_scenario("access-selftest")).node_env)[
        "HAKV_UNSAFE_ACCESS_FORWARDED"] == "1"
    assert "HAKV_UNSAFE_ACCESS_FORWARDED" not in dict(
        load_scenario(find_scenario("access")).node_env)
