"""The wire under pysyncobj: one TCP port per node for every group (``NodeListener``,
``MuxTransport``: each connection first names its group), message authentication with
the cluster secret (``MessageAuthenticator``), and cheap framing of small messages
(``_WireZlib``).

Two of these replace parts of pysyncobj module-wide (its encryptor factory and the zlib
module its connections compress with). ``install`` does that, once, when the first
``RaftHost`` (or member) is built: importing hakv changes nothing in pysyncobj.
With TLS (``RaftTls``, hakv.raft.tls) the listener accepts ``TlsConnection``s, outgoing
connections are ``TlsConnection``s too, and a hello is admitted only for a group its
peer's certificate names an owner of; the cluster secret's authenticator is then off.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import hmac
import logging
import os
import socket
import struct
import threading
import time
import zlib
from typing import Any

import pysyncobj.syncobj as _syncobj_module
import pysyncobj.tcp_connection as _tcp_connection_module
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from pysyncobj.poller import POLL_EVENT_TYPE
from pysyncobj.tcp_connection import CONNECTION_STATE
from pysyncobj.tcp_server import TcpServer
from pysyncobj.transport import TCPTransport

from hakv import errors
from hakv.raft.tls import RaftTls, TlsConnection

log = logging.getLogger("hakv.raft.wire")

_WIRE_HELLO = "hakv1"
#: One message per pair of nodes for all their quiet groups (hakv.raft.host).
NODE_HEARTBEAT_MESSAGE = "hakv_node_heartbeat"

_BUFFER = 2 ** 16  # socket buffers of accepted raft connections
_ACCEPTED_TIMEOUT = 3.5  # seconds without a byte before an accepted connection is dropped
_MAX_PENDING = 256  # accepted TLS connections not yet admitted, at most
_install_lock = threading.Lock()
_installed = False


def install() -> None:
    """Plug hakv's wire into pysyncobj, module-wide; idempotent.

    Members get the cluster secret through ``SyncObjConf.password``; pysyncobj then builds
    its encryptor with ``getEncryptor``, routed here to ``encryptor_for``. Its connections
    compress every message with the ``zlib`` module they imported, replaced here by
    ``_WireZlib``. Both must be in place before any member is built, and on every node
    alike (a peer with Fernet instead of the authenticator could not talk to this one).
    """
    global _installed
    with _install_lock:
        if _installed:
            return
        _syncobj_module.getEncryptor = encryptor_for
        _tcp_connection_module.zlib = _WireZlib  # type: ignore[assignment]
        _installed = True


class NodeListener:
    """The node's one raft port. A connection's first message names its group.

    With a cluster secret, every message on the port carries an HMAC under a key derived
    from the secret (``MessageAuthenticator``): pysyncobj verifies it before unpickling
    anything, so a peer without the secret can make the node unpickle nothing at all, not
    even a hello.
    """

    def __init__(self, poller: Any, host: str, port: int, secret: str | None = None,
                 tls: RaftTls | None = None) -> None:
        self._transports: dict[str, MuxTransport] = {}
        self.tls = tls
        # For /metrics (hakv.node.metrics): raft messages handed to a connection, per peer
        # raft address (every member's MuxTransport counts here; the members count what
        # they receive in ``received``). Written by the raft thread only, a plain int
        # increment per message; read by the scrape as a copy.
        self.sent: collections.defaultdict[str, int] = collections.defaultdict(int)
        self.received: collections.defaultdict[str, int] = collections.defaultdict(int)
        self.encryptor = encryptor_for(secret) if secret and tls is None else None
        self._server: TcpServer | _TlsServer
        if tls is None:
            self._server = TcpServer(poller, host, port, onNewConnection=self._on_connection,
                                     sendBufferSize=_BUFFER, recvBufferSize=_BUFFER,
                                     connectionTimeout=_ACCEPTED_TIMEOUT)
        else:
            self._server = _TlsServer(poller, host, port, tls, self._on_connection)
        self.address = f"{host}:{port}"
        try:
            self._server.bind()
        except OSError as exc:
            raise errors.ConfigError(
                f"cannot listen on raft address {self.address}: {exc.strerror or exc}; "
                "is another node (or program) using this port?") from None

    def register(self, group: str, transport: MuxTransport) -> None:
        self._transports[group] = transport

    def unregister(self, group: str) -> None:
        self._transports.pop(group, None)

    def _on_connection(self, conn: Any) -> None:
        # pysyncobj sets TCP_NODELAY only on connections it dials; without it here, Nagle
        # holds back acks on accepted connections and every write waits for delayed ACKs.
        sock = getattr(conn, "_TcpConnection__socket", None)
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.encryptor = self.encryptor  # set before the first byte is parsed
        conn.setOnMessageReceivedCallback(functools.partial(self._on_hello, conn))
        conn.setOnDisconnectedCallback(lambda: None)

    def _on_hello(self, conn: Any, message: Any) -> None:
        if self.encryptor is not None and not conn.sendRandKey:
            # pysyncobj's handshake: exchange per-connection random keys (replay guard).
            conn.sendRandKey = message
            conn.recvRandKey = os.urandom(32)
            conn.send(conn.recvRandKey)
            return
        # The whole hello is checked before any part of it is used (a list where a string
        # belongs once raised TypeError in the raft thread: found by test_fuzz_ports.py).
        if not (isinstance(message, tuple) and len(message) in (3, 4)
                and message[0] == _WIRE_HELLO
                and all(isinstance(part, str) and len(part) <= 300 for part in message)):
            log.warning("dropping raft connection with a malformed hello")
            conn.disconnect()
            return
        group, address = message[1], message[2]
        transport = self._transports.get(group)
        if transport is None:
            log.warning("dropping raft connection for group %r, not hosted here", group)
            conn.disconnect()
            return
        if self.tls is not None:
            refused = self._refused(conn, message)
            if refused:
                self.tls.warn("refused a raft connection", refused)
                conn.disconnect()
                return
            conn.admitted = True
        transport._onNewIncomingConnection(conn)
        transport._onIncomingMessageReceived(conn, address)
        if address == "readonly" and len(message) == 4 and isinstance(message[3], str):
            # pysyncobj names a read-only peer by a counter; remember the node it runs on,
            # so node heartbeats reach it while its group is quiet.
            for node, known in list(transport._connections.items()):
                if known is conn:
                    node.address = message[3]

    def _refused(self, conn: Any, message: tuple[str, ...]) -> str | None:
        """Why a TLS peer may not open this connection (None: it may). It must be an owner
        of the group, and speak as itself: the address in its hello (a voter's, or a
        read-only follower's own) must be the one the topology gives its node."""
        assert self.tls is not None
        peer = getattr(conn, "peer_node", None)
        group, address = message[1], message[2]
        if not peer or not self.tls.admits(group, peer):
            return f"node {peer} is not a member of group {group!r}"
        claimed = message[3] if address == "readonly" and len(message) == 4 else address
        if address == "readonly" and len(message) != 4:
            return f"node {peer}: a read-only hello without its address"
        if self.tls.node_at(claimed) != peer:
            return (f"node {peer} spoke as {claimed}, the address of "
                    f"{self.tls.node_at(claimed) or 'no node'}")
        return None

    def expire(self, now: float) -> float | None:
        """Drop accepted connections that did not say hello in time (a RaftHost timer)."""
        server = self._server
        return server.expire(now) if isinstance(server, _TlsServer) else None

    def close(self) -> None:
        self._server.unbind()


class _TlsServer:
    """The raft port with TLS: accepts sockets and makes them ``TlsConnection``s (what
    pysyncobj's TcpServer does for plain ones)."""

    def __init__(self, poller: Any, host: str, port: int, tls: RaftTls,
                 on_connection: Any) -> None:
        self._poller, self._tls, self._on_connection = poller, tls, on_connection
        self._address = (host, port)
        self._socket: socket.socket | None = None
        #: Accepted connections not admitted yet, oldest first: (deadline, connection).
        self._pending: collections.deque[tuple[float, TlsConnection]] = collections.deque()

    def bind(self) -> None:
        family = socket.AF_INET6 if ":" in self._address[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _BUFFER)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _BUFFER)
            sock.setblocking(False)
            sock.bind(self._address)
            sock.listen(64)
        except OSError:
            sock.close()
            raise
        self._socket = sock
        self._poller.subscribe(sock.fileno(), self._on_accept,
                               POLL_EVENT_TYPE.READ | POLL_EVENT_TYPE.ERROR)

    def _on_accept(self, _fd: int, _events: int) -> None:
        if self._socket is None:
            return
        for _ in range(16):  # a burst of connects, without starving the rest of the pass
            try:
                sock, _addr = self._socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and the like: shed, do not spin
                log.warning("raft port: accept failed: %s", exc)
                return
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _BUFFER)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _BUFFER)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            conn = TlsConnection(self._poller, tls=self._tls, socket=sock,
                                 timeout=_ACCEPTED_TIMEOUT, sendBufferSize=_BUFFER,
                                 recvBufferSize=_BUFFER)
            pending = self._pending
            while len(pending) >= _MAX_PENDING:  # shed the oldest, never grow without bound
                pending.popleft()[1].disconnect()
            pending.append((time.monotonic() + _ACCEPTED_TIMEOUT, conn))
            self._on_connection(conn)

    def expire(self, now: float) -> float | None:
        """Close the accepted connections that were not admitted within the timeout (a
        silent or stalled stranger never wakes pysyncobj's own timeout check, which runs
        only on the socket's events); the next deadline, if any."""
        pending = self._pending
        while pending and (pending[0][0] <= now or pending[0][1].admitted
                           or pending[0][1].state == CONNECTION_STATE.DISCONNECTED):
            deadline, conn = pending.popleft()
            if not conn.admitted and conn.state != CONNECTION_STATE.DISCONNECTED:
                self._tls.warn("dropped a raft connection",
                               f"no admitted hello within {_ACCEPTED_TIMEOUT:g} s")
                conn.disconnect()
        return pending[0][0] if pending else None

    def unbind(self) -> None:
        if self._socket is not None:
            self._poller.unsubscribe(self._socket.fileno())
            self._socket.close()
            self._socket = None


