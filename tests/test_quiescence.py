"""Idle groups quiesce: their leader stops heartbeating and one node heartbeat per pair of
nodes keeps them alive. Quiescence must never cost a write, a failover or a step-down.

The decisions step by step (when a leader quiesces, how node heartbeats move a quiet
follower's deadline, waking on a proposal, electing after a quiet leader dies) are in
tests/testdata/raft/quiescence.txt on the deterministic harness. Here, what only real
node processes (``hakv local``, loopback) show: real node heartbeats and connections
carry a quiet group. The group's status says whether its leader is quiet.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hakv import errors
from hakv.client.client import Client
from hakv.dev.local import LocalCluster
from tests.support import (
    api_tls,
    api_url,
    group_cluster,
    holds,
    leader_of,
    wait_for,
    write_topology,
)

pytestmark = pytest.mark.slow

NODES = ["q1", "q2", "q3"]
GROUP = "g1"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    with group_cluster(tmp_path, NODES, GROUP, cluster="quiet") as lc:
        yield lc


def _group(cluster: LocalCluster, node: str) -> dict[str, Any]:
    endpoint = cluster.endpoints()[NODES.index(node)]
    with urllib.request.urlopen(api_url(endpoint, "/v1/status"), timeout=3, context=api_tls()) as resp:
        return json.loads(resp.read())["groups"][GROUP]  # type: ignore[no-any-return]


def _quiet_leader(cluster: LocalCluster) -> tuple[str, int]:
    """Wait until the group's leader reports itself quiesced; its id and term."""
    def quiet() -> tuple[str, int] | None:
        leader = leader_of(cluster.endpoints(), GROUP)
        if leader is None:
            return None
        st = _group(cluster, leader)
        return (leader, st["term"]) if st["role"] == "leader" and st["quiesced"] else None

    found: tuple[str, int] = wait_for(quiet, 15, what="a quiesced leader of g1")
    return found


def test_an_idle_group_quiesces_and_keeps_its_leader_and_term(cluster: LocalCluster) -> None:
    with cluster.client(timeout=10) as client:
        client.put(GROUP, "k", "v")
    leader, term = _quiet_leader(cluster)

    def all_follow() -> bool:
        return all(_group(cluster, n)["term"] == term and _group(cluster, n)["leader"] == leader
                   for n in NODES)

    # Several election timeouts (1 s max) without a single AppendEntries: real node
    # heartbeats alone keep every follower from an election.
    holds(all_follow, 2.5, interval=0.25, what=f"every node follows {leader} in term {term}")
    assert _group(cluster, leader)["quiesced"]


def test_a_write_to_a_quiet_group_commits_at_once_and_the_group_quiesces_again(
        cluster: LocalCluster) -> None:
    leader, term = _quiet_leader(cluster)
    with cluster.client(timeout=10) as client:
        started = time.monotonic()
        client.put(GROUP, "after-quiet", "1")
        took = time.monotonic() - started
        assert client.get(GROUP, "after-quiet").value == "1"
    assert took < 1.0, f"a write to a quiet group took {took:.2f}s"
    # Every follower applied it (a serializable read is each node's own copy).
    for node, endpoint in zip(NODES, cluster.endpoints(), strict=True):
        wait_for(lambda ep=endpoint: _local_value(ep, "after-quiet") == "1", 5,
                 what=f"{node} to apply the write")
    assert _quiet_leader(cluster) == (leader, term)


def _local_value(endpoint: str, key: str) -> str | None:
    with Client([endpoint], timeout=3) as client:
        try:
            return client.get(GROUP, key, serializable=True).value
        except errors.NotFoundError:
            return None


