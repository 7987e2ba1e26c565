"""``hakv explain``'s failure effects (hakv.core.explain.failure_effects) agree with the HA
manager's decisions (hakv.core.ha.decide) where the old shortcut, "the first live owner
when a majority is up", did not: maintenance, restart limits, capacity, fallback, moves.

One table: a topology (three owners a > b > c of group g, and a group h on b and d that
can fill b), the placement records before the failure, the failed nodes, and the exact
sentence ``hakv explain`` prints for g. The last column is what the shortcut said.
"""

from __future__ import annotations

from typing import Any

import pytest

from hakv.core.explain import explain_group, failure_effects, initial_runners
from hakv.core.ha import Placement
from hakv.core.topology import Topology, parse_topology


def topology(*, cap_b: int = 10, cap_c: int = 10, load_g: int = 1, load_h: int = 1,
             group_g: str = "") -> Topology:
    return parse_topology(f"""
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
capacity = {cap_b}
[[nodes]]
id = "c"
host = "127.0.0.1"
raft_port = 7003
api_port = 8003
capacity = {cap_c}
[[nodes]]
id = "d"
host = "127.0.0.1"
raft_port = 7004
api_port = 8004
[[groups]]
id = "h"
owners = ["b", "d"]
load = {load_h}
[[groups]]
id = "g"
owners = ["a", "b", "c"]
load = {load_g}
{group_g}
""")


RUN_A = Placement(node="a", state="running", token=1)
RUN_B = Placement(node="b", state="running", token=2)
RETURN = 'fallback = "return"'
NIGHTS = 'fallback = "return"\nfallback_window = "22:00-06:00"'
HEAD = "2 of 3 owners left, quorum is 2: keeps serving; "

# case, topology kwargs, g's record before, failed, minute of day, g's runner after,
# the sentence for g, the shortcut's runner after
CASES: list[tuple[str, dict[str, Any], Placement | None, str, int | None, str | None, str,
                  str | None]] = [
    ("plain: the runner fails", {}, None, "a", None, "b",
     HEAD + "its app, which ran on a, restarts on b (the next live owner by precedence).",
     "b"),
    ("plain: another owner fails", {}, None, "c", None, "a",
     HEAD + "its app stays on a.", "a"),
    ("maintenance: the runner fails", {}, Placement(node="a", state="running", token=1,
                                                    maintenance=True), "a", None, None,
     HEAD + "its app, which ran on a, is not restarted: the group is in maintenance, so hakv "
     "does not manage its app; `hakv group maintenance g off` resumes that.", "b"),
    ("maintenance: another owner fails", {}, Placement(node="a", state="running", token=1,
                                                       maintenance=True), "b", None, "a",
     "2 of 3 owners left, quorum is 2: keeps serving; its app stays on a (the group is in "
     "maintenance, so hakv does not manage its app; `hakv group maintenance g off` resumes "
     "that).", "a"),
    ("restart limit: failed on b", {}, Placement(node="a", state="running", token=1,
                                                 failed_on=("b",)), "a", None, "c",
     HEAD + "its app, which ran on a, restarts on c (its app failed on b beyond its restart "
     "limit).", "b"),
    ("restart limit: failed on b and c", {}, Placement(node="a", state="running", token=1,
                                                       failed_on=("b", "c")), "a", None, None,
     HEAD + "its app, which ran on a, is not restarted: its app failed beyond its restart "
     "limit on every live owner (b, c); `hakv group cleanup g` lets it run there again.",
     "b"),
    ("capacity: b is full with h", {"cap_b": 1}, None, "a", None, "c",
     HEAD + "its app, which ran on a, restarts on c (b is full (capacity 1, 1 held by other "
     "groups, load 1)).", "b"),
    ("capacity: b and c are full", {"cap_b": 1, "cap_c": 1, "load_g": 2}, None, "a", None,
     None,
     HEAD + "its app, which ran on a, is not restarted: no live owner has room for its load "
     "(b is full (capacity 1, 1 held by other groups, load 2); c is full (capacity 1, 0 held "
     "by other groups, load 2)).", "b"),
    ("fallback stay: runs on b, c fails", {}, RUN_B, "c", None, "b",
     HEAD + "its app stays on b.", "a"),
    ("fallback return: runs on b, c fails", {"group_g": RETURN}, RUN_B, "c", None, "a",
     HEAD + "its app, which ran on b, moves to a (fallback: a (higher precedence than b) is "
     "back).", "a"),
    ("fallback window closed at noon", {"group_g": NIGHTS}, RUN_B, "c", 12 * 60, "b",
     HEAD + "its app stays on b (fallback to a waits for the fallback window).", "a"),
    ("fallback window open at 23:00", {"group_g": NIGHTS}, RUN_B, "c", 23 * 60, "a",
     HEAD + "its app, which ran on b, moves to a (fallback: a (higher precedence than b) is "
     "back).", "a"),
    ("move requested, c fails", {}, Placement(node="a", state="running", token=1,
                                              target="b"), "c", None, "b",
     HEAD + "its app, which ran on a, moves to b (move to b requested).", "a"),
    ("move requested, the runner fails", {}, Placement(node="a", state="running", token=1,
                                                       target="c"), "a", None, "c",
     HEAD + "its app, which ran on a, restarts on c (a move to c is requested).", "b"),
    ("no quorum", {}, RUN_A, "a b", None, None,
     "1 of 3 owners left, quorum is 2: no quorum, so it suspends its services (stops its "
     "app, refuses writes) until enough owners return, then reintegrates them and resumes.",
     None),
]


@pytest.mark.parametrize(("case", "kw", "before", "failed", "minute", "after", "sentence",
                          "shortcut"), CASES, ids=[c[0] for c in CASES])
def test_failure_effects_follow_the_ha_manager(
    case: str, kw: dict[str, Any], before: Placement | None, failed: str, minute: int | None,
    after: str | None, sentence: str, shortcut: str | None,
) -> None:
    topo = topology(**kw)
    placements = {"g": before} if before is not None else None
    effects = {e.group: e for e in failure_effects(topo, failed.split(), placements,
                                                   minute_of_day=minute)}
    g = effects["g"]
    assert (g.runner_after, g.describe(name=False)) == (after, sentence)
    live = [o for o in topo.group("g").owners if o not in failed.split()]
    old = live[0] if len(live) >= topo.group("g").quorum_size else None
    assert old == shortcut  # the column documents the shortcut, right or wrong


def test_initial_placement_skips_an_owner_without_room() -> None:
    # a node of capacity 1 is taken by h (file order), so g starts on its next owner
    topo = parse_topology(topology(cap_b=1).to_toml().replace(
        'owners = ["a", "b", "c"]', 'owners = ["b", "a", "c"]'))
    assert initial_runners(topo) == {"h": "b", "g": "a"}
    assert "with all of them up, its app runs on a (load 1)" in explain_group(topo, "g")
    assert ("- b fails: 2 of 3 owners left, quorum is 2: keeps serving; its app stays on a."
            in explain_group(topo, "g"))


def test_a_group_with_no_room_anywhere_is_said_to_run_nowhere() -> None:
    topo = topology(load_g=11)
    assert initial_runners(topo)["g"] is None
    assert "with all of them up, no owner has room for its app (load 11)" in explain_group(
        topo, "g")
    (g,) = [e for e in failure_effects(topo, ["c"]) if e.group == "g"]
    assert g.describe(name=False) == (
        HEAD + "its app runs nowhere: no live owner has room for its load (a is full "
        "(capacity 10, 0 held by other groups, load 11); b is full (capacity 10, 1 held by "
        "other groups, load 11)).")
