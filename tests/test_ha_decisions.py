"""The HA core (hakv.core.ha) as tables: app and [ha] specs, the fallback window, the quorum
rule, lease arithmetic, the placement record's state machine, the leader's decisions, node
marks and the explanation. Pure: every time is an argument."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hakv.core import ha, quorum
from hakv.core.ha import Decision, GroupView, HaTuning, Placement
from hakv.core.topology import parse_topology
from hakv.errors import BadRequestError, TopologyError

BASE = """
[cluster]
name = "t"
[[nodes]]
id = "a"
host = "127.0.0.1"
raft_port = 7001
api_port = 8001
[[nodes]]
id = "b"
host = "127.0.0.1"
raft_port = 7002
api_port = 8002
[[nodes]]
id = "c"
host = "127.0.0.1"
raft_port = 7003
api_port = 8003
[[groups]]
id = "g"
owners = ["a", "b", "c"]
"""

# --------------------------------------------------------------------------- specs


def test_an_app_spec_parses_with_defaults_and_round_trips() -> None:
    text = BASE + '''fallback = "return"
fallback_window = "22:00-06:00"
[groups.app]
start = "exec my-app"
check = ["my-app", "--check"]
env = { COLOR = "blue" }
restart_limit = 1
[ha]
lease = 2.0
renew_interval = 0.5
'''
    topo = parse_topology(text)
    g = topo.group("g")
    assert g.app is not None
    assert g.app.start == "exec my-app" and g.app.check == ("my-app", "--check")
    assert g.app.stop is None and g.app.check_interval == 1.0 and g.app.restart_limit == 1
    assert dict(g.app.env) == {"COLOR": "blue"}
    assert (g.fallback, g.fallback_window) == ("return", "22:00-06:00")
    assert topo.ha.lease == 2.0 and topo.ha.failure_timeout == 1.0
    assert parse_topology(topo.to_toml()) == topo
    assert ha.argv(g.app.start) == ["/bin/sh", "-c", "exec my-app"]
    assert ha.argv(g.app.check) == ["my-app", "--check"]


def test_a_group_without_app_keeps_its_old_dict_and_fingerprint_shape() -> None:
    g = parse_topology(BASE).group("g")
    assert g.to_dict() == {"id": "g", "owners": ["a", "b", "c"], "load": 1}
    assert g.app is None and g.fallback == "stay"


BAD_SPECS = [
    # (what is appended to the group, rule, words in the message)
    ("[groups.app]\nstop = 'x'\n", "missing_field", "'start' is missing"),
    ("[groups.app]\nstart = ''\n", "app_command", "must not be empty"),
    ("[groups.app]\nstart = 3\n", "app_command", "shell command string"),
    ("[groups.app]\nstart = []\n", "app_command", "non-empty"),
    ("[groups.app]\nstart = 'x'\nrestart_limit = -1\n", "app_restart_limit", ">= 0"),
    ("[groups.app]\nstart = 'x'\nrestart_limit = true\n", "app_restart_limit", "integer"),
    ("[groups.app]\nstart = 'x'\ncheck_interval = 0\n", "ha_positive", "> 0"),
    ("[groups.app]\nstart = 'x'\nstart_timeout = 'soon'\n", "field_type", "seconds"),
    ("[groups.app]\nstart = 'x'\nenv = { HAKV_NODE = 'x' }\n", "app_env", "reserves"),
    ("[groups.app]\nstart = 'x'\nenv = { '1X' = 'x' }\n", "app_env", "valid variable name"),
    ("[groups.app]\nstart = 'x'\nenv = { X = 1 }\n", "app_env", "must be a string"),
    ("[groups.app]\nstart = 'x'\nchek = 'y'\n", "unknown_key", "did you mean 'check'"),
    ("app = 'x'\n", "shape", "must be a table"),
    ("fallback = 'back'\n", "group_fallback", '"stay"'),
    ("fallback = 'return'\nfallback_window = '25:00-06:00'\n", "group_fallback_window",
     "not a time of day"),
    ("fallback = 'return'\nfallback_window = '22-06'\n", "group_fallback_window", "HH:MM"),
    ("fallback = 'return'\nfallback_window = '06:00-06:00'\n", "group_fallback_window", "empty"),
    ("fallback_window = '22:00-06:00'\n", "group_fallback_window", 'only to fallback = "return"'),
    ("[ha]\nrenew_interval = 0.6\n", "ha_renew_interval", "half the lease"),
    ("[ha]\nprobe_interval = 1.0\n", "ha_probe_interval", "less than failure_timeout"),
    ("[ha]\nclock_drift = 0.5\n", "ha_clock_drift", "below 0.5"),
    ("[ha]\nlease = -1\n", "ha_positive", "> 0"),
    ("[ha]\nleese = 1\n", "unknown_key", "did you mean 'lease'"),
]


@pytest.mark.parametrize(("extra", "rule", "words"), BAD_SPECS)
def test_bad_app_and_ha_specs_name_the_broken_rule(extra: str, rule: str, words: str) -> None:
    with pytest.raises(TopologyError) as err:
        parse_topology(BASE + extra)
    assert err.value.details.get("rule") == rule, err.value.message
    assert words in err.value.message


# --------------------------------------------------------------------------- window, quorum

WINDOWS = [
    # (window, time of day, inside?)
    (None, "12:00", True),
    ("22:00-06:00", "21:59", False),
    ("22:00-06:00", "22:00", True),
    ("22:00-06:00", "03:00", True),
    ("22:00-06:00", "06:00", False),
    ("01:30-02:00", "01:45", True),
    ("01:30-02:00", "02:00", False),
    ("01:30-02:00", "01:29", False),
]


@pytest.mark.parametrize(("window", "at", "inside"), WINDOWS)
def test_the_fallback_window(window: str | None, at: str, inside: bool) -> None:
    h, m = (int(x) for x in at.split(":"))
    assert ha.in_window(window, h * 60 + m) is inside


@pytest.mark.parametrize(("window", "words"), [
    ("22:00", 'expected "HH:MM-HH:MM"'),
    ("24:00-06:00", "24:00 is not a time of day"),
    ("06:00-06:00", "the window is empty"),
])
def test_a_bad_window_is_a_config_error_naming_the_rule(window: str, words: str) -> None:
    with pytest.raises(TopologyError, match=words) as caught:
        ha.parse_window(window)
    assert caught.value.details["rule"] == "group_fallback_window"


QUORUM = [
    # (owners, up, quorum?) -- patent Fig. 4 and the restart scenario
    (("202", "208", "214"), ("202", "208"), True),  # 220 with 202 and 208 up
    (("208", "210", "212"), ("208",), False),  # 226 with only 208 up
    (("208", "210", "212"), ("210", "212"), True),  # 226 after 208 fails
    (("a", "b"), ("a",), False),  # 1 of 2 is no majority
    (("a", "b", "c", "d", "e"), ("a", "b", "c"), True),
    (("a", "b", "c", "d", "e"), ("a", "b", "x", "y"), False),  # non-owners do not count
]


@pytest.mark.parametrize(("owners", "up", "expected"), QUORUM)
def test_the_quorum_rule(owners: tuple[str, ...], up: tuple[str, ...], expected: bool) -> None:
    assert quorum.has_quorum(owners, up) is expected


def test_the_whole_cluster_needs_no_majority() -> None:
    nine = [str(n) for n in range(202, 219, 2)]
    assert not quorum.has_quorum(nine, ["202", "208"])  # the cluster: 2 of 9
    assert quorum.has_quorum(["202", "208", "214"], ["202", "208"])  # group 220 serves anyway


# --------------------------------------------------------------------------- leases

T = HaTuning()  # lease 1.0, drift 1%, margin 0.1


def test_lease_arithmetic() -> None:
    assert ha.runner_deadline(100.0, T) == 101.0
    assert ha.lease_expiry(100.0, T) == pytest.approx(101.11)
    assert T.takeover_wait == pytest.approx(1.11)


@given(request=st.floats(0, 1000), delay=st.floats(0, 5),
       runner_rate=st.floats(0.995, 1.005), leader_rate=st.floats(0.995, 1.005))
def test_a_new_placement_never_starts_before_the_old_lease_ends(
        request: float, delay: float, runner_rate: float, leader_rate: float) -> None:
    """Real time: the runner asked at ``request``; the leader saw the renewal ``delay``
    later. Clocks may run up to 0.5% fast or slow (within clock_drift = 1%)."""
    runner_stops = request + T.lease / runner_rate
    leader_places = request + delay + T.takeover_wait / leader_rate
    assert runner_stops < leader_places


def test_observe_restarts_the_clock_on_every_new_renewal() -> None:
    p = Placement(node="a", state="running", token=3, renewals=7)
    w = ha.observe(None, p, 10.0)
    assert w.seen_at == 10.0
    assert ha.observe(w, p, 12.0).seen_at == 10.0  # nothing new: still 10
    assert ha.observe(w, replace(p, renewals=8), 12.0).seen_at == 12.0
    assert ha.observe(w, replace(p, token=4, renewals=0), 13.0).seen_at == 13.0


# --------------------------------------------------------------------------- the record


def _run(steps: list[tuple[dict[str, Any], dict[str, Any]]]) -> Placement:
    """Apply each command; check the result and record fields each step expects."""
    rec = Placement()
    for index, (cmd, expect) in enumerate(steps, start=1):
        full = ha.command(cmd.pop("action"), 1000.0 + index, **cmd)
        new, result, event = ha.apply_command(rec, full, index)
        for key, value in expect.items():
            if key == "result":
                for rk, rv in value.items():
                    assert result.get(rk) == rv, (index, full, result)
            elif key == "event":
                assert (event is not None) is value, (index, full)
            else:
                assert getattr(new or rec, key) == value, (index, full, key, new or rec)
        rec = new or rec
    return rec


def test_placement_record_lifecycle() -> None:
    _run([
        # initial placement on a: token 1, starting
        ({"action": "place", "node": "a", "expect_token": 0, "expect_renewals": 0,
          "reason": "initial"}, {"node": "a", "state": "starting", "token": 1, "event": True}),
        # renewals count; no event
        ({"action": "renew", "node": "a", "token": 1},
         {"renewals": 1, "event": False, "result": {"renewed": True}}),
        ({"action": "renew", "node": "b", "token": 1},
         {"renewals": 1, "result": {"renewed": False}}),  # not the runner
        ({"action": "report", "node": "a", "token": 1, "state": "running", "reason": "ok"},
         {"state": "running", "event": True, "reason": "initial"}),  # why it runs *there*
        ({"action": "report", "node": "a", "token": 1, "state": "running", "reason": "ok"},
         {"result": {"applied": False}, "event": False}),  # nothing new
        ({"action": "report", "node": "a", "token": 1, "state": "running", "reason": "r",
          "restarts": 1}, {"restarts": 1, "event": True}),  # a restart in place
        ({"action": "renew", "node": "a", "token": 1}, {"renewals": 2}),
        # a placement that missed a renewal is refused (compare-and-set)
        ({"action": "place", "node": "b", "expect_token": 1, "expect_renewals": 1},
         {"node": "a", "token": 1, "result": {"applied": False}, "event": False}),
        ({"action": "place", "node": "b", "expect_token": 1, "expect_renewals": 2,
          "reason": "lease of a expired"},
         {"node": "b", "token": 2, "renewals": 0, "restarts": 0, "state": "starting"}),
        # the old runner can no longer renew nor report
        ({"action": "renew", "node": "a", "token": 1}, {"result": {"renewed": False}}),
        ({"action": "report", "node": "a", "token": 1, "state": "stopped"},
         {"state": "starting", "result": {"applied": False}}),
        ({"action": "report", "node": "b", "token": 2, "state": "failed", "reason": "x"},
         {"state": "failed", "failed_on": ("b",)}),
        ({"action": "renew", "node": "b", "token": 2}, {"result": {"renewed": False}}),
        ({"action": "cleanup"}, {"failed_on": ()}),
    ])


def test_move_stop_maintenance() -> None:
    rec = _run([
        ({"action": "place", "node": "a", "expect_token": 0, "expect_renewals": 0}, {}),
        ({"action": "report", "node": "a", "token": 1, "state": "running"}, {}),
        ({"action": "move", "target": "c"}, {"target": "c", "event": True}),
        ({"action": "stop", "expect_token": 0}, {"state": "running",
                                                 "result": {"applied": False}}),
        ({"action": "stop", "expect_token": 1, "reason": "move"}, {"state": "stopping"}),
        ({"action": "report", "node": "a", "token": 1, "state": "running"},
         {"state": "stopping", "result": {"applied": False}}),  # stopping is final
        ({"action": "renew", "node": "a", "token": 1},
         {"result": {"renewed": True}}),  # a graceful stop keeps its lease
        ({"action": "report", "node": "a", "token": 1, "state": "stopped"},
         {"state": "stopped"}),
        ({"action": "place", "node": "c", "expect_token": 1, "expect_renewals": 1},
         {"node": "c", "token": 2, "target": None}),
        ({"action": "maintenance", "on": True}, {"maintenance": True}),
        ({"action": "maintenance", "on": True}, {"result": {"applied": False}}),
        ({"action": "place", "node": "a", "expect_token": 2, "expect_renewals": 0},
         {"node": "c", "result": {"applied": False}}),  # not while in maintenance
        ({"action": "move", "target": "a"}, {"target": None, "result": {}}),
    ])
    assert rec.maintenance


@pytest.mark.parametrize("cmd", [
    {"action": "fly", "time": 1.0},
    {"action": "place", "time": 1.0, "node": "a", "expect_token": -1, "expect_renewals": 0},
    {"action": "place", "time": "now", "node": "a", "expect_token": 0, "expect_renewals": 0},
    {"action": "report", "time": 1.0, "node": "a", "token": 1, "state": "dancing"},
    {"action": "maintenance", "time": 1.0, "on": "yes"},
    {"action": "unplace", "time": 1.0, "state": "running", "expect_token": 0,
     "expect_renewals": 0},
    {"action": "move", "time": 1.0, "target": ""},
])
def test_malformed_placement_commands_are_refused(cmd: dict[str, Any]) -> None:
    with pytest.raises(BadRequestError):
        ha.validate_command(cmd)


def test_the_record_round_trips_as_json() -> None:
    p = Placement(node="a", state="running", token=4, renewals=9, reason="r", time=1.5,
                  index=7, renewed_at=2.5, restarts=1, maintenance=True, target="b",
                  failed_on=("c",))
    assert Placement.from_dict(p.to_dict()) == p
    assert Placement.from_dict(None) == Placement()


# --------------------------------------------------------------------------- decisions

OWNERS = ("a", "b", "c")
ALL = frozenset(OWNERS)


def view(p: Placement, live: frozenset[str] = ALL, seen: float = 0.0, **kw: Any) -> GroupView:
    return GroupView(owners=OWNERS, placement=p, live=live, lease_seen_at=seen, **kw)


RUNNING_A = Placement(node="a", state="running", token=3, renewals=5)

DECISIONS: list[tuple[str, GroupView, float, str, tuple[str, ...], str]] = [
    # (case, view, now, action, candidates, words in the reason)
    ("first placement by precedence", view(Placement()), 0.0, "place", ("a", "b", "c"),
     "initial"),
    ("first placement skips a dead owner", view(Placement(), live=frozenset("bc")), 0.0,
     "place", ("b", "c"), "initial"),
    ("first placement waits for an owner not heard from yet",
     view(Placement(), live=frozenset("bc"), unknown=frozenset("a")), 0.0, "wait", (),
     "waiting to hear from a"),
    ("a lower-precedence unknown owner does not hold it up",
     view(Placement(), live=frozenset("ab"), unknown=frozenset("c")), 0.0, "place",
     ("a", "b"), "initial"),
    ("the runner holds its lease", view(RUNNING_A, seen=10.0), 11.0, "wait", (), "holds"),
    ("an unreachable runner: still wait for its lease",
     view(RUNNING_A, live=frozenset("bc"), seen=10.0), 11.1, "wait", (), "holds"),
    ("lease surely expired: next live owner by precedence",
     view(RUNNING_A, live=frozenset("bc"), seen=10.0), 11.11, "place", ("b", "c"),
     "lease of a expired"),
    ("a failover does not wait for unknown owners",
     view(RUNNING_A, live=frozenset("c"), unknown=frozenset("b"), seen=10.0), 12.0, "place",
     ("c",), "expired"),
    ("lease expired and nobody left", view(RUNNING_A, live=frozenset("a"), seen=0.0), 5.0,
     "place", ("a",), "not renewing"),
    ("lease expired, runner not yet detected down: every other owner before it",
     view(RUNNING_A, seen=10.0), 11.11, "place", ("b", "c", "a"), "a not renewing"),
    ("app failed beyond its restarts: skip that owner",
     view(replace(RUNNING_A, state="failed", failed_on=("a",))), 0.0, "place", ("b", "c"),
     "failed on a"),
    ("failed everywhere", view(replace(RUNNING_A, state="failed", failed_on=OWNERS)), 0.0,
     "unplace", (), "no owner can run it"),
    ("already recorded as failed nowhere",
     view(Placement(node=None, state="failed", token=3, failed_on=OWNERS)), 0.0, "none", (),
     "no owner"),
    ("a node that shut down is avoided",
     view(replace(RUNNING_A, state="stopped", reason="node a shut down")), 0.0, "place",
     ("b", "c"), "a stopped the app"),
    ("suspended (lease lost without quorum): resume by precedence",
     view(replace(RUNNING_A, state="suspended")), 0.0, "place", ("a", "b", "c"), "resuming"),
    ("move requested: stop the runner first", view(replace(RUNNING_A, target="c"), seen=10.0),
     10.5, "stop", (), "move to c"),
    ("move to a dead target waits", view(replace(RUNNING_A, target="c"),
                                         live=frozenset("ab"), seen=10.0), 10.5, "wait", (), ""),
    ("stopped for the move: the target first",
     view(replace(RUNNING_A, state="stopped", target="c")), 0.0, "place", ("c", "b"),
     "move to c"),
    ("stopping: wait for the runner", view(replace(RUNNING_A, state="stopping"), seen=10.0),
     10.5, "wait", (), "waiting for a to stop"),
    ("stopping but silent past the lease", view(replace(RUNNING_A, state="stopping"),
                                                live=frozenset("bc"), seen=10.0), 12.0,
     "place", ("b", "c"), "expired"),
    ("maintenance: hands off", view(replace(RUNNING_A, maintenance=True),
                                    live=frozenset("bc")), 99.0, "none", (), "maintenance"),
    ("fallback stay: stays on b when a is back",
     view(replace(RUNNING_A, node="b"), seen=10.0), 10.5, "wait", (), "b holds"),
    ("fallback return: back to a once a is stable",
     view(replace(RUNNING_A, node="b"), seen=10.0, fallback="return"), 10.5, "stop", (),
     "fallback: a"),
    ("fallback return waits until a is stable",
     view(replace(RUNNING_A, node="b"), seen=10.0, fallback="return", stable=frozenset("bc")),
     10.5, "wait", (), "holds"),
    ("fallback return outside its window waits",
     view(replace(RUNNING_A, node="b"), seen=10.0, fallback="return", in_window=False), 10.5,
     "wait", (), "window"),
    ("fallback only once it runs", view(replace(RUNNING_A, node="b", state="starting"),
                                        seen=10.0, fallback="return"), 10.5, "wait", (), ""),
    ("fallback never to where it failed",
     view(replace(RUNNING_A, node="b", failed_on=("a",)), seen=10.0, fallback="return"),
     10.5, "wait", (), "holds"),
    ("no app: nothing to do", view(Placement(), has_app=False), 0.0, "none", (), "no app"),
]


@pytest.mark.parametrize(("case", "v", "now", "action", "cands", "words"), DECISIONS,
                         ids=[d[0] for d in DECISIONS])
def test_decide(case: str, v: GroupView, now: float, action: str, cands: tuple[str, ...],
                words: str) -> None:
    d: Decision = ha.decide(v, now, T)
    assert d.action == action, d
    assert d.candidates == cands, d
    assert words in d.reason, d


def test_fig4_on_the_nine_node_example() -> None:
    """208 fails: 226's app (on 208) goes to 210 once 208's lease has expired; 220's
    (on 202) stays."""
    g226 = GroupView(owners=("208", "210", "212"), live=frozenset({"210", "212"}),
                     placement=Placement(node="208", state="running", token=1, renewals=40),
                     lease_seen_at=100.0)
    assert ha.decide(g226, 100.5, T).action == "wait"
    d = ha.decide(g226, 101.2, T)
    assert (d.action, d.candidates[0]) == ("place", "210")
    g220 = GroupView(owners=("202", "208", "214"), live=frozenset({"202", "214"}),
                     placement=Placement(node="202", state="running", token=1, renewals=40),
                     lease_seen_at=101.0)
    assert ha.decide(g220, 101.2, T).action == "wait"


MARKS = [
    # (live, unknown, recorded states, marks)
    ("abc", "", {"a": "up", "b": "up", "c": "up"}, []),
    ("ab", "", {"a": "up", "b": "up", "c": "up"}, [("c", "down")]),
    ("ab", "", {"a": "up", "b": "up"}, [("c", "down")]),  # never reported: down too
    ("ab", "c", {}, []),  # not heard from yet: no verdict
    ("ab", "", {"c": "down"}, []),  # already down
    ("abc", "", {"c": "down"}, [("c", "up")]),  # back: reintegrated
]


@pytest.mark.parametrize(("live", "unknown", "states", "marks"), MARKS)
def test_node_marks(live: str, unknown: str, states: dict[str, str],
                    marks: list[tuple[str, str]]) -> None:
    statuses = {n: {"status": {"state": s}} for n, s in states.items()}
    assert ha.node_marks(OWNERS, "a", live, unknown, statuses) == marks


@pytest.mark.parametrize(("placement", "live", "target"), [
    (RUNNING_A, "abc", None),  # a leads and runs: keep it
    (replace(RUNNING_A, node="b"), "abc", "b"),  # a leads, b runs: hand over to b
    (replace(RUNNING_A, node="b"), "ac", None),  # ... unless b is unreachable
    (replace(RUNNING_A, node="b", state="starting"), "abc", None),
    (replace(RUNNING_A, node="b", maintenance=True), "abc", None),
    (Placement(), "abc", None),
])
def test_leadership_goes_to_the_runner(placement: Placement, live: str,
                                       target: str | None) -> None:
    assert ha.handover_target("a", placement, live) == target


# --------------------------------------------------------------------------- explanation


def test_explain_placement() -> None:
    app = ha.AppSpec(start="x")
    facts = ha.PlacementFacts(
        group="226", owners=("208", "210", "212"),
        placement=Placement(node="210", state="running", token=2, time=1.0,
                            reason="lease of 208 expired"),
        statuses={"208": {"status": {"state": "down"}}, "210": {"status": {"state": "up"}},
                  "212": {"status": {"state": "up"}}},
        quorum=True, leader="212", app=app)
    text = ha.explain_placement(facts)
    assert "runs on 210 (state running, fencing token 2)" in text
    assert "Why: lease of 208 expired." in text
    assert "208 (down), 210 (up, runs the app), 212 (up)" in text
    assert "if 210 fails, the app restarts on 212" in text
    assert "Fallback: stay" in text
    no_quorum = ha.explain_placement(replace(facts, quorum=False))
    assert "Quorum: NO" in no_quorum
    back = ha.explain_placement(replace(facts, fallback="return", fallback_window="22:00-06:00"))
    assert "moves back to it (only between 22:00 and 06:00)" in back
