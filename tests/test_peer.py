"""The node-to-node HTTP client (hakv.node.peer) against a scripted server on loopback:
kept connections, the one retry of a kept connection the peer closed, what counts as no
answer, and the health check the prober's back-off counts on."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hakv.node.peer import Peers, PeerUnreachable
from tests.support import free_ports
from tests.test_client import Reply, ScriptedServer, err, ok


@pytest.fixture
def peers() -> Iterator[Peers]:
    client = Peers(timeout=2.0)
    yield client
    client.close()


def test_requests_to_one_peer_share_a_kept_connection(peers: Peers) -> None:
    with ScriptedServer([ok(answer=1), ok(answer=2)]) as server:
        first = peers.post(server.endpoint, "get", b'{"group": "g"}')
        second = peers.post(server.endpoint, "get", b'{"group": "g"}')
    assert first == (200, b'{"answer": 1}') and second == (200, b'{"answer": 2}')
    assert [s.path for s in server.seen] == ["/v1/get", "/v1/get"]
    assert server.seen[0].peer == server.seen[1].peer  # the same TCP connection


def test_an_error_answer_is_an_answer_not_an_unreachable_peer(peers: Peers) -> None:
    with ScriptedServer([err("no_quorum")]) as server:
        status, raw = peers.post(server.endpoint, "put", b"{}")
    assert status == 503 and b'"no_quorum"' in raw


def test_a_kept_connection_the_peer_closed_is_retried_once_on_a_fresh_one(
        peers: Peers) -> None:
    with ScriptedServer([ok(n=1), Reply(close=True), ok(n=3)]) as server:
        assert peers.post(server.endpoint, "get", b"{}") == (200, b'{"n": 1}')
        assert peers.post(server.endpoint, "get", b"{}") == (200, b'{"n": 3}')
    assert len(server.seen) == 3
    assert server.seen[1].peer == server.seen[0].peer != server.seen[2].peer


def test_a_fresh_connection_without_an_answer_is_not_retried(peers: Peers) -> None:
    with ScriptedServer([Reply(close=True), ok()]) as server:
        with pytest.raises(PeerUnreachable):
            peers.post(server.endpoint, "get", b"{}")
    assert len(server.seen) == 1


def test_nothing_listening_is_unreachable(peers: Peers) -> None:
    (port,) = free_ports(1)
    with pytest.raises(PeerUnreachable, match="connection refused"):
        peers.post(f"127.0.0.1:{port}", "health", b"{}", timeout=0.5)


def test_healthy_means_this_node_answers_its_health_check(peers: Peers) -> None:
    with ScriptedServer([ok(node="b")]) as server:
        assert peers.healthy(server.endpoint, "b", 0.5) is True
        assert peers.healthy(server.endpoint, "c", 0.5) is False  # another node there
    with ScriptedServer([err("unavailable")]) as server:
        assert peers.healthy(server.endpoint, "b", 0.5) is False
    (port,) = free_ports(1)
    assert peers.healthy(f"127.0.0.1:{port}", "b", 0.5) is False
