"""The client API: HTTP/JSON over keep-alive connections (contract in docs/api.md).

Each request is one JSON object POSTed to ``/v1/<op>``. The handler validates it with
``hakv.codec``, then either serves it from a local group member or forwards it verbatim to
an owner of the group. Responses go out in one write (buffered handler, TCP_NODELAY):
RAFT-NOTES.md measured 44 ms per request otherwise.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from hakv import codec, errors

if TYPE_CHECKING:
    from hakv.node import Node

log = logging.getLogger("hakv.server")

_OPS = {"get", "put", "delete", "range", "txn", "status", "health", "notify", "changes",
        "allocate", "placement", "events", "ha"}
_MAX_LINE = 8192
_MAX_HEADERS = 64
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 409: "Conflict", 410: "Gone",
            413: "Payload Too Large", 500: "Internal Server Error",
            503: "Service Unavailable", 504: "Gateway Timeout"}


class _Forwarder:
    """Keep-alive connections to other nodes' APIs, one set per handler thread."""

    def __init__(self, timeout: float) -> None:
        self._local = threading.local()
        self._timeout = timeout

    def post(self, address: str, path: str, body: bytes) -> tuple[int, bytes]:
        pool: dict[str, http.client.HTTPConnection] = self._local.__dict__.setdefault("pool", {})
        for attempt in range(2):
            conn = pool.get(address)
            if conn is None:
                host, port = address.rsplit(":", 1)
                conn = http.client.HTTPConnection(host, int(port), timeout=self._timeout)
                pool[address] = conn
            try:
                conn.request("POST", path, body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                return resp.status, resp.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                pool.pop(address, None)
                if attempt:
                    raise
        raise OSError("unreachable")


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], node: Node) -> None:
        self.node = node
        self.forwarder = _Forwarder(timeout=node.request_timeout + 2.0)
        try:
            super().__init__(address, _Handler)
        except OSError as exc:
            raise errors.ConfigError(
                f"cannot listen on API address {address[0]}:{address[1]}: "
                f"{exc.strerror or exc}; is another process using this port?"
            ) from None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: ApiServer
    _headers: dict[bytes, bytes]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug("%s " + format, self.address_string(), *args)

    def handle_one_request(self) -> None:
        """One request/response cycle, parsed by hand.

        The stdlib's header parsing (email.parser) and response helpers cost more CPU per
        request than the Raft write itself on a leader; this keeps HTTP/1.1 keep-alive,
        Content-Length bodies and one write per response, and nothing else.
        """
        try:
            line = self.rfile.readline(_MAX_LINE + 1)
        except OSError:
            self.close_connection = True
            return
        if not line:
            self.close_connection = True
            return
        parts = line.split()
        headers: dict[bytes, bytes] = {}
        while True:
            header = self.rfile.readline(_MAX_LINE + 1)
            if header in (b"\r\n", b"\n", b""):
                break
            if len(headers) >= _MAX_HEADERS or len(header) > _MAX_LINE:
                self.close_connection = True
                return self._reply(400, errors.BadRequestError("request headers too large"))
            name, _, value = header.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if len(parts) != 3 or len(line) > _MAX_LINE or parts[0] not in (b"GET", b"POST"):
            self.close_connection = True
            return self._reply(400, errors.BadRequestError(
                "malformed request line; use POST /v1/<op> HTTP/1.1 with a JSON body"))
        method, target, version = parts
        connection = headers.get(b"connection", b"").lower()
        self.close_connection = connection == b"close" or (
            version == b"HTTP/1.0" and connection != b"keep-alive")
        self.path = target.decode("latin-1")
        self._headers = headers
        try:
            op = self._op()
            raw = self._body(method == b"GET" or op in ("status", "health"))
            status, payload = self._serve(op, raw)
        except errors.HakvError as exc:
            return self._reply(exc.http_status, exc)
        except Exception as exc:  # never let a bug kill the connection silently
            log.exception("internal error serving %s", self.path)
            return self._reply(500, errors.InternalError(
                f"internal error: {type(exc).__name__}: {exc}"))
        self._send(status, payload)

    def _reply(self, status: int, exc: errors.HakvError) -> None:
        self._send(status, json.dumps(exc.to_wire()).encode())

    def _send(self, status: int, payload: bytes) -> None:
        head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
                + ("Connection: close\r\n" if self.close_connection else "") + "\r\n")
        try:
            self.connection.sendall(head.encode("latin-1") + payload)
        except OSError:
            self.close_connection = True

    def _op(self) -> str:
        path = self.path.split("?", 1)[0].rstrip("/")
        if not path.startswith("/v1/") or path[4:] not in _OPS:
            raise errors.BadRequestError(
                f"unknown endpoint {self.path!r}; use POST /v1/<op> with op one of "
                f"{', '.join(sorted(_OPS))}"
            )
        return path[4:]

    def _body(self, allow_empty: bool) -> bytes:
        length_header = self._headers.get(b"content-length")
        if length_header is None:
            if allow_empty:
                return b""
            raise errors.BadRequestError("missing Content-Length: send a JSON object body")
        try:
            length = int(length_header)
        except ValueError:
            raise errors.BadRequestError("Content-Length is not a number") from None
        if length > codec.MAX_REQUEST_BYTES:
            # Drain so the keep-alive connection stays usable, then refuse.
            remaining = length
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 65536))
                if not chunk:
                    break
                remaining -= len(chunk)
            raise errors.RequestTooLargeError(
                f"request body of {length} bytes exceeds the {codec.MAX_REQUEST_BYTES}-byte limit"
            )
        return self.rfile.read(length) if length else b""

    def _serve(self, op: str, raw: bytes) -> tuple[int, bytes]:
        node = self.server.node
        if op == "health":
            return 200, json.dumps(node.health()).encode()
        if op == "status":
            return 200, json.dumps(node.status()).encode()
        body = _parse_object(raw)
        group = body.get("group")
        if not isinstance(group, str) or not group:
            raise errors.BadRequestError('field "group" is required: a group id string')
        if op == "allocate":
            return self._allocate(group, body, raw)
        if node.member(group) is None:
            spec = node.topology.group(group)  # UnknownGroupError if absent
            return self._forward(spec.owners, op, raw)
        result = node.serve(op, group, body)
        return 200, json.dumps(result, ensure_ascii=False).encode()

    def _allocate(self, group: str, body: dict[str, Any], raw: bytes) -> tuple[int, bytes]:
        """Allocations on node X are decided by the bridge on X only: forward there."""
        node = self.server.node
        target, load = body.get("node"), body.get("load")
        if not isinstance(target, str) or not target:
            raise errors.BadRequestError('field "node" is required: the node to place load on')
        if isinstance(load, bool) or not isinstance(load, int) or load < 0:
            raise errors.BadRequestError('field "load": expected an integer >= 0')
        node.topology.group(group)  # UnknownGroupError if absent
        if target != node.node_id:
            return self._forward((node.topology.node(target).id,), "allocate", raw)
        result = node.bridge.allocate(group, load)
        return 200, json.dumps(result).encode()

    def _forward(self, owners: tuple[str, ...], op: str, raw: bytes) -> tuple[int, bytes]:
        node = self.server.node
        failures = []
        for owner in owners:
            address = node.topology.node(owner).api_address
            try:
                return self.server.forwarder.post(address, f"/v1/{op}", raw)
            except (OSError, http.client.HTTPException) as exc:
                failures.append(f"{owner}: {exc}")
        raise errors.UnavailableError("no owner of the group answered: " + "; ".join(failures))


def _parse_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw.decode("utf-8")) if raw else None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise errors.BadRequestError(f"request body is not valid UTF-8 JSON: {exc}") from None
    if not isinstance(body, dict):
        raise errors.BadRequestError("request body must be a JSON object")
    return body


def serve_forever_in_thread(server: ApiServer) -> threading.Thread:
    server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.5}, name="api", daemon=True
    )
    thread.start()
    return thread
