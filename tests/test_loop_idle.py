"""After any client connection, and after a peer goes away, a node's raft thread is idle.

Regression tests for issue 12: one closed client connection left a closed descriptor
registered in the raft thread's poller, ``poll(2)`` reported it (POLLNVAL) at once on every
call, and the node's raft thread woke 5,000-20,000 times a second forever. Every node that
had answered one client (every node ``hakv status`` or ``hakv local up`` asked) burned a
core from then on.

Each test opens and closes client connections of one kind, then reads the raft thread's
wake-up counter (``loop.wakeups`` in ``/v1/health``, hakv.raft.poller) twice over a short window
on a keep-alive connection of its own, and checks the rate is that of an idle node, and
that the poller never had to drop a descriptor someone forgot to unregister.

Nodes serve the API over TLS by default: the raw requests travel inside it
(tests.raw_tls), and the kinds include what only TLS has (a handshake cut off, plain
bytes on the TLS port, no client certificate). The kinds that are about how a connection
ends also run against nodes started ``--insecure`` (plain TCP).

One 3-node cluster (per mode): g1 on n1, n2, n3; g2 on n1, n2, so n3 forwards every g2
request.
"""

from __future__ import annotations

import json
import socket
import ssl
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import hakv
from hakv.dev.local import LocalCluster
from hakv.security.tls import client_context
from tests import raw_tls
from tests.support import holds, post, start_api_cluster, wait_for

pytestmark = pytest.mark.slow

NODES = ["n1", "n2", "n3"]
GROUPS = {"g1": ["n1", "n2", "n3"], "g2": ["n1", "n2"]}
TIMEOUT = 10.0
WINDOW = 2.0  # seconds of idleness measured
#: An idle node wakes for its groups' ticks and node heartbeats: a few dozen times a
#: second at most (measured: 15-30). The defect made it 5,000-20,000.
IDLE_WAKEUPS_PER_SECOND = 150.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    lc = start_api_cluster(tmp_path_factory.mktemp("idle"), NODES, GROUPS)
    try:
        yield lc
    finally:
        lc.down()


@pytest.fixture(scope="module")
def plain_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """The same cluster with its nodes started ``--insecure``: the API on plain TCP."""
    lc = raw_tls.start_insecure_api_cluster(tmp_path_factory.mktemp("idle-plain"), NODES,
                                            GROUPS)
    try:
        yield lc
    finally:
        lc.down()


def _connect(cluster: LocalCluster, node: str) -> raw_tls.Conn:
    """A connection to ``node``; on a TLS cluster its handshake done, as its client."""
    return raw_tls.connect(cluster.endpoint(node), cluster.client_tls(), TIMEOUT)


def _plain_socket(cluster: LocalCluster, node: str) -> socket.socket:
    host, port = cluster.endpoint(node).rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=TIMEOUT)


def _tls_only(cluster: LocalCluster) -> ssl.SSLContext:
    tls = cluster.client_tls()
    assert tls is not None, "a kind for TLS clusters only"
    return tls


def _request(op: str, body: Any, headers: str = "") -> bytes:
    data = json.dumps(body).encode()
    return (f"POST /v1/{op} HTTP/1.1\r\nHost: hakv\r\nContent-Length: {len(data)}\r\n"
            f"{headers}\r\n").encode() + data


def _read_response(sock: raw_tls.Conn) -> dict[str, Any]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before the answer"
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed in the middle of the answer"
        rest += chunk
    answer: dict[str, Any] = json.loads(rest[:length])
    return answer


class LoopMeter:
    """Reads one node's raft-loop counters over a keep-alive connection of its own."""

    def __init__(self, cluster: LocalCluster, node: str) -> None:
        self.sock = _connect(cluster, node)

    def loop(self) -> dict[str, int]:
        self.sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: hakv\r\n\r\n")
        loop: dict[str, int] = _read_response(self.sock)["loop"]
        return loop

    def rate(self, window: float = WINDOW) -> tuple[float, dict[str, int]]:
        """Wake-ups per second over ``window``, and the counters at its end."""
        before = self.loop()
        time.sleep(window)
        after = self.loop()
        return (after["wakeups"] - before["wakeups"]) / window, after

    def close(self) -> None:
        self.sock.close()


def assert_idle(cluster: LocalCluster, nodes: list[str] = NODES) -> None:
    """Every node of ``nodes`` goes back to an idle raft loop (within a few windows, so a
    write's follow-up, e.g. commit notices, may finish) and dropped no descriptor."""
    meters = {n: LoopMeter(cluster, n) for n in nodes}
    try:
        rates: dict[str, float] = {}
        for n, meter in meters.items():
            for _ in range(4):
                rate, counters = meter.rate()
                rates[n] = rate
                if rate <= IDLE_WAKEUPS_PER_SECOND:
                    break
            assert counters["dropped"] == 0, (
                f"{n}'s poller had to drop {counters['dropped']} closed descriptor(s): a "
                f"connection was closed without being unregistered ({counters})")
        busy = {n: round(r) for n, r in rates.items() if r > IDLE_WAKEUPS_PER_SECOND}
        assert not busy, f"raft threads still busy (wake-ups per second): {busy}"
    finally:
        for meter in meters.values():
            meter.close()


