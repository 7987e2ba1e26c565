"""A group store left unclean across a machine restart is rebuilt from the Raft journal.

Store commits are not fsynced (hakv.storage.machine): after an OS crash the store could be torn, so a
node that finds its store was last opened in another boot and not closed cleanly sets it
aside and rebuilds it. Simulated here by rewriting the boot id in the store's marker.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hakv.client.client import Client
from hakv.dev.local import LocalCluster
from tests.support import leader_of, wait_for, write_topology

pytestmark = pytest.mark.slow

GROUP = "g1"
NODES = ["n1", "n2", "n3"]


def test_a_store_unclean_across_a_reboot_is_rebuilt_from_the_journal(tmp_path: Path) -> None:
    topo = write_topology(tmp_path, NODES, {GROUP: NODES})
    cluster = LocalCluster(tmp_path / "run")
    cluster.up(str(topo), wait=30)
    try:
        endpoints = cluster.endpoints()
        wait_for(lambda: leader_of(endpoints, GROUP), 20, what="a leader")
        with Client(endpoints, timeout=10) as client:
            for i in range(50):
                client.put(GROUP, f"k{i:03d}", str(i))
        for node in NODES:
            cluster.kill(node)
        group_dir = cluster.data_dir("n1") / "groups" / GROUP
        marker = json.loads((group_dir / "state.boot").read_text())
        assert marker["clean"] is False
        (group_dir / "state.boot").write_text(json.dumps({"boot_id": "an-earlier-boot",
                                                          "clean": False}))
        for node in NODES:
            cluster.start(node)
        assert list(group_dir.glob("state.torn-*")), "the suspect store was not set aside"
        wait_for(lambda: leader_of(endpoints, GROUP), 20, what="a leader after restart")
        with Client([cluster.endpoint("n1")], timeout=10) as client:
            def rebuilt() -> bool:
                kvs = client.range(GROUP, "k", limit=1000, serializable=True).kvs
                return len(kvs) == 50
            wait_for(rebuilt, 20, what="n1's store to be rebuilt from the journal")
            kv = client.get(GROUP, "k049", serializable=True)
            assert kv.value == "49" and kv.version == 1
    finally:
        cluster.down()
