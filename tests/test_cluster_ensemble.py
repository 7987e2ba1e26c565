"""The cluster ensemble on real processes: a few voters, every other node a read-only
follower; cluster-level records on every node (I1), writable through any node, and its
quorum depends on the voters only."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from hakv.client.client import Client
from hakv.core.seed import seed_records
from hakv.core.topology import CLUSTER_GROUP, load_topology
from hakv.dev.local import LocalCluster
from hakv.storage.inspect import inspect_data_dir
from tests.support import api_tls, api_url, leader_of, wait_for, write_topology

pytestmark = pytest.mark.slow

NODES = ["a", "b", "c", "d", "e"]
GROUPS = {"g1": ["a", "b", "c"], "g2": ["c", "d", "e"]}
VOTERS = ["a", "b", "c"]  # the default: the first three nodes


@pytest.fixture(scope="module")
def five(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    base = tmp_path_factory.mktemp("five")
    topo = write_topology(base, NODES, GROUPS)
    cluster = LocalCluster(base / "run")
    cluster.up(str(topo), wait=60)
    try:
        wait_for(lambda: leader_of(cluster.endpoints(), CLUSTER_GROUP), 30,
                 what="a leader of the cluster ensemble")
        yield cluster
    finally:
        cluster.down()


def _role(endpoint: str) -> str:
    with urllib.request.urlopen(api_url(endpoint, "/v1/status"), timeout=3, context=api_tls()) as resp:
        return str(json.loads(resp.read())["groups"][CLUSTER_GROUP]["role"])


def test_only_the_cluster_voters_vote(five: LocalCluster) -> None:
    roles = {n: _role(five.endpoint(n)) for n in NODES}
    assert {n for n, r in roles.items() if r == "read-only"} == {"d", "e"}
    # A voter may be a candidate for a moment (CI once caught b between elections on a
    # loaded machine); what matters is that it votes and the other two never do.
    assert {n for n, r in roles.items() if r in ("leader", "follower", "candidate")} \
        == set(VOTERS)


def test_every_node_stores_the_cluster_level_records(five: LocalCluster) -> None:
    expected = seed_records(load_topology(five.topology_path))

    def seeded_everywhere() -> bool:
        for node in NODES:
            store = inspect_data_dir(str(five.data_dir(node)))["cluster_store"]
            held = {kv["key"]: kv["value"] for kv in store["kvs"]}
            if any(held.get(k) != v for k, v in expected.items()):
                return False
        return True

    wait_for(seeded_everywhere, 20, what="the cluster records on every node")


def test_a_cluster_record_written_through_a_read_only_node_is_seen_everywhere(
        five: LocalCluster) -> None:
    with Client([five.endpoint("e")], timeout=10) as client:
        client.put(CLUSTER_GROUP, "networks/net0", "loopback")
    for node in NODES:
        with Client([five.endpoint(node)], timeout=10) as client:
            assert client.get(CLUSTER_GROUP, "networks/net0").value == "loopback"


def _cluster_statuses(cluster: LocalCluster, node: str) -> dict[str, Any]:
    statuses: dict[str, Any] = inspect_data_dir(str(cluster.data_dir(node)))[
        "cluster_store"]["node_status"]
    return statuses


def test_start_ups_are_not_cluster_records(five: LocalCluster) -> None:
    """Every node owns a group, so its "up" status lives in its groups only: the cluster
    ensemble gets no entry per node at start-up (that cost N x 2(N-1) messages, the
    patent's N^2, docs/replication.md). Failures and reintegrations are cluster records:
    see test_losing_read_only_followers_does_not_touch_the_cluster_quorum."""
    wait_for(lambda: all(leader_of(five.endpoints(), g) for g in GROUPS), 20,
             what="a leader in every group")
    time.sleep(1.0)
    for node in NODES:
        assert _cluster_statuses(five, node) == {}, node


def test_losing_read_only_followers_does_not_touch_the_cluster_quorum(
        five: LocalCluster) -> None:
    def states() -> dict[str, str]:
        return {n: s.get("status", {}).get("state")
                for n, s in _cluster_statuses(five, "a").items()}

    five.kill("d")
    try:
        # g2 (c, d, e) keeps its quorum; its leader marks d down, in g2 and in the
        # cluster ensemble (a failure is a cluster-level record).
        wait_for(lambda: states() == {"d": "down"}, 20,
                 what="the failure of d in the cluster records")
        five.kill("e")
        with Client([five.endpoint(v) for v in VOTERS], timeout=10) as client:
            client.put(CLUSTER_GROUP, "events/probe", "1")
            assert client.get(CLUSTER_GROUP, "events/probe").value == "1"
    finally:
        five.start("d")
        five.start("e")
    wait_for(lambda: states() == {"d": "up"}, 30,
             what="d reintegrated in the cluster records")
