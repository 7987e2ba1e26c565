"""Certificates for hakv: a cluster CA, node certificates and client certificates
(``hakv certs``, docs/security.md "Certificates").

Pure but for file I/O: the time is an argument wherever validity is computed (``now``, an
aware UTC ``datetime``), so tests pass any instant instead of sleeping.

Algorithm: ECDSA on P-256 with SHA-256, for the CA and every leaf. Python's ``ssl``
(OpenSSL 1.1.1+) accepts it for TLS 1.3 mutual authentication, as does every other TLS
stack an operator may point at a node (curl on any backend, Go, Java, browsers, HSMs);
Ed25519 certificates also work with OpenSSL but not with every client, and buy nothing
measurable at hakv's handshake rates.

Layout of a certs dir (one file pair per identity, like CockroachDB's)::

    ca.crt               the cluster CA certificate (PEM); during a CA rotation a bundle
                         of the old and the new CA (see ``ca_bundle``)
    ca.key               the CA private key (0600); keep it off the nodes in production
    node.<id>.crt/.key   a node's certificate: SAN DNS/IP entries for its hosts plus
                         URI:hakv://node/<id>; EKU serverAuth and clientAuth
    client.<name>.crt/.key  a user's certificate: URI:hakv://user/<name>; EKU clientAuth

Private keys are created with ``os.open(O_CREAT|O_EXCL, 0o600)`` (never chmod after the
fact, so the key is never readable by others, not even for a moment) and then renamed into
place; nothing existing is overwritten unless ``overwrite=True``.

Leaves are backdated by one hour (clock skew between the machine that makes them and the
nodes) and never outlive the CA that signs them.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hakv.errors import (
    CertificateError,
    CertificateExistsError,
    CertificateExpiredError,
    CertificateMissingError,
    CertificateNotYetValidError,
    CertificateWrongCAError,
)

__all__ = [
    "CA_CERT",
    "CA_KEY",
    "DEFAULT_CA_DAYS",
    "DEFAULT_CERT_DAYS",
    "DEFAULT_WARN_DAYS",
    "CertInfo",
    "Issued",
    "ca_bundle",
    "client_cert",
    "fingerprint",
    "identity_of",
    "init_ca",
    "list_certs",
    "load_cert",
    "node_cert",
    "verify",
]

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
DEFAULT_CA_DAYS = 3650  # ten years, as CockroachDB
DEFAULT_CERT_DAYS = 1825  # five years
DEFAULT_WARN_DAYS = 30
BACKDATE = dt.timedelta(hours=1)
URI_PREFIX = "hakv://"

Kind = Literal["node", "user"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class Issued:
    """What a ``init_ca``/``node_cert``/``client_cert`` call wrote."""

    cert_path: Path
    key_path: Path
    identity: str
    not_after: dt.datetime
    fingerprint: str


@dataclass(frozen=True)
class CertInfo:
    """One certificate file of a certs dir, as ``list_certs`` sees it at ``now``."""

    path: Path
    kind: str  # "ca", "node", "client" or "unknown"
    identity: str
    sans: list[str] = field(default_factory=list)
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None
    days_left: int | None = None
    fingerprint: str = ""
    issuer_fingerprint: str | None = None  # the CA in ca.crt that signed it, if any did
    status: str = "ok"  # ok | expiring | expired | not yet valid | wrong CA | no CA | unreadable

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.path.name,
            "kind": self.kind,
            "identity": self.identity,
            "sans": self.sans,
            "not_before": self.not_before.isoformat() if self.not_before else None,
            "not_after": self.not_after.isoformat() if self.not_after else None,
            "days_left": self.days_left,
            "fingerprint": self.fingerprint,
            "issuer_fingerprint": self.issuer_fingerprint,
            "status": self.status,
        }


# -- making certificates ---------------------------------------------------------------------


def init_ca(
    certs_dir: str | os.PathLike[str],
    *,
    name: str = "hakv CA",
    valid_days: int = DEFAULT_CA_DAYS,
    now: dt.datetime,
    overwrite: bool = False,
) -> Issued:
    """Make a self-signed CA (``ca.crt``, ``ca.key``) in ``certs_dir``."""
    _check_days(valid_days)
    d = _ensure_dir(certs_dir)
    cert_path, key_path = d / CA_CERT, d / CA_KEY
    _refuse_existing([cert_path, key_path], overwrite, what="the CA",
                     hint="a new CA invalidates every certificate the old one signed; "
                          "see docs/security.md for rotating a CA without downtime")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hakv"),
        x509.NameAttribute(NameOID.COMMON_NAME, name),
    ])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_utc(now) - BACKDATE)
        .not_valid_after(_utc(now) + dt.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          key_cert_sign=True, crl_sign=True, encipher_only=False,
                          decipher_only=False),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_pair(cert_path, key_path, cert, key)
    return Issued(cert_path, key_path, f"ca:{name}", cert.not_valid_after_utc, fingerprint(cert))


def node_cert(
    certs_dir: str | os.PathLike[str],
    node_id: str,
    hosts: Sequence[str],
    *,
    valid_days: int = DEFAULT_CERT_DAYS,
    now: dt.datetime,
    overwrite: bool = False,
) -> Issued:
    """A certificate for node ``node_id`` reachable at ``hosts`` (DNS names or IPs),
    signed by the dir's CA: ``node.<id>.crt``/``.key``; good as server and as client."""
    _check_name(node_id, "node id")
    if not hosts:
        raise CertificateError(f"node {node_id}: no --host given: name every DNS name and "
                               "IP address the other nodes and clients use to reach it")
    sans: list[x509.GeneralName] = [_host_san(h) for h in hosts]
    sans.append(x509.UniformResourceIdentifier(f"{URI_PREFIX}node/{node_id}"))
    return _issue(certs_dir, f"node.{node_id}", node_id, sans,
                  [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
                  valid_days=valid_days, now=now, overwrite=overwrite)


def client_cert(
    certs_dir: str | os.PathLike[str],
    name: str,
    *,
    valid_days: int = DEFAULT_CERT_DAYS,
    now: dt.datetime,
    overwrite: bool = False,
) -> Issued:
    """A certificate for user ``name``, signed by the dir's CA: ``client.<name>.crt``/``.key``."""
    _check_name(name, "user name")
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(f"{URI_PREFIX}user/{name}")]
    return _issue(certs_dir, f"client.{name}", name, sans, [ExtendedKeyUsageOID.CLIENT_AUTH],
                  valid_days=valid_days, now=now, overwrite=overwrite)


