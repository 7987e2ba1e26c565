"""The client API's connection handling (hakv.node.api) on real node processes, raw sockets.

The API is served on each node's raft thread, non-blocking, in the poller that carries the
Raft traffic: requests are parsed from a per-connection buffer, key-value requests for a
hosted group are answered from a completion callback, everything else (status, forwarding)
from a worker thread. These tests pin the wire behaviour of that: pipelining, requests
split across many reads, clients vanishing mid-request, many connections at once, and
when the server closes a connection.

Nodes serve the API over TLS by default: the tests' bytes then travel inside it, each
``send`` one TLS record, half-closes as TLS does them (tests.raw_tls). Every test also
runs against nodes started ``--insecure`` (plain TCP), the same bytes as they are.

One shared 3-node cluster (per mode): group g1 is owned by n1, n2, n3 and group g2 by n1,
n2, so n3 forwards every g2 request (via its worker pool) while it serves g1 on its loop.
The one test that can take a node down runs a 2-node cluster of its own.
"""
from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hakv.dev.local import LocalCluster
from tests import raw_tls
from tests.support import start_api_cluster, wait_for

pytestmark = pytest.mark.slow

NODES = ["n1", "n2", "n3"]
GROUPS = {"g1": ["n1", "n2", "n3"], "g2": ["n1", "n2"]}
TIMEOUT = 10.0  # socket timeout: generous, so a loaded machine does not flake


#: Every test runs against nodes on TLS (the default) and on plain TCP (``--insecure``):
#: the connection handling is the same, the bytes arrive decrypted or as they are.
MODES = ["tls", "insecure"]


def _start(directory: Path, nodes: list[str], groups: dict[str, list[str]],
           mode: str) -> LocalCluster:
    if mode == "insecure":
        return raw_tls.start_insecure_api_cluster(directory, nodes, groups)
    return start_api_cluster(directory, nodes, groups)


@pytest.fixture(scope="module", params=MODES)
def cluster(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    lc = _start(tmp_path_factory.mktemp("conns"), NODES, GROUPS, request.param)
    try:
        yield lc
    finally:
        lc.down()


@pytest.fixture(params=MODES)
def own_cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LocalCluster]:
    """A 2-node cluster of its own, for a test that may take a node down."""
    lc = _start(tmp_path, ["m1", "m2"], {"g1": ["m1", "m2"]}, request.param)
    try:
        yield lc
    finally:
        lc.down()


# --------------------------------------------------------------------------- helpers


def _key() -> str:
    return "k-" + uuid.uuid4().hex[:12]


def _request(op: str, body: Any = None, *, version: str = "HTTP/1.1",
             headers: dict[str, str] | None = None) -> bytes:
    """One raw request: ``POST /v1/<op>`` with a JSON body (``{}`` when body is None)."""
    data = json.dumps({} if body is None else body).encode()
    lines = [f"POST /v1/{op} {version}", "Host: hakv", "Content-Type: application/json",
             f"Content-Length: {len(data)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


def _connect(cluster: LocalCluster, node: str) -> raw_tls.Conn:
    """A connection to ``node`` with TCP_NODELAY; on a TLS cluster its handshake done, as
    the cluster's client: what the tests write to it are the plaintext bytes of HTTP, each
    ``send`` one TLS record."""
    return raw_tls.connect(cluster.endpoint(node), cluster.client_tls(), TIMEOUT)


class _Response:
    def __init__(self, status: int, headers: dict[str, str], body: dict[str, Any]) -> None:
        self.status, self.headers, self.body = status, headers, body

    def __repr__(self) -> str:
        return f"<{self.status} {self.headers} {self.body}>"


class _Reader:
    """Reads responses off one socket, framed by their Content-Length."""

    def __init__(self, sock: raw_tls.Conn) -> None:
        self.sock = sock
        self.buf = bytearray()

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError(f"connection closed; unread bytes: {bytes(self.buf)!r}")
        self.buf += chunk

    def response(self) -> _Response:
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        end = self.buf.index(b"\r\n\r\n")
        head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        del self.buf[: end + 4]
        version, status, _reason = head[0].split(" ", 2)
        assert version == "HTTP/1.1", head
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers["content-length"])
        while len(self.buf) < length:
            self._fill()
        body = json.loads(bytes(self.buf[:length]))
        del self.buf[:length]
        return _Response(int(status), headers, body)

    def closed(self) -> bool:
        """True when the server closed the connection with nothing more to read (a FIN,
        or a reset: closing with unread input makes the kernel send RST; the server does
        not send close_notify first, raw_tls reads its FIN as the end)."""
        if self.buf:
            return False
        try:
            return self.sock.recv(65536) == b""
        except ConnectionResetError:
            return True


