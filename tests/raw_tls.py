"""Raw client connections to a node's API, plain or inside TLS, for tests of the wire itself.

The tests of the API server's connection handling send exact bytes (requests split in
tiny pieces, pipelined, cut off halfway) and half-close or reset connections. Over HTTPS
those bytes must travel inside TLS, and ``ssl.SSLSocket`` cannot half-close
(its ``shutdown`` drops TLS altogether). ``RawTls`` drives an ``ssl.SSLObject`` over a
plain socket instead, so every socket move stays the test's:

- ``send``/``sendall`` encrypt exactly the bytes given (one TLS record each) and write
  them out; ``recv`` returns decrypted bytes, ``b""`` at the end (the server's
  close_notify or its FIN), and raises ``ConnectionResetError`` on a reset;
- ``shutdown(SHUT_WR)`` is TLS's half-close: close_notify, then the TCP half-close; the
  answers can still be read;
- ``close`` closes the socket without close_notify (as a crashed client), and
  ``setsockopt`` applies to the socket (SO_LINGER 0 then makes ``close`` send a reset).

One thread may send while another receives (OpenSSL itself is used under a lock).

``connect(endpoint, tls)`` is a ``RawTls`` with its handshake done, or, with ``tls``
None (an ``insecure`` cluster), the plain socket itself.

``start_insecure_api_cluster`` is ``tests.support.start_api_cluster`` for nodes started
``--insecure`` (plain HTTP), for the tests that run their raw bytes both ways.
"""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from hakv.client.client import Client
from hakv.dev.local import LocalCluster
from tests.support import wait_for, write_topology

_READ = 65536


class RawTls:
    """One client TLS connection over a plain socket (see the module docstring)."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, server_hostname: str
                 ) -> None:
        self.sock = sock
        self._lock = threading.Lock()  # the SSLObject: one thread at a time
        self._send_lock = threading.Lock()  # ciphertext leaves in the order it was made
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._obj = context.wrap_bio(self._in, self._out, server_side=False,
                                     server_hostname=server_hostname)
        self._plain = bytearray()
        self._eof = False
        while True:
            try:
                self._obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                if not self._feed():
                    raise ConnectionResetError("the server closed during the handshake") from None
        self._flush()

    # -- socket-like API

    def sendall(self, data: bytes) -> None:
        if data:
            with self._lock:
                self._obj.write(data)
        self._flush()

    def send(self, data: bytes) -> int:
        self.sendall(data)
        return len(data)

    def recv(self, size: int) -> bytes:
        while not self._plain and not self._eof:
            self._decrypt()
            if not self._plain and not self._eof and not self._feed():
                self._eof = True
        out = bytes(self._plain[:size])
        del self._plain[:size]
        return out

    def shutdown(self, how: int) -> None:
        """SHUT_WR (or SHUT_RDWR): close_notify, then the TCP half-close."""
        self._decrypt()  # nothing buffered inside OpenSSL that unwrap could discard
        with self._lock:
            try:
                self._obj.unwrap()
            except ssl.SSLWantReadError:
                pass  # sent; the server's close_notify comes with its end
        self._flush()
        self.sock.shutdown(how)

    def setsockopt(self, *args: Any) -> None:
        self.sock.setsockopt(*args)

    def settimeout(self, timeout: float | None) -> None:
        self.sock.settimeout(timeout)

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawTls:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- the TLS machinery

    def _flush(self) -> None:
        with self._send_lock:
            with self._lock:
                data = self._out.read()
            if data:
                self.sock.sendall(data)

    def _feed(self) -> bool:
        """Read ciphertext from the socket into OpenSSL; False at the server's FIN."""
        data = self.sock.recv(_READ)
        if not data:
            with self._lock:
                self._in.write_eof()
            return False
        with self._lock:
            self._in.write(data)
        return True

    def _decrypt(self) -> None:
        """Move every plaintext byte OpenSSL can give now into the buffer. (Nothing is
        sent from here: the servers send no post-handshake messages, and a receiving
        thread must never wait for a sending one.)"""
        while True:
            try:
                with self._lock:
                    chunk = self._obj.read(_READ)
            except ssl.SSLWantReadError:
                break
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                self._eof = True
                break
            if not chunk:
                self._eof = True
                break
            self._plain += chunk


Conn = RawTls | socket.socket


def connect(endpoint: str, tls: ssl.SSLContext | None, timeout: float) -> Conn:
    """A connection to ``endpoint`` with TCP_NODELAY: a ``RawTls`` over ``tls``, or the
    plain socket when ``tls`` is None."""
    host, port = endpoint.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if tls is None:
        return sock
    try:
        return RawTls(sock, tls, host)
    except BaseException:
        sock.close()
        raise


def start_insecure_api_cluster(directory: Path, nodes: list[str],
                               groups: dict[str, list[str]]) -> LocalCluster:
    """A local cluster of ``nodes`` and ``groups`` on plain TCP (``insecure=True``), every
    node healthy and every group writable through every node (as
    ``tests.support.start_api_cluster``). The caller takes it down."""
    directory.mkdir(parents=True, exist_ok=True)
    topo = write_topology(directory, nodes, groups)
    lc = LocalCluster(directory / "run", insecure=True)
    try:
        lc.up(str(topo), wait=30)
        for n in nodes:
            with Client([lc.endpoint(n)], timeout=5.0, tls=False) as client:
                for gid in groups:
                    wait_for(lambda c=client, g=gid, n=n: c.put(g, "warm-up", n), 30,
                             what=f"a write to {gid} through {n}")
    except BaseException:
        lc.down()
        raise
    return lc
