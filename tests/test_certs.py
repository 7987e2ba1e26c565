"""hakv.security.certs and ``hakv certs``: the certificates chain to the CA, Python's ssl
accepts them for a real TLS 1.3 mutual handshake whose peer identities come back out;
keys are 0600; nothing is overwritten silently; expired, not-yet-valid and wrong-CA
certificates give their typed error (time is an argument: no sleeping)."""

from __future__ import annotations

import datetime as dt
import json
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from hakv import errors
from hakv.cli import cli
from hakv.security import certs

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, node n1 (localhost, 127.0.0.1) and user alice, made at NOW."""
    d = tmp_path_factory.mktemp("pki")
    certs.init_ca(d, name="test CA", valid_days=365, now=NOW)
    certs.node_cert(d, "n1", ["localhost", "127.0.0.1"], valid_days=90, now=NOW)
    certs.client_cert(d, "alice", valid_days=90, now=NOW)
    return d


@pytest.fixture(scope="module")
def live_pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A CA with node n1 and user alice, and another CA with user mallory, valid at the wall
    clock's now: OpenSSL checks validity against the real time during a handshake."""
    now = dt.datetime.now(dt.UTC)
    d, other = tmp_path_factory.mktemp("live"), tmp_path_factory.mktemp("live-other")
    certs.init_ca(d, now=now)
    certs.node_cert(d, "n1", ["localhost", "127.0.0.1"], now=now)
    certs.client_cert(d, "alice", now=now)
    certs.init_ca(other, name="other CA", now=now)
    certs.client_cert(other, "mallory", now=now)
    return d, other


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("other")
    certs.init_ca(d, name="other CA", valid_days=365, now=NOW)
    certs.client_cert(d, "mallory", valid_days=90, now=NOW)
    return d


def test_node_and_client_certificates_chain_to_the_ca(pki: Path) -> None:
    for name, ident in (("node.n1.crt", ("node", "n1")), ("client.alice.crt", ("user", "alice"))):
        cert = certs.verify(pki / name, pki / "ca.crt", NOW)
        assert certs.identity_of(cert) == ident
    sans = [i.sans for i in certs.list_certs(pki, NOW) if i.kind == "node"][0]
    assert sans == ["DNS:localhost", "IP:127.0.0.1", "URI:hakv://node/n1"]


def _contexts(pki: Path, client_dir: Path, client: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.minimum_version = ssl.TLSVersion.TLSv1_3
    server.verify_mode = ssl.CERT_REQUIRED
    server.load_verify_locations(pki / "ca.crt")
    server.load_cert_chain(pki / "node.n1.crt", pki / "node.n1.key")
    cli_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cli_ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    cli_ctx.load_verify_locations(pki / "ca.crt")
    cli_ctx.load_cert_chain(client_dir / f"client.{client}.crt", client_dir / f"client.{client}.key")
    return server, cli_ctx


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> tuple[object, object, str]:
    """A TLS handshake over a loopback socket pair: (server's view of the client's
    identity or the server-side error, client's view of the server's identity, version)."""
    a, b = socket.socketpair()
    a.settimeout(10)
    b.settimeout(10)
    seen: dict[str, object] = {}

    def serve() -> None:
        try:
            with server.wrap_socket(a, server_side=True) as s:
                der = s.getpeercert(binary_form=True)
                assert der is not None
                seen["peer"] = certs.identity_of(der)
                s.sendall(b"ok")
        except (ssl.SSLError, OSError) as err:
            seen["peer"] = err

    t = threading.Thread(target=serve)
    t.start()
    try:
        with client.wrap_socket(b, server_hostname="localhost") as s:
            der = s.getpeercert(binary_form=True)
            assert der is not None
            version = s.version() or ""
            got = s.recv(2)
            server_ident: object = certs.identity_of(der) if got == b"ok" else got
    except (ssl.SSLError, OSError) as err:
        version, server_ident = "", err
    finally:
        t.join(10)
    return seen.get("peer"), server_ident, version


def test_python_ssl_does_a_tls13_mutual_handshake_and_identities_come_out(
        live_pki: tuple[Path, Path]) -> None:
    pki, _ = live_pki
    server, client = _contexts(pki, pki, "alice")
    client_seen, server_seen, version = _handshake(server, client)
    assert (client_seen, server_seen, version) == (("user", "alice"), ("node", "n1"), "TLSv1.3")


def test_a_client_certificate_of_another_ca_fails_the_handshake(
        live_pki: tuple[Path, Path]) -> None:
    pki, other = live_pki
    server, client = _contexts(pki, other, "mallory")
    client_seen, _, _ = _handshake(server, client)
    assert isinstance(client_seen, ssl.SSLError)
    assert "certificate verify failed" in str(client_seen)


def test_private_keys_are_0600_and_certificates_not_writable_by_others(pki: Path) -> None:
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in pki.iterdir()}
    assert {n: m for n, m in modes.items() if n.endswith(".key")} == {
        "ca.key": 0o600, "node.n1.key": 0o600, "client.alice.key": 0o600}
    assert sorted(n for n, m in modes.items() if n.endswith(".crt") and not m & 0o022) == [
        "ca.crt", "client.alice.crt", "node.n1.crt"]


