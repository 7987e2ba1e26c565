"""The client API server (hakv.node.api.ApiServer) on its own: the real server on a
loopback port, driven by a small loop thread that stands in for the raft thread, with the
twins of its ports (tests/twins.py) in place of the node: ``Service`` (what a node serves
for its groups), ``Peers`` (the other nodes' APIs), ``Allocations`` (this node's bridge),
and ``ClusterView`` as the topology view.

What the real-cluster tests (tests/test_api_connections.py, tests/test_api_errors.py) show
end to end, these pin on the component: which requests are served on the loop and which
on a worker, what is forwarded where, byte for byte, and the order of answers while a
completion is outstanding.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import hakv
from hakv import errors
from hakv.core import codec
from hakv.core.topology import Topology, parse_topology
from hakv.node.api import ApiServer
from hakv.node.view import ClusterView
from hakv.raft.poller import READ, LoopPoller
from tests.twins import Allocations, Peers, Service

LOOP = "loop"  # the loop thread's name (the raft thread's stand-in)
TIMEOUT = 5.0


def _topology() -> Topology:
    """a hosts g1 (a, b, c); g2 is b's, c's and d's: a forwards it."""
    lines = ["[cluster]", 'name = "t"']
    for i, node in enumerate("abcd"):
        lines += ["[[nodes]]", f'id = "{node}"', 'host = "127.0.0.1"',
                  f"raft_port = {7001 + i}", f"api_port = {8001 + i}"]
    lines += ["[[groups]]", 'id = "g1"', 'owners = ["a", "b", "c"]',
              "[[groups]]", 'id = "g2"', 'owners = ["b", "c", "d"]']
    return parse_topology("\n".join(lines) + "\n")


