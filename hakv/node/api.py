"""The client API: HTTP/JSON over keep-alive connections (contract in docs/api.md).

Each request is one JSON object POSTed to ``/v1/<op>``. Requests are read, parsed and
answered on the node's *raft thread*, in the same poller that carries the Raft traffic:

- a key-value request for a group this node hosts (get, range, put, delete, txn) is
  started there without blocking (``Service.begin``), and answered from the completion's
  callback right after the store commit that holds its result, in the same loop pass;
- everything that may block (forwarding to an owner through hakv.node.peer, HA
  operations, allocations, status) runs on a small worker pool (``Service.serve``), and
  its answer is handed back to the raft thread, which writes it.

Why: with a thread per connection, each write crossed two thread hand-overs and every
API thread fought the raft thread for the GIL; under 64 clients that, not the disk, bound
a leader (docs/benchmarks.md). Responses go out in one write with TCP_NODELAY
(RAFT-NOTES.md measured 44 ms per request otherwise). A connection has at most one request
in flight; pipelined requests wait in its buffer and are answered in order.
"""

from __future__ import annotations

import errno
import heapq
import itertools
import json
import logging
import re
import socket
import ssl
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from hakv import errors
from hakv.core import access, codec
from hakv.node import ui
from hakv.node.ports import Allocator, PeerApi, PeerUnreachable, Pending, Service, TopologyView
from hakv.raft.poller import ERROR, READ, WRITE
from hakv.security.tls import Channel, HandshakeFailed, RefusalLog

log = logging.getLogger("hakv.node.api")

_OPS = {"get", "put", "delete", "range", "txn", "status", "health", "notify", "changes",
        "allocate", "placement", "events", "ha", "watch",
        "lease_grant", "lease_keepalive", "lease_revoke", "lease_ttl",  # hakv.node.lessor
        "snapshot", "restore"}  # online backup and restore (hakv.core.backup)
_PATHS = {f"/v1/{op}".encode(): op for op in _OPS}
_ANSWER_ENCODER = json.JSONEncoder(ensure_ascii=False)  # one for all answers (thread-safe)
#: Served on the raft thread when the group is hosted here; the rest go to the workers.
_LOOP_OPS = frozenset({"get", "put", "delete", "range", "txn"})
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_MAX_LINE = 8192
_HEAD_TIMEOUT = 5.0  # s: a started handshake or request head must go on at least this often
_IDLE_TIMEOUT = 300.0  # s: an idle keep-alive connection is closed (clients reconnect)
_SWEEP_EVERY = 1.0
_MAX_CONNECTIONS = 4096
_MAX_HEADERS = 64
_MAX_HEAD = _MAX_LINE * (_MAX_HEADERS + 2)
_RECV = 65536
_RECV_ROUNDS = 4  # reads per readiness event and connection
_WORKERS = 64
#: Served without a client identity when the API is on TLS (load balancers, probes; the
#: status page itself, which holds no data: hakv.node.ui).
_OPEN_OPS = frozenset({"health", "ui"})
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
            404: "Not Found", 409: "Conflict", 410: "Gone",
            413: "Payload Too Large", 500: "Internal Server Error",
            503: "Service Unavailable", 504: "Gateway Timeout"}
_READ, _WRITE, _ERROR = READ, WRITE, ERROR


class _Request:
    """One parsed request: what its answer needs besides the payload."""

    __slots__ = ("op", "raw", "close", "on_behalf", "authorization")

    def __init__(self, op: str, raw: bytes, close: bool, on_behalf: bytes | None = None,
                 authorization: bytes | None = None) -> None:
        self.op, self.raw, self.close = op, raw, close
        self.on_behalf = on_behalf  # X-Hakv-On-Behalf-Of, as sent
        self.authorization = authorization  # Authorization, as sent

    def bearer(self) -> str | None:
        """The bearer token of the Authorization header, if any."""
        value = self.authorization
        if not value or not value[:7].lower() == b"bearer ":
            return None
        return value[7:].strip().decode("latin-1")

    def caller(self, identity: access.Identity | None) -> access.Identity | None:
        """Whose request this is: the connection's identity, or, when that is a node
        forwarding for someone, the one it names (a user cannot name another)."""
        if identity is None or identity[0] != "node" or not self.on_behalf:
            return identity
        kind, _, name = self.on_behalf.decode("latin-1").partition("/")
        return (kind, name) if kind in ("user", "node", "token") and name else identity


