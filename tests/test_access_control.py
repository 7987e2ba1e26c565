"""Per-group access control on real node processes (docs/security.md, "Access control"):
default deny, grants by group, verb and prefix, checked for every operation (inside a
txn, watches, leases, HA), for forwarded requests as the caller (not the forwarding node),
and revocable while the cluster runs."""

from __future__ import annotations

import datetime as dt
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from hakv import errors
from hakv.client import Client, Compare, Op
from hakv.dev.local import LocalCluster
from hakv.security import certs
from hakv.security.tls import TlsConfig, TlsFiles
from tests.support import start_api_cluster, wait_for

pytestmark = pytest.mark.slow

NODES = ["n1", "n2", "n3", "n4"]
GROUPS = {"g1": ["n1", "n2", "n3"], "g2": ["n2", "n3", "n4"]}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    lc = start_api_cluster(tmp_path_factory.mktemp("access"), NODES, GROUPS)
    now = dt.datetime.now(dt.UTC)
    for name in ("alice", "bob", "carol"):
        certs.client_cert(lc.certs_dir, name, now=now)
    with lc.client(timeout=10) as root:
        root.admin.add_role("reader")
        root.admin.grant("reader", "g1", ["read", "watch"])
        root.admin.add_role("app")
        root.admin.grant("app", "g1", ["read", "write", "lease"], prefix="app/")
        root.admin.add_user("alice", ["reader"])
        root.admin.add_user("bob", ["app"])
        root.put("g1", "k", "v")
        root.put("g1", "app/x", "1")
    # The records reach every node's copy of the cluster ensemble (replication, then a
    # node's 0.25-s reuse of its reading).
    for n in NODES:
        with _as(lc, "alice", [n]) as alice, _as(lc, "bob", [n]) as bob:
            wait_for(lambda a=alice: _can_read(a, "g1"), 10, what=f"alice's grant on {n}")
            # bob's record came after alice's: wait for it too (CI once saw it missing).
            wait_for(lambda b=bob: _can_read(b, "g1", "app/x"), 10, what=f"bob's grant on {n}")
    try:
        yield lc
    finally:
        lc.down()


def _as(lc: LocalCluster, name: str, nodes: list[str] | None = None) -> Client:
    d = lc.certs_dir
    eps = [lc.endpoint(n) for n in nodes] if nodes else lc.endpoints()
    return Client(eps, timeout=5, cacert=str(d / "ca.crt"), cert=str(d / f"client.{name}.crt"),
                  key=str(d / f"client.{name}.key"))


def test_grants_by_group_verb_and_prefix_default_deny(cluster: LocalCluster) -> None:
    with _as(cluster, "alice") as alice:
        assert alice.get("g1", "k").value == "v"
        with pytest.raises(errors.PermissionDeniedError, match="may not write"):
            alice.put("g1", "k", "mine")
        with pytest.raises(errors.PermissionDeniedError, match="in group g2"):
            alice.get("g2", "k")
        with pytest.raises(errors.PermissionDeniedError, match="may not lease"):
            alice.lease_grant("g1", 10)
        with pytest.raises(errors.PermissionDeniedError, match="may not admin"):
            alice.admin.maintenance("g1", True)
        # Every operation inside a txn is checked: one write refuses the whole txn.
        with pytest.raises(errors.PermissionDeniedError, match="may not write"):
            alice.txn("g1", [Compare.version("k", ">", 0)],
                      [Op.get("k"), Op.put("k", "sneaky")])
        assert alice.txn("g1", [Compare.version("k", ">", 0)], [Op.get("k")]).succeeded
        # Nor may she grant herself more: the cluster records need admin on _cluster.
        with pytest.raises(errors.PermissionDeniedError):
            alice.admin.grant_role("alice", "app")
    with _as(cluster, "bob") as bob:
        bob.put("g1", "app/y", "2")
        with pytest.raises(errors.PermissionDeniedError, match="on key 'k'"):
            bob.put("g1", "k", "bob")
        lease = bob.lease_grant("g1", 10)
        bob.lease_revoke("g1", lease.id)
    with _as(cluster, "carol") as carol:  # a valid certificate, no user record
        with pytest.raises(errors.PermissionDeniedError):
            carol.get("g1", "k")
        assert carol.status()  # status needs an identity, no grant
    with cluster.client() as root:
        assert root.get("g1", "k").value == "v"  # nothing of theirs was written


