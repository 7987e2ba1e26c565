"""The write path's shortcuts: cheap wire framing, and the commit index told to followers
only when one waits for it (docs/replication.md, "Messages per write")."""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pysyncobj.tcp_connection
import pytest

from hakv.client.client import Client
from hakv.dev.local import LocalCluster
from hakv.raft.wire import _WireZlib, install
from tests.support import group_cluster, leader_of

NODES = ["w1", "w2", "w3"]
GROUP = "g1"


@pytest.mark.parametrize("size", [0, 1, 300, 16383, 65535, 65536, 65537, 200_000])
def test_a_wire_frame_is_a_zlib_stream_pysyncobj_can_decompress(size: int) -> None:
    data = os.urandom(size)
    assert zlib.decompress(_WireZlib.compress(data, 3)) == data
    assert zlib.decompress(_WireZlib.stored(data)) == data


def test_small_messages_are_stored_not_deflated() -> None:
    data = b"x" * 1000
    framed = _WireZlib.compress(data, 3)
    assert len(framed) == len(data) + 2 + 5 + 4  # header, one stored block, adler32


def test_pysyncobj_frames_its_messages_with_the_cheap_framing() -> None:
    install()  # what every RaftHost does first
    assert pysyncobj.tcp_connection.zlib is _WireZlib


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    with group_cluster(tmp_path, NODES, GROUP, cluster="writes") as lc:
        yield lc


@pytest.mark.slow
def test_a_write_through_a_follower_completes_without_waiting_for_a_heartbeat(
        cluster: LocalCluster) -> None:
    """A follower answers a write it proposed once it applied it; it learns the commit
    index from an AppendEntries sent at once for it, not from the next heartbeat (0.1 s)."""
    leader = leader_of(cluster.endpoints(), GROUP)
    follower = next(n for n in NODES if n != leader)
    endpoint = cluster.endpoints()[NODES.index(follower)]
    with Client([endpoint], timeout=10) as client:
        client.put(GROUP, "warm-up", "0")
        started = time.monotonic()
        for i in range(20):
            client.put(GROUP, f"k{i}", str(i))
            # Its own copy has it at once: the write was answered after the local apply.
            assert client.get(GROUP, f"k{i}", serializable=True).value == str(i)
        took = time.monotonic() - started
    assert took < 1.0, f"20 writes through a follower took {took:.2f}s"