def ca_bundle(paths: Iterable[str | os.PathLike[str]]) -> bytes:
    """The CA certificates in ``paths`` concatenated as one PEM bundle (old and new CA
    during a rotation: trust both, sign with the new). Every one must be a CA."""
    out: list[bytes] = []
    for p in paths:
        for cert in _load_all(Path(p)):
            if not _is_ca(cert):
                raise CertificateError(f"{p}: {_subject_cn(cert)!r} is not a CA certificate; "
                                       "a CA bundle holds only CA certificates")
            out.append(cert.public_bytes(serialization.Encoding.PEM))
    if not out:
        raise CertificateError("ca_bundle: no CA certificate given")
    return b"".join(out)


# -- reading certificates --------------------------------------------------------------------


def identity_of(cert: x509.Certificate | bytes) -> tuple[Kind, str]:
    """``("node", id)`` or ``("user", name)`` from the ``hakv://`` URI SAN of a certificate
    (a ``cryptography`` certificate or its DER bytes, e.g. ``getpeercert(binary_form=True)``)."""
    if isinstance(cert, bytes):
        cert = x509.load_der_x509_certificate(cert)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = x509.SubjectAlternativeName([])
    found = []
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.startswith(URI_PREFIX):
            kind, _, ident = uri[len(URI_PREFIX):].partition("/")
            if kind in ("node", "user") and _NAME.match(ident):
                found.append((kind, ident))
    if len(found) != 1:
        raise CertificateError(
            f"certificate {_subject_cn(cert)!r} carries {len(found)} hakv identities "
            "(URI SAN hakv://node/<id> or hakv://user/<name>), not one: issue it with "
            "`hakv certs node` or `hakv certs client`")
    kind, ident = found[0]
    return ("node" if kind == "node" else "user"), ident


def load_cert(path: str | os.PathLike[str]) -> x509.Certificate:
    """The first certificate in a PEM file; typed errors for a missing or unreadable one."""
    return _load_all(Path(path))[0]


def fingerprint(cert: x509.Certificate) -> str:
    return "sha256:" + cert.fingerprint(hashes.SHA256()).hex()