class ApiServer:
    """The node's API listener and connections, driven by the raft thread's poller.

    Binds in the constructor (so a taken port is a startup error); ``attach`` starts
    serving on a poller; every other method runs in the thread that polls it.

    ``me`` is this node; ``service`` serves the requests for the groups hosted here;
    ``view`` finds the owners of the others, to which ``peers`` forwards them (and an
    allocation to the node it is about, whose bridge decides it: ``allocator`` here).
    """

    def __init__(self, address: tuple[str, int], me: str, service: Service,
                 view: TopologyView, peers: PeerApi, allocator: Allocator,
                 tls: ssl.SSLContext | None = None) -> None:
        self.me = me
        #: With TLS every connection is HTTPS; a request other than ``health`` must come
        #: with a client certificate of the cluster CA (401 ``unauthenticated`` otherwise).
        self.tls = tls
        self._refused = RefusalLog(log, "API TLS")  # dropped connections, throttled
        #: The users and roles the access check reads (hakv.core.access; the Node's,
        #: from its copy of the cluster records); deny-all but root and nodes until set.
        self.policy: Callable[[], access.Policy] = access.Policy
        self.service = service
        self.view = view
        self.peers = peers
        self.allocator = allocator
        #: GET /ui/status: every node's status, merged (the web status page, hakv.node.ui).
        self.ui = ui.StatusPage(me, service, view, peers)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind(address)
            self._sock.listen(256)
        except OSError as exc:
            self._sock.close()
            raise errors.ConfigError(
                f"cannot listen on API address {address[0]}:{address[1]}: "
                f"{exc.strerror or exc}; is another process using this port?"
            ) from None
        self._sock.setblocking(False)
        self.address = self._sock.getsockname()
        self._poller: Any = None
        self._post: Callable[[Callable[[], Any]], None] | None = None
        self._conns: dict[int, _Connection] = {}
        self._deadlines: list[tuple[float, int, int, _Connection]] = []  # loop-served
        self._tickets = itertools.count()  # orders equal deadlines in the heap
        self._workers = ThreadPoolExecutor(_WORKERS, thread_name_prefix="api")
        self._closed = False
        self._next_sweep = 0.0
        #: Long-poll watches go to the node's watch hub (hakv.node.watch.WatchHub:
        #: ``begin(raw, reply)``), which parks them without holding a worker.
        self.watches: Any = None
        #: HAKV_UNSAFE_ACCESS_FORWARDED (hakv.failpoints; tests only): forwarded requests
        #: skip the caller's grants, at the forwarding node and at the owner.
        self.unsafe_access_forwarded = False
        #: GET /metrics and the request latencies (hakv.node.metrics.NodeMetrics:
        #: ``render()``, ``observe_request(op, group, seconds)``); None: neither.
        self.metrics: Any = None

    def attach(self, poller: Any, post: Callable[[Callable[[], Any]], None]) -> None:
        """Serve on ``poller``; ``post(fn)`` must run ``fn`` in the polling thread soon."""
        self._poller, self._post = poller, post
        poller.subscribe(self._sock.fileno(), self._on_accept, _READ | _ERROR)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._poller is not None:
            self._poller.unsubscribe(self._sock.fileno())
        self._sock.close()
        for conn in list(self._conns.values()):
            conn.close()
        self._workers.shutdown(wait=False, cancel_futures=True)
        self.ui.close()

    # -- the loop's side ----------------------------------------------------------------

    def expire(self, now: float) -> float | None:
        """Answer the loop-served requests whose time is up, and once a second close the
        connections that stalled; the next deadline, if any."""
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            _, _, serial, conn = heapq.heappop(heap)
            conn.expire(serial)
        if self._conns and now >= self._next_sweep:
            self._sweep(now)
        nxt = heap[0][0] if heap else None
        if self._conns:
            nxt = self._next_sweep if nxt is None else min(nxt, self._next_sweep)
        return nxt

    def _sweep(self, now: float) -> None:
        """Close connections that sent part of a handshake or request head and then
        nothing for ``_HEAD_TIMEOUT`` s (a slow loris, a stalled stranger: each holds a
        descriptor), and idle keep-alive ones after ``_IDLE_TIMEOUT`` s. A request in
        flight (a parked watch included) is never cut."""
        self._next_sweep = now + _SWEEP_EVERY
        for conn in list(self._conns.values()):
            if conn.busy:
                continue
            idle = now - conn.last_activity
            if idle > _IDLE_TIMEOUT or (idle > _HEAD_TIMEOUT and conn.half_open):
                conn.close()

    def _on_accept(self, _fd: int, _events: int) -> None:
        while not self._closed:
            try:
                sock, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("cannot accept API connections: %s", exc)
                return
            if len(self._conns) >= _MAX_CONNECTIONS:  # shed: never grow without bound
                sock.close()
                self._refused("dropped a connection",
                              f"more than {_MAX_CONNECTIONS} API connections")
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(self, sock)
            self._conns[conn.fd] = conn
            self._poller.subscribe(conn.fd, conn.on_event, _READ | _ERROR)

    def _forget(self, conn: _Connection) -> None:
        if self._conns.get(conn.fd) is conn:
            del self._conns[conn.fd]
            self._poller.unsubscribe(conn.fd)

    def _watch(self, conn: _Connection, events: int) -> None:
        if conn.closed:
            return  # never subscribe a closed descriptor: poll(2) reports it at once, always
        if events != conn.watching:
            conn.watching = events
            self._poller.subscribe(conn.fd, conn.on_event, events | _ERROR)

    def _admit(self, conn: _Connection, request: _Request
               ) -> tuple[access.Identity | None, dict[str, Any] | None]:
        """The one access check of every request (docs/security.md): who is asking (and
        the request body, when the check had to parse it), or a 401/403. Without TLS there
        are no identities and no checks (--insecure)."""
        if self.tls is None or request.op in _OPEN_OPS:
            return None, None
        if conn.identity is None:
            token = request.bearer()
            who = self.policy().token_identity(token, time.time()) if token else None
            if who is None:
                raise errors.UnauthenticatedError(
                    "the bearer token is unknown, expired or revoked: ask for a new one "
                    "(`hakv token create USER`)" if token else
                    f"{request.op} needs a client certificate of this cluster's CA (--cacert, "
                    "--cert and --key; env HAKV_CACERT, HAKV_CERT, HAKV_KEY; curl: the same "
                    "flags; make one with `hakv certs client NAME`) or a bearer token "
                    "(--token, HAKV_TOKEN; curl -H 'Authorization: Bearer ...')")
        else:
            who = request.caller(conn.identity)
            if self.unsafe_access_forwarded:
                who = conn.identity  # FAILPOINT: the forwarding node's rights, not its caller's
        if who is None or who[0] == "node" or who == ("user", access.ROOT):
            return who, None
        body: dict[str, Any] = {}
        group = None
        op = "status" if request.op == "ui_status" else request.op  # the page's data: status
        if op not in ("status", "health"):
            body = _parse_object(request.raw)
            group = _group_of(body)
            if self.unsafe_access_forwarded and group is not None \
                    and not self.service.hosts(group):
                return who, body  # FAILPOINT: "the owner will check it"
        refused = access.decide(who, op, group, body, self.policy())
        if refused:
            raise errors.PermissionDeniedError(refused, user=who[1])
        return who, body if group is not None else None

    def _start(self, conn: _Connection, serial: int, request: _Request) -> None:
        """Serve one request: on the loop if it can be, else on a worker."""
        who, parsed = self._admit(conn, request)
        on_behalf = f"{who[0]}/{who[1]}" if who is not None and who[0] != "node" else None
        service = self.service
        if request.op in _LOOP_OPS:
            body = parsed if parsed is not None else _parse_object(request.raw)
            group = _group_of(body)
            if service.hosts(group):
                started = service.begin(request.op, group, body,
                                        on_done=self._on_done(conn, serial, request.op, group))
                if isinstance(started, dict):
                    conn.answer(serial, 200, _json(started))
                    return
                conn.wait_for(serial, started)
                heapq.heappush(self._deadlines,
                               (started.deadline, next(self._tickets), serial, conn))
                return
        if request.op == "health":
            conn.answer(serial, 200, _json(service.health()))
            return
        if request.op == "metrics":
            self._workers.submit(self._scrape, conn, serial)
            return
        if request.op == "ui":
            conn.answer(serial, 200, ui.PAGE, ui.PAGE_TYPE, ui.PAGE_HEADERS)
            return
        if request.op == "ui_status":
            self._workers.submit(self._ui_status, conn, serial)
            return
        post = self._post
        assert post is not None
        if request.op == "watch" and self.watches is not None:
            abandon = self.watches.begin(request.raw, lambda status, payload: post(
                lambda: conn.answer(serial, status, payload)), on_behalf)
            if abandon is not None:
                conn.on_abandon(serial, abandon)
            return

        def work() -> None:
            status, payload = _serve_blocking(self, request.op, request.raw, on_behalf)
            post(lambda: conn.answer(serial, status, payload))

        self._workers.submit(work)

    def _on_done(self, conn: _Connection, serial: int, op: str,
                 group: str) -> Callable[[], None]:
        """The callback answering a loop-served request (raft thread), timing it for the
        metrics when there are any (only requests that wait: a serializable read is
        answered at once and not timed)."""
        metrics = self.metrics
        if metrics is None:
            return lambda: conn.finish(serial)
        started = time.perf_counter()

        def done() -> None:
            metrics.observe_request(op, group, time.perf_counter() - started)
            conn.finish(serial)

        return done

    def _ui_status(self, conn: _Connection, serial: int) -> None:
        """GET /ui/status (worker thread): the web status page's data (hakv.node.ui)."""
        post = self._post
        assert post is not None
        status, payload = _answered(lambda: (200, _json(self.ui.cluster_status())),
                                    "serving /ui/status")
        post(lambda: conn.answer(serial, status, payload, "application/json", ui.DATA_HEADERS))

    def _scrape(self, conn: _Connection, serial: int) -> None:
        """GET /metrics (worker thread): the node's metrics in the Prometheus text format."""
        post = self._post
        assert post is not None
        text = "text/plain; charset=utf-8"
        if self.metrics is None:
            status, payload, content_type = 404, b"this node has no metrics\n", text
        else:
            try:
                payload, content_type = self.metrics.render()
                status = 200
            except Exception:
                log.exception("internal error rendering /metrics")
                status, payload, content_type = 500, b"internal error rendering the metrics\n", text
        post(lambda: conn.answer(serial, status, payload, content_type))


