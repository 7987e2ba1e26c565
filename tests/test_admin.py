"""``client.admin`` (hakv.client.admin.Admin): the operator operations of the library.

Fast: the HA calls against scripted servers (what goes on the wire, the no-quorum fallback
to a local copy, typed results, malformed answers) and the pure result types. Slow: one
real three-node cluster with an app, driven only through ``client.admin`` (move,
maintenance, events, explanation; add/remove a node record, create/delete a group)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import hakv
from hakv import errors
from hakv.client import Admin, Client, HaActionResult, PlacementView
from hakv.core import ha
from hakv.core.topology import CLUSTER_GROUP, NodeSpec
from tests.support import free_ports, wait_for
from tests.test_client import Reply, ScriptedServer, err, ok

PLACEMENT = {"node": "n1", "state": "running", "token": 3, "renewals": 5,
             "reason": "started on the first owner", "time": 1_700_000_000.25, "index": 12,
             "renewed_at": 1_700_000_001.0, "restarts": 0, "maintenance": False,
             "target": None, "failed_on": []}


def placement_answer(group: str = "g1", node: str = "n1", **changes: Any) -> dict[str, Any]:
    """A /v1/placement answer shaped like hakv.node.manager's."""
    return {"group": group, "node": node, "owners": ["n1", "n2", "n3"],
            "placement": dict(PLACEMENT), "node_status": {}, "leader": "n1", "quorum": True,
            "app": {"start": ["true"]}, "fallback": "stay", "fallback_window": None,
            "ha": {}, "local": None, "decision": None, **changes}


def status_answer(*groups: str) -> dict[str, Any]:
    return {"node": "n1", "cluster": "t",
            "groups": {g: {"owners": ["n1", "n2"], "role": "leader", "quorum": True}
                       for g in groups}}


# --------------------------------------------------------------------------- the face


def test_admin_is_reachable_from_the_client_and_the_package() -> None:
    c = hakv.Client("127.0.0.1:1")
    assert isinstance(c.admin, Admin) and c.admin.client is c
    assert "Admin" in hakv.client.__all__
    c.close()


# --------------------------------------------------------------------------- pure results


def test_a_placement_view_keeps_the_answer_and_types_what_operators_read() -> None:
    view = PlacementView.from_wire(placement_answer())
    assert view.group == "g1" and view.owners == ("n1", "n2", "n3")
    assert view.placement == ha.Placement.from_dict(PLACEMENT)
    assert (view.leader, view.quorum, view.has_app, view.local_view_of) == ("n1", True, True,
                                                                            None)
    assert view.to_dict() == {**placement_answer(), "local_view": False}
    facts = view.facts()
    assert facts.app is not None and facts.app.start == ("true",)
    assert "n1" in view.explain() and "no quorum" not in view.explain()
    local = PlacementView.from_wire(placement_answer(node="n2", quorum=False), local=True)
    assert local.local_view_of == "n2" and local.to_dict()["local_view"] is True
    assert local.explain().endswith("(The group has no quorum: this is node n2's local copy "
                                    "of its records.)")


def test_a_placement_view_of_a_group_without_an_app() -> None:
    view = PlacementView.from_wire(placement_answer(app=None, placement=None))
    assert not view.has_app and view.placement == ha.Placement()
    assert view.facts().app is None


def test_an_ha_action_result_says_whether_it_applied_and_why_not() -> None:
    done = HaActionResult.from_wire({"group": "g1", "applied": True,
                                     "placement": {**PLACEMENT, "target": "n2"}})
    assert done.applied and done.why is None and done.placement.target == "n2"
    same = HaActionResult.from_wire({"group": "g1", "applied": False, "why": "already on",
                                     "placement": PLACEMENT})
    assert not same.applied and same.why == "already on"
    assert same.to_dict() == {"group": "g1", "applied": False, "why": "already on",
                              "placement": PLACEMENT}


# --------------------------------------------------------------------------- on the wire


def test_move_maintenance_cleanup_send_one_ha_command_each() -> None:
    def script(path: str, body: dict[str, Any]) -> Reply:
        assert path == "/v1/ha"
        return ok(group=body["group"], applied=True, placement=PLACEMENT)

    with ScriptedServer(script) as srv, Client(srv.endpoint, client_id="op", tls=False) as c:
        moved = c.admin.move("g1", "n2")
        c.admin.maintenance("g1", True, reason="patching n1")
        c.admin.cleanup("g1")
    assert moved.applied and moved.placement.node == "n1"
    bodies = [{k: v for k, v in s.body.items() if k != "seq"} for s in srv.seen]
    assert bodies == [
        {"group": "g1", "action": "move", "target": "n2", "client": "op"},
        {"group": "g1", "action": "maintenance", "on": True, "reason": "patching n1",
         "client": "op"},
        {"group": "g1", "action": "cleanup", "client": "op"},
    ]
    assert [s.body["seq"] for s in srv.seen] == [1, 2, 3]  # writes: exactly-once