def test_a_forwarded_request_is_checked_as_its_caller(cluster: LocalCluster) -> None:
    # n4 does not own g1: it forwards, and the owner holds the request to alice's grants.
    with _as(cluster, "alice", ["n4"]) as alice:
        assert alice.get("g1", "k").value == "v"
        with pytest.raises(errors.PermissionDeniedError):
            alice.put("g1", "k", "via-n4")
    # The owner's check itself: n4's node certificate, forwarding "for alice".
    body = {"group": "g1", "key": "k", "value": "forged"}
    assert _forwarded_by_n4(cluster, "put", body, "user/alice") == 403
    spec = cluster.topology.node("n1")
    body_bytes = json.dumps(body).encode()
    # A user cannot claim to forward for root.
    d = cluster.certs_dir
    alice_ctx = certs_context(d, "alice")
    with socket.create_connection((spec.host, spec.api_port), timeout=5) as raw:
        with alice_ctx.wrap_socket(raw) as sock:
            sock.sendall(f"POST /v1/put HTTP/1.1\r\nContent-Length: {len(body_bytes)}\r\n"
                         "X-Hakv-On-Behalf-Of: user/root\r\nConnection: close\r\n\r\n"
                         .encode() + body_bytes)
            assert b" 403 " in sock.recv(65536).split(b"\r\n")[0]
    with cluster.client() as root:
        assert root.get("g1", "k").value == "v"


def _forwarded_by_n4(cluster: LocalCluster, op: str, body: dict[str, object],
                     on_behalf: str) -> int:
    """The HTTP status g1's owner n1 answers to a request n4 forwards (n4's node
    certificate) naming ``on_behalf`` as its caller."""
    n4 = TlsConfig(TlsFiles.node(cluster.certs_dir, "n4"), now=dt.datetime.now(dt.UTC))
    spec = cluster.topology.node("n1")
    raw_body = json.dumps(body).encode()
    with socket.create_connection((spec.host, spec.api_port), timeout=5) as raw:
        with n4.client.wrap_socket(raw) as sock:
            sock.sendall(f"POST /v1/{op} HTTP/1.1\r\nContent-Length: {len(raw_body)}\r\n"
                         f"X-Hakv-On-Behalf-Of: {on_behalf}\r\nConnection: close\r\n\r\n"
                         .encode() + raw_body)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    return int(data.split(b" ", 2)[1])


def certs_context(d: Path, name: str) -> object:
    from hakv.security.tls import client_context

    return client_context(d / "ca.crt", d / f"client.{name}.crt", d / f"client.{name}.key",
                          check_hostname=False)


def test_a_revoked_role_stops_working_within_a_second(cluster: LocalCluster) -> None:
    with cluster.client() as root:
        root.admin.add_role("temp")
        root.admin.grant("temp", "g2", ["read"])
        root.admin.add_user("dave", ["temp"])
        root.put("g2", "k", "v2")
    certs.client_cert(cluster.certs_dir, "dave", now=dt.datetime.now(dt.UTC))
    with _as(cluster, "dave") as dave:
        wait_for(lambda: _can_read(dave, "g2"), 5, what="dave's grant to reach every node")
        with cluster.client() as root:
            root.admin.revoke_role("dave", "temp")
        wait_for(lambda: not _can_read(dave, "g2"), 2, what="the revocation to take effect")


def test_a_bearer_token_stands_for_its_user_until_revoked(cluster: LocalCluster) -> None:
    with cluster.client() as root:
        made = root.admin.create_token("alice")
        short = root.admin.create_token("alice", ttl=1.0)
        assert made["id"] in root.admin.tokens()
    ca = str(cluster.certs_dir / "ca.crt")
    with Client(cluster.endpoints(), timeout=5, cacert=ca, token=made["token"]) as alice:
        wait_for(lambda: _can_read(alice, "g1"), 5, what="the token to reach every node")
        with pytest.raises(errors.PermissionDeniedError):  # her grants, not more
            alice.put("g1", "k", "by-token")
        with cluster.client() as root:
            root.admin.revoke_token(made["id"])
        wait_for(lambda: _unauthenticated(alice), 2, what="the revocation to take effect")
    with Client(cluster.endpoints(), timeout=5, cacert=ca, token=short["token"]) as brief:
        wait_for(lambda: _unauthenticated(brief), 5, what="the 1-s token to expire")
    with Client(cluster.endpoints(), timeout=5, cacert=ca,
                token=made["token"][:-2] + "xx") as forged:
        assert _unauthenticated(forged)


