"""The client side of the HTTP/JSON API on the wire: one keep-alive connection, one
exchange, the decoding of an answer into a result or a typed error.

Used by the client library (``hakv.Client``) and by nodes talking to each other
(hakv.node.peer): one HTTP client for both.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from typing import Any

from hakv.errors import CertificateError, ConfigError, InternalError, UnavailableError, from_wire

__all__ = ["CONNECT_TIMEOUT_MAX", "MAX_RESPONSE", "ConnectFailed", "Connection", "Malformed",
           "decode_answer", "describe_oserror", "ensure_connected", "exchange", "probe",
           "split_endpoint"]

CONNECT_TIMEOUT_MAX = 1.0
MAX_RESPONSE = 64 * 1024 * 1024  # a range of 10000 keys of 32 KiB fits with room to spare


def split_endpoint(endpoint: str) -> tuple[str, int]:
    host, sep, port_text = endpoint.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(
            f"bad endpoint {endpoint!r}: expected 'host:port' (e.g. 127.0.0.1:8202), "
            "several separated by commas"
        )
    return host, int(port_text)


class Connection:
    """One keep-alive HTTP/1.1 connection to an endpoint, speaking just what the API needs.

    ``http.client`` parses every answer's headers with ``email.parser`` and costs ~150 us of
    CPU per request here, as much as a leader spends on a write; on a machine where the
    load generator shares the cores with the nodes, that halved the writes/s the benchmark
    could show (docs/benchmarks.md). This sends each request in one ``send`` (headers and
    body together, TCP_NODELAY: neither Nagle nor delayed ACKs add latency) and reads the
    status line, ``Content-Length`` and ``Connection`` of the answer; a chunked answer is
    not part of the API and is refused as malformed. Failures surface as the exceptions
    ``http.client`` raises, so the retry policy tells "never sent" from "maybe applied".
    """

    def __init__(self, host: str, port: int, timeout: float | None = None,
                 tls: ssl.SSLContext | None = None, token: str | None = None) -> None:
        self.host, self.port = host, port
        self.tls = tls  # HTTPS when set (hakv.security.tls.client_context)
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self._buf = bytearray()
        self._head = f"Host: {host}:{port}\r\nContent-Type: application/json\r\n"
        if token:  # a bearer token (hakv token create), sent with every request
            self._head += f"Authorization: Bearer {token}\r\n"

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # load-bearing
        if self.tls is not None:
            try:
                sock = self.tls.wrap_socket(
                    sock, server_hostname=self.host if self.tls.check_hostname else None)
            except ssl.SSLError as exc:
                sock.close()
                raise TlsRefused(_tls_reason(exc, f"{self.host}:{self.port}")) from None
            except OSError:
                sock.close()
                raise
        self.sock = sock
        self._buf.clear()

    def close(self) -> None:
        sock, self.sock = self.sock, None
        self._buf.clear()
        if sock is not None:
            sock.close()

    def send(self, data: bytes) -> None:
        assert self.sock is not None
        self.sock.sendall(data)

    def request(self, path: str, body: bytes, headers: str = "") -> None:
        """POST ``body``; ``headers``: extra header lines, each ending in CRLF."""
        self.send(f"POST {path} HTTP/1.1\r\n{self._head}{headers}Content-Length: {len(body)}"
                  "\r\n\r\n".encode("latin-1") + body)

    def response(self) -> tuple[int, bytes]:
        """(status, body) of the next answer; closes the connection if the server will."""
        head_end = self._fill_until(b"\r\n\r\n")
        head = bytes(self._buf[:head_end]).split(b"\r\n")
        del self._buf[: head_end + 4]
        status_line = head[0].split(None, 2)
        if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/") \
                or not status_line[1].isdigit():
            raise http.client.BadStatusLine(head[0].decode("latin-1", "replace"))
        status = int(status_line[1])
        length: int | None = None
        closing = status_line[0] == b"HTTP/1.0"
        for line in head[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                if not value.strip().isdigit():
                    raise Malformed(f"bad Content-Length {value.strip()!r}")
                length = int(value)
                if length > MAX_RESPONSE:
                    raise Malformed(f"answer of {length} bytes is larger than any valid answer")
            elif name == b"connection":
                closing = value.strip().lower() == b"close"
            elif name == b"transfer-encoding" and value.strip().lower() != b"identity":
                raise Malformed(f"unexpected Transfer-Encoding {value.strip()!r}")
        if length is None:  # the body runs to the end of the connection
            data = self._read_to_close()
            closing = True
        else:
            self._fill(length)
            data = bytes(self._buf[:length])
            del self._buf[:length]
        if closing:
            self.close()
        return status, data

    def _recv(self) -> bytes:
        assert self.sock is not None
        chunk = self.sock.recv(65536)
        return chunk

    def _fill_until(self, marker: bytes) -> int:
        start = 0
        while True:
            found = self._buf.find(marker, start)
            if found >= 0:
                return found
            if len(self._buf) > 65536:
                raise Malformed("answer headers larger than 64 KiB")
            start = max(0, len(self._buf) - len(marker) + 1)
            chunk = self._recv()
            if not chunk:
                if self._buf:
                    raise http.client.IncompleteRead(bytes(self._buf))
                raise http.client.RemoteDisconnected(
                    "Remote end closed connection without response")
            self._buf += chunk

    def _fill(self, length: int) -> None:
        while len(self._buf) < length:
            chunk = self._recv()
            if not chunk:
                raise http.client.IncompleteRead(bytes(self._buf), length - len(self._buf))
            self._buf += chunk

    def _read_to_close(self) -> bytes:
        while True:
            if len(self._buf) > MAX_RESPONSE:
                raise Malformed("answer larger than any valid answer")
            chunk = self._recv()
            if not chunk:
                data = bytes(self._buf)
                self._buf.clear()
                return data
            self._buf += chunk


class ConnectFailed(Exception):
    """Could not connect: the request surely did not reach the server."""


class TlsRefused(OSError):
    """The TLS handshake failed (a certificate was refused, by either side): a
    configuration problem, not an outage; the request never reached the server."""


def _tls_reason(exc: ssl.SSLError, endpoint: str) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"{endpoint}: the node's certificate was refused ({exc.verify_message}): "
                "is --cacert (HAKV_CACERT) the CA of this cluster, and the endpoint one of "
                "the hosts in the node's certificate?")
    reason = str(exc.reason or exc).lower().replace("_", " ")
    return (f"{endpoint}: TLS handshake failed ({reason}): is this node's API on TLS, and "
            "--cert/--key (HAKV_CERT/HAKV_KEY) a client certificate of its cluster's CA?")


class Malformed(Exception):
    """The server answered, but not with what the API promises."""


def ensure_connected(conn: Connection, connect_timeout: float) -> None:
    """Connect ``conn`` unless it is: ConnectFailed when the TCP connection could not be
    made, CertificateError when the TLS handshake refused it."""
    if conn.sock is not None:
        return
    conn.timeout = connect_timeout
    try:
        conn.connect()
    except TlsRefused as err:
        conn.close()
        raise CertificateError(str(err)) from None
    except OSError as err:
        conn.close()
        raise ConnectFailed(describe_oserror(err)) from err


def exchange(
    conn: Connection, path: str, body: bytes, timeout: float, connect_timeout: float,
    headers: str = "",
) -> tuple[int, bytes]:
    """One request on ``conn``: (status, raw body). Raises ConnectFailed when the TCP
    connection could not be made, OSError/HTTPException when it broke after that."""
    ensure_connected(conn, connect_timeout)
    assert conn.sock is not None
    current = conn.sock.gettimeout()
    if current is None or abs(current - timeout) > 0.05:  # each settimeout is a system call
        conn.sock.settimeout(timeout)
    conn.request(path, body, headers)
    try:
        return conn.response()
    except Malformed:
        conn.close()
        raise
    except ssl.SSLError as err:
        # A TLS alert instead of an answer: the server refused the client's certificate
        # after the handshake (TLS 1.3 checks it then). Nothing was served.
        conn.close()
        if isinstance(err, ssl.SSLZeroReturnError | ssl.SSLEOFError):
            raise
        raise CertificateError(_tls_reason(err, f"{conn.host}:{conn.port}")) from None


def describe_oserror(err: BaseException) -> str:
    if isinstance(err, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(err, ConnectionRefusedError):
        return "connection refused"
    if isinstance(err, http.client.RemoteDisconnected):
        return "connection closed by the server without an answer"
    if isinstance(err, ConnectionResetError):
        return "connection reset"
    text = str(err) or type(err).__name__
    return text


def decode_answer(endpoint: str, path: str, status: int, data: bytes) -> dict[str, Any]:
    """The JSON object of an answer; raises the typed error of an error answer, or
    InternalError for anything that is not the documented shape."""
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        snippet = data[:120].decode("utf-8", "replace")
        raise InternalError(
            f"malformed answer from {endpoint} to {path} (HTTP {status}): not JSON: {snippet!r}",
            endpoint=endpoint,
        ) from None
    if not isinstance(body, dict):
        raise InternalError(
            f"malformed answer from {endpoint} to {path} (HTTP {status}): "
            f"expected a JSON object, got {type(body).__name__}",
            endpoint=endpoint,
        )
    if 200 <= status < 300:
        return body
    if not isinstance(body.get("error"), dict):
        raise InternalError(
            f"malformed error answer from {endpoint} to {path} (HTTP {status}): {body!r:.200}",
            endpoint=endpoint,
        )
    raise from_wire(body)


def probe(endpoint: str, path: str = "/v1/health", timeout: float = 1.0,
          tls: ssl.SSLContext | None = None, token: str | None = None) -> dict[str, Any]:
    """One request on a fresh connection, no retry: for health checks and status.

    Raises UnavailableError when the endpoint does not answer, the typed error of an error
    answer, InternalError for a malformed one.
    """
    host, port = split_endpoint(endpoint)
    conn = Connection(host, port, timeout=timeout, tls=tls, token=token)
    try:
        status, data = exchange(conn, path, b"{}", timeout, min(timeout, CONNECT_TIMEOUT_MAX))
    except ConnectFailed as err:
        raise UnavailableError(f"{endpoint}: {err}", endpoint=endpoint) from None
    except (OSError, http.client.HTTPException) as err:
        raise UnavailableError(f"{endpoint}: {describe_oserror(err)}", endpoint=endpoint) from None
    except Malformed as err:
        raise InternalError(f"malformed answer from {endpoint} to {path}: {err}") from None
    finally:
        conn.close()
    return decode_answer(endpoint, path, status, data)
