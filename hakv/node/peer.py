"""The one node-to-node HTTP client: requests a node makes to other nodes' client APIs.

Three callers: the API server forwards a request for a group it does not host to an
owner (and an allocation to the node it is about); the HA manager asks a candidate's
bridge for a group's load; the prober checks a silent peer's ``/v1/health``.

Built on hakv.client.connection, the client library's connection: keep-alive HTTP/1.1,
each request in one ``send`` with TCP_NODELAY (neither Nagle nor delayed ACKs add
latency), answers parsed without ``http.client``'s costly header parser. Connections are
kept per thread and address (a ``Connection`` carries one request at a time; the API's
workers and the probers each have their own), and closed by ``close`` in that thread.

A kept connection the peer closed meanwhile (idle keep-alive, a restart) fails on its
next request before any answer: that request is sent once more on a fresh connection. A
fresh connection that fails, or any timeout, is not retried here: the peer is down or
slow, and the caller decides (the API server tries the next owner; the prober backs off).
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading

from hakv.client.connection import (
    CONNECT_TIMEOUT_MAX,
    ConnectFailed,
    Connection,
    Malformed,
    describe_oserror,
    ensure_connected,
    exchange,
    split_endpoint,
)
from hakv.errors import HakvError
from hakv.node.ports import Abort, PeerUnreachable

__all__ = ["Peers", "PeerUnreachable"]


#: The header a node forwards a request with, naming the caller it forwards for.
ON_BEHALF_HEADER = "X-Hakv-On-Behalf-Of"


class Peers:
    """Keep-alive connections to other nodes' APIs (the ``PeerApi`` port)."""

    def __init__(self, timeout: float, connect_timeout: float = CONNECT_TIMEOUT_MAX,
                 tls: ssl.SSLContext | None = None) -> None:
        self.timeout = timeout  # default per-request timeout
        self.tls = tls  # the node's client context (its own certificate): HTTPS to peers
        self.connect_timeout = connect_timeout
        self._local = threading.local()

    def _pool(self) -> dict[str, Connection]:
        pool: dict[str, Connection] | None = getattr(self._local, "pool", None)
        if pool is None:
            pool = self._local.pool = {}
        return pool

    def post(self, address: str, op: str, body: bytes,
             timeout: float | None = None, on_behalf: str | None = None,
             abort: Abort | None = None) -> tuple[int, bytes]:
        """POST ``body`` to ``/v1/<op>`` at ``address``: (HTTP status, raw answer).
        Raises PeerUnreachable when no answer came. ``on_behalf``: the caller forwarded
        for (``"user/<name>"``; hakv.core.access), sent as ``X-Hakv-On-Behalf-Of``.
        ``abort``: another thread may break the request off (PeerUnreachable)."""
        timeout = self.timeout if timeout is None else timeout
        headers = f"{ON_BEHALF_HEADER}: {on_behalf}\r\n" if on_behalf else ""
        pool = self._pool()
        path = f"/v1/{op}"
        for _attempt in range(2):
            if abort is not None and abort.fired:
                raise PeerUnreachable(f"{address}: abandoned (the caller went away)")
            conn = pool.get(address)
            if conn is None:
                try:
                    host, port = split_endpoint(address)
                except HakvError as exc:
                    raise PeerUnreachable(f"{address}: {exc.message}") from None
                conn = pool[address] = Connection(host, port, tls=self.tls)
            reused = conn.sock is not None
            try:
                if abort is not None:  # connected first: the abort needs the socket
                    ensure_connected(conn, min(timeout, self.connect_timeout))
                    abort.attach(conn.sock)
                return exchange(conn, path, body, timeout,
                                min(timeout, self.connect_timeout), headers)
            except ConnectFailed as exc:
                pool.pop(address, None)
                raise PeerUnreachable(f"{address}: {exc}") from None
            except Malformed as exc:
                pool.pop(address, None)
                raise PeerUnreachable(f"{address}: malformed answer: {exc}") from None
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                pool.pop(address, None)
                if not reused or isinstance(exc, TimeoutError | socket.timeout):
                    raise PeerUnreachable(f"{address}: {describe_oserror(exc)}") from None
                # A kept connection the peer had closed: once more on a fresh one.
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def healthy(self, address: str, node: str, timeout: float) -> bool:
        """Whether ``address`` answers ``/v1/health`` (200) as node ``node``. No answer, an
        error or another node there is False (the prober counts it as a failed probe)."""
        try:
            status, raw = self.post(address, "health", b"{}", timeout)
            answer = json.loads(raw or b"{}")
        except (PeerUnreachable, ValueError):
            return False
        return status == 200 and isinstance(answer, dict) and answer.get("node") == node

    def close(self) -> None:
        """Close the calling thread's connections."""
        pool = self._pool()
        for conn in pool.values():
            conn.close()
        pool.clear()