def test_a_scoped_token_of_root_only_reads_also_when_forwarded(cluster: LocalCluster) -> None:
    """``hakv token create root --verbs read`` (what ``hakv ui`` puts in its link): reads
    anything, writes nothing, administers nothing; through a non-owner too (n4 forwards
    g1's requests naming ``token/<id>``, and the owner applies the same scope)."""
    with cluster.client() as root:
        made = root.admin.create_token("root", verbs=["read"])
        assert made["verbs"] == ["read"] and root.admin.tokens()[made["id"]]["verbs"] == ["read"]
    ca = str(cluster.certs_dir / "ca.crt")
    for nodes in (["n1"], ["n4"]):  # an owner of g1; a non-owner, which forwards
        with Client([cluster.endpoint(n) for n in nodes], timeout=5, cacert=ca,
                    token=made["token"]) as viewer:
            wait_for(lambda v=viewer: _can_read(v, "g1"), 5, what="the token on " + nodes[0])
            assert viewer.get("g1", "k").value == "v"
            assert isinstance(viewer.admin.events("g1"), list)  # the web page's other read
            with pytest.raises(errors.PermissionDeniedError, match="may only read"):
                viewer.put("g1", "k", "by-a-read-only-token")
            with pytest.raises(errors.PermissionDeniedError, match="may only read"):
                viewer.txn("g1", [Compare.value("k", "==", "v")], [Op.delete("k")])
            with pytest.raises(errors.PermissionDeniedError, match="may only read"):
                viewer.admin.add_user("mallory", ["reader"])
            with pytest.raises(errors.PermissionDeniedError, match="may only read"):
                viewer.lease_grant("g1", 10)
    # The owner's own check (the entry node checks first, so the calls above cannot tell):
    # n4 forwarding for token/<id> is held to the token's scope, not to root's rights.
    caller = f"token/{made['id']}"
    assert _forwarded_by_n4(cluster, "get", {"group": "g1", "key": "k"}, caller) == 200
    for op, body in (("put", {"group": "g1", "key": "k", "value": "forged"}),
                     ("delete", {"group": "g1", "key": "k"})):
        assert _forwarded_by_n4(cluster, op, body, caller) == 403, op
    with cluster.client() as root:
        assert root.get("g1", "k").value == "v"  # nothing the token tried applied
        root.admin.revoke_token(made["id"])


def _unauthenticated(c: Client) -> bool:
    try:
        c.get("g1", "k")
        return False
    except errors.UnauthenticatedError:
        return True


def _can_read(c: Client, group: str, key: str = "k") -> bool:
    try:
        c.get(group, key)
        return True
    except errors.PermissionDeniedError:
        return False