class MessageAuthenticator:
    """Stands in for pysyncobj's Fernet encryptor: every message carries a timestamp and an
    HMAC-SHA256 under a key derived from the cluster secret, checked before pysyncobj
    unpickles anything. Authenticated, not encrypted: Fernet (AES + HMAC + base64 on every
    message) cost over a millisecond per write here, this costs microseconds.
    """

    _TAG = hashlib.sha256().digest_size

    def __init__(self, key: bytes) -> None:
        self._key = key
        # pysyncobj asks for a message's timestamp, then for its body: one check for both.
        self._last: tuple[bytes, bytes] | None = None

    def _sign(self, body: bytes) -> bytes:
        return hmac.digest(self._key, body, "sha256")

    def _verified(self, token: bytes) -> bytes:
        last = self._last
        if last is not None and last[0] is token:
            return last[1]
        body, tag = token[:-self._TAG], token[-self._TAG:]
        if len(body) < 8 or not hmac.compare_digest(self._sign(body), tag):
            raise ValueError("raft message failed authentication")  # pysyncobj disconnects
        self._last = (token, body)
        return body

    def encrypt_at_time(self, data: bytes, timestamp: int) -> bytes:
        body = struct.pack(">Q", timestamp) + data
        return body + self._sign(body)

    def extract_timestamp(self, token: bytes) -> int:
        return int(struct.unpack(">Q", self._verified(token)[:8])[0])

    def decrypt(self, token: bytes) -> bytes:
        return self._verified(token)[8:]