def test_a_malformed_ha_answer_is_an_internal_error() -> None:
    with ScriptedServer([ok(applied=True)]) as srv, Client(srv.endpoint, tls=False) as c:
        with pytest.raises(errors.InternalError, match="/v1/ha"):
            c.admin.move("g1", "n2")


def test_reads_fall_back_to_a_local_copy_without_quorum_and_say_so() -> None:
    def script(path: str, body: dict[str, Any]) -> Reply:
        if path == "/v1/status":
            return ok(**status_answer("g1", "g2", "_cluster"))
        serializable = body.get("serializable", False)
        if body["group"] == "g2" and not serializable:
            return err("no_quorum")
        if path == "/v1/placement":
            return ok(**placement_answer(body["group"], quorum=not serializable))
        events = {"g1": [{"kind": "placement", "time": 20.0, "index": 4, "action": "start",
                          "node": "n1", "state": "starting", "token": 1, "reason": "r"}],
                  "g2": [{"kind": "node_status", "time": 10.0, "index": 7, "node": "n2",
                          "state": "up", "reason": "started"}]}[body["group"]]
        return ok(group=body["group"], node="n9", events=events)

    with ScriptedServer(script) as srv, Client(srv.endpoint, timeout=0.3, tls=False) as c:
        assert c.admin.groups() == ["g1", "g2"]  # internal groups left out
        found = c.admin.events()
        assert [(e["group"], e["index"]) for e in found] == [("g2", 7), ("g1", 4)]  # by time
        assert found[0]["local_view_of"] == "n9" and "local_view_of" not in found[1]
        assert c.admin.events("g1", limit=5) == [found[1]]
        assert c.admin.placement("g1").local_view_of is None
        local = c.admin.placement("g2")
        assert local.local_view_of == "n1" and not local.quorum
        assert "local copy" in c.admin.explain_placement("g2")
    asked = [(s.path, s.body.get("group"), s.body.get("serializable"), s.body.get("limit"))
             for s in srv.seen if s.path == "/v1/events"]
    assert ("/v1/events", "g1", None, 5) in asked and ("/v1/events", "g2", True, 1000) in asked


# --------------------------------------------------------------------------- a real cluster


@pytest.mark.slow
def test_operations_on_a_real_cluster_through_client_admin(tmp_path: Path) -> None:
    from hakv.dev.local import LocalCluster
    from tests.test_ha import ha_topology

    beats = tmp_path / "beats.txt"
    topo = ha_topology(tmp_path, ["a", "b", "c"], {"g1": {"owners": ["a", "b", "c"]}}, beats)
    cluster = LocalCluster(tmp_path / "run")
    cluster.up(str(topo), wait=30)
    try:
        with Client(cluster.endpoints(), timeout=10) as c:
            admin = c.admin

            def running_on(node: str) -> PlacementView | None:
                view = admin.placement("g1")
                p = view.placement
                return view if (p.state, p.node) == ("running", node) else None

            first = wait_for(lambda: running_on("a"), 30, what="g1's app running on a")
            assert first.owners == ("a", "b", "c") and first.has_app

            # HA: move, maintenance (twice: the second does not apply), events, why.
            moved = admin.move("g1", "b", reason="test move")
            assert moved.applied and moved.placement.target == "b"
            now = wait_for(lambda: running_on("b"), 30, what="g1's app running on b")
            assert now.placement.token > first.placement.token
            assert admin.maintenance("g1", True).applied
            assert not admin.maintenance("g1", True).applied
            assert admin.maintenance("g1", False).applied
            trail = [e for e in admin.events("g1") if e["kind"] == "placement"]
            assert any(e["reason"] == "test move" for e in trail), trail
            assert admin.events() and admin.groups() == ["g1"]
            assert "b" in admin.explain_placement("g1")
            with pytest.raises(errors.BadRequestError, match="not an owner"):
                admin.move("g1", "nobody")

            # Membership: the cluster records are seeded from the topology at start-up.
            wait_for(lambda: c.get(CLUSTER_GROUP, "groups/g1"), 20,
                     what="the cluster records to be seeded")
            raft, api = free_ports(2)
            added = admin.add_node(NodeSpec("d", "127.0.0.1", raft, api))
            assert added["node"]["id"] == "d"
            created = admin.create_group("g2", ["a", "c"])
            assert created["epoch"] == added["epoch"] + 1
            shown = admin.show()
            assert [n["id"] for n in shown["nodes"]] == ["a", "b", "c", "d"]
            assert [g["id"] for g in shown["groups"]] == ["g1", "g2"]
            assert admin.records().groups["g2"].owners == ("a", "c")
            assert admin.delete_group("g2")["owners"] == ["a", "c"]
            assert admin.remove_node("d")["node"] == "d"
            with pytest.raises(errors.UnknownGroupError):
                admin.delete_group("g2")
            assert [n["id"] for n in admin.show()["nodes"]] == ["a", "b", "c"]
    finally:
        cluster.down()
