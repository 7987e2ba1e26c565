"""Session-wide test setup: one CA for every local cluster of the run.

Nodes of a ``LocalCluster`` use mutual TLS by default (docs/security.md). So that any test
can talk to any cluster the way a user with ``HAKV_CACERT``/``HAKV_CERT``/``HAKV_KEY`` set
does, the session makes one CA and one client identity and exports them: every local
cluster signs its node certificates with that CA (``HAKV_LOCAL_CA_DIR``), and every
``hakv.Client``, CLI process and support helper finds the client files in the environment.
A test that needs a plain-HTTP cluster says so (``LocalCluster(..., insecure=True)``, whose
``client()`` speaks plain HTTP).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator

import pytest

from hakv.dev.local import LOCAL_CA_ENV
from hakv.security import certs
from hakv.security.tls import CACERT_ENV, CERT_ENV, KEY_ENV

_VARS = (LOCAL_CA_ENV, CACERT_ENV, CERT_ENV, KEY_ENV)


@pytest.fixture(scope="session", autouse=True)
def session_ca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    d = tmp_path_factory.mktemp("session-ca")
    now = dt.datetime.now(dt.UTC)
    certs.init_ca(d, name="hakv test session CA", now=now)
    certs.client_cert(d, "root", now=now)
    saved = {v: os.environ.get(v) for v in _VARS}
    os.environ.update({LOCAL_CA_ENV: str(d), CACERT_ENV: str(d / "ca.crt"),
                       CERT_ENV: str(d / "client.root.crt"), KEY_ENV: str(d / "client.root.key")})
    try:
        yield
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


@pytest.fixture
def plain_http(monkeypatch: pytest.MonkeyPatch) -> None:
    """No client TLS from the session: for plain-HTTP servers (the scripted test servers,
    clusters run ``--insecure``). Use with ``pytest.mark.usefixtures("plain_http")``."""
    for name in (CACERT_ENV, CERT_ENV, KEY_ENV):
        monkeypatch.delenv(name, raising=False)