def test_unauthenticated_and_cli_exit_codes(cluster: LocalCluster, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    import hakv

    d = cluster.certs_dir
    env = {**os.environ, "HAKV_CACERT": str(d / "ca.crt"), "HAKV_CERT": str(d / "client.alice.crt"),
           "HAKV_KEY": str(d / "client.alice.key"),
           "PYTHONPATH": str(Path(hakv.__file__).resolve().parent.parent)}
    eps = ",".join(cluster.endpoints())
    denied = subprocess.run([sys.executable, "-m", "hakv", "-e", eps, "put", "g1", "k", "x"],
                            capture_output=True, text=True, env=env, timeout=30)
    assert denied.returncode == 12, denied.stderr
    assert "permission_denied" in denied.stderr
    env.pop("HAKV_CERT"), env.pop("HAKV_KEY")
    anonymous = subprocess.run([sys.executable, "-m", "hakv", "-e", eps, "get", "g1", "k"],
                               capture_output=True, text=True, env=env, timeout=30)
    assert anonymous.returncode == 11, anonymous.stderr
    assert "unauthenticated" in anonymous.stderr
    # A scoped token from the CLI (root's certificate), then used: reads, cannot write.
    env.update({"HAKV_CERT": str(d / "client.root.crt"), "HAKV_KEY": str(d / "client.root.key")})
    made = subprocess.run([sys.executable, "-m", "hakv", "-e", eps, "token", "create", "root",
                           "--verbs", "read", "--ttl", "600", "--json"],
                          capture_output=True, text=True, env=env, timeout=30)
    assert made.returncode == 0, made.stderr
    token = json.loads(made.stdout)
    assert token["verbs"] == ["read"]
    listed = subprocess.run([sys.executable, "-m", "hakv", "-e", eps, "token", "list"],
                            capture_output=True, text=True, env=env, timeout=30)
    assert any(line.split()[0] == token["id"] and line.split()[-1] == "read"
               for line in listed.stdout.splitlines()[1:]), listed.stdout
    env.pop("HAKV_CERT"), env.pop("HAKV_KEY")
    env["HAKV_TOKEN"] = token["token"]
    read = subprocess.run([sys.executable, "-m", "hakv", "-e", eps, "get", "g1", "k"],
                          capture_output=True, text=True, env=env, timeout=30)
    assert read.returncode == 0, read.stderr
    write = subprocess.run([sys.executable, "-m", "hakv", "-e", eps, "put", "g1", "k", "x"],
                           capture_output=True, text=True, env=env, timeout=30)
    assert write.returncode == 12 and "may only read" in write.stderr, write.stderr
    bad = subprocess.run([sys.executable, "-m", "hakv", "-e", eps, "token", "create", "root",
                          "--verbs", "fly"], capture_output=True, text=True,
                         env={**env, "HAKV_CERT": str(d / "client.root.crt"),
                              "HAKV_KEY": str(d / "client.root.key")}, timeout=30)
    assert bad.returncode != 0 and "token verbs" in bad.stderr, bad.stderr


# --------------------------------------------------------------------------- forwarding, twins


def test_a_forwarded_watch_and_allocation_carry_the_callers_identity() -> None:
    """The forwarding node names its caller to the owner (X-Hakv-On-Behalf-Of): a watch
    and an allocation forwarded by a non-owner are checked at the owner as that user, not
    with the node's own identity (the owner's check itself: the test above)."""
    import threading

    from hakv.core.topology import parse_topology
    from hakv.node.api import _serve
    from hakv.node.view import ClusterView
    from hakv.node.watch import WatchHub
    from tests.twins import Peers

    topology = parse_topology(
        "[cluster]\nname = 'w'\n" + "".join(
            f"[[nodes]]\nid = '{n}'\nhost = '127.0.0.1'\nraft_port = {7001 + i}\n"
            f"api_port = {8001 + i}\n" for i, n in enumerate("abcd"))
        + "[[groups]]\nid = 'g1'\nowners = ['a', 'b', 'c']\n")
    peers = Peers()
    peers.nodes = {"127.0.0.1:8001": "a"}
    peers.answers[("127.0.0.1:8001", "watch")] = (200, {"batches": []})
    hub = WatchHub(ClusterView(topology), peers, lambda fn: fn(),
                   hosts=lambda group: False, store=lambda group: None,
                   barrier=lambda group: None, hosted=lambda: [], workers=1, max_forwarded=4)
    try:
        done = threading.Event()
        hub.begin(json.dumps({"group": "g1", "prefix": "k"}).encode(),
                  lambda status, payload: done.set(), "user/alice")
        assert done.wait(5)
    finally:
        hub.close()
    assert [(op, who) for (_, op, _), who in zip(peers.posts, peers.on_behalf, strict=True)] \
        == [("watch", "user/alice")]

    class Server:  # what _serve reads of an ApiServer on node d, which hosts nothing
        service = type("S", (), {"hosts": staticmethod(lambda group: False)})()
        view = ClusterView(topology)
        me = "d"

    Server.peers = peers  # type: ignore[attr-defined]
    peers.nodes["127.0.0.1:8002"] = "b"
    _serve(Server(), "allocate",  # type: ignore[arg-type]
           json.dumps({"group": "g1", "node": "b", "load": 1}).encode(), "user/alice")
    assert (peers.posts[-1][1], peers.on_behalf[-1]) == ("allocate", "user/alice")


def test_a_snapshot_through_a_non_owner_follows_its_cursor(cluster: LocalCluster,
                                                           tmp_path: Path) -> None:
    """A snapshot of g1 asked of n4 (no owner): the first page comes from an owner, and
    each next page is routed by its cursor to the owner that streams it; a user without
    the snapshot verb cannot go on with someone else's cursor."""
    from hakv.client import snapshot

    with cluster.client(timeout=20) as root:
        for i in range(150):  # ~4.5 MB: two pages of 4 MiB
            root.put("g1", f"snap/{i:03d}", chr(97 + i % 26) * 30_000)
    with Client([cluster.endpoint("n4")], timeout=20, cacert=str(cluster.certs_dir / "ca.crt"),
                cert=str(cluster.certs_dir / "client.root.crt"),
                key=str(cluster.certs_dir / "client.root.key")) as via_n4:
        manifest = snapshot.save(via_n4, "g1", tmp_path / "g1.hakvbackup")
        first = via_n4._call("/v1/snapshot", {"group": "g1"}, write=False)
    assert manifest["pages"] == 2 and manifest["keys"] >= 150, manifest
    assert first["source"] in ("n1", "n2", "n3") and first["cursor"].startswith(
        first["source"] + "/")
    with _as(cluster, "alice", ["n4"]) as alice, \
            pytest.raises(errors.PermissionDeniedError, match="may not snapshot"):
        alice._call("/v1/snapshot", {"group": "g1", "cursor": first["cursor"]}, write=False)
