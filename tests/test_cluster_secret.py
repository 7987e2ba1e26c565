"""Raft traffic under a cluster secret (RAFT-NOTES.md point 9): peers are authenticated
before anything is unpickled; a node with another secret cannot join; a stranger who can
reach the raft port cannot make the node unpickle anything."""

from __future__ import annotations

import pickle
import socket
import struct
import time
import zlib
from pathlib import Path

import pytest

from hakv.client.client import Client
from hakv.core.topology import load_topology
from hakv.dev.local import LocalCluster
from tests.support import Touch, leader_of, wait_for, write_topology

# These clusters run --insecure (the cluster secret is the old way): plain HTTP.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("plain_http")]

NODES = ["n1", "n2", "n3"]




def _secret(path: Path, text: str) -> str:
    path.write_text(text)
    path.chmod(0o600)
    return str(path)


def test_nodes_sharing_a_secret_form_a_cluster_and_strangers_get_nothing_unpickled(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAKV_SECRET_FILE", _secret(tmp_path / "secret", "s3cret-" * 4))
    topo = write_topology(tmp_path, NODES, {"g1": NODES})
    cluster = LocalCluster(tmp_path / "run", insecure=True)
    cluster.up(str(topo), wait=30)
    try:
        wait_for(lambda: leader_of(cluster.endpoints(), "g1"), 20, what="a leader")
        with Client(cluster.endpoints(), timeout=10, tls=False) as client:
            client.put("g1", "k", "v")
            assert client.get("g1", "k").value == "v"
        # A stranger speaks pysyncobj's framing (length + zlib(pickle)) to the raft port.
        proof = tmp_path / "unpickled"
        raft = load_topology(topo).node("n1")
        payload = zlib.compress(pickle.dumps(Touch(str(proof))))
        with socket.create_connection((raft.host, raft.raft_port), timeout=2) as sock:
            sock.sendall(struct.pack("i", len(payload)) + payload)
            time.sleep(0.5)
        assert not proof.exists(), "the node unpickled data from an unauthenticated peer"
        with Client(cluster.endpoints(), timeout=10, tls=False) as client:
            assert client.get("g1", "k").value == "v"  # and it is still fine
    finally:
        cluster.down()


def test_a_node_with_another_secret_cannot_join(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    good = _secret(tmp_path / "good", "the-right-secret-1234")
    bad = _secret(tmp_path / "bad", "another-secret-56789")
    topo = write_topology(tmp_path, NODES, {"g1": NODES})
    cluster = LocalCluster(tmp_path / "run", insecure=True)
    monkeypatch.setenv("HAKV_SECRET_FILE", good)
    cluster.up(str(topo), wait=30)
    try:
        wait_for(lambda: leader_of(cluster.endpoints(), "g1"), 20, what="a leader")
        leader = leader_of(cluster.endpoints(), "g1")
        outsider = next(n for n in NODES if n != leader)
        cluster.stop(outsider)
        monkeypatch.setenv("HAKV_SECRET_FILE", bad)
        cluster.start(outsider)
        with Client([cluster.endpoint(n) for n in NODES if n != outsider], timeout=10) as c:
            c.put("g1", "after", "1")
        time.sleep(1.5)
        with Client([cluster.endpoint(outsider)], timeout=3, tls=False) as c:
            # It never hears the group: no leader, so it cannot serve a linearizable read
            # and its local copy lacks the write made after it restarted.
            assert c.range("g1", "after", serializable=True).kvs == []
    finally:
        cluster.down()


def test_a_too_short_secret_is_a_clear_startup_error(tmp_path: Path) -> None:
    from hakv.errors import ConfigError
    from hakv.node.process import read_secret

    with pytest.raises(ConfigError, match="at least 16"):
        read_secret(_secret(tmp_path / "short", "tiny"))
    with pytest.raises(ConfigError, match="cannot read"):
        read_secret(str(tmp_path / "missing"))