@pytest.mark.parametrize("make", [
    lambda d: certs.init_ca(d, now=NOW),
    lambda d: certs.node_cert(d, "n1", ["localhost"], now=NOW),
    lambda d: certs.client_cert(d, "alice", now=NOW),
], ids=["ca", "node", "client"])
def test_existing_files_are_not_overwritten_unless_asked(tmp_path: Path, make) -> None:
    certs.init_ca(tmp_path, now=NOW)
    certs.node_cert(tmp_path, "n1", ["localhost"], now=NOW)
    certs.client_cert(tmp_path, "alice", now=NOW)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(errors.CertificateExistsError, match="refusing to overwrite.*--overwrite"):
        make(tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_overwrite_replaces_the_pair_and_keeps_the_key_private(tmp_path: Path) -> None:
    certs.init_ca(tmp_path, now=NOW)
    first = certs.client_cert(tmp_path, "bob", now=NOW)
    second = certs.client_cert(tmp_path, "bob", now=NOW, overwrite=True)
    assert first.fingerprint != second.fingerprint
    assert stat.S_IMODE(second.key_path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ca.crt", "ca.key", "client.bob.crt", "client.bob.key"]


# name, cert file, CA dir fixture, now, error class, message fragment
VERIFY_ERRORS = [
    ("expired", "node.n1.crt", "pki", NOW + 91 * DAY, errors.CertificateExpiredError,
     r"expired at 2030-04-01.*--overwrite"),
    ("not yet valid", "node.n1.crt", "pki", NOW - DAY, errors.CertificateNotYetValidError,
     r"not valid until 2029-12-31 23:00:00 UTC.*clock"),
    ("wrong CA", "client.mallory.crt", "other_ca", NOW, errors.CertificateWrongCAError,
     r"'other CA'.*not signed by the CA in .*re-issue"),
    ("CA expired", "client.alice.crt", "pki", NOW + 400 * DAY, errors.CertificateExpiredError,
     r"CA certificate .*make a new CA"),
    ("missing", "node.n9.crt", "pki", NOW, errors.CertificateMissingError,
     r"node.n9.crt does not exist.*hakv certs"),
]


@pytest.mark.parametrize("case", VERIFY_ERRORS, ids=[c[0] for c in VERIFY_ERRORS])
def test_verify_gives_a_typed_error_saying_what_to_do(
        case: tuple, request: pytest.FixtureRequest, pki: Path) -> None:
    _, name, cert_dir, now, cls, message = case
    d = request.getfixturevalue(cert_dir)
    with pytest.raises(cls, match=message) as info:
        certs.verify(d / name, pki / "ca.crt", now)
    assert info.value.exit_code == 7
    assert isinstance(info.value, errors.CertificateError)


def test_making_a_leaf_without_a_ca_says_to_run_init_ca(tmp_path: Path) -> None:
    with pytest.raises(errors.CertificateMissingError, match="hakv certs init-ca"):
        certs.node_cert(tmp_path, "n1", ["localhost"], now=NOW)


@pytest.mark.parametrize("node_id,hosts,message", [
    ("n1", [], "no --host"),
    ("../n1", ["localhost"], "not usable in a certificate file name"),
    ("n1", ["bad host!"], "neither an IP address nor a DNS name"),
])
def test_bad_node_arguments_are_refused(pki: Path, node_id: str, hosts: list[str],
                                         message: str) -> None:
    with pytest.raises(errors.CertificateError, match=message):
        certs.node_cert(pki, node_id, hosts, now=NOW)


def test_a_leaf_never_outlives_its_ca(tmp_path: Path) -> None:
    ca = certs.init_ca(tmp_path, valid_days=10, now=NOW)
    assert certs.client_cert(tmp_path, "a", valid_days=100, now=NOW).not_after == ca.not_after


# now, warn days -> status of (ca, client, node); the leaves expire at NOW + 90 d
LIST_STATUSES = [
    (NOW, 30, ("ok", "ok", "ok")),
    (NOW + 70 * DAY, 30, ("ok", "expiring", "expiring")),
    (NOW + 70 * DAY, 10, ("ok", "ok", "ok")),
    (NOW + 91 * DAY, 30, ("ok", "expired", "expired")),
    (NOW - DAY, 30, ("not yet valid", "not yet valid", "not yet valid")),
]


@pytest.mark.parametrize("now,warn,expected", LIST_STATUSES)
def test_list_shows_each_certificate_with_its_status(pki: Path, now: dt.datetime, warn: int,
                                                     expected: tuple[str, ...]) -> None:
    infos = certs.list_certs(pki, now, warn_days=warn)
    assert [(i.kind, i.identity) for i in infos] == [
        ("ca", "test CA"), ("client", "alice"), ("node", "n1")]
    assert tuple(i.status for i in infos) == expected
    ca_fp = infos[0].fingerprint
    assert all(i.issuer_fingerprint == ca_fp for i in infos)


def test_list_flags_a_certificate_of_another_ca(tmp_path: Path, pki: Path,
                                                other_ca: Path) -> None:
    for name in ("ca.crt", "client.alice.crt"):
        (tmp_path / name).write_bytes((pki / name).read_bytes())
    (tmp_path / "client.mallory.crt").write_bytes((other_ca / "client.mallory.crt").read_bytes())
    (tmp_path / "junk.crt").write_text("not a certificate")
    got = {i.path.name: (i.status, i.issuer_fingerprint is None)
           for i in certs.list_certs(tmp_path, NOW)}
    assert got == {"ca.crt": ("ok", False), "client.alice.crt": ("ok", False),
                   "client.mallory.crt": ("wrong CA", True), "junk.crt": ("unreadable", True)}


def test_a_ca_bundle_trusts_old_and_new_ca(pki: Path, other_ca: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.crt"
    bundle.write_bytes(certs.ca_bundle([pki / "ca.crt", other_ca / "ca.crt"]))
    assert certs.verify(pki / "client.alice.crt", bundle, NOW) is not None
    assert certs.identity_of(certs.verify(other_ca / "client.mallory.crt", bundle, NOW)) == (
        "user", "mallory")
    with pytest.raises(errors.CertificateError, match="not a CA certificate"):
        certs.ca_bundle([pki / "node.n1.crt"])


# -- the CLI -------------------------------------------------------------------------------


def _run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.stdout, r.stderr


def test_cli_makes_lists_and_refuses(tmp_path: Path) -> None:
    d = str(tmp_path / "certs")
    steps = [
        (("init-ca", "--certs-dir", d, "--name", "cli CA"), 0, "ca.key (key mode 0600)"),
        (("node", "n1", "--host", "localhost", "--host", "10.0.0.1", "--certs-dir", d), 0,
         "node:n1"),
        (("client", "alice", "--certs-dir", d, "--days", "10"), 0, "user:alice"),
        (("client", "alice", "--certs-dir", d), 7, "certificate_exists"),
        (("client", "alice", "--certs-dir", d, "--overwrite", "--days", "10"), 0, "user:alice"),
        (("node", "n2", "--certs-dir", d), 2, "--host"),
        (("client", "bob", "--certs-dir", str(tmp_path / "none")), 7, "certificate_missing"),
    ]
    for args, code, text in steps:
        rc, out, err = _run("certs", *args)
        assert (rc, text in out + err) == (code, True), (args, out, err)
    rc, out, _ = _run("certs", "list", "--certs-dir", d)
    lines = [line.split() for line in out.splitlines()]
    assert rc == 0
    assert lines[0] == ["KIND", "IDENTITY", "FILE", "EXPIRES", "DAYS_LEFT", "STATUS"]
    assert [(row[0], row[-1]) for row in lines[1:]] == [
        ("ca", "ok"), ("client", "expiring"), ("node", "ok")]
    rc, out, _ = _run("certs", "list", "--certs-dir", d, "--json", "--warn-days", "5")
    shown = json.loads(out)
    assert rc == 0
    assert [(s["kind"], s["identity"], s["status"]) for s in shown] == [
        ("ca", "cli CA", "ok"), ("client", "alice", "ok"), ("node", "n1", "ok")]
    assert shown[2]["sans"] == ["DNS:localhost", "IP:10.0.0.1", "URI:hakv://node/n1"]
