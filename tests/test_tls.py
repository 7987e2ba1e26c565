"""hakv.security.tls without sockets: the material a node loads, and the sans-I/O channel
both ports drive (handshake, identity, refusals, garbage)."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest

from hakv import errors
from hakv.security import certs
from hakv.security.tls import Channel, HandshakeFailed, TlsConfig, TlsFiles

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("certs")
    certs.init_ca(d, now=NOW)
    for node in ("n1", "n2"):
        certs.node_cert(d, node, ["127.0.0.1"], now=NOW)
    certs.client_cert(d, "alice", now=NOW)
    return d


def _pump(a: Channel, b: Channel, rounds: int = 4) -> tuple[bytes, bytes]:
    """Carry bytes both ways until quiet; what each side received."""
    got_a = got_b = b""
    for _ in range(rounds):
        got_b += b.receive(a.outgoing())
        got_a += a.receive(b.outgoing())
    return got_a, got_b


def test_two_nodes_handshake_and_learn_each_others_identity(material: Path) -> None:
    n1 = TlsConfig(TlsFiles.node(material, "n1"), now=NOW)
    n2 = TlsConfig(TlsFiles.node(material, "n2"), now=NOW)
    assert (n1.kind, n1.identity) == ("node", "n1")
    client = Channel(n1.client, server_side=False)
    server = Channel(n2.server, server_side=True)
    client.send(b"sent before the handshake")
    assert client.pending_plaintext == len(b"sent before the handshake")
    got_client, got_server = _pump(client, server)
    assert client.established and server.established
    assert got_server == b"sent before the handshake"
    assert client.peer() == ("node", "n2") and server.peer() == ("node", "n1")
    server.send(b"x" * 100_000)  # several records
    assert _pump(client, server)[0] == b"x" * 100_000


def test_a_refused_identity_gets_no_plaintext_through(material: Path) -> None:
    n1 = TlsConfig(TlsFiles.node(material, "n1"), now=NOW)
    n2 = TlsConfig(TlsFiles.node(material, "n2"), now=NOW)
    seen: list[object] = []

    def only_n3(identity: tuple[str, str] | None) -> str | None:
        seen.append(identity)
        return None if identity == ("node", "n3") else f"{identity} is not n3"

    client = Channel(n1.client, server_side=False, verify=only_n3)
    server = Channel(n2.server, server_side=True)
    client.send(b"secret hello")
    with pytest.raises(HandshakeFailed, match="is not n3"):
        _pump(client, server)
    assert seen == [("node", "n2")]
    assert not client.established
    assert b"secret hello" not in server.receive(client.outgoing())


def test_a_client_without_a_certificate_is_refused(material: Path) -> None:
    import ssl

    n2 = TlsConfig(TlsFiles.node(material, "n2"), now=NOW)
    anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    anonymous.check_hostname = False
    anonymous.load_verify_locations(cafile=str(material / "ca.crt"))
    client = Channel(anonymous, server_side=False)
    server = Channel(n2.server, server_side=True)
    client.send(b"hello")
    with pytest.raises(HandshakeFailed, match="certificate"):
        _pump(client, server)
    assert not server.established


def test_a_certificate_of_another_ca_is_refused(material: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    certs.init_ca(other, now=NOW)
    certs.node_cert(other, "n1", ["127.0.0.1"], now=NOW)
    stranger = TlsConfig(TlsFiles.node(other, "n1"), now=NOW)
    n2 = TlsConfig(TlsFiles.node(material, "n2"), now=NOW)
    client = Channel(stranger.client, server_side=False)
    server = Channel(n2.server, server_side=True)
    with pytest.raises(HandshakeFailed, match="certificate"):
        _pump(client, server)


@pytest.mark.parametrize("garbage", [b"\x00" * 64, b"GET / HTTP/1.1\r\n\r\n",
                                     b"\x16\x03\x01\xff\xff" + b"A" * 300])
def test_garbage_is_a_handshake_failure_never_another_exception(material: Path,
                                                                garbage: bytes) -> None:
    n2 = TlsConfig(TlsFiles.node(material, "n2"), now=NOW)
    server = Channel(n2.server, server_side=True)
    try:
        assert server.receive(garbage) == b""
    except HandshakeFailed:
        pass
    assert not server.established


def test_missing_mismatched_and_expired_material_are_typed_errors(material: Path,
                                                                  tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture
                                                                  ) -> None:
    with pytest.raises(errors.CertificateMissingError, match="--insecure"):
        TlsConfig(TlsFiles.node(material, "n9"), now=NOW)
    mixed = TlsFiles(material / "ca.crt", material / "node.n1.crt", material / "node.n2.key")
    with pytest.raises(errors.CertificateError, match="pair"):
        TlsConfig(mixed, now=NOW)
    with pytest.raises(errors.CertificateExpiredError):
        TlsConfig(TlsFiles.node(material, "n1"), now=NOW + dt.timedelta(days=20 * 365))
    with caplog.at_level(logging.WARNING, logger="hakv.security.tls"):
        soon = TlsConfig(TlsFiles.node(material, "n1"),
                         now=NOW + dt.timedelta(days=certs.DEFAULT_CERT_DAYS - 10))
    assert soon.expiring and "expires in" in caplog.text
    assert not TlsConfig(TlsFiles.node(material, "n1"), now=NOW).expiring
