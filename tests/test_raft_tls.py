"""Mutual TLS on the raft port, on real node processes (docs/security.md).

A local cluster runs with TLS by default; a stranger without a certificate, or with a
certificate of another CA, gets nothing unpickled; a node's certificate admits it to its own
groups only; a node without TLS material refuses to start unless told --insecure.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import hakv
from hakv.client.client import Client
from hakv.core.topology import load_topology
from hakv.dev.local import LocalCluster
from hakv.security import certs
from hakv.security.tls import TlsConfig, TlsFiles
from tests.support import Touch, leader_of, pysyncobj_frame, wait_for, write_topology

pytestmark = pytest.mark.slow

NODES = ["n1", "n2", "n3", "n4"]
GROUPS = {"g1": ["n1", "n2", "n3"], "g2": ["n2", "n3", "n4"]}
_ROOT = str(Path(hakv.__file__).resolve().parent.parent)
PROGRESS: list[tuple[int, int]] = []  # what LocalCluster.up reported while nodes started





@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalCluster, Path]]:
    d = tmp_path_factory.mktemp("raft-tls")
    topo = write_topology(d, NODES, GROUPS)
    lc = LocalCluster(d / "run")
    PROGRESS.clear()
    lc.up(str(topo), wait=30, progress=lambda done, total: PROGRESS.append((done, total)))
    try:
        for g in GROUPS:
            wait_for(lambda g=g: leader_of(lc.endpoints(), g), 30, what=f"a leader of {g}")
        yield lc, d
    finally:
        lc.down()


def _raft(lc: LocalCluster, node: str) -> tuple[str, int]:
    spec = lc.topology.node(node)
    return spec.host, spec.raft_port


def _closed_by_peer(sock: socket.socket, within: float = 3.0) -> bool:
    sock.settimeout(within)
    try:
        while True:
            if not sock.recv(4096):
                return True
    except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def test_a_local_cluster_speaks_tls_and_survives_a_restart(
        cluster: tuple[LocalCluster, Path]) -> None:
    lc, _ = cluster
    assert (lc.certs_dir / "ca.crt").exists() and not lc.insecure
    for n in NODES:
        assert "the raft and API ports use TLS as node " + n in lc.log_path(n).read_text()
    with Client(lc.endpoints(), timeout=10) as c:
        for i in range(20):
            c.put("g1", f"k{i}", str(i))
        leader = leader_of(lc.endpoints(), "g1")
        assert leader
        lc.kill(leader)
        c.put("g1", "after-kill", "1")  # a new leader, elected over TLS
        lc.start(leader)
        wait_for(lambda: Client([lc.endpoint(leader)], timeout=2).range(
            "g1", "after-kill", serializable=True).kvs, 30, what="the restarted node to catch up")
        assert c.get("g1", "k7").value == "7"


def test_up_reports_progress_until_every_node_answers(
        cluster: tuple[LocalCluster, Path]) -> None:
    """Issue 16: `hakv local up` and `make demo` draw a bar from these calls."""
    assert PROGRESS and PROGRESS[-1] == (len(NODES), len(NODES))
    assert [d for d, _ in PROGRESS] == sorted(d for d, _ in PROGRESS)


def test_plain_tcp_and_certificateless_tls_get_nothing_unpickled(
        cluster: tuple[LocalCluster, Path], tmp_path: Path) -> None:
    lc, _ = cluster
    proof = tmp_path / "unpickled"
    # 1. pysyncobj's framing over plain TCP.
    with socket.create_connection(_raft(lc, "n1"), timeout=2) as sock:
        sock.sendall(pysyncobj_frame(("hakv1", "g1", "x:1")) + pysyncobj_frame(Touch(str(proof))))
        assert _closed_by_peer(sock)
    # 2. TLS without a client certificate.
    anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    anonymous.check_hostname = False
    anonymous.load_verify_locations(cafile=str(lc.certs_dir / "ca.crt"))
    with socket.create_connection(_raft(lc, "n1"), timeout=2) as raw:
        try:
            with anonymous.wrap_socket(raw) as sock:
                sock.sendall(pysyncobj_frame(Touch(str(proof))))
                assert _closed_by_peer(sock)
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            pass  # refused during the handshake: as good
    # 3. A node certificate of another CA.
    other = tmp_path / "other-ca"
    now = certs.dt.datetime.now(certs.dt.UTC)
    certs.init_ca(other, now=now)
    certs.node_cert(other, "n2", ["127.0.0.1"], now=now)
    forged = TlsConfig(TlsFiles.node(other, "n2"), now=now)
    with socket.create_connection(_raft(lc, "n1"), timeout=2) as raw:
        try:
            with forged.client.wrap_socket(raw) as sock:
                sock.sendall(pysyncobj_frame(Touch(str(proof))))
                assert _closed_by_peer(sock)
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            pass
    time.sleep(0.3)
    assert not proof.exists(), "a node unpickled data from an unauthenticated peer"
    with Client(lc.endpoints(), timeout=10) as c:
        c.put("g1", "still", "fine")
        assert c.get("g1", "still").value == "fine"


def test_a_node_certificate_admits_its_holder_to_its_own_groups_only(
        cluster: tuple[LocalCluster, Path], tmp_path: Path) -> None:
    lc, _ = cluster
    n4 = TlsConfig(TlsFiles.node(lc.certs_dir, "n4"), now=certs.dt.datetime.now(certs.dt.UTC))
    n4_address = "{}:{}".format(*_raft(lc, "n4"))
    proof = tmp_path / "unpickled"
    # n4 owns g2, not g1: a hello for g1 on n1 is refused before any later frame is read.
    with socket.create_connection(_raft(lc, "n1"), timeout=2) as raw:
        with n4.client.wrap_socket(raw) as sock:
            sock.sendall(pysyncobj_frame(("hakv1", "g1", n4_address)) + pysyncobj_frame(Touch(str(proof))))
            assert _closed_by_peer(sock)
    time.sleep(0.3)
    assert not proof.exists()
    log = lc.log_path("n1").read_text()
    assert "node n4 is not a member of group 'g1'" in log
    # Owners are admitted: n4 follows g2 (its copy gets a write made through the others).
    with Client([lc.endpoint("n2"), lc.endpoint("n3")], timeout=10) as c:
        c.put("g2", "for-n4", "1")
    with Client([lc.endpoint("n4")], timeout=3) as c:
        wait_for(lambda: c.range("g2", "for-n4", serializable=True).kvs, 20,
                 what="n4 to replicate g2's write")
    assert "is not a member of group" not in lc.log_path("n4").read_text()


def _node(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    for var in ("HAKV_CERTS_DIR", "HAKV_INSECURE", "HAKV_DEBUG"):
        env.pop(var, None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, env.get("PYTHONPATH", "")) if p)
    return subprocess.run([sys.executable, "-m", "hakv", "node", *args], capture_output=True,
                          text=True, timeout=30, env=env, stdin=subprocess.DEVNULL)


def test_a_node_without_tls_material_refuses_to_start(tmp_path: Path) -> None:
    topo = write_topology(tmp_path, ["n1", "n2"], {"g1": ["n1", "n2"]})
    base = ["--topology", str(topo), "--node", "n1", "--data-dir", str(tmp_path / "data")]
    proc = _node(*base)
    assert proc.returncode == 7, proc.stderr
    assert "no TLS material" in proc.stderr and "--insecure" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "data").exists()
    # A certs dir whose node.n1 certificate is n2's.
    d = tmp_path / "certs"
    now = certs.dt.datetime.now(certs.dt.UTC)
    certs.init_ca(d, now=now)
    certs.node_cert(d, "n2", ["127.0.0.1"], now=now)
    (d / "node.n1.crt").write_bytes((d / "node.n2.crt").read_bytes())
    (d / "node.n1.key").write_bytes((d / "node.n2.key").read_bytes())
    proc = _node(*base, "--certs-dir", str(d))
    assert proc.returncode == 7 and "not of node n1" in proc.stderr, proc.stderr
    proc = _node(*base, "--certs-dir", str(tmp_path / "nowhere"))
    assert proc.returncode == 7 and "does not exist" in proc.stderr, proc.stderr


def test_load_topology_of_the_fixture_is_untouched(cluster: tuple[LocalCluster, Path]) -> None:
    """The certificates name the hosts of the topology the nodes run."""
    lc, d = cluster
    topo = load_topology(d / "topology.toml")
    for spec in topo.nodes:
        cert = certs.load_cert(lc.certs_dir / f"node.{spec.id}.crt")
        assert certs.identity_of(cert) == ("node", spec.id)


# --------------------------------------------------------------------------- the API port


def test_the_api_is_https_and_wants_a_client_certificate(
        cluster: tuple[LocalCluster, Path], tmp_path: Path) -> None:
    from hakv import errors

    lc, _ = cluster
    ca = str(lc.certs_dir / "ca.crt")
    # The run's own client identity: everything works.
    with lc.client(timeout=10) as c:
        c.put("g1", "https", "yes")
    # The CA but no certificate: health answers, the rest is 401 unauthenticated.
    with Client(lc.endpoints(), timeout=5, cacert=ca) as anonymous:
        assert anonymous.health(lc.endpoint("n1"))["node"] == "n1"
        with pytest.raises(errors.UnauthenticatedError, match="client certificate"):
            anonymous.get("g1", "https")
    # Another CA's client certificate, or trusting another CA: a typed certificate error.
    other = tmp_path / "other-ca"
    now = certs.dt.datetime.now(certs.dt.UTC)
    certs.init_ca(other, now=now)
    certs.client_cert(other, "mallory", now=now)
    with Client(lc.endpoints(), timeout=5, cacert=str(other / "ca.crt")) as wrong_ca:
        with pytest.raises(errors.CertificateError, match="refused"):
            wrong_ca.get("g1", "https")
    with Client(lc.endpoints(), timeout=5, cacert=ca, cert=str(other / "client.mallory.crt"),
                key=str(other / "client.mallory.key")) as mallory:
        with pytest.raises(errors.CertificateError):
            mallory.put("g1", "https", "mallory")
    # Plain HTTP to the TLS port: dropped, nothing served.
    host, port = lc.topology.node("n1").host, lc.topology.node("n1").api_port
    with socket.create_connection((host, port), timeout=2) as sock:
        sock.sendall(b'POST /v1/put HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}')
        assert _closed_by_peer(sock)
    with lc.client(timeout=10) as c:
        assert c.get("g1", "https").value == "yes"


@pytest.mark.skipif(not shutil.which("curl"), reason="curl is not installed")
def test_curl_works_with_the_same_flags(cluster: tuple[LocalCluster, Path]) -> None:
    lc, _ = cluster
    d = lc.certs_dir
    proc = subprocess.run(
        ["curl", "-sS", "--cacert", str(d / "ca.crt"), "--cert", str(d / "client.root.crt"),
         "--key", str(d / "client.root.key"), "-X", "POST", "-d", '{"group": "g1"}',
         f"https://{lc.endpoint('n1')}/v1/status"],
        capture_output=True, text=True, timeout=20)
    assert proc.returncode == 0, proc.stderr
    assert '"node": "n1"' in proc.stdout or '"node":"n1"' in proc.stdout, proc.stdout


def _served_fingerprint(lc: LocalCluster, node: str) -> str:
    from hakv.security.tls import client_context

    ca, cert, key = lc.client_files() or (None, None, None)
    assert ca is not None
    context = client_context(ca, cert, key, check_hostname=False)
    spec = lc.topology.node(node)
    with socket.create_connection((spec.host, spec.api_port), timeout=3) as raw:
        with context.wrap_socket(raw) as sock:
            der = sock.getpeercert(binary_form=True)
    assert der
    return certs.fingerprint(certs.x509.load_der_x509_certificate(der))


def test_sighup_reloads_the_certificate_and_keeps_the_old_on_bad_material(
        cluster: tuple[LocalCluster, Path]) -> None:
    import signal

    lc, _ = cluster
    pid = lc.pid("n1")
    assert pid
    before = _served_fingerprint(lc, "n1")
    crt = lc.certs_dir / "node.n1.crt"
    good = crt.read_bytes()
    # Bad material: logged, the old certificate stays in use.
    crt.write_bytes(b"not a certificate")
    os.kill(pid, signal.SIGHUP)
    wait_for(lambda: "TLS material not reloaded" in lc.log_path("n1").read_text(), 10,
             what="n1 to refuse the bad certificate")
    assert _served_fingerprint(lc, "n1") == before
    crt.write_bytes(good)
    # A re-issued certificate: taken without a restart, the cluster keeps working.
    now = certs.dt.datetime.now(certs.dt.UTC)
    certs.node_cert(lc.certs_dir, "n1", ["127.0.0.1"], now=now, overwrite=True)
    os.kill(pid, signal.SIGHUP)
    wait_for(lambda: "reloaded TLS material" in lc.log_path("n1").read_text(), 10,
             what="n1 to reload its certificate")
    assert _served_fingerprint(lc, "n1") != before
    assert lc.pid("n1") == pid
    with Client([lc.endpoint("n1")], timeout=10) as c:
        c.put("g1", "after-reload", "1")
        assert c.get("g1", "after-reload").value == "1"


def test_a_changed_certificate_file_is_reloaded_without_a_signal(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAKV_TLS_RELOAD_CHECK", "0.5")
    topo = write_topology(tmp_path, ["n1", "n2", "n3"], {"g1": ["n1", "n2", "n3"]})
    lc = LocalCluster(tmp_path / "run")
    lc.up(str(topo), wait=30)
    try:
        before = _served_fingerprint(lc, "n1")
        now = certs.dt.datetime.now(certs.dt.UTC)
        certs.node_cert(lc.certs_dir, "n1", ["127.0.0.1"], now=now, overwrite=True)
        wait_for(lambda: "reloaded TLS material" in lc.log_path("n1").read_text(), 10,
                 what="n1 to notice its new certificate file")
        assert "TLS files changed on disk" in lc.log_path("n1").read_text()
        assert _served_fingerprint(lc, "n1") != before
    finally:
        lc.down()
