"""Runtime membership (hakv.core.membership): the pure planner and record checks as tables, and
a real cluster taken through add node -> create group -> move a group's owners -> remove
a node, with data intact and the invariants checked after every step."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hakv import errors
from hakv.cli import cli
from hakv.client.admin import read_records
from hakv.client.client import Client
from hakv.core.membership import (
    EPOCH_KEY,
    Records,
    Step,
    build_view,
    check_add_node,
    check_group,
    check_remove_node,
    plan_membership,
)
from hakv.core.topology import CLUSTER_GROUP, NodeSpec, parse_topology
from hakv.dev.local import LocalCluster
from hakv.storage.inspect import inspect_data_dir
from tests.support import free_ports, leader_of, wait_for, write_topology

# --------------------------------------------------------------------------- the planner


def _steps(text: str) -> list[Step]:
    return [Step("add" if s[0] == "+" else "remove", s[1:]) for s in text.split()]


PLANS = [
    # current, desired, leader, expected steps
    ("a b c", "a b c", None, ""),
    ("a b c", "c b a", None, ""),  # precedence order is not Raft membership
    ("a b c", "a b c d", None, "+d"),
    ("a b c", "a b c d e", None, "+d +e"),
    ("a b c d e", "a b c", None, "-d -e"),
    ("a b c", "b c e", None, "+e -a"),  # replace: add before remove
    ("a b c", "b c e", "a", "+e -a"),
    ("a b c", "d e f", None, "+d -a +e -b +f -c"),  # never fewer than 3 voters
    ("a b c", "d e f", "a", "+d -b +e -c +f -a"),  # the leader goes last
    ("a b", "c d", None, "+c -a +d -b"),  # never below 2
    ("a b", "a c", "a", "+c -b"),
    ("a b c d", "e f", None, "+e -a +f -b -c -d"),
    ("a b c", "a b", "c", "-c"),
    ("a", "a b", None, "+b"),
    ("a b c", "a b d", "c", "+d -c"),
]


@pytest.mark.parametrize(("current", "desired", "leader", "expected"), PLANS)
def test_plan_membership(current: str, desired: str, leader: str | None,
                         expected: str) -> None:
    steps = plan_membership(current.split(), desired.split(), leader=leader)
    assert steps == _steps(expected)
    # Replaying the plan one step at a time reaches the desired voters and never has
    # fewer than two (nor fewer than min(start, end)) voters on the way.
    voters = current.split()
    floor = min(2, len(voters))
    for step in steps:
        if step.action == "add":
            assert step.node not in voters
            voters.append(step.node)
        else:
            voters.remove(step.node)
        assert len(voters) >= floor
    assert sorted(voters) == sorted(desired.split())


@pytest.mark.parametrize("desired", [[], ["a"], ["a", "a"]])
def test_plan_membership_refuses_fewer_than_two_owners(desired: list[str]) -> None:
    with pytest.raises(ValueError, match="at least 2"):
        plan_membership(["a", "b", "c"], desired)


# --------------------------------------------------------------------------- records


def _node(nid: str, port: int) -> tuple[str, str, int]:
    spec = {"id": nid, "host": "127.0.0.1", "raft_port": port, "api_port": port + 1000,
            "capacity": 10}
    return f"nodes/{nid}", json.dumps(spec), 1


def _records(groups: dict[str, list[str]], members: dict[str, list[str]] | None = None,
             nodes: str = "a b c d", extra: list[tuple[str, str, int]] | None = None
             ) -> Records:
    items = [("cluster/name", "t", 1)]
    items += [_node(n, 7000 + i) for i, n in enumerate(nodes.split())]
    items += [(f"groups/{g}", json.dumps({"id": g, "owners": o, "load": 1}), 1)
              for g, o in groups.items()]
    items += [(f"members/{g}", json.dumps({"voters": v, "term": 3}), 2)
              for g, v in (members or {}).items()]
    return Records.from_items(items + (extra or []))


def test_records_parse_and_fall_back_to_owners_as_voters() -> None:
    records = _records({"g1": ["a", "b", "c"], "g2": ["b", "c", "d"]},
                       members={"g2": ["a", "b", "c"]},
                       extra=[("joins/g2/d", "{}", 5), ("nodes/bad", "not json", 6)])
    assert records.seeded
    assert records.voters("g1") == ("a", "b", "c")  # never changed: its owners
    assert records.voters("g2") == ("a", "b", "c")  # being changed: the recorded voters
    assert records.joins == {"g2": frozenset({"d"})}
    assert records.groups_listing("a") == ["g1"]
    assert records.raft_groups_listing("a") == ["g1", "g2"]
    assert [p.split(":")[0] for p in records.problems] == ["nodes/bad"]
    assert not Records.from_items([]).seeded


BASE = parse_topology("""
[cluster]
name = "t"
cluster_voters = ["a"]
[[nodes]]
id = "a"
host = "127.0.0.1"
raft_port = 7000
api_port = 8000
[[nodes]]
id = "b"
host = "127.0.0.1"
raft_port = 7001
api_port = 8001
[[groups]]
id = "g1"
owners = ["a", "b"]
""")


def test_build_view_desired_and_actual_owners() -> None:
    records = _records({"g1": ["b", "c"], "g2": ["c", "d", "a"]}, members={"g1": ["a", "b"]})
    desired = build_view(BASE, records)
    assert desired.node_ids == ("a", "b", "c", "d")  # file order, then the rest sorted
    assert [(g.id, g.owners) for g in desired.groups] == [
        ("g1", ("b", "c")), ("g2", ("c", "d", "a"))]
    actual = build_view(BASE, records, actual=True)
    assert actual.group("g1").owners == ("a", "b")
    assert actual.cluster_voters == ("a",) and actual.raft == BASE.raft
    assert build_view(BASE, Records()) is BASE  # not seeded yet: the file


def test_build_view_keeps_a_removed_node_itself_and_rejects_broken_records() -> None:
    records = _records({"g1": ["a", "b"]}, nodes="a b")
    gone = NodeSpec("z", "127.0.0.1", 7100, 8100)
    assert build_view(BASE, records, keep=[gone]).has_node("z")
    broken = _records({"g1": ["a", "x"]}, nodes="a b")
    with pytest.raises(errors.TopologyError, match="owner x"):
        build_view(BASE, broken)


CHECKS: list[tuple[Any, type[errors.HakvError], str]] = [
    (lambda r: check_add_node(r, NodeSpec("a", "127.0.0.1", 9000, 9001)),
     errors.ConflictError, "already exists"),
    (lambda r: check_add_node(r, NodeSpec("e", "127.0.0.1", 7000, 9001)),
     errors.BadRequestError, "port clash"),
    (lambda r: check_add_node(r, NodeSpec("../e", "127.0.0.1", 9000, 9001)),
     errors.BadRequestError, "may only contain"),
    (lambda r: check_add_node(r, NodeSpec("_e", "127.0.0.1", 9000, 9001)),
     errors.BadRequestError, "reserved"),
    (lambda r: check_remove_node(r, "a", ["a"]), errors.BadRequestError,
     "voter of the cluster ensemble"),
    (lambda r: check_remove_node(r, "b", ["a"]), errors.BadRequestError, "still owns group g1"),
    (lambda r: check_remove_node(r, "d", ["a"]), errors.UnavailableError,
     "not yet removed it"),
    (lambda r: check_remove_node(r, "zz", ["a"]), errors.NotFoundError, "not in the cluster"),
    (lambda r: check_group(r, "_x", ["a", "b"], 1, creating=True), errors.BadRequestError,
     "reserved"),
    (lambda r: check_group(r, "g1", ["a", "b"], 1, creating=True), errors.ConflictError,
     "already exists"),
    (lambda r: check_group(r, "g9", ["a", "b"], 1, creating=False), errors.UnknownGroupError,
     "does not exist"),
    (lambda r: check_group(r, "g3", ["a"], 1, creating=True), errors.BadRequestError,
     "at least 2 owners"),
    (lambda r: check_group(r, "g3", ["a", "a", "b"], 1, creating=True),
     errors.BadRequestError, "listed twice"),
    (lambda r: check_group(r, "g3", ["a", "q"], 1, creating=True), errors.BadRequestError,
     "owner q is not a node"),
    (lambda r: check_group(r, "g/3", ["a", "b"], 1, creating=True), errors.BadRequestError,
     "may only contain"),
    (lambda r: check_group(r, "g3", ["a", "b"], -1, creating=True), errors.BadRequestError,
     "load"),
    (lambda r: check_group(Records(), "g3", ["a", "b"], 1, creating=True),
     errors.UnavailableError, "not seeded"),
]


@pytest.mark.parametrize(("check", "error", "message"), CHECKS)
def test_operator_changes_are_validated(check: Any, error: type[errors.HakvError],
                                        message: str) -> None:
    # g2 no longer lists d, but its Raft voters still do.
    records = _records({"g1": ["a", "b", "c"], "g2": ["a", "b", "c"]},
                       members={"g2": ["a", "b", "d"]})
    with pytest.raises(error, match=message):
        check(records)


def test_valid_operator_changes_pass() -> None:
    records = _records({"g1": ["a", "b", "c"]})
    check_add_node(records, NodeSpec("e", "127.0.0.1", 9000, 9001))
    check_remove_node(records, "d", ["a"])
    check_group(records, "g2", ["d", "a"], 0, creating=True)
    check_group(records, "g1", ["b", "c", "d"], 1, creating=False)


# --------------------------------------------------------------------------- real cluster

NODES = ["a", "b", "c", "d"]  # cluster voters: a, b, c (the first three)


@pytest.fixture()
def four(tmp_path: Path) -> Iterator[LocalCluster]:
    topo = write_topology(tmp_path, NODES, {"g1": ["a", "b", "c"]})
    cluster = LocalCluster(tmp_path / "run")
    try:
        cluster.up(str(topo), wait=60)
        wait_for(lambda: leader_of(cluster.endpoints(), "g1"), 30, what="a leader of g1")
        wait_for(lambda: leader_of(cluster.endpoints(), CLUSTER_GROUP), 30,
                 what="a leader of the cluster ensemble")
        with cluster.client(timeout=10) as c:
            wait_for(lambda: c.get(CLUSTER_GROUP, "cluster/name"), 30,
                     what="the seeded cluster records")
        yield cluster
    finally:
        cluster.down()


def _hakv(cluster: LocalCluster, *args: str) -> Any:
    return CliRunner().invoke(cli, [*args, "--dir", str(cluster.dir), "--timeout", "10"])


def _ok(cluster: LocalCluster, *args: str) -> str:
    result = _hakv(cluster, *args)
    assert result.exit_code == 0, (args, result.output)
    return str(result.output)


def _show(cluster: LocalCluster) -> dict[str, Any]:
    shown: dict[str, Any] = json.loads(_ok(cluster, "cluster", "show", "--json"))
    return shown


def _settled(cluster: LocalCluster, owners: dict[str, list[str]],
             running: list[str]) -> bool:
    """The cluster records say ``owners`` and every group's Raft voters are its owners;
    every running node's disk holds exactly the groups listing it (I1), each group's
    store on every owner holds the status record of every owner of the group, and each
    node's own status lists the groups it hosts."""
    shown = _show(cluster)
    groups = {g["id"]: g for g in shown["groups"]}
    if {g: v["owners"] for g, v in groups.items()} != owners:
        return False
    if any(sorted(g["raft_voters"]) != sorted(g["owners"]) or g["pending"]
           for g in groups.values()):
        return False
    for node in running:
        dump = inspect_data_dir(str(cluster.data_dir(node)))
        mine = sorted(g for g, o in owners.items() if node in o)
        if dump["groups"] != mine:
            return False
        for gid in mine:
            # Exactly the owners' status records: departed owners' are forgotten (I1).
            held = set(dump["group_stores"][gid].get("node_status", {}))
            if held != set(owners[gid]):
                return False
    return True


