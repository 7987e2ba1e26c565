"""Fuzzing the client API's HTTP request parser (hakv.node.api): the request line,
headers, Content-Length and body of ``POST /v1/<op>``, pipelined on keep-alive
connections.

Two levels:

- the parser itself (``_Connection._parse``, ``_parse_object``, ``_group_of``), called
  without a server: any bytes, fed in any chunks, give requests or 4xx errors and always
  make progress; a pipeline of valid requests parses to exactly those requests, however
  the bytes are split into reads;
- a real ApiServer on a loopback port with in-memory twins (as in tests/test_api_twins.py):
  any stream of request fragments, garbage, oversized lines and headers, bad
  Content-Lengths and JSON bodies is answered with 2xx/4xx (503 for a group whose owners
  the twins do not run) or a close, never a 500, and the next connection is served.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hakv import errors
from hakv.core import codec
from hakv.node import api
from tests.fuzzing import fuzz, json_values, only_typed
from tests.test_api_twins import Api

OPS = sorted(api._OPS)
MAX_HEAD = api._MAX_HEAD


# =========================================================================== the parser alone


class _NoServer:
    """Stands in for the ApiServer of a connection whose parser alone is driven: every
    attribute is None (plain HTTP: no TLS context)."""

    def __getattr__(self, name: str) -> Any:
        return None


class Parser:
    """The request parser of one connection, driven as ``_Connection._receive`` drives
    it: bytes appended to the buffer (skipping a refused body still arriving), then
    ``_parse`` until it needs more."""

    def __init__(self) -> None:
        self._socks = socket.socketpair()
        self.conn = api._Connection(_NoServer(), self._socks[0])  # type: ignore[arg-type]
        self.closing = False

    def close(self) -> None:
        for sock in self._socks:
            sock.close()

    def feed(self, chunk: bytes) -> list[Any]:
        conn = self.conn
        if conn._discard:
            skipped = min(conn._discard, len(chunk))
            conn._discard -= skipped
            chunk = chunk[skipped:]
        conn._in += chunk
        out: list[Any] = []
        while conn._in and not conn._close_after:
            before = (len(conn._in), conn._discard)
            parsed = conn._parse()
            if parsed is None:
                break
            assert (len(conn._in), conn._discard) != before or conn._close_after, \
                "the parser returned without consuming anything"
            if isinstance(parsed, errors.HakvError):
                assert 400 <= parsed.http_status < 500 and parsed.message, parsed
            else:
                assert isinstance(parsed, api._Request) and parsed.op in api._OPS
            out.append(parsed)
        self.closing = conn._close_after
        return out


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:], strict=False)]


# A request as a client may send it: method, target, version, header casing and order,
# Connection, Content-Length (or none for GET), extra headers, any body bytes.
TOKEN = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9-]{0,15}", fullmatch=True).filter(
    lambda n: n.lower() not in ("content-length", "connection"))
HEADER_VALUE = st.binary(max_size=30).map(lambda v: v.replace(b"\n", b" ").strip())


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, tuple[str | None, bytes, bool]]:
    """(bytes, expected): expected is (op, body, close), op None for an unknown target."""
    op = draw(st.sampled_from(OPS))
    target = draw(st.sampled_from([f"/v1/{op}", f"/v1/{op}/", f"/v1/{op}?x=1",
                                   "/v2/nothing", "/", "/v1/"]))
    known = target.startswith(f"/v1/{op}")
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"]))
    method = draw(st.sampled_from([b"POST", b"GET"]))
    body = draw(st.binary(max_size=64) | json_values(6).map(lambda v: json.dumps(v).encode()))
    with_length = method == b"POST" or bool(body) or draw(st.booleans())
    connection = draw(st.sampled_from([None, b"close", b"Close", b"keep-alive",
                                       b"Keep-Alive", b"upgrade"]))
    headers = [(n.encode(), v) for n, v in draw(st.lists(st.tuples(TOKEN, HEADER_VALUE),
                                                         max_size=4))]
    if with_length:
        headers.append((draw(st.sampled_from([b"Content-Length", b"content-length",
                                              b"CONTENT-LENGTH"])),
                        str(len(body)).encode()))
    if connection is not None:
        headers.append((b"Connection", connection))
    headers = draw(st.permutations(headers))
    head = b"%s %s %s\r\n" % (method, target.encode(), version) + b"".join(
        b"%s:%s%s\r\n" % (n, draw(st.sampled_from([b"", b" ", b"  "])), v) for n, v in headers)
    lowered = (connection or b"").lower()
    close = lowered == b"close" or (version == b"HTTP/1.0" and lowered != b"keep-alive")
    return head + b"\r\n" + body, (op if known else None, body if with_length else b"", close)


@fuzz(150)
@given(st.lists(requests(), min_size=1, max_size=6), st.lists(st.integers(0, 10**6),
                                                                max_size=8))
def test_a_pipeline_of_valid_requests_parses_to_those_requests_however_it_is_split(
        pipeline: list[tuple[bytes, tuple[str | None, bytes, bool]]], cuts: list[int]) -> None:
    data = b"".join(raw for raw, _ in pipeline)
    expected: list[tuple[str | None, bytes, bool]] = []
    for _, want in pipeline:
        expected.append(want)
        if want[2]:
            break  # a request with "close" ends the connection: the rest is never read
    parser = Parser()
    try:
        got: list[Any] = []
        for chunk in _chunks(data, cuts):
            got += parser.feed(chunk)
    finally:
        parser.close()
    seen = [(None, b"?", False) if isinstance(g, errors.HakvError) else (g.op, g.raw, g.close)
            for g in got]
    assert len(seen) == len(expected), (seen, expected)
    for (op, body, close), (g_op, g_body, g_close) in zip(expected, seen, strict=True):
        if op is None:
            assert g_op is None  # an unknown endpoint: a 400, and the connection goes on
        else:
            assert (g_op, g_body, g_close) == (op, body, close)


FRAGMENTS = st.one_of(
    st.binary(max_size=40),
    requests().map(lambda r: r[0]),
    st.sampled_from([
        b"POST /v1/put HTTP/1.1\r\n", b"GET /v1/health HTTP/1.1\r\n", b"\r\n", b"\n",
        b"\r\n\r\n", b"\n\n", b"POST\r\n", b"POST /v1/put\r\n", b"PUT /v1/put HTTP/1.1\r\n",
        b"POST /v1/put HTTP/1.1 extra\r\n", b"Content-Length: -1\r\n",
        b"Content-Length: abc\r\n", b"Content-Length: 1e3\r\n", b"Content-Length: \r\n",
        b"Content-Length: 99999999999999999999999\r\n", b"Content-Length: 65537\r\n",
        b"Content-Length: 2\r\n", b"Content-Length: " + b"9" * 5000 + b"\r\n",
        b"Connection: close\r\n", b"Connection: keep-alive\r\n", b"X: " + b"y" * 9000 + b"\r\n",
        b"A" * 9000, b"H: v\r\n" * 70, b"\x00\xff\xfe", b'{"group": "g1", "key": "k"}',
        b'{"group": "g2"}', b'{"group": []}', b"[]", b"null", b'{"group": "g1"',
    ]),
)


@fuzz(150)
@given(st.lists(FRAGMENTS, min_size=1, max_size=10), st.lists(st.integers(0, 10**6),
                                                               max_size=6))
def test_any_bytes_in_any_chunks_give_requests_or_4xx_and_always_progress(
        fragments: list[bytes], cuts: list[int]) -> None:
    parser = Parser()
    try:
        for chunk in _chunks(b"".join(fragments), cuts):
            parser.feed(chunk)
            if parser.closing:
                break
        # What is left is an incomplete request, bounded: a client cannot make the
        # server buffer more than a head and a body before it answers or closes.
        assert len(parser.conn._in) <= MAX_HEAD + codec.MAX_REQUEST_BYTES + 65536
    finally:
        parser.close()


@fuzz(150)
@given(st.binary(max_size=200) | json_values(10).map(lambda v: json.dumps(v).encode()))
def test_parse_object_and_group_of_any_body_are_typed(raw: bytes) -> None:
    body = only_typed(lambda: api._parse_object(raw), errors.BadRequestError)
    if body is not None:
        assert isinstance(body, dict)
        group = only_typed(lambda: api._group_of(body), errors.BadRequestError)
        assert group is None or (isinstance(group, str) and group)


def _parse_one(data: bytes) -> tuple[Any, Parser]:
    parser = Parser()
    got = parser.feed(data)
    parser.close()
    assert got, f"nothing parsed from {data[:60]!r}"
    return got[0], parser


@pytest.mark.parametrize("line", [
    b"A" * (MAX_HEAD + 1),  # no end of headers in sight
    b"POST /v1/put HTTP/1.1\r\nX: " + b"y" * 9000 + b"\r\n\r\n",  # one header line
    b"POST /v1/put HTTP/1.1\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(70)) + b"\r\n",
    b"BREW /v1/put HTTP/1.1\r\n\r\n", b"POST /v1/put\r\n\r\n", b"\r\n\r\n",
    b"POST /v1/put HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    b"POST /v1/put HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n",
    b"POST /v1/put HTTP/1.1\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n",
])
def test_oversized_or_malformed_heads_are_a_400_and_a_close(line: bytes) -> None:
    parsed, parser = _parse_one(line)
    assert isinstance(parsed, errors.BadRequestError) and parser.closing


def test_a_body_over_the_limit_is_a_413_skipped_and_the_connection_goes_on() -> None:
    size = codec.MAX_REQUEST_BYTES + 1
    parser = Parser()
    try:
        got = parser.feed(b"POST /v1/put HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % size
                          + b"x" * 1000)
        assert len(got) == 1 and isinstance(got[0], errors.RequestTooLargeError)
        got = parser.feed(b"x" * (size - 1000) + b"GET /v1/health HTTP/1.1\r\n\r\n")
        assert [r.op for r in got] == ["health"] and not parser.closing
    finally:
        parser.close()


# =========================================================================== bugs left in api.py


@pytest.mark.parametrize("raw", [b'{"group": "g1", "n": ' + b"1" * 5000 + b"}",
                                 b"[" * 50_000], ids=["huge-int", "deep"])
def test_parse_object_of_unreadable_json_is_a_bad_request(raw: bytes) -> None:
    with pytest.raises(errors.BadRequestError):
        api._parse_object(raw)


@pytest.mark.parametrize("data", [
    # A bare-LF request, then a CRLF one pipelined behind it.
    b"GET /v1/health HTTP/1.1\n\nGET /v1/status HTTP/1.1\r\n\r\n",
    # A bare-LF request whose body holds CRLFCRLF.
    b"POST /v1/put HTTP/1.1\nContent-Length: 6\n\na\r\n\r\nb",
], ids=["pipelined", "in-body"])
def test_a_bare_lf_head_ends_at_its_own_blank_line(data: bytes) -> None:
    """The parser accepts bare-LF heads (``\\n\\n``), but searches for ``\\r\\n\\r\\n``
    first across the whole buffer: the LF request's head runs on into its body or into
    the next request (the status request here is swallowed as headers, and its client
    waits forever)."""
    parser = Parser()
    try:
        got = parser.feed(data)
    finally:
        parser.close()
    ops = [r.op if isinstance(r, api._Request) else r for r in got]
    assert ops in (["health", "status"], ["put"]), ops
    if ops == ["put"]:
        assert got[0].raw == b"a\r\n\r\nb"


@pytest.mark.parametrize("lengths", [b"Content-Length: +2\r\n", b"Content-Length: 0_2\r\n",
                                     b"Content-Length: -0\r\n",
                                     b"Content-Length: 2\r\nContent-Length: 0\r\n"],
                         ids=["plus", "underscore", "minus-zero", "two-lengths"])
def test_a_content_length_that_is_not_one_run_of_digits_is_a_400(lengths: bytes) -> None:
    """RFC 9112 6.3: Content-Length is 1*DIGIT, and several differing ones make the
    framing invalid: the server must answer 400 and close, or a proxy in front that reads
    the length differently can smuggle a request past it (here the body ``{}`` would be
    read as the start of the next request, or the next request as this body)."""
    parsed, parser = _parse_one(b"POST /v1/put HTTP/1.1\r\n" + lengths + b"\r\n{}")
    assert isinstance(parsed, errors.BadRequestError) and parser.closing


# =========================================================================== a real server


@pytest.fixture(scope="module")
def server() -> Iterator[Api]:
    """Node a's ApiServer on a free loopback port (hosts g1; g2 is forwarded to b, c, d,
    whose twins answer nothing: 503)."""
    running = Api()
    yield running
    running.close()


def _exchange(server: Api, data: bytes, timeout: float = 5.0) -> tuple[list[int], list[Any]]:
    """Send ``data`` on a new connection, shut the sending side, read until the server
    closes: the statuses and bodies of its answers."""
    host, port = server.server.address
    sock = socket.create_connection((host, port), timeout=timeout)
    received = b""
    try:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # it answered and closed before reading everything: allowed
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            except TimeoutError:
                raise AssertionError(f"the server neither answered nor closed within "
                                     f"{timeout}s; sent {data[:200]!r}") from None
            if not chunk:
                break
            received += chunk
    finally:
        sock.close()
    return _answers(received)


def _answers(received: bytes) -> tuple[list[int], list[Any]]:
    statuses, bodies = [], []
    while received:
        head, sep, rest = received.partition(b"\r\n\r\n")
        assert sep, f"a partial answer: {received[:200]!r}"
        lines = head.split(b"\r\n")
        assert lines[0].startswith(b"HTTP/1.1 "), lines[0]
        length = next(int(line.split(b":", 1)[1]) for line in lines[1:]
                      if line.lower().startswith(b"content-length:"))
        statuses.append(int(lines[0].split()[1]))
        bodies.append(json.loads(rest[:length]))
        received = rest[length:]
    return statuses, bodies


def _serves(server: Api) -> None:
    statuses, bodies = _exchange(server, b"GET /v1/health HTTP/1.1\r\nConnection: close"
                                         b"\r\n\r\n")
    assert statuses == [200] and bodies[0]["ok"] is True
    assert server.loop.thread.is_alive()


@fuzz(120)
@given(st.lists(FRAGMENTS, min_size=1, max_size=8))
def test_the_server_answers_any_stream_with_4xx_or_closes_and_serves_the_next(
        server: Api, fragments: list[bytes]) -> None:
    statuses, bodies = _exchange(server, b"".join(fragments))
    for status, body in zip(statuses, bodies, strict=True):
        assert status in (200, 400, 404, 409, 410, 413, 503), (status, body)
        if status != 200:
            assert body["error"]["code"] != "internal" and body["error"]["message"]
    _serves(server)


@fuzz(200)
@given(st.sampled_from(OPS), json_values(10))
def test_the_server_answers_any_json_body_for_any_op_without_a_500(
        server: Api, op: str, body: Any) -> None:
    raw = json.dumps(body).encode()
    statuses, answers = _exchange(server, b"POST /v1/%s HTTP/1.1\r\nContent-Length: %d\r\n"
                                          b"Connection: close\r\n\r\n%s"
                                  % (op.encode(), len(raw), raw))
    assert len(statuses) == 1 and statuses[0] != 500, (statuses, answers)


def test_many_pipelined_requests_and_garbage_after_them(server: Api) -> None:
    health = b"GET /v1/health HTTP/1.1\r\n\r\n"
    statuses, _ = _exchange(server, health * 500 + b"\x00garbage\r\n\r\n" + health)
    assert statuses == [200] * 500 + [400]  # the garbage closes it: the last is not read
    _serves(server)


def test_a_connection_dropped_mid_request_leaves_the_server_serving(server: Api) -> None:
    for partial in (b"POST /v1/put HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"gro",
                    b"POST /v1/put HTTP/1.1\r\nContent-Le", b"P"):
        assert _exchange(server, partial) == ([], [])
    threads = [threading.Thread(target=_exchange, args=(server, b"G" * 100_000))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    _serves(server)


def test_an_allocation_for_an_unknown_node_is_a_4xx(server: Api) -> None:
    """``POST /v1/allocate {"group": "g1", "node": "zz", "load": 1}`` answers 500
    ``topology`` ("node zz is not in the topology"): a client's mistake, not the
    server's; it should be a 400 (or 404) bad_request naming the node."""
    raw = json.dumps({"group": "g1", "node": "zz", "load": 1}).encode()
    statuses, bodies = _exchange(server, b"POST /v1/allocate HTTP/1.1\r\nContent-Length: %d"
                                         b"\r\nConnection: close\r\n\r\n%s" % (len(raw), raw))
    assert 400 <= statuses[0] < 500, (statuses, bodies)