class _Connection:
    """One client connection: bytes in, at most one request in flight, bytes out."""

    def __init__(self, server: ApiServer, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.fd = sock.fileno()
        self.channel = Channel(server.tls, server_side=True) if server.tls else None
        self.identity: tuple[str, str] | None = None  # ("user"|"node", name), with TLS
        self.last_activity = time.monotonic()  # bytes in or an answer out (the sweep)
        self._in = bytearray()
        self._out = bytearray()
        self._discard = 0  # body bytes of a refused request still to skip
        self._serial = 0  # of the request in flight (0: none)
        self._next_serial = 0
        self._pending: Pending | None = None
        self._abandon: Callable[[], None] | None = None  # of a long-poll watch in flight
        self._resolved_early = 0  # serial whose completion resolved inside Service.begin
        self._close_after = False
        self._keep_alive_1_0 = False  # an HTTP/1.0 client asked for keep-alive
        self._reading = True
        self._eof = False  # the client shut its sending side down
        self._starting = False  # inside _next_request (answers must not recurse into it)
        self._closed = False
        self.watching = _READ  # the events the poller reports for this connection

    def on_event(self, _fd: int, events: int) -> None:
        if self._closed:
            return
        try:
            if events & _WRITE:
                self._flush()
                self._close_if_done()
            if events & _READ and not self._closed:
                self._receive()
            elif events & _ERROR and not self._closed:
                self.close()
        except Exception:  # a bug here must cost this connection, never the raft thread
            log.exception("internal error on an API connection; closing it")
            self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def busy(self) -> bool:
        """A request is in flight or its answer is still going out."""
        return bool(self._serial or self._out)

    @property
    def half_open(self) -> bool:
        """Part of a handshake or of a request came in, and not the rest."""
        return bool(self._in) or (self.channel is not None and not self.channel.established)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._serial = 0
        self._pending = None
        abandon, self._abandon = self._abandon, None
        if abandon is not None:
            abandon()  # a parked watch leaves the hub now, not at its timeout
        self.server._forget(self)
        try:
            self.sock.close()
        except OSError:
            pass

    # -- requests in --------------------------------------------------------------------

    def _receive(self) -> None:
        for _ in range(_RECV_ROUNDS):  # then the other connections' turn (level-triggered)
            try:
                chunk = self.sock.recv(_RECV)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.close()
                return
            if not chunk:
                # The client shut down its side: answer what it sent, then close; but a
                # long-poll watch is abandoned (a watcher that hangs up wants no answer).
                if self._abandon is not None:
                    self.close()
                    return
                self._eof = True
                self._reading = False
                break
            received = len(chunk)
            self.last_activity = time.monotonic()
            if self.channel is not None:
                chunk = self._decrypt(chunk)
                if self._closed:
                    return
            if self._discard:
                skipped = min(self._discard, len(chunk))
                self._discard -= skipped
                chunk = chunk[skipped:]
            self._in += chunk
            if received < _RECV:
                break
        self._next_request()
        if self._closed:
            return
        if self._eof:
            self._close_if_done()
            if self._closed:
                return  # (re-subscribing a closed descriptor made the raft loop spin)
        elif self._serial and len(self._in) > codec.MAX_REQUEST_BYTES + _MAX_HEAD:
            self._reading = False  # a client pipelining too far ahead: wait for the answer
        self.server._watch(self, (_READ if self._reading else 0) | (_WRITE if self._out else 0))

    def _decrypt(self, ciphertext: bytes) -> bytes:
        """The plaintext in ``ciphertext`` (TLS); handshake replies are queued to send."""
        channel = self.channel
        assert channel is not None
        try:
            plaintext = channel.receive(ciphertext)
        except HandshakeFailed as exc:
            self.server._refused("dropped a connection", str(exc))
            try:  # the TLS alert, so the client learns why (best effort, never blocks)
                self.sock.send(channel.outgoing())
            except OSError:
                pass
            self.close()
            return b""
        if self.identity is None and channel.established:
            self.identity = channel.peer()
        self._out += channel.outgoing()
        if channel.closed:  # close_notify: as an EOF
            self._eof = True
            self._reading = False
        return plaintext

    def _close_if_done(self) -> None:
        """After the client's EOF: close once nothing is in flight or waiting to be sent
        (an incomplete request left in the buffer can no longer complete)."""
        if self._eof and not self._serial and not self._out and not self._closed:
            self.close()

    def _next_request(self) -> None:
        """Start the next complete requests in the buffer, one at a time, in order.

        Iterative: a request answered at once (health, a serializable read, an error) must
        not start the next one from inside its answer, or a long pipeline would recurse
        once per request (found by tests/test_api_connections.py)."""
        if self._starting:
            return
        self._starting = True
        try:
            self._start_buffered()
        finally:
            self._starting = False

    def _start_buffered(self) -> None:
        while not self._serial and not self._closed and self._in and not self._close_after:
            parsed = self._parse()
            if parsed is None:
                return
            self._next_serial += 1
            self._serial = serial = self._next_serial
            try:
                if isinstance(parsed, errors.HakvError):
                    raise parsed
                self.server._start(self, serial, parsed)
            except errors.HakvError as exc:
                self.answer(serial, exc.http_status, _json(exc.to_wire()))
            except Exception as exc:  # never let a bug kill the loop
                log.exception("internal error serving a request")
                self.answer(serial, 500, _json(errors.InternalError(
                    f"internal error: {type(exc).__name__}: {exc}").to_wire()))

    def _parse(self) -> _Request | errors.HakvError | None:
        """The next request of the buffer, an error to answer with, or None (incomplete).

        The request line and headers are parsed by hand: the stdlib's parser
        (email.parser) cost more CPU per request than the Raft write itself."""
        buf = self._in
        # The head ends at the first blank line, CRLF or bare LF (an earlier CRLFCRLF
        # search swallowed a bare-LF request's successor: found by tests/test_fuzz_api.py).
        found = _HEAD_END.search(buf)
        end, sep = (found.start(), found.end() - found.start()) if found else (-1, 0)
        if end < 0:
            if len(buf) > _MAX_HEAD:
                self._close_after = True
                self._in.clear()
                return errors.BadRequestError("request headers too large")
            return None
        lines = bytes(buf[:end]).split(b"\n")
        line = lines[0].rstrip(b"\r")
        headers: dict[bytes, bytes] = {}
        for raw_header in lines[1:]:
            if len(headers) >= _MAX_HEADERS or len(raw_header) > _MAX_LINE:
                self._close_after = True
                self._in.clear()
                return errors.BadRequestError("request headers too large")
            name, _, value = raw_header.partition(b":")
            name, value = name.strip().lower(), value.strip()
            if name == b"content-length" and headers.get(name, value) != value:
                self._close_after = True
                self._in.clear()
                return errors.BadRequestError("two different Content-Length headers")
            headers[name] = value
        parts = line.split()
        if len(parts) != 3 or len(line) > _MAX_LINE or parts[0] not in (b"GET", b"POST"):
            self._close_after = True
            self._in.clear()
            return errors.BadRequestError(
                "malformed request line; use POST /v1/<op> HTTP/1.1 with a JSON body")
        method, target, version = parts
        connection = headers.get(b"connection", b"").lower()
        close = connection == b"close" or (version == b"HTTP/1.0" and connection != b"keep-alive")
        self._keep_alive_1_0 = version == b"HTTP/1.0" and not close
        if b"transfer-encoding" in headers:
            # Not part of the API; ignoring it would let a proxy in front and this server
            # disagree on where a request ends (request smuggling, RFC 9112 6.1).
            self._close_after = True
            self._in.clear()
            return errors.BadRequestError(
                "Transfer-Encoding is not supported: send a Content-Length body")
        length_header = headers.get(b"content-length")
        if length_header is None:
            length = 0
        elif length_header.isdigit() and len(length_header) <= 18:
            length = int(length_header)
        else:  # int() would take "+2", "0_2", " -0"
            self._close_after = True
            self._in.clear()
            return errors.BadRequestError("Content-Length is not a number")
        start = end + sep
        if length > codec.MAX_REQUEST_BYTES:
            # Skip the body as it arrives, so the keep-alive connection stays usable.
            have = len(buf) - start
            del buf[: start + min(have, length)]
            self._discard = max(0, length - have)
            self._close_after = close
            return errors.RequestTooLargeError(
                f"request body of {length} bytes exceeds the {codec.MAX_REQUEST_BYTES}-byte limit")
        if len(buf) < start + length:
            return None
        raw = bytes(buf[start: start + length])
        del buf[: start + length]
        self._close_after = close
        if target.split(b"?", 1)[0] == b"/metrics":
            if method != b"GET":
                return errors.BadRequestError("use GET /metrics")
            return _Request("metrics", raw, close)
        page = ui.PATHS.get(target.split(b"?", 1)[0])
        if page is not None:  # the web status page and its data (hakv.node.ui)
            if method != b"GET":
                return errors.BadRequestError(f"use GET {target.decode('latin-1')}")
            return _Request(page, raw, close, None, headers.get(b"authorization"))
        op = _PATHS.get(target) or _PATHS.get(target.split(b"?", 1)[0].rstrip(b"/"))
        if op is None:
            return errors.BadRequestError(
                f"unknown endpoint {target.decode('latin-1')!r}; use POST /v1/<op> with op one "
                f"of {', '.join(sorted(_OPS))}")
        if length_header is None and not (method == b"GET" or op in ("status", "health")):
            return errors.BadRequestError("missing Content-Length: send a JSON object body")
        return _Request(op, raw, close, headers.get(b"x-hakv-on-behalf-of"),
                        headers.get(b"authorization"))

    # -- answers out --------------------------------------------------------------------

    def on_abandon(self, serial: int, abandon: Callable[[], None]) -> None:
        """Call ``abandon`` if the client goes away before request ``serial`` is
        answered (a watch the hub parks)."""
        if serial == self._serial and not self._closed:
            self._abandon = abandon

    def wait_for(self, serial: int, pending: Pending) -> None:
        if serial != self._serial:
            return
        self._pending = pending
        if self._resolved_early == serial:  # resolved before begin() returned
            self._resolved_early = 0
            self.finish(serial)

    def finish(self, serial: int) -> None:
        """The completion of the request in flight resolved (raft thread)."""
        if serial != self._serial:
            return  # answered already (timed out) or the connection is gone
        pending = self._pending
        if pending is None:
            self._resolved_early = serial  # wait_for() answers it
            return
        status, payload = _answered(lambda: (200, _json(pending.finish())),
                                    "finishing a request")
        self.answer(serial, status, payload)

    def expire(self, serial: int) -> None:
        pending = self._pending
        if serial != self._serial or pending is None:
            return
        exc = pending.timed_out()
        self.answer(serial, exc.http_status, _json(exc.to_wire()))

    def answer(self, serial: int, status: int, payload: bytes,
               content_type: str = "application/json", extra_headers: str = "") -> None:
        """Send an answer; ``extra_headers``: more CRLF-terminated header lines."""
        if serial != self._serial or self._closed:
            return
        self.last_activity = time.monotonic()
        self._serial = 0
        self._pending = None
        self._abandon = None
        closing = self._close_after
        connection = ("Connection: close\r\n" if closing else
                      "Connection: keep-alive\r\n" if self._keep_alive_1_0 else "")
        head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {len(payload)}\r\n"
                f"{extra_headers}{connection}\r\n")
        data = head.encode("latin-1") + payload
        if self.channel is not None:
            self.channel.send(data)
            self._out += self.channel.outgoing()
        else:
            self._out += data
        self._flush()
        if self._closed or closing:
            return
        if not self._reading and not self._eof:
            self._reading = True
            self.server._watch(self, _READ | (_WRITE if self._out else 0))
        self._next_request()
        self._close_if_done()

    def _flush(self) -> None:
        while self._out:
            try:
                sent = self.sock.send(self._out)
            except (BlockingIOError, InterruptedError):
                self.server._watch(self, (_READ if self._reading else 0) | _WRITE)
                return
            except OSError:
                self.close()
                return
            del self._out[:sent]
        if self._close_after and not self._serial:
            self.close()
            return
        self.server._watch(self, _READ if self._reading else 0)


