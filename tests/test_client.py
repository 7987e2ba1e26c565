"""hakv.client.client against small real HTTP servers (127.0.0.1, port 0) that answer from a
script: failover, retries with the same client id/seq, error mapping, malformed answers.

``ScriptedServer`` is reused by tests/test_cli.py.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from hakv import errors
from hakv.client.client import (
    Client,
    Compare,
    DeleteResult,
    GetResult,
    KeyValue,
    Op,
    PutResult,
    endpoints_from_env,
    merge_status,
    parse_endpoints,
)
from hakv.client.connection import Connection as _Connection

# --------------------------------------------------------------------------- harness


@dataclass
class Reply:
    """What a scripted server answers: a status and a JSON body (or raw bytes), optionally
    after a delay; ``close`` drops the connection without an answer."""

    status: int = 200
    body: Any = field(default_factory=dict)
    delay: float = 0.0
    close: bool = False

    def encoded(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body).encode()


def ok(**body: Any) -> Reply:
    return Reply(200, body)


def err(code: str, status: int = 503, message: str = "scripted") -> Reply:
    retryable = code in ("no_quorum", "not_leader", "unavailable", "outcome_unknown")
    return Reply(status, {"error": {"code": code, "message": message, "retryable": retryable}})


KV = {"key": "k", "value": "v", "create_revision": 3, "mod_revision": 7, "version": 2}


@dataclass
class Seen:
    path: str
    body: dict[str, Any]
    peer: tuple[str, int]


class _QuietHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up on a delayed answer: expected here


class ScriptedServer:
    """An HTTP/1.1 keep-alive server on 127.0.0.1:0 answering from ``script``: a list of
    Reply (the last one repeats) or a function ``(path, body) -> Reply``."""

    def __init__(self, script: list[Reply] | Callable[[str, dict[str, Any]], Reply]) -> None:
        self.script = script
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b"{}"
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {"_raw": raw.decode("utf-8", "replace")}
                reply = outer._next(self.path, body, self.client_address)
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.close:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                data = reply.encoded()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = _answer
            do_GET = _answer

        self.httpd = _QuietHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.endpoint = f"127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def _next(self, path: str, body: dict[str, Any], peer: tuple[str, int]) -> Reply:
        with self._lock:
            self.seen.append(Seen(path, body, peer))
            if callable(self.script):
                return self.script(path, body)
            if len(self.script) > 1:
                return self.script.pop(0)
            return self.script[0]

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def refused_endpoint() -> str:
    """An address nobody listens on (bound to get a free port, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


@contextmanager
def servers(*scripts: list[Reply]) -> Iterator[list[ScriptedServer]]:
    started = [ScriptedServer(s) for s in scripts]
    for s in started:
        s.__enter__()
    try:
        yield started
    finally:
        for s in started:
            s.__exit__()


# --------------------------------------------------------------------------- endpoints


# Scripted servers speak plain HTTP: no TLS from the session (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("plain_http")


def test_parse_endpoints_forms() -> None:
    assert parse_endpoints("a:1, b:2,,http://c:3/") == ["a:1", "b:2", "c:3"]
    assert parse_endpoints(["[::1]:8202", "a:1", "a:1"]) == ["[::1]:8202", "a:1"]
    for bad in ("nohost", "h:0", "h:99999", ":80", "h:x"):
        with pytest.raises(errors.ConfigError, match="bad endpoint"):
            parse_endpoints(bad)


def test_endpoints_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAKV_ENDPOINTS", "127.0.0.1:1,127.0.0.1:2")
    assert endpoints_from_env() == ["127.0.0.1:1", "127.0.0.1:2"]
    assert Client().endpoints == ("127.0.0.1:1", "127.0.0.1:2")
    monkeypatch.delenv("HAKV_ENDPOINTS")
    with pytest.raises(errors.ConfigError, match="HAKV_ENDPOINTS"):
        Client()


# --------------------------------------------------------------------------- happy paths


def test_typed_results_and_wire_requests() -> None:
    def script(path: str, body: dict[str, Any]) -> Reply:
        return {
            "/v1/get": ok(kv=KV, revision=9),
            "/v1/put": ok(revision=10, prev=KV),
            "/v1/delete": ok(revision=11, deleted=1, prev=KV),
            "/v1/range": ok(kvs=[KV, {**KV, "key": "k2"}], more=True, revision=11),
        }[path]

    with ScriptedServer(script) as srv, Client(srv.endpoint, client_id="me") as c:
        assert c.get("220", "k") == KeyValue("k", "v", 3, 7, 2)
        assert c.put("220", "k", "v", if_mod_revision=0) == PutResult(10, KeyValue.from_wire(KV))
        assert c.delete("220", "k").deleted == 1
        r = c.range("220", "k", limit=2, serializable=True)
        assert [kv.key for kv in r.kvs] == ["k", "k2"] and r.more and r.revision == 11

    bodies = [(s.path, s.body) for s in srv.seen]
    assert bodies[0] == ("/v1/get", {"group": "220", "key": "k", "serializable": False})
    assert bodies[1][1] == {
        "group": "220",
        "key": "k",
        "value": "v",
        "if_mod_revision": 0,
        "client": "me",
        "seq": 1,
    }
    assert bodies[2][1]["seq"] == 2  # writes only advance seq
    assert "client" not in bodies[3][1]
    # one keep-alive connection for all four requests
    assert len({s.peer for s in srv.seen}) == 1


def test_txn_typed_results_follow_the_branch_that_ran() -> None:
    def script(path: str, body: dict[str, Any]) -> Reply:
        return ok(
            succeeded=False,
            revision=12,
            results=[{"kv": None}, {"deleted": 1, "prev": KV}],
        )

    with ScriptedServer(script) as srv, Client(srv.endpoint) as c:
        res = c.txn(
            "220",
            compare=[Compare.version("lock", "==", 0), Compare.value("x", "!=", None)],
            success=[Op.put("lock", "me")],
            failure=[Op.get("lock"), Op.delete("x")],
        )
    assert res.succeeded is False and res.revision == 12
    assert res.results == [GetResult(None), DeleteResult(12, 1, KeyValue.from_wire(KV))]
    sent = srv.seen[0].body
    assert sent["compare"] == [
        {"key": "lock", "target": "version", "op": "==", "value": 0},
        {"key": "x", "target": "value", "op": "!=", "value": None},
    ]
    assert sent["success"] == [{"op": "put", "key": "lock", "value": "me"}]
    assert sent["failure"] == [{"op": "get", "key": "lock"}, {"op": "delete", "key": "x"}]


def test_compare_and_op_builders_reject_nonsense() -> None:
    with pytest.raises(errors.BadRequestError):
        Compare("k", "colour", "==", "x")
    with pytest.raises(errors.BadRequestError):
        Compare.version("k", "=~", 1)  # type: ignore[arg-type]
    with pytest.raises(errors.BadRequestError):
        Compare.version("k", "==", "1")  # type: ignore[arg-type]
    with pytest.raises(errors.BadRequestError):
        Op("upsert", "k")
    with pytest.raises(errors.BadRequestError, match="lacks 'key'"):
        Op.from_dict({"op": "get"})
    assert Compare.from_dict({"key": "k", "target": "value", "op": "==", "value": "v"}) == (
        Compare.value("k", "==", "v")
    )


def test_request_goes_out_in_one_write(monkeypatch: pytest.MonkeyPatch) -> None:
    sends: list[bytes] = []
    real_send = _Connection.send

    def counting_send(self: _Connection, data: Any) -> None:
        sends.append(bytes(data))
        real_send(self, data)

    monkeypatch.setattr(_Connection, "send", counting_send)
    with ScriptedServer([ok(revision=1, prev=None)]) as srv, Client(srv.endpoint) as c:
        c.put("g", "k", "v" * 1000)
        c.put("g", "k", "v" * 1000)
    assert len(sends) == 2
    assert all(
        s.startswith(b"POST /v1/put HTTP/1.1\r\n")
        and s.endswith(b'"seq":' + str(i).encode() + b"}")
        for i, s in enumerate(sends, 1)
    )


def test_tcp_nodelay_is_set() -> None:
    with ScriptedServer([ok(kv=KV, revision=1)]) as srv, Client(srv.endpoint) as c:
        c.get("g", "k")
        conn = c._conn(srv.endpoint)
        assert conn.sock is not None
        assert conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_threads_get_their_own_connections_and_unique_seqs() -> None:
    with ScriptedServer([ok(revision=1, prev=None)]) as srv, Client(srv.endpoint) as c:
        threads = [
            threading.Thread(target=lambda: [c.put("g", "k", "v") for _ in range(20)])
            for _ in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    seqs = [s.body["seq"] for s in srv.seen]
    assert sorted(seqs) == list(range(1, 81))
    assert len({s.peer for s in srv.seen}) == 4


# --------------------------------------------------------------------------- failover / retry


def test_refused_endpoint_fails_over_to_the_next() -> None:
    dead = refused_endpoint()
    with ScriptedServer([ok(kv=KV, revision=1)]) as srv, Client([dead, srv.endpoint]) as c:
        t0 = time.monotonic()
        assert c.get("g", "k").value == "v"
        assert time.monotonic() - t0 < 0.5  # no backoff before an untried endpoint
        # the endpoint that answered is preferred from now on
        c.get("g", "k")
    assert len(srv.seen) == 2


def test_no_quorum_then_success_reuses_client_and_seq() -> None:
    script = [
        err("no_quorum"),
        err("not_leader"),
        err("outcome_unknown", 504),
        ok(revision=5, prev=None),
    ]
    with ScriptedServer(script) as srv, Client(srv.endpoint, client_id="c1") as c:
        assert c.put("g", "k", "v").revision == 5
        assert c.put("g", "k", "w").revision == 5  # the script's last answer repeats
    ids = [(s.body["client"], s.body["seq"]) for s in srv.seen]
    assert ids == [("c1", 1)] * 4 + [("c1", 2)]


def test_retry_rotates_between_endpoints() -> None:
    with servers([err("unavailable")], [ok(kv=KV, revision=1)]) as (a, b):
        with Client([a.endpoint, b.endpoint]) as c:
            assert c.get("g", "k").key == "k"
    assert len(a.seen) == 1 and len(b.seen) == 1


@pytest.mark.parametrize(
    ("code", "status", "cls"),
    [
        ("bad_request", 400, errors.BadRequestError),
        ("too_large", 413, errors.RequestTooLargeError),
        ("unknown_group", 404, errors.UnknownGroupError),
        ("not_found", 404, errors.NotFoundError),
        ("conflict", 409, errors.ConflictError),
        ("request_expired", 410, errors.RequestExpiredError),
        ("internal", 500, errors.InternalError),
    ],
)
def test_permanent_errors_are_raised_at_once(
    code: str, status: int, cls: type[errors.HakvError]
) -> None:
    with servers([err(code, status, message=f"the {code}")], [ok()]) as (a, b):
        with Client([a.endpoint, b.endpoint], timeout=5) as c:
            t0 = time.monotonic()
            with pytest.raises(cls, match=f"the {code}") as info:
                c.put("g", "k", "v")
            assert time.monotonic() - t0 < 1.0
    assert type(info.value) is cls
    assert len(a.seen) == 1 and b.seen == []


def test_write_timeout_is_outcome_unknown() -> None:
    with (
        ScriptedServer([err("outcome_unknown", 504)]) as srv,
        Client(srv.endpoint, timeout=0.4) as c,
    ):
        with pytest.raises(errors.OutcomeUnknownError, match="may or may not") as info:
            c.put("g", "k", "v")
    assert info.value.details["seq"] == 1
    assert len(srv.seen) >= 2 and {s.body["seq"] for s in srv.seen} == {1}


def test_write_without_answer_is_outcome_unknown() -> None:
    with ScriptedServer([Reply(delay=2.0)]) as srv, Client(srv.endpoint, timeout=0.3) as c:
        t0 = time.monotonic()
        with pytest.raises(errors.OutcomeUnknownError):
            c.delete("g", "k")
        assert time.monotonic() - t0 < 1.0


def test_read_without_answer_is_unavailable() -> None:
    with ScriptedServer([Reply(delay=2.0)]) as srv, Client(srv.endpoint, timeout=0.3) as c:
        with pytest.raises(errors.UnavailableError, match="timed out"):
            c.get("g", "k")


def test_write_refused_everywhere_is_unavailable_not_unknown() -> None:
    with Client([refused_endpoint(), refused_endpoint()], timeout=0.3) as c:
        with pytest.raises(errors.UnavailableError, match="no endpoint answered") as info:
            c.put("g", "k", "v")
    assert "connection refused" in info.value.message


def test_no_quorum_until_deadline_raises_no_quorum() -> None:
    with ScriptedServer([err("no_quorum", message="group g: 1 of 3 owners")]) as srv:
        with Client(srv.endpoint, timeout=0.3) as c:
            with pytest.raises(errors.NoQuorumError, match="1 of 3"):
                c.put("g", "k", "v")


def test_dropped_keepalive_connection_is_retried_on_a_fresh_one() -> None:
    script = [ok(kv=KV, revision=1), Reply(close=True), ok(kv=KV, revision=2)]
    with ScriptedServer(script) as srv, Client(srv.endpoint, timeout=2) as c:
        c.get("g", "k")
        assert c.get("g", "k").key == "k"
    assert len(srv.seen) == 3


@pytest.mark.parametrize(
    ("reply", "match"),
    [
        (Reply(200, b"<html>oops</html>"), "not JSON"),
        (Reply(200, [1, 2]), "expected a JSON object"),
        (Reply(502, {"detail": "bad gateway"}), "malformed error answer"),
        (Reply(200, {"kv": {"key": "k"}, "revision": 1}), "malformed answer to /v1/get"),
        (Reply(200, {"kv": {**KV, "version": "2"}, "revision": 1}), "version"),
    ],
)
def test_malformed_answers_are_internal_errors(reply: Reply, match: str) -> None:
    with ScriptedServer([reply]) as srv, Client(srv.endpoint) as c:
        with pytest.raises(errors.InternalError, match=match):
            c.get("g", "k")


def test_closed_client_refuses_calls() -> None:
    c = Client("127.0.0.1:1")
    c.close()
    with pytest.raises(RuntimeError, match="closed"):
        c.get("g", "k")


# --------------------------------------------------------------------------- status


def status_of(node: str, **groups: dict[str, Any]) -> dict[str, Any]:
    return {"node": node, "cluster": "c", "groups": groups}


def view(role: str, leader: str | None, term: int, commit: int, quorum: bool) -> dict[str, Any]:
    return {
        "owners": ["a", "b", "c"],
        "role": role,
        "leader": leader,
        "term": term,
        "commit_index": commit,
        "applied_index": commit,
        "revision": commit // 2,
        "quorum": quorum,
    }


def test_merge_status_prefers_the_leader_with_quorum() -> None:
    merged = merge_status(
        [
            ("e1", status_of("a", g=view("follower", "b", 3, 10, True)), None),
            ("e2", status_of("b", g=view("leader", "b", 3, 11, True)), None),
            # isolated, term inflated by failed elections: not the freshest view
            ("e3", status_of("c", g=view("candidate", None, 9, 8, False)), None),
            ("e4", None, "unavailable: connection refused"),
        ]
    )
    g = merged["groups"]["g"]
    assert (g["leader"], g["term"], g["commit_index"], g["quorum"]) == ("b", 3, 11, True)
    assert g["reported_by"] == "b" and set(g["members"]) == {"a", "b", "c"}
    assert [n["reachable"] for n in merged["nodes"]] == [True, True, True, False]
    assert merged["nodes"][3]["node"] is None and merged["cluster"] == "c"


def test_merge_status_without_leader_and_quorum() -> None:
    merged = merge_status(
        [
            ("e1", status_of("a", g=view("follower", None, 4, 10, False)), None),
            ("e2", status_of("b", g=view("candidate", None, 6, 9, False)), None),
        ]
    )
    g = merged["groups"]["g"]
    assert g["quorum"] is False and g["leader"] is None and g["reported_by"] == "a"


def test_cluster_status_asks_every_endpoint() -> None:
    dead = refused_endpoint()
    with servers(
        [ok(**status_of("a", g=view("leader", "a", 2, 5, True)))],
        [ok(**status_of("b", g=view("follower", "a", 2, 5, True)))],
    ) as (a, b):
        with Client([a.endpoint, b.endpoint, dead], timeout=1) as c:
            st = c.cluster_status()
            assert c.status(b.endpoint)["node"] == "b"
    assert st["groups"]["g"]["leader"] == "a"
    assert [n["reachable"] for n in st["nodes"]] == [True, True, False]
    assert "connection refused" in st["nodes"][2]["error"]
    assert a.seen[0].path == "/v1/status"
