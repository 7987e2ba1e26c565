"""I4 durability and I5 linearizable reads on a real 3-node group (real processes, TCP, LMDB).

Writers put unique keys through the client library while the leader is killed with
SIGKILL and restarted, then the whole group is killed and restarted. Afterwards every
acknowledged write is there, none was applied twice, and reads after the leader change
see every acknowledged write.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from hakv import errors
from hakv.client.client import Client
from hakv.dev.local import LocalCluster
from tests.support import leader_of, wait_for, write_topology

pytestmark = pytest.mark.slow

GROUP = "g1"
NODES = ["n1", "n2", "n3"]


@pytest.fixture
def cluster(tmp_path: Path):  # type: ignore[no-untyped-def]
    topo = write_topology(tmp_path, NODES, {GROUP: NODES})
    lc = LocalCluster(tmp_path / "run")
    lc.up(str(topo), wait=30)
    try:
        yield lc
    finally:
        lc.down()


class Writers:
    """Threads that each put their own key with increasing values; they record acks."""

    def __init__(self, endpoints: list[str], count: int) -> None:
        self.endpoints = endpoints
        self.acked: dict[str, list[int]] = {f"w{i}": [] for i in range(count)}
        self.attempts: dict[str, int] = {f"w{i}": 0 for i in range(count)}
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(w,)) for w in self.acked]

    def _run(self, writer: str) -> None:
        with Client(self.endpoints, timeout=4.0) as client:
            i = 0
            while not self.stop.is_set():
                i += 1
                self.attempts[writer] = i
                try:
                    client.put(GROUP, f"{writer}/{i:06d}", str(i))
                    client.put(GROUP, writer, str(i))
                    self.acked[writer].append(i)
                except (errors.OutcomeUnknownError, errors.RetryableError):
                    # Unknown outcome: may or may not be applied; not counted as acked.
                    i += 0
                    self.attempts[writer] = i

    def __enter__(self) -> Writers:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)


def _all_acked_present(endpoints: list[str], writers: Writers) -> None:
    with Client(endpoints, timeout=15.0) as client:
        kvs = client.range(GROUP, "w", limit=10000).kvs
        present = {kv.key for kv in kvs}
        for writer, acked in writers.acked.items():
            missing = [i for i in acked if f"{writer}/{i:06d}" not in present]
            assert not missing, f"acknowledged writes of {writer} lost: {missing[:10]}"
            if acked:
                kv = client.get(GROUP, writer)
                # Applied at most once per attempt: a retried put applied twice would push
                # the version past the number of puts the writer ever issued.
                assert kv.version <= writers.attempts[writer] + 1
                assert int(kv.value) >= acked[-1]


def test_acknowledged_writes_survive_leader_kill_and_full_restart(cluster: LocalCluster) -> None:
    endpoints = cluster.endpoints()
    wait_for(lambda: leader_of(endpoints, GROUP), 20, what="a leader")
    with Writers(endpoints, count=4) as writers:
        time.sleep(1.5)
        leader = leader_of(endpoints, GROUP)
        assert leader is not None
        cluster.kill(leader)
        time.sleep(2.5)
        cluster.start(leader)
        time.sleep(1.5)
    assert sum(len(a) for a in writers.acked.values()) > 50, "the load did not run"
    # A read after the leader change sees every acknowledged write.
    _all_acked_present(endpoints, writers)
    for node in NODES:
        cluster.kill(node)
    for node in NODES:
        cluster.start(node)
    wait_for(lambda: leader_of(endpoints, GROUP), 30, what="a leader after full restart")
    _all_acked_present(endpoints, writers)


def test_a_retried_write_is_applied_once_even_at_another_node(cluster: LocalCluster) -> None:
    from tests.support import post

    endpoints = cluster.endpoints()
    wait_for(lambda: leader_of(endpoints, GROUP), 20, what="a leader")
    body = {"group": GROUP, "key": "once", "value": "x", "client": "c-retry", "seq": 7}
    def answered(ep: str) -> tuple[int, dict]:  # type: ignore[type-arg]
        # A member may not know the leader yet (503 no_quorum): retried, as clients do.
        return wait_for(lambda: (r := post(ep, "put", body))[0] != 503 and r, 10,
                        what=f"an answer from {ep}")

    results = [answered(ep) for ep in endpoints]
    assert all(status == 200 for status, _ in results), results
    assert len({r["revision"] for _, r in results}) == 1, "each retry must return the first result"
    with Client(endpoints) as client:
        assert client.get(GROUP, "once").version == 1
