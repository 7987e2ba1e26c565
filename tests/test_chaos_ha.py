"""The HA workload of the chaos harness: ``[ha] apps`` groups run the heartbeat app, faults
aim at their runner (``runner:G``), and the single-runner and ha-placement checkers run on
what the apps wrote. Real runs as root (skipped with the reason otherwise): the ha-runner
scenario on the correct build, and the broken-build self-test (HAKV_UNSAFE_NO_FENCE=1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos.apps import HEARTBEAT_APP, heartbeat_spec, with_apps
from chaos.checkers.single_runner import (
    FinalPlacement,
    Heartbeat,
    check_final_placement,
    placements,
)
from chaos.report import ScenarioResult
from chaos.scenario import ScenarioError, find_scenario, load_scenario, parse_scenario
from hakv.core.topology import parse_topology
from tests.chaos_support import EXAMPLES, caught_violation, run_shipped_scenario

BASE = "[scenario]\nname='x'\ntopology='three-node'\nduration=20\n"


# --------------------------------------------------------------------------- scenario keys


def test_ha_section_gives_groups_the_heartbeat_app(tmp_path: Path) -> None:
    sc = parse_scenario(BASE + "[ha]\napps=['g1']\nlease=2.0\nrenew_interval=0.4\n"
                        "interval=0.1\n[[faults]]\nat=1\nduration=3\nkind='pause'\n"
                        "node='runner:g1'\n", base=EXAMPLES)
    assert sc.ha.apps == ("g1",) and sc.ha.interval == 0.1
    assert sc.topology.ha.lease == 2.0 and sc.topology.ha.renew_interval == 0.4
    beats = tmp_path / "beats.log"
    topo = with_apps(sc.topology, sc.ha.apps, heartbeat_spec(beats, 0.1, 0.5))
    app = topo.group("g1").app
    assert app is not None and topo.group("g2").app is None
    assert str(HEARTBEAT_APP) in app.start and app.start[-1] == "run"
    assert dict(app.env)["HEARTBEAT_FILE"] == str(beats)
    # the nodes get it through the topology file the harness writes
    again = parse_topology(topo.to_toml())
    assert again.group("g1").app == app and again.ha.lease == 2.0


@pytest.mark.parametrize("text, message", [
    ("[ha]\napps=['zz']\n", "group 'zz' is not in the topology"),
    ("[ha]\napps=['g1', 'g1']\n", "lists a group twice"),
    ("[ha]\napps=['g1']\nleese=1\n", "did you mean 'lease'"),
    ("[ha]\napps=['g1']\ninterval=0.5\n", "at most a quarter of the lease"),
    ("[ha]\napps=['g1']\nlease=1.0\nrenew_interval=0.9\n", "renew_interval"),
    ("[[faults]]\nat=1\nduration=1\nkind='kill'\nnode='runner:g1'\n",
     "group 'g1' runs no app; list it in [ha] apps"),
    ("[nemesis]\ntargets=['runner:g2']\n[ha]\napps=['g1']\n", "group 'g2' runs no app"),
    ("[checks]\nexpect_violation=['single-runner']\n", "runs only with [ha] apps"),
])
def test_bad_ha_sections_are_named(text: str, message: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(BASE + text, source="bad.toml", base=EXAMPLES)
    assert message in info.value.message


def test_shipped_ha_scenarios_aim_at_the_runner() -> None:
    sc = load_scenario(find_scenario("ha-runner"))
    assert sc.ha.apps == ("g1",)
    assert [(f.kind, f.nodes) for f in sc.faults] == [
        ("isolate", ("runner:g1",)), ("pause", ("runner:g1",)), ("kill", ("runner:g1",))]
    pause = next(f for f in sc.faults if f.kind == "pause")
    assert pause.duration > sc.topology.ha.lease * 2  # longer than the lease
    st = load_scenario(find_scenario("ha-runner-selftest"))
    assert dict(st.node_env)["HAKV_UNSAFE_NO_FENCE"] == "1"
    assert st.checks.expect_violation == ("single-runner",)


# --------------------------------------------------------------------------- ha-placement


def _beats(*spec: tuple[str, int, float]) -> list[Heartbeat]:
    return [Heartbeat(node, "g1", token, t) for node, token, t in spec]


def _final(record: dict[str, object] | None, **local: dict[str, object] | None
           ) -> FinalPlacement:
    return FinalPlacement("g1", record, local, (10.0, 11.0))


RUNNING = {"node": "n2", "state": "running", "token": 4}
N2 = {"state": "running", "token": 4, "pid": 123}
IDLE = {"state": "idle", "token": None, "pid": None}


def test_final_placement_accepts_one_runner() -> None:
    beats = _beats(("n1", 3, 9.0), ("n2", 4, 10.2), ("n2", 4, 10.7))
    r = check_final_placement([_final(RUNNING, n1=IDLE, n2=N2, n3=IDLE)], beats)
    assert r.ok, r.details
    assert "running on n2 (token 4)" in r.details


@pytest.mark.parametrize("final, beats, message", [
    (_final(None), [], "not readable"),
    (_final({"node": "n2", "state": "suspended", "token": 4}, n2=IDLE), [], "not running"),
    (_final(RUNNING, n1={"state": "running", "token": 3, "pid": 9}, n2=N2),
     [("n2", 4, 10.5)], "owners running an app process are ['n1', 'n2']"),
    (_final(RUNNING, n2={"state": "running", "token": 3, "pid": 9}),
     [("n2", 4, 10.5)], "the record says 4"),
    (_final(RUNNING, n1=None, n2=N2), [("n2", 4, 10.5)], "did not answer"),
    (_final(RUNNING, n2=N2), [("n2", 4, 9.5)], "no heartbeat in the final window"),
    (_final(RUNNING, n2=N2), [("n2", 4, 10.5), ("n1", 3, 10.6)], "not only from"),
])
def test_final_placement_rejects(final: FinalPlacement, beats: list[tuple[str, int, float]],
                                 message: str) -> None:
    r = check_final_placement([final], _beats(*beats))
    assert not r.ok and message in r.details, r.details


def test_final_placement_without_groups_is_vacuous() -> None:
    r = check_final_placement([], [])
    assert not r.ok and r.details.startswith("vacuous")


def test_placements_from_beats() -> None:
    beats = _beats(("n1", 1, 1.0), ("n1", 1, 2.0), ("n2", 2, 3.0), ("n1", 3, 5.0))
    assert placements(beats) == {"g1": [("n1", 1, 1.0, 2.0, 2), ("n2", 2, 3.0, 3.0, 1),
                                        ("n1", 3, 5.0, 5.0, 1)]}


# --------------------------------------------------------------------------- real runs


def _run(name: str, tmp_path: Path, **changes: object) -> ScenarioResult:
    return run_shipped_scenario(name, tmp_path, budget=45, changes=changes,
                                count_heartbeats=True)


@pytest.mark.slow
def test_runner_isolated_paused_and_killed_keeps_a_single_runner(tmp_path: Path) -> None:
    r = _run("ha-runner", tmp_path)
    assert not r.errors, r.errors
    checks = {c.name: c for c in r.checks}
    assert set(checks) == {"linearizable-register", "lost-writes-set", "single-runner",
                           "ha-placement"}
    for c in r.checks:
        assert c.ok, (c.name, c.details)
    # every fault hit the node running the app at that moment, and moved the app
    runs = placements(r.heartbeats)["g1"]
    assert len({token for _, token, *_ in runs}) >= 4, runs
    assert all(w.nodes and w.end is not None for w in r.windows)
    assert r.ok


@pytest.mark.slow
def test_broken_build_without_fencing_is_caught(tmp_path: Path) -> None:
    """HAKV_UNSAFE_NO_FENCE=1 + a paused runner: single-runner finds two runners at once."""
    single = caught_violation(_run("ha-runner-selftest", tmp_path), "single-runner")
    assert "two nodes ran at once" in single.details