@functools.lru_cache(maxsize=4)
def encryptor_for(secret: str) -> MessageAuthenticator:
    """The authenticator for a secret, derived once per process (PBKDF2 with 100,000
    rounds costs ~0.1 s: every group member of the node shares the result)."""
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=_KDF_SALT,
                     iterations=100_000)
    return MessageAuthenticator(kdf.derive(secret.encode("utf-8")))


_KDF_SALT = b"hakv raft message authentication v1"

class _WireZlib:
    """Stands in for the ``zlib`` module inside pysyncobj's TcpConnection, which compresses
    every message at level 3. ``zlib.compress`` sets up a fresh deflate state per call:
    ~75 µs even for a 300-byte heartbeat, more than pickling, authenticating and sending
    it together, and several times per write. Small messages are framed as *stored* zlib
    blocks instead (a valid zlib stream, so the receiving side still just calls
    ``zlib.decompress``); large ones (log catch-up, snapshots) are still compressed."""

    STORED_BELOW = 16384
    _BLOCK = 65535

    decompress = staticmethod(zlib.decompress)

    @classmethod
    def compress(cls, data: bytes, level: int = -1) -> bytes:
        if len(data) >= cls.STORED_BELOW:
            return zlib.compress(data, level)
        return cls.stored(data)

    @classmethod
    def stored(cls, data: bytes) -> bytes:
        """``data`` as a zlib stream of stored (uncompressed) deflate blocks (RFC 1950/1951)."""
        parts = [b"\x78\x01"]
        view = memoryview(data)
        offset, size = 0, len(data)
        while True:
            chunk = view[offset:offset + cls._BLOCK]
            offset += len(chunk)
            final = offset >= size
            parts.append(struct.pack("<BHH", 1 if final else 0, len(chunk), len(chunk) ^ 0xFFFF))
            parts.append(chunk.tobytes())
            if final:
                break
        parts.append(struct.pack(">I", zlib.adler32(data)))
        return b"".join(parts)