def _exchange(cluster: LocalCluster, node: str, op: str, body: Any) -> _Response:
    """One request on a fresh connection."""
    with _connect(cluster, node) as sock:
        sock.sendall(_request(op, body))
        return _Reader(sock).response()


def _value(cluster: LocalCluster, node: str, group: str, key: str) -> str | None:
    answer = _exchange(cluster, node, "get", {"group": group, "key": key})
    if answer.status == 404:
        assert answer.body["error"]["code"] == "not_found", answer
        return None
    assert answer.status == 200, answer
    value = answer.body["kv"]["value"]
    assert isinstance(value, str)
    return value


# --------------------------------------------------------------------------- pipelining


def test_requests_pipelined_in_one_send_are_answered_in_order(cluster: LocalCluster) -> None:
    key = _key()
    with _connect(cluster, "n1") as sock:
        sock.sendall(_request("put", {"group": "g1", "key": key, "value": "a"})
                     + _request("put", {"group": "g1", "key": key, "value": "b"})
                     + _request("get", {"group": "g1", "key": key}))
        reader = _Reader(sock)
        first, second, third = (reader.response() for _ in range(3))
        assert first.status == 200 and first.body["prev"] is None, first
        assert second.status == 200 and second.body["prev"]["value"] == "a", second
        assert second.body["revision"] > first.body["revision"], (first, second)
        assert third.status == 200, third
        assert third.body["kv"]["value"] == "b", third
        assert third.body["kv"]["mod_revision"] == second.body["revision"], third
        assert "connection" not in third.headers, third  # still keep-alive
        # ... and the connection is still usable afterwards.
        sock.sendall(_request("get", {"group": "g1", "key": key}))
        assert reader.response().body["kv"]["value"] == "b"


def test_request_sent_in_tiny_pieces_is_answered(cluster: LocalCluster) -> None:
    key = _key()
    raw = _request("put", {"group": "g1", "key": key, "value": "pieces"})
    head_end = raw.index(b"\r\n\r\n") + 4
    with _connect(cluster, "n2") as sock:
        for i in range(head_end):  # the request line and headers byte by byte
            sock.send(raw[i: i + 1])
            time.sleep(0.001)
        for i in range(head_end, len(raw), 3):  # the body three bytes at a time
            sock.send(raw[i: i + 3])
            time.sleep(0.001)
        reader = _Reader(sock)
        put = reader.response()
        assert put.status == 200, put
        assert isinstance(put.body["revision"], int), put
        # A request whose end arrives glued to the start of the next one.
        get = _request("get", {"group": "g1", "key": key})
        sock.sendall(get + get[:10])
        time.sleep(0.05)
        sock.sendall(get[10:])
        for _ in range(2):
            answer = reader.response()
            assert answer.status == 200 and answer.body["kv"]["value"] == "pieces", answer


def test_blocking_status_and_loop_served_ops_interleave_on_one_connection(
    cluster: LocalCluster,
) -> None:
    key = _key()
    with _connect(cluster, "n1") as sock:
        sock.sendall(_request("status")
                     + _request("put", {"group": "g1", "key": key, "value": "mixed"})
                     + _request("status")
                     + _request("get", {"group": "g1", "key": key})
                     + _request("health"))
        reader = _Reader(sock)
        status1, put, status2, get, health = (reader.response() for _ in range(5))
    for st in (status1, status2):
        assert st.status == 200 and st.body["node"] == "n1", st
        assert {"g1", "g2"} <= set(st.body["groups"]), st
    assert put.status == 200 and isinstance(put.body["revision"], int), put
    assert "groups" not in put.body, put
    assert get.status == 200 and get.body["kv"]["value"] == "mixed", get
    assert get.body["kv"]["mod_revision"] == put.body["revision"], get
    assert health.status == 200 and health.body["ok"] is True, health


