"""The linearizable read path on real processes: a ReadIndex on the leader (no log entry),
a barrier through the log elsewhere (docs/raft.md, point 5)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hakv.client.client import Client
from hakv.dev.local import LocalCluster
from tests.support import group_cluster, leader_of, post

NODES = ["r1", "r2", "r3"]
GROUP = "g1"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    with group_cluster(tmp_path, NODES, GROUP, cluster="reads") as lc:
        yield lc


def _log_index(endpoint: str) -> int:
    """The group's commit index as ``endpoint``'s member sees it."""
    status, body = post(endpoint, "status", {})
    assert status == 200, body
    return int(body["groups"][GROUP]["commit_index"])


def _settled_log_index(endpoint: str, quiet: float = 1.0, timeout: float = 15.0) -> int:
    """The commit index once it has not moved for ``quiet`` seconds: after start-up the
    group's leader records every owner "up" (node-status records, written once)."""
    deadline = time.monotonic() + timeout
    index, since = _log_index(endpoint), time.monotonic()
    while time.monotonic() - since < quiet:
        assert time.monotonic() < deadline, "the group's log never settled"
        time.sleep(0.1)
        now = _log_index(endpoint)
        if now != index:
            index, since = now, time.monotonic()
    return index


@pytest.mark.slow
def test_linearizable_reads_on_the_leader_put_nothing_in_the_log(cluster: LocalCluster) -> None:
    leader = leader_of(cluster.endpoints(), GROUP)
    endpoint = cluster.endpoints()[NODES.index(leader)]
    with Client([endpoint], timeout=10) as client:
        client.put(GROUP, "k", "v")
        before = _settled_log_index(endpoint)
        for _ in range(20):
            assert client.get(GROUP, "k").value == "v"
        assert _log_index(endpoint) == before


@pytest.mark.slow
def test_linearizable_reads_through_a_follower_go_through_the_log(
        cluster: LocalCluster) -> None:
    leader = leader_of(cluster.endpoints(), GROUP)
    follower = cluster.endpoints()[NODES.index(next(n for n in NODES if n != leader))]
    with Client([follower], timeout=10) as client:
        client.put(GROUP, "k", "v")
        before = _settled_log_index(follower)
        for _ in range(5):
            assert client.get(GROUP, "k").value == "v"
        assert _log_index(follower) >= before + 5  # one barrier per sequential read


@pytest.mark.slow
def test_a_read_on_the_leader_sees_a_write_just_acknowledged_through_a_follower(
        cluster: LocalCluster) -> None:
    leader = leader_of(cluster.endpoints(), GROUP)
    endpoints = cluster.endpoints()
    on_leader = endpoints[NODES.index(leader)]
    on_follower = endpoints[NODES.index(next(n for n in NODES if n != leader))]
    with Client([on_follower], timeout=10) as writer, Client([on_leader], timeout=10) as reader:
        for i in range(30):
            writer.put(GROUP, "k", str(i))
            assert reader.get(GROUP, "k").value == str(i)
