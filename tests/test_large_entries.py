"""The largest commands hakv accepts replicate: pysyncobj's chunked transfer of an entry
whose pickled command reaches appendEntriesBatchSizeBytes is broken (a follower unpickles
a cut-off entry and its raft thread dies), so hakv.raft.settings keeps every command below
it — checked here on the pickling itself and on a real three-node group."""

from __future__ import annotations

from pathlib import Path

import pytest
from pysyncobj.pickle import dumps

from hakv.client import Op
from hakv.core.codec import MAX_COMMAND_BYTES
from hakv.raft.settings import APPEND_ENTRIES_BATCH_BYTES
from tests.support import post, start_api_cluster, wait_for


def test_the_worst_command_pickles_below_the_batch_size() -> None:
    worst = bytes(range(128, 256)) * (MAX_COMMAND_BYTES // 128)  # every byte doubles
    assert len(worst) == MAX_COMMAND_BYTES
    call = dumps((7, (worst,)))  # what @replicated logs: the pickled call
    assert len(call) >= 2 * MAX_COMMAND_BYTES
    assert len(call) < APPEND_ENTRIES_BATCH_BYTES


@pytest.mark.slow
def test_a_txn_of_47_kb_of_non_ascii_values_commits_on_every_owner(tmp_path: Path) -> None:
    lc = start_api_cluster(tmp_path, ["n1", "n2", "n3"], {"g1": ["n1", "n2", "n3"]})
    try:
        value = "é" * 7800  # 15,600 bytes of UTF-8, every one >= 0x80
        with lc.client(timeout=10) as client:
            result = client.txn("g1", [], [Op.put(f"big{i}", value) for i in range(3)])
            assert result.succeeded
            for n in ("n1", "n2", "n3"):
                wait_for(lambda n=n: post(lc.endpoint(n), "get", {
                    "group": "g1", "key": "big2", "serializable": True})[0] == 200, 10,
                    what=f"the entry on {n}")
            client.put("g1", "after", "x")  # the group goes on
            assert client.get("g1", "big0").value == value
        for n in ("n1", "n2", "n3"):
            assert "Traceback" not in lc.log_tail(n), lc.log_tail(n)
    finally:
        lc.down()