def test_forwarded_request_pipelined_after_a_loop_served_one_is_answered_in_order(
    cluster: LocalCluster,
) -> None:
    assert "g2" not in _exchange(cluster, "n3", "status", {}).body["groups"]  # n3 forwards g2
    k1, k2 = _key(), _key()
    with _connect(cluster, "n3") as sock:
        sock.sendall(_request("put", {"group": "g1", "key": k1, "value": "loop"})
                     + _request("put", {"group": "g2", "key": k2, "value": "forwarded"})
                     + _request("get", {"group": "g2", "key": k2})
                     + _request("get", {"group": "g1", "key": k1})
                     + _request("get", {"group": "g2", "key": k1}))
        reader = _Reader(sock)
        put1, put2, get2, get1, missing = (reader.response() for _ in range(5))
    assert put1.status == 200 and put1.body["prev"] is None, put1
    assert put2.status == 200 and put2.body["prev"] is None, put2
    assert get2.status == 200, get2
    assert get2.body["kv"]["value"] == "forwarded", get2
    assert get2.body["kv"]["mod_revision"] == put2.body["revision"], get2
    assert get1.status == 200, get1
    assert get1.body["kv"]["value"] == "loop", get1
    assert get1.body["kv"]["mod_revision"] == put1.body["revision"], get1
    assert missing.status == 404 and missing.body["error"]["code"] == "not_found", missing


def test_client_pipelining_far_ahead_is_paused_and_then_fully_served(
    cluster: LocalCluster,
) -> None:
    # ~800 KB of pipelined writes: more than the server buffers for one connection
    # (a full body plus headers), so it stops reading it until answers went out.
    prefix = "ahead-" + uuid.uuid4().hex[:8] + "/"
    count = 40
    raw = b"".join(_request("put", {"group": "g1", "key": f"{prefix}{i:02d}",
                                    "value": f"{i:02d}" + "x" * 20000}) for i in range(count))
    answers: list[_Response | str] = []
    with _connect(cluster, "n2") as sock:
        reader = _Reader(sock)

        def read_all() -> None:
            try:
                for _ in range(count):
                    answers.append(reader.response())
            except Exception as exc:
                answers.append(f"{type(exc).__name__}: {exc}")

        receiver = threading.Thread(target=read_all)
        receiver.start()
        sock.sendall(raw)
        receiver.join(60)
    assert not receiver.is_alive(), "the answers stopped coming"
    assert len(answers) == count and all(
        isinstance(a, _Response) and a.status == 200 and a.body["prev"] is None for a in answers
    ), answers[-3:]
    revisions = [a.body["revision"] for a in answers if isinstance(a, _Response)]
    assert revisions == sorted(revisions) and len(set(revisions)) == count, revisions
    answer = _exchange(cluster, "n1", "range", {"group": "g1", "prefix": prefix})
    assert [kv["value"][:2] for kv in answer.body["kvs"]] == [f"{i:02d}" for i in range(count)]


def test_hundreds_of_pipelined_requests_answered_at_once_are_all_answered(
    own_cluster: LocalCluster,
) -> None:
    assert _exchange(own_cluster, "m1", "put",
                     {"group": "g1", "key": "k", "value": "v"}).status == 200
    trio = (_request("get", {"group": "g1", "key": "k", "serializable": True})
            + _request("put", [1])  # not an object: 400 bad_request, answered at once
            + _request("health"))
    rounds = 400  # 1,200 requests: each answered at once (this once recursed per request)
    answers: list[_Response] = []
    with _connect(own_cluster, "m1") as sock:
        sock.sendall(trio * rounds)
        reader = _Reader(sock)
        try:
            while len(answers) < 3 * rounds:
                answers.append(reader.response())
        except (OSError, EOFError) as exc:
            pytest.fail(f"only {len(answers)} of {3 * rounds} pipelined requests were "
                        f"answered, then {type(exc).__name__}: {exc}")
    for r in range(rounds):
        get, bad, health = answers[3 * r: 3 * r + 3]
        assert get.status == 200 and get.body["kv"]["value"] == "v", (r, get)
        assert bad.status == 400 and bad.body["error"]["code"] == "bad_request", (r, bad)
        assert health.status == 200 and health.body["node"] == "m1", (r, health)
    assert _exchange(own_cluster, "m1", "health", {}).body["ok"] is True  # still serves
    assert _exchange(own_cluster, "m1", "put",
                     {"group": "g1", "key": "k", "value": "w"}).status == 200