def verify(cert_path: str | os.PathLike[str], ca_path: str | os.PathLike[str],
           now: dt.datetime) -> x509.Certificate:
    """Check that ``cert_path`` was signed by a CA in ``ca_path`` (a bundle is fine) and that
    both are valid at ``now``; returns the certificate, or raises a typed
    :class:`~hakv.errors.CertificateError` whose message says what to do."""
    cert = load_cert(cert_path)
    cas = _load_all(Path(ca_path))
    now = _utc(now)
    issuer = _issuer_in(cert, cas)
    if issuer is None:
        raise CertificateWrongCAError(
            f"{cert_path} ({_subject_cn(cert)!r}, issued by {_issuer_cn(cert)!r}) was not "
            f"signed by the CA in {ca_path} ({', '.join(fingerprint(c) for c in cas)}): "
            "re-issue it with this CA (`hakv certs node|client ... --overwrite`) or point at "
            "the CA that signed it", cert=str(cert_path), ca=str(ca_path))
    for what, c, path in (("CA certificate", issuer, ca_path), ("certificate", cert, cert_path)):
        if now < c.not_valid_before_utc:
            raise CertificateNotYetValidError(
                f"{what} {path} is not valid until {_iso(c.not_valid_before_utc)} (now "
                f"{_iso(now)}): check this machine's clock (and the one that issued it)",
                cert=str(path))
        if now > c.not_valid_after_utc:
            days = (now - c.not_valid_after_utc).days
            fix = ("make a new CA and re-issue every certificate (docs/security.md, "
                   "rotation)" if c is issuer else
                   "issue a new one with `hakv certs node|client ... --overwrite`")
            raise CertificateExpiredError(
                f"{what} {path} expired at {_iso(c.not_valid_after_utc)} ({days} days "
                f"ago): {fix}", cert=str(path))
    return cert


def list_certs(certs_dir: str | os.PathLike[str], now: dt.datetime,
               *, warn_days: int = DEFAULT_WARN_DAYS) -> list[CertInfo]:
    """Every ``*.crt`` of ``certs_dir`` (CA first, then by file name) with its status at
    ``now``: ok, expiring (within ``warn_days``), expired, not yet valid, wrong CA (not
    signed by ``ca.crt``), no CA (no ``ca.crt`` to check against) or unreadable."""
    d = Path(certs_dir)
    if not d.is_dir():
        raise CertificateMissingError(
            f"certs dir {d} does not exist: make it with `hakv certs init-ca --certs-dir {d}`")
    now = _utc(now)
    try:
        cas = _load_all(d / CA_CERT)
    except CertificateError:
        cas = []
    paths = sorted(d.glob("*.crt"), key=lambda p: (p.name != CA_CERT, p.name))
    return [_info(p, cas, now, warn_days) for p in paths]


# -- internals -------------------------------------------------------------------------------


def _info(path: Path, cas: list[x509.Certificate], now: dt.datetime,
          warn_days: int) -> CertInfo:
    try:
        cert = _load_all(path)[0]
    except CertificateError:
        return CertInfo(path, "unknown", "-", status="unreadable")
    sans = _san_strings(cert)
    if _is_ca(cert):
        kind, ident = "ca", _subject_cn(cert)
        issuer: x509.Certificate | None = _issuer_in(cert, [cert])  # self-signed?
        if issuer is not None and cas and path.name != CA_CERT:
            issuer = _issuer_in(cert, cas) or issuer  # an old CA kept beside the new one
    else:
        try:
            k, ident = identity_of(cert)
            kind = "node" if k == "node" else "client"
        except CertificateError:
            kind, ident = "unknown", _subject_cn(cert)
        issuer = _issuer_in(cert, cas)
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    days_left = (not_after - now).days
    if issuer is None:
        status = "wrong CA" if cas or kind == "ca" else "no CA"
    elif now < not_before:
        status = "not yet valid"
    elif now > not_after:
        status = "expired"
    elif not_after - now <= dt.timedelta(days=warn_days):
        status = "expiring"
    else:
        status = "ok"
    return CertInfo(path, kind, ident, sans, not_before, not_after, days_left,
                    fingerprint(cert), fingerprint(issuer) if issuer is not None else None,
                    status)


def _issue(certs_dir: str | os.PathLike[str], stem: str, cn: str,
           sans: list[x509.GeneralName], eku: list[x509.ObjectIdentifier], *,
           valid_days: int, now: dt.datetime, overwrite: bool) -> Issued:
    _check_days(valid_days)
    d = Path(certs_dir)
    ca_cert, ca_key = _load_ca(d)
    cert_path, key_path = d / f"{stem}.crt", d / f"{stem}.key"
    _refuse_existing([cert_path, key_path], overwrite, what=stem,
                     hint="the old certificate stays valid until it expires")
    now = _utc(now)
    if now > ca_cert.not_valid_after_utc:
        raise CertificateExpiredError(
            f"CA certificate {d / CA_CERT} expired at {_iso(ca_cert.not_valid_after_utc)}: "
            "make a new CA (docs/security.md, rotation)")
    key = ec.generate_private_key(ec.SECP256R1())
    not_after = min(now + dt.timedelta(days=valid_days), ca_cert.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hakv"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(max(now - BACKDATE, ca_cert.not_valid_before_utc))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          key_cert_sign=False, crl_sign=False, encipher_only=False,
                          decipher_only=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False)
    )
    cert = builder.sign(ca_key, hashes.SHA256())
    _write_pair(cert_path, key_path, cert, key)
    ident = ("node:" if stem.startswith("node.") else "user:") + cn
    return Issued(cert_path, key_path, ident, cert.not_valid_after_utc, fingerprint(cert))