# ------------------------------------------------------------------------ connection kinds


def keep_alive_client(cluster: LocalCluster, node: str) -> None:
    """hakv.Client: several requests on one keep-alive connection, then closed."""
    with hakv.Client([cluster.endpoint(node)], timeout=TIMEOUT,
                     tls=cluster.client_tls() or False) as client:
        for i in range(5):
            client.put("g1", f"idle-{i}", "v")
            client.get("g1", f"idle-{i}")


def connection_close(cluster: LocalCluster, node: str) -> None:
    """``Connection: close``: the server closes after its answer."""
    with _connect(cluster, node) as sock:
        sock.sendall(_request("health", {}, "Connection: close\r\n"))
        _read_response(sock)
        assert sock.recv(1) == b""


def curl_like(cluster: LocalCluster, node: str) -> None:
    """One GET, answer read, then the client closes (what curl does)."""
    with _connect(cluster, node) as sock:
        sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: hakv\r\n\r\n")
        _read_response(sock)


def client_shuts_down_first(cluster: LocalCluster, node: str) -> None:
    """The client sends its request and shuts its sending side at once (EOF with a
    request in the buffer), then reads the answer."""
    with _connect(cluster, node) as sock:
        sock.sendall(_request("get", {"group": "g1", "key": "idle-0"}))
        sock.shutdown(socket.SHUT_WR)
        _read_response(sock)


def shutdown_with_blocking_op(cluster: LocalCluster, node: str) -> None:
    """EOF while a worker-served request (status) is in flight."""
    with _connect(cluster, node) as sock:
        sock.sendall(_request("status", {}))
        sock.shutdown(socket.SHUT_WR)
        _read_response(sock)