# --------------------------------------------------------------------------- clients


def test_client_closing_with_a_write_in_flight_does_not_disturb_the_node(
    cluster: LocalCluster,
) -> None:
    keys = [_key() for _ in range(20)]
    with _connect(cluster, "n1") as steady:
        reader = _Reader(steady)
        for i, key in enumerate(keys):
            # Send a write and hang up at once: the server sees the request and then the
            # end of the connection while the write is still being replicated.
            gone = _connect(cluster, "n1")
            gone.sendall(_request("put", {"group": "g1", "key": key, "value": f"v{i}"}))
            gone.close()
            # A connection opened before keeps being served (its answers are its own).
            steady.sendall(_request("put", {"group": "g1", "key": f"{key}-steady",
                                            "value": str(i)}))
            answer = reader.response()
            assert answer.status == 200 and answer.body["prev"] is None, (i, answer)
        steady.sendall(_request("get", {"group": "g1", "key": f"{keys[-1]}-steady"}))
        assert reader.response().body["kv"]["value"] == str(len(keys) - 1)
    for i, key in enumerate(keys):
        wait_for(lambda key=key: _value(cluster, "n1", "g1", key) is not None, 10,
                 what=f"the write of the client that hung up ({key}) to apply")
        assert _value(cluster, "n2", "g1", key) == f"v{i}"


def test_many_concurrent_connections_are_all_answered(cluster: LocalCluster) -> None:
    prefix = "many-" + uuid.uuid4().hex[:8] + "/"
    count, rounds, threads = 100, 3, 5
    nodes = cluster.node_ids()
    socks = [_connect(cluster, nodes[i % len(nodes)]) for i in range(count)]  # all open at once
    failures: list[str] = []

    def run(mine: list[int]) -> None:
        readers = {i: _Reader(socks[i]) for i in mine}
        try:
            for r in range(rounds):
                for i in mine:  # one request in flight on each of this thread's sockets
                    socks[i].sendall(_request("put", {"group": "g1", "key": f"{prefix}{i:03d}",
                                                      "value": f"r{r}"}))
                for i in mine:
                    answer = readers[i].response()
                    if answer.status != 200 or "revision" not in answer.body:
                        failures.append(f"socket {i} round {r}: {answer}")
        except Exception as exc:
            failures.append(f"thread of {mine[0]}: {type(exc).__name__}: {exc}")

    workers = [threading.Thread(target=run, args=(list(range(t, count, threads)),))
               for t in range(threads)]
    try:
        for w in workers:
            w.start()
        for w in workers:
            w.join(60)
    finally:
        for s in socks:
            s.close()
    assert not any(w.is_alive() for w in workers), "a client thread hung"
    assert not failures, failures[:5]
    answer = _exchange(cluster, "n3", "range", {"group": "g1", "prefix": prefix})
    assert answer.status == 200, answer
    got = {kv["key"]: kv["value"] for kv in answer.body["kvs"]}
    assert got == {f"{prefix}{i:03d}": f"r{rounds - 1}" for i in range(count)}


# --------------------------------------------------------------------------- closing


def test_connection_close_header_is_answered_with_close_and_then_closed(
    cluster: LocalCluster,
) -> None:
    key = _key()
    with _connect(cluster, "n1") as sock:
        sock.sendall(_request("put", {"group": "g1", "key": key, "value": "last"},
                              headers={"Connection": "close"}))
        reader = _Reader(sock)
        answer = reader.response()
        assert answer.status == 200 and isinstance(answer.body["revision"], int), answer
        assert answer.headers.get("connection", "").lower() == "close", answer
        assert reader.closed(), "the server kept the connection open after Connection: close"
    assert _value(cluster, "n2", "g1", key) == "last"