# --------------------------------------------------------------------------- blocking ops


def _serve_blocking(server: ApiServer, op: str, raw: bytes,
                    on_behalf: str | None = None) -> tuple[int, bytes]:
    """A request that may block (worker thread): (status, payload), errors included."""
    return _answered(lambda: _serve(server, op, raw, on_behalf), f"serving /v1/{op}")


def _answered(serve: Callable[[], tuple[int, bytes]], what: str) -> tuple[int, bytes]:
    """``serve()``'s (status, payload), or the answer of its error: a HakvError as
    itself, anything else logged and answered as an internal error (a bug never leaves a
    request unanswered)."""
    try:
        return serve()
    except errors.HakvError as exc:
        return exc.http_status, _json(exc.to_wire())
    except Exception as exc:
        log.exception("internal error %s", what)
        return 500, _json(errors.InternalError(
            f"internal error: {type(exc).__name__}: {exc}").to_wire())


def _serve(server: ApiServer, op: str, raw: bytes,
           on_behalf: str | None = None) -> tuple[int, bytes]:
    service = server.service  # (health is answered on the loop: ApiServer._start)
    if op == "status":
        return 200, _json(service.status())
    body = _parse_object(raw)
    group = _group_of(body)
    if op == "allocate":
        return _allocate(server, group, body, raw, on_behalf)
    cursor = body.get("cursor") if op == "snapshot" else None
    if isinstance(cursor, str) and "/" in cursor and cursor.split("/", 1)[0] != server.me:
        # The next page of a snapshot: only the node that streams it has it.
        node = cursor.split("/", 1)[0]
        topology = server.view.topology
        if not topology.has_node(node):
            raise errors.NotFoundError(f"snapshot cursor names node {node[:64]!r}, which "
                                       "is not a node of this cluster")
        return _forward(server, (node,), op, raw, on_behalf)
    if not service.hosts(group):
        spec = server.view.topology.group(group)  # UnknownGroupError if absent
        return _forward(server, spec.owners, op, raw, on_behalf)
    return 200, _json(service.serve(op, group, body))


