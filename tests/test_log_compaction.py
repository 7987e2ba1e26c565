"""Raft log compaction with LMDB state: the log stays bounded, and a follower that fell
behind the compacted log catches up from a snapshot (real processes, real disk)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from hakv.client.client import Client
from hakv.dev.local import LocalCluster
from tests.support import api_tls, api_url, leader_of, wait_for, write_topology

pytestmark = pytest.mark.slow

GROUP = "g1"
NODES = ["n1", "n2", "n3"]
COMPACT_AFTER = 150


def _group_status(endpoint: str) -> dict:  # type: ignore[type-arg]
    with urllib.request.urlopen(api_url(endpoint, "/v1/status"), timeout=3, context=api_tls()) as resp:
        return json.loads(resp.read())["groups"][GROUP]  # type: ignore[no-any-return]


def test_log_is_compacted_and_a_lagging_follower_catches_up_from_a_snapshot(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAKV_LOG_COMPACTION_ENTRIES", str(COMPACT_AFTER))
    topo = write_topology(tmp_path, NODES, {GROUP: NODES})
    cluster = LocalCluster(tmp_path / "run")
    cluster.up(str(topo), wait=30)
    try:
        endpoints = cluster.endpoints()
        leader = wait_for(lambda: leader_of(endpoints, GROUP), 20, what="a leader")
        lagging = next(n for n in NODES if n != leader)
        cluster.kill(lagging)
        live = [cluster.endpoint(n) for n in NODES if n != lagging]
        with Client(live, timeout=10) as client:
            for i in range(4 * COMPACT_AFTER):
                client.put(GROUP, f"k{i:05d}", str(i))
        leader_ep = cluster.endpoint(leader)
        # The leader's log was compacted: far fewer entries than writes.
        wait_for(lambda: _group_status(leader_ep)["log_entries"] < 2 * COMPACT_AFTER, 10,
                 what="log compaction on the leader")
        assert (cluster.data_dir(leader) / "groups" / GROUP / "snapshot").exists()
        cluster.start(lagging)
        lag_ep = cluster.endpoint(lagging)
        wait_for(lambda: _group_status(lag_ep)["applied_index"]
                 >= _group_status(leader_ep)["applied_index"], 30,
                 what="the lagging follower to catch up")
        # It was sent the leader's snapshot (its own log never reached the compaction size).
        assert (cluster.data_dir(lagging) / "groups" / GROUP / "snapshot").exists()
        with Client([lag_ep], timeout=10) as client:
            kvs = client.range(GROUP, "k", limit=10000, serializable=True).kvs
        assert [kv.key for kv in kvs] == [f"k{i:05d}" for i in range(4 * COMPACT_AFTER)]
    finally:
        cluster.down()
