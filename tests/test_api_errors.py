"""The client API's documented errors (docs/api.md "Errors") on real node processes.

One shared 4-node cluster serves every test that does not hurt a node: group g1 is owned
by n1, n2, n3, group g2 by n1, n2, and n4 owns nothing (so every request through it is
forwarded). The tests that kill or pause nodes run their own small 3-node cluster.
Each error is checked on the wire (raw HTTP, tests.support.post) and, where the typed
exception is the point, through hakv.client.client.Client.
"""

from __future__ import annotations

import http.client
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hakv import errors
from hakv.client.client import Client, Compare, Op
from hakv.dev.local import LocalCluster
from tests.support import leader_of, post, start_api_cluster, wait_for, wait_healthy

pytestmark = pytest.mark.slow

NODES = ["n1", "n2", "n3", "n4"]
GROUPS = {"g1": ["n1", "n2", "n3"], "g2": ["n1", "n2"]}
FAULT_NODES = ["n1", "n2", "n3"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    lc = start_api_cluster(tmp_path_factory.mktemp("api"), NODES, GROUPS)
    try:
        yield lc
    finally:
        lc.down()


@pytest.fixture
def fault_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """A cluster of its own, for a test that kills or pauses nodes."""
    lc = start_api_cluster(tmp_path / "fault", FAULT_NODES, {"g1": FAULT_NODES})
    try:
        yield lc
    finally:
        lc.down()


def _ep(cluster: LocalCluster, node: str = "n1") -> str:
    return cluster.endpoint(node)


def _key() -> str:
    return "k-" + uuid.uuid4().hex[:12]


def _error(status: int, body: dict[str, Any], http_status: int, code: str) -> dict[str, Any]:
    assert status == http_status, (status, body)
    err = body.get("error")
    assert isinstance(err, dict), body
    assert err["code"] == code, body
    assert isinstance(err["message"], str) and err["message"], body
    assert isinstance(err["retryable"], bool), body
    return err


def _leader_endpoint(cluster: LocalCluster, group: str) -> str:
    leader = wait_for(lambda: leader_of(cluster.endpoints(), group), 20, what=f"leader of {group}")
    return cluster.endpoint(leader)


# --------------------------------------------------------------------------- bad_request


def test_malformed_json_body_is_bad_request(cluster: LocalCluster) -> None:
    status, body = post(_ep(cluster), "put", b'{"group": "g1", "key": ')
    err = _error(status, body, 400, "bad_request")
    assert err["retryable"] is False


def test_body_that_is_not_an_object_is_bad_request(cluster: LocalCluster) -> None:
    status, body = post(_ep(cluster), "put", b'["g1", "k", "v"]')
    err = _error(status, body, 400, "bad_request")
    assert "object" in err["message"]


def test_missing_group_is_bad_request_naming_group(cluster: LocalCluster) -> None:
    status, body = post(_ep(cluster), "put", {"key": "k", "value": "v"})
    err = _error(status, body, 400, "bad_request")
    assert "group" in err["message"]


def test_unknown_endpoint_path_is_bad_request(cluster: LocalCluster) -> None:
    status, body = post(_ep(cluster), "frobnicate", {"group": "g1", "key": "k"})
    err = _error(status, body, 400, "bad_request")
    assert "frobnicate" in err["message"]


@pytest.mark.parametrize(
    ("op", "request_body", "field"),
    [
        ("put", {"group": "g1", "key": 5, "value": "v"}, "key"),
        ("put", {"group": "g1", "key": "k", "value": 5}, "value"),
        ("get", {"group": "g1", "key": "k", "serializable": "yes"}, "serializable"),
        ("range", {"group": "g1", "limit": "10"}, "limit"),
        (
            "put",
            {"group": "g1", "key": "k", "value": "v", "if_mod_revision": True},
            "if_mod_revision",
        ),
    ],
)
def test_wrong_field_type_is_bad_request_naming_the_field(
    cluster: LocalCluster, op: str, request_body: dict[str, Any], field: str
) -> None:
    status, body = post(_ep(cluster), op, request_body)
    err = _error(status, body, 400, "bad_request")
    assert err["message"].startswith(field), err


def test_client_raises_bad_request_error_for_an_empty_key(cluster: LocalCluster) -> None:
    with Client([_ep(cluster)]) as c, pytest.raises(errors.BadRequestError):
        c.put("g1", "", "v")


# --------------------------------------------------------------------------- 404s


def test_unknown_group_is_404_unknown_group(cluster: LocalCluster) -> None:
    status, body = post(_ep(cluster), "get", {"group": "nope", "key": "k"})
    err = _error(status, body, 404, "unknown_group")
    assert err["retryable"] is False
    assert "nope" in err["message"]


def test_client_raises_unknown_group_error(cluster: LocalCluster) -> None:
    with Client(cluster.endpoints()) as c, pytest.raises(errors.UnknownGroupError):
        c.put("nope", "k", "v")


def test_missing_key_is_404_not_found(cluster: LocalCluster) -> None:
    status, body = post(_ep(cluster), "get", {"group": "g1", "key": _key()})
    err = _error(status, body, 404, "not_found")
    assert err["retryable"] is False


def test_client_get_of_a_missing_key_raises_not_found_error(cluster: LocalCluster) -> None:
    with Client(cluster.endpoints()) as c, pytest.raises(errors.NotFoundError):
        c.get("g1", _key())


# --------------------------------------------------------------------------- too_large


def test_value_over_32_kib_is_413_too_large(cluster: LocalCluster) -> None:
    body = {"group": "g1", "key": _key(), "value": "x" * (32 * 1024 + 1)}
    status, answer = post(_ep(cluster), "put", body)
    err = _error(status, answer, 413, "too_large")
    assert "value" in err["message"]


def test_value_of_exactly_32_kib_is_accepted(cluster: LocalCluster) -> None:
    key = _key()
    status, answer = post(_ep(cluster), "put", {"group": "g1", "key": key, "value": "x" * 32768})
    assert status == 200, answer
    with Client(cluster.endpoints()) as c:
        assert len(c.get("g1", key).value) == 32768


def test_key_over_1024_bytes_is_413_too_large(cluster: LocalCluster) -> None:
    # 513 two-byte characters: 1026 bytes UTF-8 although only 513 characters.
    status, answer = post(_ep(cluster), "put", {"group": "g1", "key": "é" * 513, "value": "v"})
    err = _error(status, answer, 413, "too_large")
    assert "key" in err["message"]


def test_client_raises_request_too_large_error(cluster: LocalCluster) -> None:
    with Client(cluster.endpoints()) as c, pytest.raises(errors.RequestTooLargeError):
        c.put("g1", _key(), "x" * (40 * 1024))


def test_request_body_over_64_kib_is_413_and_the_connection_stays_usable(
    cluster: LocalCluster,
) -> None:
    host, port = _ep(cluster).rsplit(":", 1)
    tls = cluster.client_tls()
    conn = (http.client.HTTPSConnection(host, int(port), timeout=10, context=tls)
            if tls is not None else http.client.HTTPConnection(host, int(port), timeout=10))
    try:
        big = json.dumps({"group": "g1", "key": "k", "pad": "x" * (70 * 1024)}).encode()
        conn.request("POST", "/v1/put", big, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        answer = json.loads(resp.read())
        _error(resp.status, answer, 413, "too_large")
        sock = conn.sock
        assert sock is not None, "the server closed the keep-alive connection after a 413"
        key = _key()
        small = json.dumps({"group": "g1", "key": key, "value": "after"}).encode()
        conn.request("POST", "/v1/put", small, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
        assert isinstance(json.loads(resp.read())["revision"], int)
        assert conn.sock is sock, "the follow-up request needed a new connection"
    finally:
        conn.close()


# --------------------------------------------------------------------------- conflict, txn


def test_if_mod_revision_mismatch_is_409_conflict(cluster: LocalCluster) -> None:
    ep, key = _ep(cluster), _key()
    status, first = post(ep, "put", {"group": "g1", "key": key, "value": "a"})
    assert status == 200, first
    stale = first["revision"] + 1000
    status, body = post(
        ep, "put", {"group": "g1", "key": key, "value": "b", "if_mod_revision": stale}
    )
    err = _error(status, body, 409, "conflict")
    assert err["retryable"] is False
    with Client(cluster.endpoints()) as c:
        assert c.get("g1", key).value == "a"


def test_if_mod_revision_zero_on_an_existing_key_is_conflict(cluster: LocalCluster) -> None:
    ep, key = _ep(cluster), _key()
    assert post(ep, "put", {"group": "g1", "key": key, "value": "a"})[0] == 200
    status, body = post(ep, "put", {"group": "g1", "key": key, "value": "b", "if_mod_revision": 0})
    _error(status, body, 409, "conflict")


def test_client_raises_conflict_error_and_matching_revision_succeeds(
    cluster: LocalCluster,
) -> None:
    key = _key()
    with Client(cluster.endpoints()) as c:
        first = c.put("g1", key, "a", if_mod_revision=0)
        with pytest.raises(errors.ConflictError):
            c.put("g1", key, "b", if_mod_revision=first.revision + 1)
        second = c.put("g1", key, "c", if_mod_revision=first.revision)
        assert second.revision > first.revision
        assert c.get("g1", key).value == "c"


def test_txn_compare_failure_is_succeeded_false_not_an_error(cluster: LocalCluster) -> None:
    ep, key = _ep(cluster), _key()
    assert post(ep, "put", {"group": "g1", "key": key, "value": "taken"})[0] == 200
    status, body = post(
        ep,
        "txn",
        {
            "group": "g1",
            "compare": [{"key": key, "target": "version", "op": "==", "value": 0}],
            "success": [{"op": "put", "key": key, "value": "mine"}],
            "failure": [{"op": "get", "key": key}],
        },
    )
    assert status == 200, body
    assert body["succeeded"] is False
    assert body["results"][0]["kv"]["value"] == "taken"


def test_client_txn_compare_failure_returns_succeeded_false(cluster: LocalCluster) -> None:
    key = _key()
    with Client(cluster.endpoints()) as c:
        c.put("g1", key, "taken")
        res = c.txn("g1", [Compare.value(key, "==", "other")], [Op.delete(key)], [Op.get(key)])
        assert res.succeeded is False
        assert c.get("g1", key).value == "taken"


# --------------------------------------------------------------------------- request_expired


def test_retry_older_than_the_dedup_window_is_410_request_expired(cluster: LocalCluster) -> None:
    ep, client = _ep(cluster), "c-exp-" + uuid.uuid4().hex[:8]
    base = {"group": "g1", "key": _key(), "client": client}
    assert post(ep, "put", {**base, "value": "1", "seq": 1})[0] == 200
    assert post(ep, "put", {**base, "value": "2", "seq": 1000})[0] == 200
    status, body = post(ep, "put", {**base, "value": "1", "seq": 1})
    err = _error(status, body, 410, "request_expired")
    assert err["retryable"] is False


# --------------------------------------------------------------------------- routing, reads


def test_request_through_a_node_owning_no_group_is_forwarded(cluster: LocalCluster) -> None:
    n4 = _ep(cluster, "n4")
    status, st = post(n4, "status", {})
    assert status == 200 and set(st["groups"]) == {"_cluster"}, st  # no resource group
    for group in GROUPS:
        key = _key()
        status, body = post(n4, "put", {"group": group, "key": key, "value": group})
        assert status == 200, body
        status, body = post(n4, "get", {"group": group, "key": key})
        assert status == 200 and body["kv"]["value"] == group, body


def test_errors_of_a_forwarded_request_keep_their_code(cluster: LocalCluster) -> None:
    status, body = post(_ep(cluster, "n4"), "get", {"group": "g1", "key": _key()})
    _error(status, body, 404, "not_found")


def test_client_through_a_non_owner_only(cluster: LocalCluster) -> None:
    # n3 owns g1 but not g2; n4 owns nothing.
    with Client([_ep(cluster, "n3"), _ep(cluster, "n4")]) as c:
        key = _key()
        c.put("g2", key, "v2")
        assert c.get("g2", key).value == "v2"


def test_read_through_a_follower_is_linearizable(cluster: LocalCluster) -> None:
    leader_ep = _leader_endpoint(cluster, "g1")
    others = [ep for ep in cluster.endpoints() if ep != leader_ep]
    key = _key()
    for i in range(5):
        status, put = post(leader_ep, "put", {"group": "g1", "key": key, "value": str(i)})
        assert status == 200, put
        for ep in others:
            status, body = post(ep, "get", {"group": "g1", "key": key})
            assert status == 200, (ep, body)
            assert body["kv"]["value"] == str(i), (ep, i, body)
            assert body["kv"]["mod_revision"] == put["revision"], (ep, body)
            assert body["revision"] >= put["revision"], (ep, body)


def test_serializable_read_answers_from_the_local_copy(cluster: LocalCluster) -> None:
    leader_ep = _leader_endpoint(cluster, "g1")
    key = _key()
    status, put = post(leader_ep, "put", {"group": "g1", "key": key, "value": "s"})
    assert status == 200, put
    # The leader applied the write before answering: its local copy has it at once.
    status, body = post(leader_ep, "get", {"group": "g1", "key": key, "serializable": True})
    assert status == 200 and body["kv"]["value"] == "s", body
    # Followers catch up shortly (a serializable read may be stale, never wrong).
    for node in ("n1", "n2", "n3"):
        ep = cluster.endpoint(node)
        deadline = time.monotonic() + 5
        while True:
            status, body = post(ep, "get", {"group": "g1", "key": key, "serializable": True})
            if status == 200:
                assert body["kv"]["value"] == "s", body
                break
            _error(status, body, 404, "not_found")
            assert time.monotonic() < deadline, f"{node} never applied the write"
            time.sleep(0.05)
    with Client(cluster.endpoints()) as c:
        assert c.get("g1", key, serializable=True).value == "s"


def test_retry_after_success_returns_the_identical_result(cluster: LocalCluster) -> None:
    key = _key()
    body = {"group": "g1", "key": key, "value": "once", "client": "c-" + uuid.uuid4().hex, "seq": 1}
    first = post(_ep(cluster, "n1"), "put", body)
    assert first[0] == 200, first
    for node in NODES:
        again = post(_ep(cluster, node), "put", body)
        assert again == first, (node, again, first)
    status, got = post(_ep(cluster), "get", {"group": "g1", "key": key})
    assert status == 200 and got["kv"]["version"] == 1, got
    assert got["kv"]["mod_revision"] == first[1]["revision"]


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize(
    "survivor_role",
    ["leader", "follower"],
)
def test_sole_survivor_of_a_group_answers_no_quorum(
    fault_cluster: LocalCluster, survivor_role: str
) -> None:
    lc = fault_cluster
    with Client(lc.endpoints()) as c:
        c.put("g1", "before", "v")
    leader = wait_for(lambda: leader_of(lc.endpoints(), "g1"), 20, what="leader")
    survivor = leader if survivor_role == "leader" else next(n for n in FAULT_NODES if n != leader)
    victims = [n for n in FAULT_NODES if n != survivor]
    ep = lc.endpoint(survivor)
    # The survivor must hold "before" locally so the serializable read below can show it.
    wait_for(
        lambda: post(ep, "get", {"group": "g1", "key": "before", "serializable": True})[0] == 200,
        5,
        what="the survivor to apply the write",
    )
    for n in victims:
        lc.kill(n)
    started = time.monotonic()
    status, body = post(ep, "put", {"group": "g1", "key": "k", "value": "v"})
    assert time.monotonic() - started < 5, "the write took too long to fail"
    assert (status, body["error"]["code"]) in ((503, "no_quorum"), (504, "outcome_unknown")), body
    assert body["error"]["retryable"] is True
    # A serializable read answers from the local copy, quorum or not.
    status, body = post(ep, "get", {"group": "g1", "key": "before", "serializable": True})
    assert status == 200 and body["kv"]["value"] == "v", body
    time.sleep(max(0.0, started + 2.0 - time.monotonic()))  # leader fallback is 1 s
    started = time.monotonic()
    status, body = post(ep, "put", {"group": "g1", "key": "k", "value": "v"})
    _error(status, body, 503, "no_quorum")
    status, body = post(ep, "get", {"group": "g1", "key": "before"})
    _error(status, body, 503, "no_quorum")
    assert time.monotonic() - started < 1.0, "no_quorum should be answered at once"
    with Client([ep], timeout=1.5) as c, pytest.raises(errors.NoQuorumError):
        c.put("g1", "k", "v")
    for n in victims:
        lc.start(n, wait=0)
    wait_healthy(lc, victims)
    wait_for(
        lambda: post(ep, "put", {"group": "g1", "key": "k", "value": "back"})[0] == 200,
        30,
        what="writes to succeed after restarting the two nodes",
    )


def test_write_while_both_followers_are_paused_has_unknown_outcome_then_applies_once(
    fault_cluster: LocalCluster,
) -> None:
    lc = fault_cluster
    leader = wait_for(lambda: leader_of(lc.endpoints(), "g1"), 20, what="leader")
    followers = [n for n in FAULT_NODES if n != leader]
    key = _key()
    body = {"group": "g1", "key": key, "value": "v", "client": "c-" + uuid.uuid4().hex, "seq": 1}
    paused: list[str] = []
    try:
        for n in followers:
            lc.pause(n)
            paused.append(n)
        status, answer = post(lc.endpoint(leader), "put", body)
        assert (status, answer["error"]["code"]) in (
            (504, "outcome_unknown"),
            (503, "no_quorum"),
        ), (status, answer)
        assert answer["error"]["retryable"] is True
    finally:
        for n in paused:
            lc.resume(n)

    def retried() -> dict[str, Any] | None:
        for ep in lc.endpoints():
            status, answer = post(ep, "put", body)
            if status == 200:
                return answer
        return None

    result = wait_for(retried, 30, what="the retried write to be answered")
    assert isinstance(result["revision"], int)
    with Client(lc.endpoints(), timeout=10) as c:
        kv = c.get("g1", key)
    assert kv.version == 1, kv
    assert kv.mod_revision == result["revision"]