def _load_ca(d: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key_path = d / CA_KEY
    for p in (d / CA_CERT, key_path):
        if not p.exists():
            raise CertificateMissingError(
                f"{p} does not exist: make the CA first with `hakv certs init-ca --certs-dir "
                f"{d}` (or give the --certs-dir that holds ca.crt and ca.key)", path=str(p))
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (ValueError, TypeError) as err:
        raise CertificateError(f"{key_path} is not an unencrypted PEM private key: {err}",
                               path=str(key_path)) from err
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertificateError(f"{key_path} is not an EC private key (hakv uses P-256)")
    # ca.crt may be a bundle (rotation): sign with the CA whose public key is ca.key's.
    pub = key.public_key().public_numbers()
    for cert in _load_all(d / CA_CERT):
        cpub = cert.public_key()
        if isinstance(cpub, ec.EllipticCurvePublicKey) and cpub.public_numbers() == pub:
            return cert, key
    raise CertificateError(f"{key_path} does not belong to any certificate in "
                           f"{d / CA_CERT}: the CA files are mismatched")


def _load_all(path: Path) -> list[x509.Certificate]:
    if not path.exists():
        raise CertificateMissingError(
            f"{path} does not exist: check --certs-dir, or make it with `hakv certs "
            "init-ca|node|client`", path=str(path))
    try:
        certs = x509.load_pem_x509_certificates(path.read_bytes())
    except ValueError as err:
        raise CertificateError(f"{path} is not a PEM certificate file: {err}",
                               path=str(path)) from err
    if not certs:
        raise CertificateError(f"{path} holds no certificate", path=str(path))
    return certs


def _issuer_in(cert: x509.Certificate, cas: Iterable[x509.Certificate]) -> x509.Certificate | None:
    for ca in cas:
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return ca
    return None


def _write_pair(cert_path: Path, key_path: Path, cert: x509.Certificate,
                key: ec.EllipticCurvePrivateKey) -> None:
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    _write_new(key_path, key_pem, 0o600)
    _write_new(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to a fresh temporary file created with ``mode`` (O_EXCL: never an
    existing file, never a chmod after the fact), fsync it, rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _refuse_existing(paths: list[Path], overwrite: bool, *, what: str, hint: str) -> None:
    if overwrite:
        return
    existing = [str(p) for p in paths if p.exists()]
    if existing:
        raise CertificateExistsError(
            f"{' and '.join(existing)} already exist(s): refusing to overwrite {what} "
            f"(pass --overwrite to replace it; {hint})", paths=existing)


def _ensure_dir(certs_dir: str | os.PathLike[str]) -> Path:
    d = Path(certs_dir)
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    return d


def _host_san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not re.match(r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$", host) or ".." in host:
        raise CertificateError(f"--host {host!r} is neither an IP address nor a DNS name")
    return x509.DNSName(host)


def _check_name(name: str, what: str) -> None:
    if not _NAME.match(name):
        raise CertificateError(f"{what} {name!r} is not usable in a certificate file name: "
                               "use letters, digits, '.', '_' and '-' (not first), at most 128")


def _check_days(days: int) -> None:
    if days < 1:
        raise CertificateError(f"--days {days}: a certificate must be valid for at least a day")


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _san_strings(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    out = [f"DNS:{v}" for v in san.get_values_for_type(x509.DNSName)]
    out += [f"IP:{v}" for v in san.get_values_for_type(x509.IPAddress)]
    out += [f"URI:{v}" for v in san.get_values_for_type(x509.UniformResourceIdentifier)]
    return out


def _subject_cn(cert: x509.Certificate) -> str:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else cert.subject.rfc4514_string()


def _issuer_cn(cert: x509.Certificate) -> str:
    attrs = cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else cert.issuer.rfc4514_string()


def _utc(now: dt.datetime) -> dt.datetime:
    if now.tzinfo is None:
        raise CertificateError("internal: `now` must be an aware datetime (UTC)")
    return now.astimezone(dt.UTC)


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