def _allocate(server: ApiServer, group: str, body: dict[str, Any],
              raw: bytes, on_behalf: str | None) -> tuple[int, bytes]:
    """Allocations on node X are decided by the bridge on X only: forward there."""
    target, load = body.get("node"), body.get("load")
    if not isinstance(target, str) or not target:
        raise errors.BadRequestError('field "node" is required: the node to place load on')
    if isinstance(load, bool) or not isinstance(load, int) or load < 0:
        raise errors.BadRequestError('field "load": expected an integer >= 0')
    topology = server.view.topology
    topology.group(group)  # UnknownGroupError if absent
    if not topology.has_node(target):
        raise errors.BadRequestError(f'field "node": {target!r} is not a node of the cluster')
    if target != server.me:
        return _forward(server, (topology.node(target).id,), "allocate", raw, on_behalf)
    return 200, _json(server.allocator.allocate(group, load))


def _forward(server: ApiServer, owners: tuple[str, ...], op: str,
             raw: bytes, on_behalf: str | None = None) -> tuple[int, bytes]:
    topology = server.view.topology
    failures = []
    for owner in owners:
        address = topology.node(owner).api_address
        try:
            return server.peers.post(address, op, raw, on_behalf=on_behalf)
        except PeerUnreachable as exc:
            failures.append(f"{owner}: {exc}")
    raise errors.UnavailableError("no owner of the group answered: " + "; ".join(failures))


def _json(body: Any) -> bytes:
    return _ANSWER_ENCODER.encode(body).encode()


def _group_of(body: dict[str, Any]) -> str:
    group = body.get("group")
    if not isinstance(group, str) or not group:
        raise errors.BadRequestError('field "group" is required: a group id string')
    return group


def _parse_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw.decode("utf-8")) if raw else None
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        # ValueError: also an integer of over 4300 digits; RecursionError: deep nesting.
        raise errors.BadRequestError(f"request body is not valid UTF-8 JSON: {exc}") from None
    if not isinstance(body, dict):
        raise errors.BadRequestError("request body must be a JSON object")
    return body


__all__ = ["ApiServer"]
