"""Mutual TLS for hakv's ports: the files a process needs (``TlsFiles``), the contexts
built from them (``TlsConfig``), and a sans-I/O TLS channel (``Channel``) that the
non-blocking servers on the node's raft thread drive with bytes.

Both of a node's ports are served by one poller on one thread (hakv.raft.host), so a
blocking ``SSLSocket`` handshake is out of the question: a stranger that sends half a
ClientHello would stall every group of the node. ``Channel`` wraps ``ssl.SSLObject`` over
two memory BIOs instead: the caller feeds it the bytes the socket gave (``receive``) and
writes out what it produced (``outgoing``); it never touches a socket, never blocks and
never spins. Application data sent before the handshake finished waits inside the channel,
so the caller's write buffer only ever holds ciphertext that can go out now.

Identity is the ``hakv://node/<id>`` or ``hakv://user/<name>`` URI SAN of the peer's
certificate (hakv.security.certs.identity_of), checked by the caller against what it
expects: the node the topology puts at the address it dialled, or, for an incoming raft
connection, an owner of the group the connection names. Host names are checked only where
a person typed them (the client library, curl), never between nodes: the identity in the
certificate is stronger than the address it was reached at.

TLS 1.3 only, no session tickets (nothing to resume: connections are long-lived), and the
certificate is required on both sides of every node-to-node connection.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from hakv import errors
from hakv.security import certs

log = logging.getLogger("hakv.security.tls")

_READ = 65536


@dataclass(frozen=True)
class TlsFiles:
    """The three files of one identity: the CA bundle it trusts, its certificate, its key."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def node(cls, certs_dir: str | os.PathLike[str], node_id: str) -> TlsFiles:
        """``ca.crt``, ``node.<id>.crt`` and ``node.<id>.key`` of a certs dir."""
        d = Path(certs_dir)
        return cls(d / certs.CA_CERT, d / f"node.{node_id}.crt", d / f"node.{node_id}.key")

    @classmethod
    def client(cls, certs_dir: str | os.PathLike[str], name: str) -> TlsFiles:
        """``ca.crt``, ``client.<name>.crt`` and ``client.<name>.key`` of a certs dir."""
        d = Path(certs_dir)
        return cls(d / certs.CA_CERT, d / f"client.{name}.crt", d / f"client.{name}.key")


class TlsConfig:
    """The loaded material of one identity and the contexts made from it.

    Checked when built (``certs.verify``: the certificate is signed by the CA and valid at
    ``now``; the key matches): a node with a wrong, expired or not-yet-valid certificate
    refuses to start with a message that says which file and what to do, instead of
    failing every handshake later. ``warn_days`` before expiry, a warning is logged.
    """

    def __init__(self, files: TlsFiles, *, now: dt.datetime,
                 warn_days: int = certs.DEFAULT_WARN_DAYS) -> None:
        self.files = files
        for path, what in ((files.ca, "CA certificate"), (files.cert, "certificate"),
                           (files.key, "private key")):
            if not path.exists():
                raise errors.CertificateMissingError(
                    f"{what} {path} does not exist: make it with `hakv certs` "
                    "(docs/security.md), or start with --insecure to run without TLS",
                    cert=str(path))
        cert = certs.verify(files.cert, files.ca, now)
        self.kind, self.identity = certs.identity_of(cert)
        self.not_after = cert.not_valid_after_utc
        days_left = (self.not_after - now.astimezone(dt.UTC)).days
        self.expiring = days_left < warn_days
        if self.expiring:
            log.warning("certificate %s expires in %d days (%s): issue a new one with "
                        "`hakv certs ... --overwrite` and send SIGHUP", files.cert, days_left,
                        self.not_after.isoformat())
        self.server = self._context(ssl.PROTOCOL_TLS_SERVER)
        self.client = self._context(ssl.PROTOCOL_TLS_CLIENT)
        #: The API port's: a client certificate is checked when sent, not required at the
        #: handshake, so a request without one gets a clear 401 instead of a TLS alert.
        self.api_server = self._context(ssl.PROTOCOL_TLS_SERVER)
        self.api_server.verify_mode = ssl.CERT_OPTIONAL

    def _context(self, protocol: int) -> ssl.SSLContext:
        context = ssl.SSLContext(protocol)
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        context.check_hostname = False  # identities are checked by the caller (see above)
        context.verify_mode = ssl.CERT_REQUIRED
        try:
            context.load_verify_locations(cafile=str(self.files.ca))
            context.load_cert_chain(str(self.files.cert), str(self.files.key))
        except ssl.SSLError as exc:
            raise errors.CertificateError(
                f"cannot use {self.files.cert} with key {self.files.key}: {exc.reason or exc}"
                "; are they a pair? (re-issue both with `hakv certs`)",
                cert=str(self.files.cert)) from None
        if protocol == ssl.PROTOCOL_TLS_SERVER:
            context.num_tickets = 0
        return context