def _check_data(cluster: LocalCluster, written: dict[str, dict[str, str]]) -> None:
    """Every acknowledged write is there, read linearizably through every node."""
    for node in cluster.running():
        with Client([cluster.endpoint(node)], timeout=10) as c:
            for gid, kvs in written.items():
                got = {kv.key: kv.value for kv in c.range(gid, "", limit=10000).kvs}
                assert {k: got.get(k) for k in kvs} == kvs, (node, gid)


def _write(cluster: LocalCluster, written: dict[str, dict[str, str]], gid: str,
           count: int, tag: str) -> None:
    with cluster.client(timeout=10) as c:
        for i in range(count):
            c.put(gid, f"{tag}-{i}", f"{tag}:{i}")
            written.setdefault(gid, {})[f"{tag}-{i}"] = f"{tag}:{i}"


@pytest.mark.slow
def test_add_node_create_group_move_owners_remove_node(four: LocalCluster) -> None:
    lc = four
    written: dict[str, dict[str, str]] = {}
    _write(lc, written, "g1", 20, "before")
    wait_for(lambda: _settled(lc, {"g1": ["a", "b", "c"]}, NODES), 20,
             what="the seeded records")
    assert "d  " in _ok(lc, "cluster", "show")

    # 1. add node e: records first, then its process (it finds its address in them)
    raft_port, api_port = free_ports(2)
    _ok(lc, "cluster", "add-node", "e", "--host", "127.0.0.1", "--raft-port",
        str(raft_port), "--api-port", str(api_port), "--capacity", "5")
    clash = _hakv(lc, "cluster", "add-node", "f", "--host", "127.0.0.1", "--raft-port",
                  str(raft_port), "--api-port", "1")
    assert clash.exit_code == 2 and "port clash" in clash.output
    lc.start("e", wait=30)
    shown = _show(lc)
    assert {n["id"]: n["capacity"] for n in shown["nodes"]}["e"] == 5
    running = [*NODES, "e"]
    wait_for(lambda: _settled(lc, {"g1": ["a", "b", "c"]}, running), 20, what="e up")
    _check_data(lc, written)

    # 2. create g2 on e, d, a and write to it
    _ok(lc, "group", "create", "g2", "--owners", "e,d,a")
    owners = {"g1": ["a", "b", "c"], "g2": ["e", "d", "a"]}
    wait_for(lambda: leader_of(lc.endpoints(), "g2"), 30, what="a leader of g2")
    _write(lc, written, "g2", 10, "new")
    wait_for(lambda: _settled(lc, owners, running), 30, what="g2 on e, d, a")
    _check_data(lc, written)

    # 3. move g1 from a, b, c to b, c, e while a client keeps writing to it
    stop = threading.Event()
    acked: dict[str, str] = {}
    failures: list[str] = []

    def writer() -> None:
        with lc.client(timeout=10, client_id="mover") as c:
            for i in range(100000):
                if stop.is_set():
                    return
                try:
                    c.put("g1", f"during-{i}", str(i))
                    acked[f"during-{i}"] = str(i)
                except errors.HakvError as exc:
                    failures.append(exc.message)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        out = _ok(lc, "group", "set-owners", "g1", "--owners", "b,c,e")
        assert "+e -a" in out
        owners["g1"] = ["b", "c", "e"]
        wait_for(lambda: _settled(lc, owners, running), 40, what="g1 moved to b, c, e")
    finally:
        stop.set()
        thread.join()
    assert not failures, failures[:3]
    written["g1"].update(acked)
    e_store = inspect_data_dir(str(lc.data_dir("e")))["group_stores"]["g1"]
    e_keys = {kv["key"] for kv in e_store["kvs"]}
    assert set(written["g1"]) - set(acked) <= e_keys  # g1's records now on e's disk
    assert "g1" not in inspect_data_dir(str(lc.data_dir("a")))["groups"]  # and off a's
    assert not (lc.data_dir("a") / "groups" / "g1").exists()
    _check_data(lc, written)

    # 4. remove a node: refused for a cluster voter and while d owns g2; then move g2
    refused = _hakv(lc, "cluster", "remove-node", "a")
    assert refused.exit_code == 2 and "voter of the cluster ensemble" in refused.output
    refused = _hakv(lc, "cluster", "remove-node", "d")
    assert refused.exit_code == 2 and "still owns group g2" in refused.output
    _ok(lc, "group", "set-owners", "g2", "--owners", "e,a,c")
    owners["g2"] = ["e", "a", "c"]
    wait_for(lambda: _settled(lc, owners, running), 40, what="g2 moved to e, a, c")
    wait_for(lambda: _hakv(lc, "cluster", "remove-node", "d").exit_code == 0, 20,
             interval=0.5, what="d removed")
    assert inspect_data_dir(str(lc.data_dir("d")))["groups"] == []

    def d_applied_its_removal() -> bool:
        # A linearizable read served by d itself: d has applied the removal record, so
        # its own copy of the records (read at its next start) says it was removed.
        with Client([lc.endpoint("d")], timeout=5) as client:
            return "d" not in read_records(client).nodes

    wait_for(d_applied_its_removal, 20, what="d to apply its own removal")
    assert lc.stop("d") == "stopped"
    running.remove("d")
    shown = _show(lc)
    assert [n["id"] for n in shown["nodes"]] == ["a", "b", "c", "e"]
    assert "d" not in _ok(lc, "cluster", "show").split()
    _check_data(lc, written)

    # 5. restarts: the runtime node and a file node come back from their own copy of
    # the records; the removed node refuses to start
    lc.kill("e")
    lc.start("e", wait=30)
    lc.stop("b")
    lc.start("b", wait=30)
    wait_for(lambda: leader_of(lc.endpoints(), "g1") and leader_of(lc.endpoints(), "g2"), 30,
             what="leaders after the restarts")
    wait_for(lambda: _settled(lc, owners, running), 30, what="settled after restarts")
    _check_data(lc, written)
    with pytest.raises(errors.UnavailableError, match="exited"):
        lc.start("d", wait=15)
    assert "removed with hakv cluster remove-node" in lc.log_tail("d", 5)

    # 6. delete g2: every owner drops its data
    _ok(lc, "group", "delete", "g2")
    del owners["g2"], written["g2"]
    wait_for(lambda: _settled(lc, owners, running), 30, what="g2 deleted")
    assert all(not (lc.data_dir(n) / "groups" / "g2").exists() for n in running)
    _check_data(lc, written)
    assert int(_show(lc)["epoch"]) == 6


