"""hakv.core.access.decide, table-driven: who may do what, and why not."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hakv.core import access
from hakv.errors import BadRequestError

POLICY = access.Policy.from_records([
    ("auth/users/alice", json.dumps({"roles": ["reader"]})),
    ("auth/users/bob", json.dumps({"roles": ["app", "ghost-role"]})),
    ("auth/users/ops", json.dumps({"roles": ["operator"]})),
    ("auth/users/broken", "{not json"),
    ("auth/roles/reader", json.dumps({"grants": [
        {"group": "g1", "prefix": "", "verbs": ["read", "watch"]}]})),
    ("auth/roles/app", json.dumps({"grants": [
        {"group": "g1", "prefix": "app/", "verbs": ["read", "write", "lease"]}]})),
    ("auth/roles/operator", json.dumps({"grants": [
        {"group": "*", "prefix": "", "verbs": ["read", "admin"]},
        {"group": "_cluster", "prefix": "", "verbs": ["admin"]}]})),
])

ALICE, BOB, OPS = ("user", "alice"), ("user", "bob"), ("user", "ops")


def _txn(*ops: dict[str, Any], compare: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    return {"group": "g1", "compare": list(compare), "success": list(ops)}


CASES: list[tuple[str, Any, str, str | None, dict[str, Any], str | None]] = [
    # name, identity, op, group, body, refusal substring (None: allowed)
    ("root may do anything", ("user", "root"), "put", "_cluster", {"key": "x"}, None),
    ("a node may do anything", ("node", "n1"), "notify", None, {}, None),
    ("status needs only an identity", ("user", "nobody"), "status", None, {}, None),
    ("metrics needs only an identity", ("user", "nobody"), "metrics", None, {}, None),
    ("no identity", None, "get", "g1", {"key": "k"}, "no identity"),
    ("a user without a record", ("user", "carol"), "get", "g1", {"key": "k"}, "may not read"),
    ("a malformed user record grants nothing", ("user", "broken"), "get", "g1",
     {"key": "k"}, "may not read"),
    ("reader reads", ALICE, "get", "g1", {"key": "k"}, None),
    ("reader ranges", ALICE, "range", "g1", {"prefix": "a"}, None),
    ("reader watches", ALICE, "watch", "g1", {"prefix": ""}, None),
    ("reader may not write", ALICE, "put", "g1", {"key": "k", "value": "v"}, "may not write"),
    ("reader may not delete", ALICE, "delete", "g1", {"key": "k"}, "may not write"),
    ("reader only on its group", ALICE, "get", "g2", {"key": "k"}, "in group g2"),
    ("reader may not lease", ALICE, "lease_grant", "g1", {"ttl": 5}, "may not lease"),
    ("reader may not move the app", ALICE, "ha", "g1", {"action": "move"}, "may not admin"),
    ("reader reads placement", ALICE, "placement", "g1", {}, None),
    ("a txn of reads is a read", ALICE, "txn", "g1",
     _txn({"op": "get", "key": "k"}, compare=({"key": "k", "target": "version"},)), None),
    ("a write inside a txn needs write", ALICE, "txn", "g1",
     _txn({"op": "get", "key": "k"}, {"op": "put", "key": "k", "value": "v"}),
     "may not write"),
    ("a write in the failure branch too", ALICE, "txn", "g1",
     {"group": "g1", "success": [], "failure": [{"op": "delete", "key": "k"}]},
     "may not write"),
    ("prefix grant: inside", BOB, "put", "g1", {"key": "app/x", "value": "v"}, None),
    ("prefix grant: outside", BOB, "put", "g1", {"key": "other", "value": "v"},
     "on key 'other'"),
    ("prefix grant: a range inside", BOB, "range", "g1", {"prefix": "app/sub"}, None),
    ("prefix grant: a range wider than it", BOB, "range", "g1", {"prefix": "ap"},
     "may not read"),
    ("prefix grant: a txn touching one key outside", BOB, "txn", "g1",
     _txn({"op": "put", "key": "app/x", "value": "v"}, {"op": "put", "key": "x", "value": "v"}),
     "on key 'x'"),
    ("prefix grant: a compare outside", BOB, "txn", "g1",
     _txn({"op": "put", "key": "app/x", "value": "v"},
          compare=({"key": "lock", "target": "version"},)), "on key 'lock'"),
    ("a lease names no key: a prefix grant of lease covers it", BOB, "lease_grant", "g1",
     {"ttl": 5}, None),
    ("an unknown role grants nothing", BOB, "get", "g1", {"key": "app/x"}, None),
    ("wildcard group", OPS, "ha", "g7", {"action": "move"}, None),
    ("wildcard read", OPS, "get", "g7", {"key": "k"}, None),
    ("wildcard is not write", OPS, "put", "g7", {"key": "k", "value": "v"}, "may not write"),
    ("cluster records need admin on _cluster", BOB, "put", "_cluster",
     {"key": "auth/users/bob", "value": "{}"}, "may not admin"),
    ("an operator may change the cluster records", OPS, "txn", "_cluster",
     _txn({"op": "put", "key": "nodes/n9", "value": "{}"}), None),
    ("bridge ops are for nodes only", OPS, "notify", "g1", {}, "nodes only"),
    ("allocations are for nodes only", ("user", "root2"), "allocate", "g1", {}, "nodes only"),
]


@pytest.mark.parametrize(("name", "identity", "op", "group", "body", "refused"), CASES,
                         ids=[c[0] for c in CASES])
def test_decide(name: str, identity: Any, op: str, group: str | None, body: dict[str, Any],
                refused: str | None) -> None:
    got = access.decide(identity, op, group, body, POLICY)
    if refused is None:
        assert got is None, got
    else:
        assert got is not None and refused in got, got


def test_records_are_validated_when_written() -> None:
    assert access.user_record({"roles": ["b", "a", "a"]}) == {"roles": ["a", "b"]}
    with pytest.raises(BadRequestError):
        access.user_record({"roles": "reader"})
    with pytest.raises(BadRequestError):
        access.user_record({"roles": [], "extra": 1})
    with pytest.raises(BadRequestError, match="verbs"):
        access.grant("g1", ["read", "fly"])
    with pytest.raises(BadRequestError, match="verbs"):
        access.grant("g1", [])
    with pytest.raises(BadRequestError, match="group"):
        access.grant("", ["read"])
    with pytest.raises(BadRequestError):
        access.check_name("a/b", "user")
    assert access.role_record({"grants": [{"group": "*", "verbs": ["read"]}]}) == {
        "grants": [{"group": "*", "prefix": "", "verbs": ["read"]}]}


def test_bearer_tokens_stand_for_their_user_until_expiry_or_revocation() -> None:
    token, token_id, record = access.new_token("alice", now=1000.0, ttl=60,
                                               random_bytes=bytes(range(36)))
    assert token.startswith("hakv_" + token_id + "_") and record["expires"] == 1060.0
    assert "sha256" in record and token.split("_", 2)[2] not in json.dumps(record)
    policy = access.Policy.from_records([(access.TOKENS + token_id, json.dumps(record))])
    assert policy.token_identity(token, 1059.9) == ("user", "alice")
    assert policy.token_identity(token, 1060.0) is None  # expired
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert policy.token_identity(forged, 1000.0) is None
    assert access.Policy().token_identity(token, 1000.0) is None  # revoked: no record
    for bad in ("", "Bearer x", "hakv_", "hakv_1234_", "hakv_123456789_x", "x" * 300):
        assert policy.token_identity(bad, 1000.0) is None
    forever = access.new_token("bob", now=0.0, ttl=None, random_bytes=b"\x01" * 36)
    assert forever[2]["expires"] is None
    with pytest.raises(BadRequestError):
        access.new_token("bob", now=0.0, ttl=-1, random_bytes=b"\x01" * 36)
    with pytest.raises(BadRequestError):
        access.token_record({"user": "bob", "sha256": "zz", "expires": None})


SCOPED_ROLES = [(access.USERS + "alice", json.dumps({"roles": ["dev"]})),
                (access.ROLES + "dev", json.dumps({"grants": [
                    {"group": "g1", "prefix": "", "verbs": ["read", "write", "watch"]}]}))]


def _scoped(user: str, verbs: list[str], rb: bytes) -> tuple[str, str, access.Policy]:
    token, token_id, record = access.new_token(user, 0.0, None, rb, verbs)
    assert record["verbs"] == sorted(set(verbs))
    assert access.token_record(json.loads(json.dumps(record))) == record
    policy = access.Policy.from_records(
        [*SCOPED_ROLES, (access.TOKENS + token_id, json.dumps(record))])
    return token, token_id, policy


@pytest.mark.parametrize(("user", "verbs", "op", "group", "body", "allowed"), [
    # a read-only token of root: reads anything, writes nothing, administers nothing
    ("root", ["read"], "get", "g1", {"key": "a"}, True),
    ("root", ["read"], "range", "g9", {"prefix": ""}, True),
    ("root", ["read"], "events", "g1", {}, True),
    ("root", ["read"], "put", "g1", {"key": "a"}, False),
    ("root", ["read"], "txn", "g1", {"compare": [{"key": "a"}],
                                     "success": [{"op": "put", "key": "a"}]}, False),
    ("root", ["read"], "put", "_cluster", {"key": "auth/users/x"}, False),
    ("root", ["read"], "ha", "g1", {"action": "move"}, False),
    ("root", ["read"], "watch", "g1", {"prefix": ""}, False),
    ("root", ["read"], "status", None, {}, True),
    ("root", ["read"], "notify", "g1", {}, False),  # nodes only, never a token
    ("root", ["read", "write"], "put", "g1", {"key": "a"}, True),
    # a scoped token never exceeds its user's grants
    ("alice", ["read", "admin"], "ha", "g1", {"action": "move"}, False),
    ("alice", ["read"], "get", "g2", {"key": "a"}, False),
    ("alice", ["watch"], "watch", "g1", {"prefix": "x/"}, True),
    ("alice", ["watch"], "get", "g1", {"key": "x"}, False),
])
def test_a_scoped_token_does_only_its_verbs_within_its_users_grants(
        user: str, verbs: list[str], op: str, group: str | None, body: dict[str, object],
        allowed: bool) -> None:
    token, token_id, policy = _scoped(user, verbs, bytes(range(36)))
    who = policy.token_identity(token, 1.0)
    assert who == ("token", token_id)
    refused = access.decide(who, op, group, body, policy)
    assert (refused is None) == allowed, refused
    # Revoked (its record gone): nothing, whatever the user may do.
    bare = access.Policy.from_records(SCOPED_ROLES)
    if op != "status":
        assert access.decide(who, op, group, body, bare) is not None


def test_token_verbs_are_checked() -> None:
    for bad in ([], ["fly"], ["read", "fly"]):
        with pytest.raises(BadRequestError, match="token verbs"):
            access.new_token("bob", 0.0, None, b"\x01" * 36, bad)
    for record in ({"user": "bob", "sha256": "ab" * 32, "expires": None, "verbs": "read"},
                   {"user": "bob", "sha256": "ab" * 32, "expires": None, "verbs": []},
                   {"user": "bob", "sha256": "ab" * 32, "expires": None, "x": 1}):
        with pytest.raises(BadRequestError):
            access.token_record(record)