#: Where ``client_context_from`` reads files it is not given (as etcdctl's ETCDCTL_CACERT...).
CACERT_ENV, CERT_ENV, KEY_ENV = "HAKV_CACERT", "HAKV_CERT", "HAKV_KEY"
TOKEN_ENV = "HAKV_TOKEN"  # a bearer token (hakv token create), instead of a certificate


def client_context(cacert: str | os.PathLike[str], cert: str | os.PathLike[str] | None = None,
                   key: str | os.PathLike[str] | None = None, *,
                   check_hostname: bool = True) -> ssl.SSLContext:
    """An HTTPS client context: trust the CA bundle ``cacert``; present ``cert``/``key``
    (a ``hakv certs client`` pair) if given. Host names are checked against the server's
    certificate (its SANs are the node's hosts) unless ``check_hostname=False``."""
    for path, what in ((cacert, "CA certificate (--cacert)"), (cert, "certificate (--cert)"),
                       (key, "key (--key)")):
        if path is not None and not Path(path).is_file():
            raise errors.CertificateMissingError(
                f"{what} {path} does not exist", cert=str(path))
    if (cert is None) != (key is None):
        raise errors.CertificateError("give --cert and --key together (a client certificate "
                                      "and its key, made by `hakv certs client NAME`)")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = check_hostname
    try:
        context.load_verify_locations(cafile=str(cacert))
        if cert is not None:
            context.load_cert_chain(str(cert), str(key))
    except ssl.SSLError as exc:
        raise errors.CertificateError(
            f"cannot use {cacert}, {cert} and {key}: {exc.reason or exc}; are the certificate "
            "and key a pair, and is the CA file a PEM certificate?", cert=str(cert)) from None
    return context


def client_context_from(cacert: str | None = None, cert: str | None = None,
                        key: str | None = None,
                        environ: Mapping[str, str] | None = None) -> ssl.SSLContext | None:
    """``client_context`` from the files given (any of them: then only those), else from
    ``HAKV_CACERT``, ``HAKV_CERT`` and ``HAKV_KEY``; None (plain HTTP) when no CA
    certificate is named either way."""
    if not (cacert or cert or key):
        env = os.environ if environ is None else environ
        cacert = env.get(CACERT_ENV) or None
        cert = env.get(CERT_ENV) or None
        key = env.get(KEY_ENV) or None
    if cacert is None:
        if cert or key:
            raise errors.CertificateError(
                "a client certificate needs the CA that signed the servers' certificates: "
                f"give --cacert (env {CACERT_ENV}) too")
        return None
    return client_context(cacert, cert, key)


class RefusalLog:
    """Refusals on a port (failed handshakes, refused hellos, shed connections), each
    counted, logged at most once per ``every`` seconds per reason: a stranger hammering a
    port must not flood the log."""

    def __init__(self, logger: logging.Logger, port: str, every: float = 10.0) -> None:
        self._logger, self._port, self._every = logger, port, every
        self._last: dict[str, float] = {}
        self.count = 0

    def __call__(self, what: str, reason: str) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self._last.get(reason, -self._every) >= self._every:
            self._last[reason] = now
            self._logger.warning("%s: %s: %s", self._port, what, reason)