@pytest.mark.slow
def test_concurrent_operators_do_not_clobber_each_other(four: LocalCluster) -> None:
    """Each change compares the configuration epoch: of two operators adding the same
    node id at once exactly one wins; of two changing different things, both land.
    (Library calls: click's CliRunner cannot capture output from two threads.)"""
    lc = four
    ports = free_ports(4)
    outcomes: list[Any] = [None, None]

    def run(i: int, change: Any) -> None:
        with lc.client(timeout=10) as c:
            try:
                outcomes[i] = change(c)
            except errors.HakvError as exc:
                outcomes[i] = exc

    def race(*changes: Any) -> list[Any]:
        threads = [threading.Thread(target=run, args=(i, ch)) for i, ch in enumerate(changes)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return list(outcomes)

    first, second = race(
        *(lambda c, i=i: c.admin.add_node(NodeSpec("e", "127.0.0.1", ports[2 * i],
                                                    ports[2 * i + 1]))
          for i in range(2)))
    errs = [o for o in (first, second) if isinstance(o, errors.HakvError)]
    assert len(errs) == 1 and isinstance(errs[0], errors.ConflictError), (first, second)
    assert "already exists" in errs[0].message
    # Different changes at once: both apply, serialized by the epoch.
    made = race(lambda c: c.admin.create_group("g2", ["a", "b"]),
                lambda c: c.admin.create_group("g3", ["c", "d"]))
    assert sorted(m["epoch"] for m in made) == [2, 3], made
    shown = _show(lc)
    assert [g["id"] for g in shown["groups"]] == ["g1", "g2", "g3"]
    with lc.client() as c:
        assert c.get(CLUSTER_GROUP, EPOCH_KEY).value == str(shown["epoch"]) == "3"
    wait_for(lambda: leader_of(lc.endpoints(), "g2") and leader_of(lc.endpoints(), "g3"), 30,
             what="leaders of the new groups")
    with lc.client(timeout=10) as c:
        c.put("g3", "k", "v")
        assert c.get("g3", "k").value == "v"