class MuxTransport(TCPTransport):  # type: ignore[misc]
    """pysyncobj transport sharing the node's listener; outgoing hellos name the group."""

    def __init__(self, syncObj: Any, selfNode: Any, otherNodes: Any, *,
                 listener: NodeListener, group: str) -> None:
        self._listener = listener
        self._group = group
        self._sent = listener.sent
        #: Round-trip probes of the leader (GroupMember._next_index_ack): peer raft address
        #: -> (when an AppendEntries without entries, a heartbeat, left for it; the next
        #: index its ack will name). At most one per peer: the next heartbeat after the
        #: answer arms the next one. No message is sent for them.
        self.rtt_probes: dict[str, tuple[float, int]] = {}
        super().__init__(syncObj, selfNode, otherNodes)

    def send(self, node: Any, message: Any) -> bool:
        """pysyncobj's send, counted per peer (``NodeListener.sent``) when handed to a
        connection; a heartbeat to a peer without a round-trip probe arms one."""
        if not TCPTransport.send(self, node, message):
            return False
        try:
            address = node.address
        except AttributeError:  # a read-only peer that did not say its address
            return True
        self._sent[address] += 1
        if (address not in self.rtt_probes and message.get("type") == "append_entries"
                and not message.get("entries") and "prevLogIdx" in message):
            self.rtt_probes[address] = (time.monotonic(), message["prevLogIdx"] + 1)
        return True

    def _createServer(self) -> None:
        self._listener.register(self._group, self)

    def _maybeBind(self) -> None:
        if not self._ready:  # type: ignore[has-type]
            self._ready = True
            self._bindOverEvent.set()

    def addNode(self, node: Any) -> None:  # noqa: N802 (pysyncobj's name)
        super().addNode(node)
        tls = self._listener.tls
        conn = self._connections.get(node)
        if tls is None or conn is None or isinstance(conn, TlsConnection):
            return
        # pysyncobj made a plain TcpConnection (not connected yet): the same, over TLS.
        conn = TlsConnection(self._syncObj._poller, tls=tls, expect=tls.node_at(node.address),
                             timeout=self._syncObj.conf.connectionTimeout,
                             sendBufferSize=self._syncObj.conf.sendBufferSize,
                             recvBufferSize=self._syncObj.conf.recvBufferSize,
                             keepalive=self._syncObj.conf.tcp_keepalive)
        conn.setOnConnectedCallback(functools.partial(self._onOutgoingConnected, conn))
        conn.setOnMessageReceivedCallback(functools.partial(self._onMessageReceived, node))
        conn.setOnDisconnectedCallback(functools.partial(self._onDisconnected, conn))
        self._connections[node] = conn

    def _sendSelfAddress(self, conn: Any) -> None:
        if self._selfIsReadonlyNode:
            conn.send((_WIRE_HELLO, self._group, "readonly", self._listener.address))
        else:
            conn.send((_WIRE_HELLO, self._group, self._selfNode.address))

    def destroy(self) -> None:
        self._listener.unregister(self._group)
        self._server = None
        super().destroy()