def test_the_followers_of_a_quiet_group_elect_a_new_leader_when_its_leader_dies(
        cluster: LocalCluster) -> None:
    leader, term = _quiet_leader(cluster)
    cluster.kill(leader)
    died = time.monotonic()
    survivors = [cluster.endpoints()[NODES.index(n)] for n in NODES if n != leader]
    new_leader = wait_for(lambda: leader_of(survivors, GROUP), 10, interval=0.05,
                          what="a new leader of g1")
    elected_in = time.monotonic() - died
    assert new_leader != leader
    assert _group(cluster, new_leader)["term"] > term
    assert elected_in < 4.0, f"the quiet group took {elected_in:.1f}s to elect a new leader"
    with cluster.client(timeout=10) as client:
        client.put(GROUP, "after-failover", "1")


def test_a_quiet_leader_cut_off_from_its_followers_steps_down(cluster: LocalCluster) -> None:
    leader, _ = _quiet_leader(cluster)
    followers = [n for n in NODES if n != leader]
    for node in followers:
        cluster.pause(node)  # SIGSTOP: they neither answer nor send node heartbeats
    try:
        cut = time.monotonic()
        wait_for(lambda: _group(cluster, leader)["role"] != "leader", 5, interval=0.05,
                 what="the cut-off leader to step down")
        stepped_down_in = time.monotonic() - cut
    finally:
        for node in followers:
            cluster.resume(node)
    assert stepped_down_in < 2.5, f"stepped down after {stepped_down_in:.1f}s"
    wait_for(lambda: leader_of(cluster.endpoints(), GROUP), 15, what="g1 to recover")
    with cluster.client(timeout=10) as client:
        client.put(GROUP, "after-heal", "1")


def test_the_cluster_ensemble_goes_quiet_with_read_only_followers(tmp_path: Path) -> None:
    """Four nodes: the first three vote in the cluster ensemble, the fourth follows it
    read-only. The ensemble still goes quiet (node heartbeats reach the read-only node),
    and the read-only follower keeps knowing its leader."""
    nodes = ["r1", "r2", "r3", "r4"]
    topo = write_topology(tmp_path, nodes, {"g1": nodes[:3], "g2": nodes[1:]},
                          cluster="quiet-ro")
    lc = LocalCluster(tmp_path / "run")
    lc.up(str(topo), wait=30)
    try:
        endpoints = lc.endpoints()

        def cluster_status(node: str) -> dict[str, Any]:
            with urllib.request.urlopen(api_url(endpoints[nodes.index(node)], "/v1/status"), context=api_tls(),
                                        timeout=3) as resp:
                return json.loads(resp.read())["groups"]["_cluster"]  # type: ignore[no-any-return]

        def quiet_cluster_leader() -> tuple[str, int] | None:
            for node in nodes[:3]:
                st = cluster_status(node)
                if st["role"] == "leader" and st["quiesced"]:
                    return node, int(st["term"])
            return None

        leader, term = wait_for(quiet_cluster_leader, 20, what="a quiet cluster ensemble")
        assert cluster_status("r4")["role"] == "read-only"
        # The read-only follower learns the leader (AppendEntries reach it READONLY_LAG
        # after the voters); then, for longer than leader_fallback_timeout (and the
        # read-only fallback, CONNECTION_SILENCE) without AppendEntries, node heartbeats
        # alone keep it.
        seen: list[Any] = []

        def r4_knows_leader() -> bool:
            seen.append(cluster_status("r4")["leader"])
            return bool(seen[-1] == leader)

        def r4_still_knows_leader() -> bool:
            assert r4_knows_leader(), (
                f"the read-only follower forgot its quiet leader {leader}: r4 saw {seen[-4:]}")
            return True

        wait_for(r4_knows_leader, 5, what=f"r4 learning the leader {leader}")
        holds(r4_still_knows_leader, 3.0, interval=0.25)
        # Same leader, same term: nobody held an election while the ensemble was quiet.
        # (A node-status write under load unquiesces it for a moment, hence the wait.)
        assert wait_for(quiet_cluster_leader, 5, what="the quiet leader") == (leader, term)
    finally:
        lc.down()