def test_requests_pipelined_after_connection_close_are_not_served(
    cluster: LocalCluster,
) -> None:
    key = _key()
    with _connect(cluster, "n1") as sock:
        sock.sendall(_request("get", {"group": "g1", "key": key},
                              headers={"Connection": "close"})
                     + _request("put", {"group": "g1", "key": key, "value": "too late"}))
        reader = _Reader(sock)
        answer = reader.response()
        assert answer.status == 404 and answer.body["error"]["code"] == "not_found", answer
        assert answer.headers.get("connection", "").lower() == "close", answer
        assert reader.closed(), "the server answered past the request that asked to close"
    time.sleep(0.3)  # had the put been started, it would have committed by now
    assert _value(cluster, "n1", "g1", key) is None


def test_garbage_request_line_is_400_bad_request_and_closes(cluster: LocalCluster) -> None:
    with _connect(cluster, "n2") as sock:
        sock.sendall(b"HELLO THERE\r\n\r\n")
        reader = _Reader(sock)
        answer = reader.response()
        assert answer.status == 400, answer
        assert answer.body["error"]["code"] == "bad_request", answer
        assert answer.body["error"]["retryable"] is False, answer
        assert answer.headers.get("connection", "").lower() == "close", answer
        assert reader.closed(), "the server kept a connection open after a garbage request"
    assert _exchange(cluster, "n2", "health", {}).body["ok"] is True


def test_http_1_0_request_without_keep_alive_is_answered_then_closed(
    cluster: LocalCluster,
) -> None:
    key = _key()
    with _connect(cluster, "n3") as sock:
        sock.sendall(_request("put", {"group": "g1", "key": key, "value": "old"},
                              version="HTTP/1.0"))
        reader = _Reader(sock)
        answer = reader.response()
        assert answer.status == 200 and isinstance(answer.body["revision"], int), answer
        assert answer.headers.get("connection", "").lower() == "close", answer
        assert reader.closed(), "the server kept an HTTP/1.0 connection open"
    assert _value(cluster, "n3", "g1", key) == "old"


def test_oversized_body_sent_in_pieces_is_413_and_the_next_request_is_served(
    cluster: LocalCluster,
) -> None:
    key = _key()
    big = _request("put", {"group": "g1", "key": key, "value": "x" * (100 * 1024)})
    follow = _request("put", {"group": "g1", "key": key, "value": "small"})
    with _connect(cluster, "n1") as sock:
        reader = _Reader(sock)
        for i in range(0, len(big) - 5000, 20000):  # the body trickles in over many reads
            sock.sendall(big[i: min(i + 20000, len(big) - 5000)])
            time.sleep(0.02)
        sock.sendall(big[len(big) - 5000:] + follow)  # its tail glued to the next request
        too_large = reader.response()
        assert too_large.status == 413, too_large
        assert too_large.body["error"]["code"] == "too_large", too_large
        assert "connection" not in too_large.headers, too_large
        answer = reader.response()
        assert answer.status == 200 and answer.body["prev"] is None, answer
    assert _value(cluster, "n1", "g1", key) == "small"


def test_http_1_0_keep_alive_is_answered_with_keep_alive_and_kept_open(
    cluster: LocalCluster,
) -> None:
    key = _key()
    with _connect(cluster, "n1") as sock:
        reader = _Reader(sock)
        for value in ("one", "two"):
            sock.sendall(_request("put", {"group": "g1", "key": key, "value": value},
                                  version="HTTP/1.0", headers={"Connection": "keep-alive"}))
            answer = reader.response()
            assert answer.status == 200, answer
            assert answer.headers.get("connection", "").lower() == "keep-alive", answer
    assert _value(cluster, "n1", "g1", key) == "two"


def test_requests_sent_before_a_half_close_are_answered_then_the_server_closes(
    cluster: LocalCluster,
) -> None:
    key = _key()
    with _connect(cluster, "n2") as sock:
        sock.sendall(_request("put", {"group": "g1", "key": key, "value": "a"})
                     + _request("get", {"group": "g1", "key": key}))
        sock.shutdown(socket.SHUT_WR)  # the client sends nothing more, and waits
        reader = _Reader(sock)
        put, get = reader.response(), reader.response()
        assert put.status == 200 and put.body["prev"] is None, put
        assert get.status == 200 and get.body["kv"]["value"] == "a", get
        assert reader.closed(), "the server kept a half-closed connection open"
