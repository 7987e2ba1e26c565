"""The node's components driven through in-memory twins of their ports (tests/twins.py):
the HA manager's decide/act cycle and its prober, the bridge, the reconciler. No process,
socket or sleep; time moves only by ``FakeClock.advance``."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from hakv.core import codec, routing
from hakv.core.seed import seed_transactions
from hakv.core.topology import CLUSTER_GROUP, Topology, parse_topology
from hakv.node.bridge import Bridge
from hakv.node.manager import MARK_STAGGER, Manager, Prober
from hakv.node.reconciler import Reconciler
from hakv.node.view import ClusterView
from tests.twins import Allocations, Apps, FakeClock, Groups, Peers


def _topology(groups: dict[str, list[str]], app: str | None = None,
              nodes: str = "abcd") -> Topology:
    lines = ['[cluster]', 'name = "t"']
    for i, node in enumerate(nodes):
        lines += ["[[nodes]]", f'id = "{node}"', 'host = "127.0.0.1"',
                  f"raft_port = {7001 + i}", f"api_port = {8001 + i}"]
    for gid, owners in groups.items():
        lines += ["[[groups]]", f'id = "{gid}"', f"owners = {owners!r}".replace("'", '"')]
        if gid == app:
            lines += ["[groups.app]", 'start = "exec sleep 1000"']
    return parse_topology("\n".join(lines) + "\n")


class _MidRandom(random.Random):
    """Jitter of exactly 0: ``jittered(p)`` is ``p``."""

    def random(self) -> float:
        return 0.5


@pytest.fixture
def groups(tmp_path: Path) -> Iterator[Groups]:
    host = Groups("a", str(tmp_path / "groups"))
    yield host
    host.close()


def _manager(groups: Groups, topology: Topology, clock: FakeClock,
             peers: Peers | None = None) -> tuple[Manager, Allocations]:
    view = ClusterView(topology)
    peers = peers or Peers()
    prober = Prober(groups, view, peers, clock, spawn=lambda loop, name: None,
                    rng=_MidRandom())
    allocations = Allocations()
    manager = Manager("a", groups, view, clock, prober, peers, allocations, Apps())
    return manager, allocations


def _raft(topology: Topology, node: str) -> str:
    return topology.node(node).raft_address


# =========================================================================== manager


def test_the_manager_places_an_app_on_the_first_live_owner_after_its_bridge_grants_it(
        groups: Groups) -> None:
    topology = _topology({"g": ["a", "b", "c"]}, app="g")
    clock = FakeClock()
    group = groups.add("g")
    for peer in "bc":  # raft messages from both peers just arrived: alive
        groups.heard[_raft(topology, peer)] = clock.monotonic()
    manager, allocations = _manager(groups, topology, clock)

    assert manager.tick("g") is True  # the group has an app: next round soon

    assert manager.decisions["g"].action == "place"
    assert allocations.asked == [("g", 1)]  # this node's bridge, for the group's load
    placement = groups.store("g").placement()
    assert (placement.node, placement.state, placement.token) == ("a", "starting", 1)
    assert [c["action"] for c in group.ops("placement")] == ["place"]


def test_the_manager_asks_the_bridge_of_a_remote_candidate_over_the_peer_api(
        groups: Groups) -> None:
    topology = _topology({"g": ["b", "a", "c"]}, app="g")  # b has precedence
    clock = FakeClock()
    groups.add("g")
    for peer in "bc":
        groups.heard[_raft(topology, peer)] = clock.monotonic()
    peers = Peers()
    b_api = topology.node("b").api_address
    peers.nodes[b_api] = "b"
    manager, allocations = _manager(groups, topology, clock, peers)

    manager.tick("g")

    assert peers.posts == [(b_api, "allocate", {"group": "g", "node": "b", "load": 1})]
    assert allocations.asked == []
    placement = groups.store("g").placement()
    assert (placement.node, placement.token) == ("b", 1)


def test_the_manager_marks_an_owner_down_after_the_failure_timeout_then_in_the_cluster(
        groups: Groups) -> None:
    topology = _topology({"g": ["a", "b", "c"]})  # no app: node marks only
    clock = FakeClock()
    group = groups.add("g")
    cluster = groups.add(CLUSTER_GROUP)
    manager, _ = _manager(groups, topology, clock)
    tuning = manager.view.tuning()

    groups.heard[_raft(topology, "b")] = clock.monotonic()
    manager.tick("g")  # c was never heard from: unknown for a failure timeout
    assert group.ops("node_status") == []

    clock.advance(tuning.failure_timeout / 2)
    groups.heard[_raft(topology, "b")] = clock.monotonic()
    manager.tick("g")
    assert group.ops("node_status") == []  # not yet

    clock.advance(tuning.failure_timeout / 2)
    groups.heard[_raft(topology, "b")] = clock.monotonic()
    manager.tick("g")

    statuses = groups.store("g").node_statuses()
    assert sorted(statuses) == ["c"]
    assert statuses["c"]["status"]["state"] == "down"
    assert statuses["c"]["status"]["by"] == "a"
    assert group.ops("placement") == []  # no app, no placement
    manager.tick("g")  # recorded down already: no second mark
    assert len(group.ops("node_status")) == 1

    # g is c's first group (mark_rank 0): the cluster ensemble gets the mark at once.
    assert manager.mark_cluster_once() is True
    recorded = groups.store(CLUSTER_GROUP).node_statuses()["c"]["status"]
    assert (recorded["state"], recorded["by"]) == ("down", "a")
    assert len(cluster.ops("node_status")) == 1
    assert manager.mark_cluster_once() is True  # nothing queued: nothing written
    assert len(cluster.ops("node_status")) == 1


def test_a_node_s_mark_waits_its_rank_before_reaching_the_cluster(groups: Groups) -> None:
    topology = _topology({"g0": ["b", "c", "d"], "g": ["a", "b", "c"]})
    clock = FakeClock()
    groups.add("g")
    cluster = groups.add(CLUSTER_GROUP)
    manager, _ = _manager(groups, topology, clock)
    groups.heard[_raft(topology, "b")] = clock.monotonic()
    manager.tick("g")
    clock.advance(manager.view.tuning().failure_timeout)
    groups.heard[_raft(topology, "b")] = clock.monotonic()
    manager.tick("g")
    assert groups.store("g").node_statuses()["c"]["status"]["state"] == "down"

    # g is c's second group: g0's leader records it first; g's waits MARK_STAGGER.
    assert manager.mark_cluster_once() is True
    assert cluster.ops("node_status") == []
    clock.advance(MARK_STAGGER)
    assert manager.mark_cluster_once() is True
    assert [c["node"] for c in cluster.ops("node_status")] == ["c"]


def test_a_leader_without_quorum_neither_marks_nor_places(groups: Groups) -> None:
    topology = _topology({"g": ["a", "b", "c"]}, app="g")
    clock = FakeClock()
    group = groups.add("g", quorum=False)
    manager, allocations = _manager(groups, topology, clock)
    clock.advance(10.0)
    assert manager.tick("g") is True
    assert group.commands == [] and allocations.asked == []
    assert "g" not in manager.decisions


# =========================================================================== prober


def test_the_prober_backs_off_while_a_peer_does_not_answer_and_not_while_raft_is_heard(
        groups: Groups) -> None:
    topology = _topology({"g": ["a", "b", "c"]})
    clock = FakeClock()
    peers = Peers()
    view = ClusterView(topology)
    spawned: list[str] = []
    prober = Prober(groups, view, peers, clock, spawn=lambda loop, name: spawned.append(name),
                    rng=_MidRandom())
    tuning = view.tuning()  # probe_interval 0.2, failure_timeout 1.0
    prober.watch("c", clock.monotonic())
    prober.watch("c", clock.monotonic())
    assert spawned == ["probe-c"]  # one loop per peer
    peer = prober.peer("c")
    assert peer is not None
    c_api = topology.node("c").api_address

    # Unreachable: the interval doubles per failure, up to the failure timeout.
    waits = [prober.probe_once(peer) for _ in range(4)]
    assert waits == pytest.approx([0.4, 0.8, 1.0, 1.0])
    assert peers.probes == [c_api] * 4
    assert peer.failures == 4 and peer.last_ok is None

    # It answers again: back to the probe interval.
    peers.nodes[c_api] = "c"
    assert prober.probe_once(peer) == pytest.approx(tuning.probe_interval)
    assert peer.failures == 0 and peer.last_ok == clock.monotonic()

    # Another node answering at c's address is no sign of c's life.
    peers.nodes[c_api] = "d"
    assert prober.probe_once(peer) == pytest.approx(0.4)
    assert peer.failures == 1

    # Raft messages from c arrive: no HTTP probe until that evidence runs out.
    groups.heard[_raft(topology, "c")] = clock.monotonic()
    assert prober.probe_once(peer) == pytest.approx(tuning.failure_timeout / 2)
    assert len(peers.probes) == 6 and peer.failures == 0

    # Nobody asked about c for WATCH_IDLE: its loop ends.
    clock.advance(10.5)
    assert prober.probe_once(peer) is None


# =========================================================================== bridge


def _notify(member: object, about: str, seq: int) -> int:
    body = {"about": about, "kind": "status", "data": {"seq": seq}}
    result = member.submit(  # type: ignore[attr-defined]
        codec.encode(codec.write_command("notify", body, "test", seq))).wait(1.0)
    return int(result["index"])


def test_the_bridge_links_its_groups_as_the_routing_module_does(tmp_path: Path) -> None:
    topology = _topology({"g1": ["a", "b", "c"], "g2": ["b", "c", "d"], "g3": ["a", "c", "d"]})
    groups = Groups("b", str(tmp_path))
    try:
        for gid in ("g1", "g2"):
            groups.add(gid)
        bridge = Bridge("b", groups, ClusterView(topology), capacity=1)
        assert routing.bridges(topology)["b"] == (("g1", "g2"),)
        assert bridge.links() == [("g1", "g2", ("b", "c")), ("g2", "g1", ("b", "c"))]
        groups.unhost_group("g2")
        assert bridge.links() == []  # one group hosted: nothing to bridge
    finally:
        groups.close()


def test_the_bridge_forwards_an_outbox_entry_exactly_once_by_high_water_mark(
        tmp_path: Path) -> None:
    topology = _topology({"g1": ["a", "b", "c"], "g2": ["b", "c", "d"]})
    groups = Groups("b", str(tmp_path))
    try:
        g1, g2 = groups.add("g1"), groups.add("g2")
        view = ClusterView(topology)
        bridge = Bridge("b", groups, view, capacity=1)
        about_c = _notify(g1, "c", 1)
        _notify(g1, "a", 2)  # a is not on g2: it goes no further

        assert bridge.forward_once() == 1
        inbox = groups.store("g2").inbox()
        assert [(e["source"], e["source_index"], e["about"], e["data"]) for e in inbox] == [
            ("g1", about_c, "c", {"seq": 1})]
        assert groups.store("g2").high_water_mark("g1", "c") == about_c
        assert len(g2.ops("forwarded")) == 1

        assert bridge.forward_once() == 0  # the outbox head did not move: g1 is skipped
        assert len(g2.ops("forwarded")) == 1

        # A restarted bridge starts from g2's high-water mark: it sends nothing again.
        again = Bridge("b", groups, view, capacity=1)
        assert again.forward_once() == 0
        assert len(g2.ops("forwarded")) == 1
        # The bridge on c, reading a copy of g2 that lags, sends it once more: g2 drops it.
        change = groups.store("g1").outbox()[0]
        duplicate = codec.forwarded_command("g1", change["index"], change)
        assert g2.submit(codec.encode(duplicate)).wait(1.0) == {
            "applied": False, "high_water_mark": about_c}
        assert len(groups.store("g2").inbox()) == 1

        # A newer change goes through, in order after the first.
        second = _notify(g1, "c", 3)
        assert bridge.forward_once() == 1
        assert [e["source_index"] for e in groups.store("g2").inbox()] == [about_c, second]
        assert bridge.forwarded == 2
    finally:
        groups.close()


# =========================================================================== reconciler


def _seed(cluster: object, topology: Topology) -> None:
    for n, body in enumerate(seed_transactions(topology)):
        cmd = codec.write_command("txn", body, "seed", n + 1)
        result = cluster.submit(codec.encode(cmd)).wait(1.0)  # type: ignore[attr-defined]
        assert result["succeeded"]


def test_the_reconciler_starts_a_member_for_a_new_group_and_removes_a_deleted_one(
        groups: Groups) -> None:
    records = _topology({"g1": ["a", "b", "c"], "g2": ["a", "c", "d"]})
    started = _topology({"g1": ["a", "b", "c"], "g9": ["a", "b", "d"]})
    clock = FakeClock()
    _seed(groups.add(CLUSTER_GROUP, leader=False), records)
    groups.add("g1", leader=False)
    groups.add("g9", leader=False)
    g9_dir = os.path.join(groups.data_dir, "g9")
    view = ClusterView(started)
    reconciler = Reconciler(started.node("a"), groups, view, clock,
                            lambda: {"state": "up"}, started_at=clock.wall())

    reconciler.reconcile_once()

    assert groups.hosted() == ["g1", "g2"]
    assert groups.hosted_log == [("unhost", "g9"), ("delete", "g9"), ("host", "g2")]
    assert not os.path.exists(g9_dir)
    assert view.topology.has_group("g2") and not view.topology.has_group("g9")
    g2 = groups.members["g2"]
    assert g2.voter  # a voter of the recorded voters: no read-only catch-up
    assert sorted(g2.peers) == [_raft(records, "c"), _raft(records, "d")]
    # The node's status goes into the group it now hosts.
    assert groups.store("g2").node_statuses()["a"]["status"] == {"state": "up"}

    reconciler.reconcile_once()  # converged: nothing more to do
    assert groups.hosted_log == [("unhost", "g9"), ("delete", "g9"), ("host", "g2")]
    assert len(g2.ops("node_status")) == 1