def peer_identity(obj: ssl.SSLObject | ssl.SSLSocket) -> tuple[str, str] | None:
    """``(kind, id)`` from the peer certificate of an established TLS connection; None when
    the peer sent none or it carries no single hakv identity."""
    der = obj.getpeercert(binary_form=True)
    if not der:
        return None
    try:
        return certs.identity_of(der)
    except (errors.CertificateError, ValueError):
        return None


class HandshakeFailed(Exception):
    """The TLS handshake (or a later record) failed; the connection must be dropped.
    ``str()`` is the reason OpenSSL gave, safe to log."""


class Channel:
    """One TLS connection as a byte-in, byte-out state machine (``ssl.SSLObject``).

    >>> channel = Channel(config.client, server_side=False)   # doctest: +SKIP
    >>> sock.send(channel.outgoing())            # the ClientHello
    >>> plaintext = channel.receive(sock.recv(65536))
    >>> sock.send(channel.outgoing())            # handshake replies, then data

    ``send`` queues application data; before the handshake finished it waits inside the
    channel and leaves with the first ``outgoing`` after it. ``receive`` raises
    ``HandshakeFailed`` for any TLS failure (bad certificate, garbage, an alert), and when
    ``verify`` (called once, with the peer's hakv identity, when the handshake completes)
    returns a reason to refuse the peer: then no byte of its data is ever returned, and no
    byte queued by ``send`` has left.
    """

    def __init__(self, context: ssl.SSLContext, *, server_side: bool,
                 server_hostname: str | None = None,
                 verify: Callable[[tuple[str, str] | None], str | None] | None = None) -> None:
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._obj = context.wrap_bio(self._in, self._out, server_side=server_side,
                                     server_hostname=server_hostname)
        self._verify = verify
        self.established = False
        self.closed = False  # the peer sent close_notify
        self._early: list[bytes] = []
        if not server_side:
            self._handshake()  # the ClientHello, ready in outgoing()

    def _handshake(self) -> None:
        try:
            self._obj.do_handshake()
        except ssl.SSLWantReadError:
            return
        except (ssl.SSLError, ValueError) as exc:
            raise HandshakeFailed(_reason(exc)) from None
        if self._verify is not None:
            refused = self._verify(peer_identity(self._obj))
            if refused:
                raise HandshakeFailed(refused)
        self.established = True
        early, self._early = self._early, []
        for data in early:
            self._write(data)

    def receive(self, data: bytes) -> bytes:
        """Feed ciphertext from the socket; returns the plaintext it completed (maybe b"")."""
        if data:
            self._in.write(data)
        if not self.established:
            self._handshake()
            if not self.established:
                return b""
        obj, bio = self._obj, self._in
        chunks = []
        while True:
            try:
                chunk = obj.read(_READ)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self.closed = True
                break
            except ssl.SSLError as exc:
                raise HandshakeFailed(_reason(exc)) from None
            if not chunk:
                break
            chunks.append(chunk)
            if not bio.pending and not obj.pending():
                break  # all read: no SSLWantReadError to raise and catch (~3 µs a message)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def send(self, data: bytes) -> None:
        """Queue application data (encrypted now, or once the handshake is done)."""
        if not data:
            return
        if not self.established:
            self._early.append(bytes(data))
            return
        self._write(data)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = self._obj.write(view)
            except ssl.SSLError as exc:
                raise HandshakeFailed(_reason(exc)) from None
            view = view[n:]

    def outgoing(self) -> bytes:
        """The ciphertext to write to the socket now (handshake messages and data)."""
        return self._out.read() if self._out.pending else b""

    @property
    def pending_plaintext(self) -> int:
        """Bytes queued until the handshake finishes."""
        return sum(len(d) for d in self._early)

    def peer(self) -> tuple[str, str] | None:
        """The peer's hakv identity, once established (see ``peer_identity``)."""
        return peer_identity(self._obj) if self.established else None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate rejected: {exc.verify_message}"
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str) and reason.isupper():
        return reason.lower().replace("_", " ")  # PEER_DID_NOT_RETURN_A_CERTIFICATE
    return str(reason or exc)