def reset_mid_request(cluster: LocalCluster, node: str) -> None:
    """Half a request, then a reset (SO_LINGER 0 makes close send RST)."""
    sock = _connect(cluster, node)
    raw = _request("put", {"group": "g1", "key": "idle-reset", "value": "x" * 100})
    sock.sendall(raw[: len(raw) // 2])
    time.sleep(0.05)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def vanish_with_write_in_flight(cluster: LocalCluster, node: str) -> None:
    """A whole put, then the client resets before its answer comes."""
    sock = _connect(cluster, node)
    sock.sendall(_request("put", {"group": "g1", "key": "idle-vanish", "value": "v"}))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def forwarded(cluster: LocalCluster, node: str) -> None:
    """Requests for a group the node does not own (n3 forwards g2), fresh connections;
    writes carry a client id and seq, so a retry after an election is safe."""
    client = f"idle-{node}-{time.monotonic_ns()}"
    for i in range(3):
        body = {"group": "g2", "key": f"fwd-{i}", "value": "v", "client": client, "seq": i + 1}
        for _ in range(5):
            with _connect(cluster, node) as sock:
                sock.sendall(_request("put", body, "Connection: close\r\n"))
                answer = _read_response(sock)
            if "revision" in answer or not answer.get("error", {}).get("retryable"):
                break
        assert "revision" in answer, answer


def http_client(cluster: LocalCluster, node: str) -> None:
    """The standard library's http.client, closing its connection after each request."""
    import http.client

    host, port = cluster.endpoint(node).rsplit(":", 1)
    tls = cluster.client_tls()
    for op in ("health", "status"):
        conn = (http.client.HTTPSConnection(host, int(port), timeout=TIMEOUT, context=tls)
                if tls is not None else http.client.HTTPConnection(host, int(port),
                                                                   timeout=TIMEOUT))
        conn.request("POST", f"/v1/{op}", body=b"{}",
                     headers={"Content-Type": "application/json"})
        assert conn.getresponse().read()
        conn.close()


def bad_request(cluster: LocalCluster, node: str) -> None:
    """Garbage that the server answers with an error and closes."""
    with _connect(cluster, node) as sock:
        sock.sendall(b"NONSENSE\r\n\r\n")
        _read_response(sock)


def connected_then_closed(cluster: LocalCluster, node: str) -> None:
    """A connection (its TLS handshake done) that the client closes without a request."""
    with _connect(cluster, node):
        pass


def handshake_cut_off(cluster: LocalCluster, node: str) -> None:
    """Half a TLS ClientHello, then the client goes away (a stranger, a port scanner)."""
    hello = _tls_only(cluster).wrap_bio(ssl.MemoryBIO(), out := ssl.MemoryBIO(),
                                        server_side=False, server_hostname="127.0.0.1")
    try:
        hello.do_handshake()
    except ssl.SSLWantReadError:
        pass
    data = out.read()
    with _plain_socket(cluster, node) as sock:
        sock.sendall(data[: len(data) // 2])
        time.sleep(0.05)


def plain_http_on_the_tls_port(cluster: LocalCluster, node: str) -> None:
    """A plain HTTP request to a node serving TLS: the handshake fails, the node sends
    an alert and closes."""
    _tls_only(cluster)
    with _plain_socket(cluster, node) as sock:
        sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: hakv\r\n\r\n")
        try:
            while sock.recv(65536):
                pass
        except ConnectionResetError:
            pass


def no_client_certificate(cluster: LocalCluster, node: str) -> None:
    """TLS without a client certificate: 401 unauthenticated, on a kept-alive connection
    the client then closes."""
    files = cluster.client_files()
    assert files is not None, "a kind for TLS clusters only"
    with raw_tls.connect(cluster.endpoint(node), client_context(files[0]), TIMEOUT) as sock:
        for op in ("status", "put"):
            sock.sendall(_request(op, {"group": "g1", "key": "idle-anon", "value": "v"}))
            answer = _read_response(sock)
            assert answer["error"]["code"] == "unauthenticated", answer


KINDS: list[Callable[[LocalCluster, str], None]] = [
    keep_alive_client, connection_close, curl_like, client_shuts_down_first,
    shutdown_with_blocking_op, reset_mid_request, vanish_with_write_in_flight, forwarded,
    http_client, bad_request, connected_then_closed, handshake_cut_off,
    plain_http_on_the_tls_port, no_client_certificate,
]
#: The kinds about how a connection ends, run on plain TCP too.
PLAIN_KINDS: list[Callable[[LocalCluster, str], None]] = [
    client_shuts_down_first, reset_mid_request, vanish_with_write_in_flight, bad_request,
]


def _open_and_close(cluster: LocalCluster, kind: Callable[..., None]) -> None:
    for node in NODES:
        for _ in range(3):  # more than one, so descriptor numbers get reused
            kind(cluster, node)


@pytest.mark.parametrize("kind", KINDS, ids=[k.__name__ for k in KINDS])
def test_raft_thread_is_idle_after_closed_connections(cluster: LocalCluster,
                                                      kind: Callable[..., None]) -> None:
    _open_and_close(cluster, kind)
    assert_idle(cluster)


@pytest.mark.parametrize("kind", PLAIN_KINDS, ids=[k.__name__ for k in PLAIN_KINDS])
def test_raft_thread_is_idle_after_closed_plain_connections(
        plain_cluster: LocalCluster, kind: Callable[..., None]) -> None:
    _open_and_close(plain_cluster, kind)
    assert_idle(plain_cluster)


def test_raft_thread_is_idle_while_a_peer_is_down(cluster: LocalCluster,
                                                  tmp_path: Path) -> None:
    """A stopped peer's connections close; the survivors retry with a period, they do
    not spin on the dead descriptors. Then the peer comes back."""
    cluster.stop("n3")
    try:
        assert_idle(cluster, ["n1", "n2"])
    finally:
        cluster.start("n3", wait=30)
    wait_for(lambda: _healthy(cluster, "n3"), 30, what="n3 back")
    assert_idle(cluster)


def _healthy(cluster: LocalCluster, node: str) -> bool:
    try:
        with _connect(cluster, node) as sock:
            sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: hakv\r\nConnection: close\r\n\r\n")
            return bool(_read_response(sock).get("ok"))
    except OSError:
        return False


QUIET = 3.0  # seconds of silence: twice pysyncobj's connection timeout (1.5 s)


def _quiesced(cluster: LocalCluster, group: str) -> bool:
    """Whether an owner reports itself the quiesced leader of ``group`` (/v1/status)."""
    for node in GROUPS[group]:
        status, answer = post(cluster.endpoint(node), "status", {}, timeout=TIMEOUT)
        state = answer.get("groups", {}).get(group, {}) if status == 200 else {}
        if state.get("role") == "leader" and state.get("quiesced"):
            return True
    return False


def test_writes_through_every_owner_of_a_quiet_group_commit_at_once(
        cluster: LocalCluster) -> None:
    """A quiesced group's connections carry nothing; pysyncobj dropped a connection that
    had read nothing for its connection timeout (1.5 s) at the next send or read, with
    the message in it. A write through a follower of a group idle for longer than that
    timed out (3 s, every time, on every retry), and the first write on an idle leader
    waited for a reconnect. Node heartbeats now keep the quiet connections alive."""
    for round_ in range(2):
        # A measured window, not a wait for a condition: the defect needs g2's connections
        # to have carried nothing for longer than the connection timeout, and only time
        # makes them so. Wait for g2's leader to quiesce (its heartbeats stop), then hold
        # twice the timeout while checking it stays quiesced, so the silence is observed,
        # not assumed.
        wait_for(lambda: _quiesced(cluster, "g2"), 10, interval=0.1, what="g2 to quiesce")
        holds(lambda: _quiesced(cluster, "g2"), QUIET, interval=0.5,
              what="g2 stays quiesced through the window")
        for node in ("n1", "n2"):  # g2's owners: one leads, one follows
            body = {"group": "g2", "key": f"quiet-{node}", "value": str(round_),
                    "client": f"quiet-{node}-{time.monotonic_ns()}", "seq": 1}
            started = time.monotonic()
            with _connect(cluster, node) as sock:
                sock.sendall(_request("put", body))
                answer = _read_response(sock)
            took = time.monotonic() - started
            assert "revision" in answer, (node, answer)
            assert took < 1.0, f"a write through {node} took {took:.2f}s after the quiet"
