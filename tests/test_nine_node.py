"""The patent's nine-node example on real processes: placement on disk (I1) and isolation (I6).

Nodes 202..218, groups 220 {202,208,214}, 222 {204,210,216}, 224 {206,212,218},
226 {208,210,212} (DESIGN.md), each node a real ``hakv node`` process with its own LMDB.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest

from hakv import errors
from hakv.client.client import Client
from hakv.core.topology import load_topology
from hakv.dev.local import LocalCluster
from hakv.storage.inspect import inspect_data_dir
from tests.support import (
    NINE_GROUPS,
    NINE_NODES,
    api_tls,
    api_url,
    leader_of,
    nine_node_cluster,
    wait_for,
)

pytestmark = pytest.mark.slow

NODES, GROUPS = NINE_NODES, NINE_GROUPS


@pytest.fixture(scope="module")
def nine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with nine_node_cluster(tmp_path_factory.mktemp("nine")) as cluster:
        yield cluster


def _status(endpoint: str) -> dict:  # type: ignore[type-arg]
    with urllib.request.urlopen(api_url(endpoint, "/v1/status"), timeout=3, context=api_tls()) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


def test_each_node_stores_exactly_its_groups_and_its_sphere_of_influence(
        nine: LocalCluster) -> None:
    topology = load_topology(nine.topology_path)
    with nine.client(timeout=20) as client:
        for group in GROUPS:
            client.put(group, f"record-of-{group}", group)
    for node in NODES:
        sphere = sorted(topology.sphere_of_influence(node))
        wait_for(lambda n=node, s=sphere: sorted(_status(nine.endpoint(n))["node_status"]) == s,
                 20, what=f"node {node} to hold the status records of its sphere")
    # Every write above is applied everywhere once a linearizable read through each owner
    # sees it; then the stores on disk are compared with the placement rules.
    for group, owners in GROUPS.items():
        for owner in owners:
            with Client([nine.endpoint(owner)], timeout=10) as c:
                assert c.get(group, f"record-of-{group}").value == group
    for node in NODES:
        dump = inspect_data_dir(str(nine.data_dir(node)))
        assert dump["groups"] == sorted(g.id for g in topology.groups_of(node)), node
        assert dump["node_status"] == sorted(topology.sphere_of_influence(node)), node
        held = {kv["key"] for st in dump["group_stores"].values() for kv in st["kvs"]}
        expected = {f"record-of-{g}" for g, owners in GROUPS.items() if node in owners}
        assert held == expected, f"node {node} holds {held}, placement says {expected}"


def test_killing_a_node_of_224_leaves_220_undisturbed(nine: LocalCluster) -> None:
    endpoints = nine.endpoints()
    leader_220 = wait_for(lambda: leader_of(endpoints, "220"), 20, what="leader of 220")
    before = _status(nine.endpoint(leader_220))["groups"]["220"]
    victim = "206"  # on 224 only: shares no node with 220
    errors_seen: list[Exception] = []
    writes = 0
    stop = threading.Event()

    def write_220() -> None:
        nonlocal writes
        with Client([nine.endpoint(n) for n in GROUPS["220"]], timeout=5) as c:
            while not stop.is_set():
                try:
                    c.put("220", "steady", str(writes))
                    writes += 1
                except errors.HakvError as exc:
                    errors_seen.append(exc)

    writer = threading.Thread(target=write_220)
    writer.start()
    try:
        time.sleep(0.5)
        nine.kill(victim)
        time.sleep(3.0)  # well past election timeouts: 224 elects or stalls, 220 must not
    finally:
        stop.set()
        writer.join(timeout=20)
        nine.start(victim)
    after = _status(nine.endpoint(leader_220))["groups"]["220"]
    assert not errors_seen, f"writes to 220 failed during the fault: {errors_seen[:3]}"
    assert writes > 20
    assert (after["leader"], after["term"]) == (before["leader"], before["term"]), \
        "group 220 had an election although it shares no node with the failure"
