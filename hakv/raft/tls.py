"""Mutual TLS on the raft port: pysyncobj's connection with a TLS channel inside
(``TlsConnection``), and what a node admits (``RaftTls``).

pysyncobj's ``TcpConnection`` keeps a write buffer of bytes for the socket and parses
length-prefixed frames out of a read buffer. ``TlsConnection`` keeps that machinery and puts
a ``hakv.security.tls.Channel`` between the socket and the buffers: what is read from the
socket goes through the channel before it reaches the read buffer, and frames go through it
before they reach the write buffer. So the write buffer only ever holds ciphertext that may
leave now; while a handshake is under way, frames wait inside the channel and the poller is
not asked for writability (no spinning on a half-open connection).

Nothing a peer sends is unpickled before its handshake has finished and its certificate
was checked: the channel returns no plaintext until then. Who may say what:

- a connection this node dials must reach the node the topology puts at that address (the
  ``hakv://node/<id>`` identity in the certificate, not the host name);
- an incoming connection must present a node certificate of this cluster's CA, and its
  hello may name only a group that node belongs to (``RaftTls.admits``): a node
  certificate admits its holder to its own groups, not to every group.

With TLS, pysyncobj's message authenticator (the cluster secret) is off: TLS already
authenticates, encrypts and orders every byte, per connection.
"""

from __future__ import annotations

import errno
import io
import logging
import pickle
import ssl
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pysyncobj.pickle as _pickle
from pysyncobj.poller import POLL_EVENT_TYPE
from pysyncobj.tcp_connection import CONNECTION_STATE, TcpConnection

from hakv.security.tls import Channel, HandshakeFailed, RefusalLog

log = logging.getLogger("hakv.raft.tls")

_MAX_HELLO = 4096  # bytes of the first frame of an accepted connection, at most


@dataclass
class RaftTls:
    """A node's TLS setup for its raft port.

    ``server``/``client``: the contexts (hakv.security.tls.TlsConfig); replaced on reload,
    read by every new connection. ``node_at(address)``: the node id the topology puts at a
    raft address (None: not a node of the cluster). ``admits(group, node_id)``: whether that
    node may speak for the group here (an owner, or a node joining it).
    """

    server: ssl.SSLContext
    client: ssl.SSLContext
    node_at: Callable[[str], str | None]
    admits: Callable[[str, str], bool]
    warn: RefusalLog = field(default_factory=lambda: RefusalLog(log, "raft TLS"), repr=False)
    """``warn(what, reason)``: connections dropped for a failed handshake, a wrong
    identity or a refused group (counted; logged at most every 10 s per reason)."""


class TlsConnection(TcpConnection):  # type: ignore[misc]
    """A pysyncobj connection over TLS (see the module docstring).

    ``expect``: for a connection this node dials, the node id that must answer; None for
    an accepted one, whose peer is then ``peer_node``.
    """

    def __init__(self, poller: Any, *, tls: RaftTls, expect: str | None = None,
                 **kwargs: Any) -> None:
        self._tls = tls
        self._expect = expect
        self._channel: Channel | None = None
        self.peer_node: str | None = None
        #: Until the listener admitted its hello (hakv.raft.wire), an accepted connection's
        #: frames are decoded without any class: a hello is a tuple of strings. A
        #: connection this node dialled is to a peer it verified: admitted from the start.
        self.admitted = kwargs.get("socket") is None
        super().__init__(poller, **kwargs)
        if kwargs.get("socket") is not None:
            self._channel = Channel(tls.server, server_side=True, verify=self._verify)

    def connect(self, host: str, port: int) -> bool:
        self._channel = None
        ok: bool = super().connect(host, port)
        if ok:
            self._channel = Channel(self._tls.client, server_side=False, verify=self._verify)
            self._queue(self._channel.outgoing())  # the ClientHello
        return ok

    def _verify(self, identity: tuple[str, str] | None) -> str | None:
        """None if the peer may talk to us, else why not."""
        if identity is None or identity[0] != "node":
            return f"the peer presented no node certificate ({identity})"
        if self._expect is not None and identity[1] != self._expect:
            return (f"expected node {self._expect} at this address, the certificate is for "
                    f"node {identity[1]}")
        self.peer_node = identity[1]
        return None

    def send(self, message: Any) -> None:
        channel = self._channel
        if channel is None:
            return
        data = _pysyncobj_zlib().compress(_pickle.dumps(message), 3)
        channel.send(struct.pack("i", len(data)) + data)
        self._queue(channel.outgoing())

    def _queue(self, ciphertext: bytes) -> None:
        if not ciphertext:
            return
        self._TcpConnection__writeBuffer += ciphertext
        if self.state == CONNECTION_STATE.CONNECTING:
            return  # sent once connected (pysyncobj subscribed to writability)
        self._TcpConnection__trySendBuffer()
        fileno = self._TcpConnection__fileno
        if self._TcpConnection__writeBuffer and fileno is not None:
            self._TcpConnection__poller.subscribe(
                fileno, self._TcpConnection__processConnection,
                POLL_EVENT_TYPE.READ | POLL_EVENT_TYPE.WRITE | POLL_EVENT_TYPE.ERROR)

    def _TcpConnection__processRead(self) -> bool:  # noqa: N802 (pysyncobj's name)
        sock = self._TcpConnection__socket
        channel = self._channel
        if sock is None or channel is None:
            return False
        try:
            incoming = sock.recv(self._TcpConnection__recvBufferSize)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                self.disconnect()
            return False
        if not incoming:
            self.disconnect()
            return False
        try:
            plaintext = channel.receive(incoming)
        except HandshakeFailed as exc:
            peer = self._expect and f"to node {self._expect}" or "from a peer"
            self._tls.warn(f"dropped a connection {peer}", str(exc))
            try:  # the TLS alert, so the peer learns why (best effort, never blocks)
                sock.send(channel.outgoing())
            except OSError:
                pass
            self.disconnect()
            return False
        if plaintext:
            self._TcpConnection__readBuffer += plaintext
        if channel.closed:
            self.disconnect()
            return False
        self._queue(channel.outgoing())
        return self._channel is not None

    def _TcpConnection__processParseMessage(self) -> Any:  # noqa: N802 (pysyncobj's name)
        if self.admitted:
            return super()._TcpConnection__processParseMessage()
        buf: bytes = self._TcpConnection__readBuffer  # type: ignore[has-type]
        if len(buf) < 4:
            return None
        (length,) = struct.unpack("i", buf[:4])
        if not 0 <= length <= _MAX_HELLO:
            self._tls.warn("dropped a raft connection", f"a first frame of {length} bytes")
            self.disconnect()
            return None
        if len(buf) - 4 < length:
            return None
        try:
            message = _Plain(io.BytesIO(_pysyncobj_zlib().decompress(buf[4:4 + length]))).load()
        except Exception as exc:  # noqa: BLE001 - anything a stranger's bytes can raise
            self._tls.warn("dropped a raft connection", f"a first frame that is not a hello "
                           f"({type(exc).__name__})")
            self.disconnect()
            return None
        self._TcpConnection__readBuffer = buf[4 + length:]
        return message

    def disconnect(self) -> None:
        self._channel = None
        super().disconnect()


class _Plain(pickle.Unpickler):
    """Unpickles data only: tuples, lists, strings, numbers. Any class or function (what
    a hostile pickle calls to run code) is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a hello")


def _pysyncobj_zlib() -> Any:
    """The zlib pysyncobj's connections use (hakv.raft.wire installs its framing there)."""
    import pysyncobj.tcp_connection as module

    return module.zlib