class Loop:
    """The raft thread as the API server sees it: one thread polling a LoopPoller, running
    the functions posted to it, and expiring the loop-served requests (ApiServer.expire)."""

    def __init__(self) -> None:
        self.poller = LoopPoller()
        self._posted: deque[Callable[[], Any]] = deque()
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        self.poller.subscribe(self._read, self._drain, READ)
        self._stopping = False
        self.server: ApiServer | None = None
        self.thread = threading.Thread(target=self._run, name=LOOP, daemon=True)

    def post(self, fn: Callable[[], Any]) -> None:
        self._posted.append(fn)
        os.write(self._write, b"x")

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` in the loop thread; its result."""
        done = threading.Event()
        out: list[Any] = []

        def run() -> None:
            out.append(fn())
            done.set()

        self.post(run)
        assert done.wait(TIMEOUT), "the loop did not run a posted function"
        return out[0]

    def _drain(self, _fd: int, _events: int) -> None:
        try:
            os.read(self._read, 4096)
        except BlockingIOError:
            pass

    def _run(self) -> None:
        while not self._stopping:
            timeout = 0.5
            if self.server is not None:
                deadline = self.server.expire(time.monotonic())
                if deadline is not None:
                    timeout = min(timeout, max(0.0, deadline - time.monotonic()))
            self.poller.poll(timeout)
            while self._posted:
                self._posted.popleft()()

    def stop(self) -> None:
        self._stopping = True
        self.post(lambda: None)
        self.thread.join(TIMEOUT)
        os.close(self._read)
        os.close(self._write)


class Api:
    """An ApiServer of node a, serving on a Loop, with its twins."""

    def __init__(self) -> None:
        self.topology = _topology()
        self.service = Service("a", hosted=("g1",))
        self.peers = Peers()
        self.allocations = Allocations()
        self.loop = Loop()
        self.server = ApiServer(("127.0.0.1", 0), "a", self.service,
                                ClusterView(self.topology), self.peers, self.allocations)
        self.loop.server = self.server
        self.server.attach(self.loop.poller, self.loop.post)
        self.loop.thread.start()
        host, port = self.server.address
        self.endpoint = f"{host}:{port}"

    def api_of(self, node: str) -> str:
        return self.topology.node(node).api_address

    def connect(self) -> Wire:
        host, port = self.server.address
        return Wire(socket.create_connection((host, port), timeout=TIMEOUT))

    def close(self) -> None:
        self.loop.call(self.server.close)
        self.loop.stop()


@pytest.fixture
def api() -> Iterator[Api]:
    server = Api()
    yield server
    server.close()


def _request(op: str, body: bytes | dict[str, Any], headers: str = "") -> bytes:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return (f"POST /v1/{op} HTTP/1.1\r\nHost: hakv\r\nContent-Length: {len(data)}\r\n"
            f"{headers}\r\n").encode() + data


class Wire:
    """A raw client connection: requests out, answers in as (status, raw body)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = b""

    def send(self, *requests: bytes) -> None:
        self.sock.sendall(b"".join(requests))

    def _more(self) -> None:
        chunk = self.sock.recv(65536)
        assert chunk, "the server closed the connection"
        self._buf += chunk

    def answer(self) -> tuple[int, bytes]:
        while b"\r\n\r\n" not in self._buf:
            self._more()
        head, _, rest = self._buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = next(int(line.split(b":", 1)[1]) for line in lines[1:]
                      if line.lower().startswith(b"content-length:"))
        while len(rest) < length:
            self._more()
            head, _, rest = self._buf.partition(b"\r\n\r\n")
        self._buf = rest[length:]
        return status, rest[:length]

    def json(self) -> tuple[int, dict[str, Any]]:
        status, raw = self.answer()
        return status, json.loads(raw)

    def nothing_yet(self) -> bool:
        """No byte of an answer has arrived."""
        if self._buf:
            return False
        self.sock.setblocking(False)
        try:
            return not self.sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return True
        finally:
            self.sock.setblocking(True)

    def closed(self) -> bool:
        return self._buf == b"" and self.sock.recv(1) == b""

    def close(self) -> None:
        self.sock.close()


# =========================================================================== hosted groups


def test_a_request_for_a_hosted_group_is_served_on_the_loop(api: Api) -> None:
    api.service.answers[("put", "g1")] = {"revision": 5, "prev": None}
    api.service.answers[("get", "g1")] = {"kv": {"key": "k", "value": "v", "version": 1,
                                                 "create_revision": 5, "mod_revision": 5}}
    with hakv.Client([api.endpoint], timeout=TIMEOUT, tls=False) as client:
        assert client.put("g1", "k", "v").revision == 5
        kv = client.get("g1", "k")
        assert (kv.key, kv.value, kv.mod_revision) == ("k", "v", 5)
        assert client.status()["node"] == "a"

    begun = [(m, op, group, thread) for m, op, group, _, thread in api.service.calls]
    # The key-value requests are begun on the loop (not served on a worker, not
    # forwarded); status is a worker's.
    assert begun[:2] == [("begin", "put", "g1", LOOP), ("begin", "get", "g1", LOOP)]
    assert begun[2][:3] == ("status", "status", "") and begun[2][3].startswith("api")
    put_body = api.service.calls[0][3]
    assert (put_body["key"], put_body["value"], put_body["seq"]) == ("k", "v", 1)
    assert "client" in put_body
    assert api.peers.posts == []


def test_an_operation_that_may_block_is_served_on_a_worker_and_health_on_the_loop(
        api: Api) -> None:
    wire = api.connect()
    try:
        wire.send(_request("events", {"group": "g1"}), _request("health", {}))
        assert wire.json() == (200, {"op": "events", "group": "g1", "served_by": "a"})
        assert wire.json() == (200, {"ok": True, "node": "a"})
    finally:
        wire.close()
    (method, op, _, _, thread), health = api.service.calls
    assert (method, op) == ("serve", "events") and thread.startswith("api")
    assert health[0] == "health" and health[4] == LOOP


def test_an_error_of_the_service_is_answered_with_its_code(api: Api) -> None:
    api.service.answers[("put", "g1")] = errors.NoQuorumError("group g1 has no quorum",
                                                              group="g1")
    wire = api.connect()
    try:
        wire.send(_request("put", {"group": "g1", "key": "k", "value": "v"}))
        status, answer = wire.json()
        assert status == 503 and answer["error"]["code"] == "no_quorum"
        assert answer["error"]["retryable"] is True
        wire.send(_request("get", {"group": "g1", "key": "k"}))  # the connection lives on
        assert wire.json()[0] == 200
    finally:
        wire.close()


# =========================================================================== forwarding


def test_a_request_for_a_group_not_hosted_here_is_forwarded_as_is(api: Api) -> None:
    b = api.api_of("b")
    api.peers.nodes[b] = "b"
    conflict = {"error": {"code": "conflict", "message": "mod revision is 7, not 3",
                          "retryable": False, "details": {"mod_revision": 7}}}
    api.peers.answers[(b, "put")] = (409, conflict)
    raw = b'{"group":"g2",  "key": "k", "value": "v", "if_mod_revision": 3}'
    wire = api.connect()
    try:
        wire.send(_request("put", raw))
        status, answer = wire.answer()
    finally:
        wire.close()
    # To g2's first owner, the request body byte for byte; its answer back as it came.
    assert api.peers.raw == [raw]
    assert [(address, op) for address, op, _ in api.peers.posts] == [(b, "put")]
    assert (status, answer) == (409, codec.encode(conflict))
    assert api.service.calls == []  # nothing of it served here


def test_a_forwarded_request_goes_to_the_next_owner_when_one_does_not_answer(
        api: Api) -> None:
    b, c, d = api.api_of("b"), api.api_of("c"), api.api_of("d")
    api.peers.nodes[c] = "c"  # b is unreachable
    api.peers.answers[(c, "get")] = (200, {"kv": None, "from": "c"})
    wire = api.connect()
    try:
        wire.send(_request("get", {"group": "g2", "key": "k"}))
        assert wire.json() == (200, {"kv": None, "from": "c"})
        assert [address for address, _, _ in api.peers.posts] == [b, c]

        api.peers.nodes.clear()  # no owner answers: unavailable, after trying each once
        wire.send(_request("get", {"group": "g2", "key": "k"}))
        status, answer = wire.json()
        assert status == 503 and answer["error"]["code"] == "unavailable"
        assert [address for address, _, _ in api.peers.posts] == [b, c, b, c, d]

        wire.send(_request("get", {"group": "nope", "key": "k"}))  # no such group
        status, answer = wire.json()
        assert status == 404 and answer["error"]["code"] == "unknown_group"
        assert len(api.peers.posts) == 5
    finally:
        wire.close()


def test_an_allocation_is_decided_by_the_bridge_of_the_node_it_places_load_on(
        api: Api) -> None:
    b = api.api_of("b")
    api.peers.nodes[b] = "b"
    api.peers.answers[(b, "allocate")] = (200, {"node": "b", "load": 2})
    wire = api.connect()
    try:
        wire.send(_request("allocate", {"group": "g1", "node": "a", "load": 1}))
        assert wire.json() == (200, {"group": "g1", "load": 1})
        wire.send(_request("allocate", {"group": "g1", "node": "b", "load": 2}))
        assert wire.json() == (200, {"node": "b", "load": 2})
    finally:
        wire.close()
    assert api.allocations.asked == [("g1", 1)]  # this node's bridge: its own load only
    assert api.peers.posts == [(b, "allocate", {"group": "g1", "node": "b", "load": 2})]


# =========================================================================== malformed


def test_a_malformed_request_is_bad_request_and_never_reaches_the_service(
        api: Api) -> None:
    wire = api.connect()
    try:
        for body in (b'{"group": "g1", "key": ', b'["g1"]', b'{"key": "k"}'):
            wire.send(_request("put", body))
            status, answer = wire.json()
            assert status == 400 and answer["error"]["code"] == "bad_request", body
        wire.send(_request("health", {}))  # a bad body leaves the connection usable
        assert wire.json()[0] == 200
    finally:
        wire.close()

    garbage = api.connect()
    try:
        garbage.send(b"NONSENSE\r\n\r\n")
        status, answer = garbage.json()
        assert status == 400 and answer["error"]["code"] == "bad_request"
        assert garbage.closed()  # a broken request line: the server closes
    finally:
        garbage.close()
    assert api.service.methods() == ["health"]
    assert api.peers.posts == []


# =========================================================================== pipelining


def test_pipelined_requests_are_answered_in_order_one_in_flight_at_a_time(
        api: Api) -> None:
    b = api.api_of("b")
    api.peers.nodes[b] = "b"
    api.peers.answers[(b, "put")] = (200, {"revision": 9, "from": "b"})
    api.service.answers[("put", "g1")] = {"revision": 1}
    api.service.answers[("get", "g1")] = {"kv": None}
    api.service.hold = True  # the loop-served write waits for its commit
    wire = api.connect()
    try:
        wire.send(_request("put", {"group": "g1", "key": "k", "value": "v"}),
                  _request("put", {"group": "g2", "key": "k", "value": "v"}),
                  _request("health", {}),
                  _request("get", {"group": "g1", "key": "k"}))
        # The loop read all four in one pass and started the first only.
        api.loop.call(lambda: None)
        assert len(api.service.held) == 1
        assert api.service.methods() == ["begin"] and api.peers.posts == []
        assert wire.nothing_yet()

        api.loop.call(api.service.release)  # the commit (in the raft thread)

        assert wire.json() == (200, {"revision": 1})
        assert wire.json() == (200, {"revision": 9, "from": "b"})
        assert wire.json() == (200, {"ok": True, "node": "a"})
        assert wire.json() == (200, {"kv": None})
    finally:
        wire.close()
    assert api.service.methods() == ["begin", "health", "begin"]
    assert [op for _, op, _ in api.peers.posts] == ["put"]


def test_a_loop_served_request_whose_completion_does_not_come_times_out(api: Api) -> None:
    api.service.hold = True
    api.service.timeout = 0.2
    wire = api.connect()
    try:
        started = time.monotonic()
        wire.send(_request("put", {"group": "g1", "key": "k", "value": "v"}),
                  _request("health", {}))
        status, answer = wire.json()
        assert status == 504 and answer["error"]["code"] == "outcome_unknown"
        assert time.monotonic() - started >= 0.2
        assert wire.json()[0] == 200  # the next request is served after it

        api.loop.call(api.service.release)  # resolving late answers nothing twice
        wire.send(_request("health", {}))
        assert wire.json() == (200, {"ok": True, "node": "a"})
    finally:
        wire.close()
