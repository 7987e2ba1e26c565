"""Lease state in the group store (hakv.storage.leases): commands fed in log order, as
Raft applies them, to a real LMDB store. Term fencing of expiries (etcd#12528), keepalives
that win over a racing checkpoint or expiry, one revision per revocation, attach/detach,
typed errors that change nothing, snapshot/restore."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hakv.core import codec, leases
from hakv.storage.store import GroupStore
from tests.test_store import Log

GROUP = "220"


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with GroupStore(tmp_path / "s", GROUP) as s:
        yield s


def leader(log: Log, cmd: dict[str, Any]) -> dict[str, Any]:
    result = log.raw(codec.encode(cmd))
    assert result is not None
    return result


def keys(store: GroupStore) -> list[str]:
    store.commit()
    return [kv["key"] for kv in store.range("", 100)[0]]


def test_grant_attach_revoke_deletes_every_key_in_one_revision(store: GroupStore) -> None:
    log = Log(store)
    lease = log.write("lease_grant", ttl=5)
    assert lease == {"id": 1, "ttl": 5.0}
    log.put("a", "1", lease=1)
    log.put("b", "2", lease=1)
    log.put("other", "x")
    rev = store.revision()
    rec, attached = store.lease(1, keys=True)
    assert rec is not None and rec.keys == 2 and attached == ["a", "b"]
    out = log.write("lease_revoke", id=1)
    assert out == {"id": 1, "revision": rev + 1, "deleted": 2}
    assert store.revision() == rev + 1  # both keys in ONE revision
    assert keys(store) == ["other"]
    assert store.lease(1) == (None, [])
    assert store.lease_marks()[2] == 0


def test_put_without_lease_detaches_and_delete_detaches(store: GroupStore) -> None:
    log = Log(store)
    log.write("lease_grant", ttl=5)
    log.put("a", "1", lease=1)
    log.put("b", "1", lease=1)
    log.put("a", "2")  # detached: survives the revocation
    log.delete("b")
    assert store.lease(1)[0].keys == 0  # type: ignore[union-attr]
    assert store.lease_of("a") == 0
    log.put("c", "1", lease=1)
    assert log.write("lease_revoke", id=1)["deleted"] == 1
    assert keys(store) == ["a"]


def test_txn_put_attaches_like_a_lock_would(store: GroupStore) -> None:
    """A lock: create the key attached to the holder's lease, if it does not exist."""
    log = Log(store)
    log.write("lease_grant", ttl=5, id=77)
    res = log.txn([{"key": "lock", "target": "create_revision", "op": "==", "value": 0}],
                  [{"op": "put", "key": "lock", "value": "me", "lease": 77}])
    assert res["succeeded"]
    assert store.lease_of("lock") == 77
    log.write("lease_revoke", id=77)
    assert keys(store) == []


ERRORS = [
    # id, command, error code
    ("put-unknown-lease", ("put", {"key": "k", "value": "v", "lease": 9}), "lease_not_found"),
    ("txn-unknown-lease", ("txn", {"compare": [], "failure": [], "success": [
        {"op": "put", "key": "k", "value": "v"},
        {"op": "put", "key": "j", "value": "v", "lease": 9}]}), "lease_not_found"),
    ("keepalive-unknown", ("lease_keepalive", {"id": 9}), "lease_not_found"),
    ("revoke-unknown", ("lease_revoke", {"id": 9}), "lease_not_found"),
    ("grant-taken-id", ("lease_grant", {"ttl": 3, "id": 1}), "conflict"),
]


@pytest.mark.parametrize("op,body,code", [e[1] + (e[2],) for e in ERRORS],
                         ids=[e[0] for e in ERRORS])
def test_bad_lease_writes_get_typed_errors_and_change_nothing(
        store: GroupStore, op: str, body: dict[str, Any], code: str) -> None:
    log = Log(store)
    log.write("lease_grant", ttl=3)
    log.put("k", "old")
    before = (store.revision(), keys(store), store.lease_table(), store.lease_marks())
    result = log.write(op, **body)
    assert result["error"]["code"] == code
    assert (store.revision(), keys(store), store.lease_table(), store.lease_marks()) == before
    assert store.get("k")["value"] == "old"  # type: ignore[index]


def test_retried_grant_returns_the_first_lease(store: GroupStore) -> None:
    log = Log(store)
    first = log.write("lease_grant", ttl=3, seq=1)
    again = log.write("lease_grant", ttl=3, seq=1)
    assert first == again and len(store.lease_table()) == 1


def test_stale_expiry_is_rejected_after_a_later_takeover(store: GroupStore) -> None:
    """etcd#12528: a deposed leader's countdown must not revoke. Fed in log order: the
    old leader (term 3) takes over, a new leader (term 4) takes over, then the old
    leader's expiry arrives: rejected on every replica, the keys stay."""
    log = Log(store)
    lease = log.write("lease_grant", ttl=2)
    log.put("k", "v", lease=lease["id"])
    refresh = store.lease(lease["id"])[0].refresh  # type: ignore[union-attr]
    assert leader(log, leases.takeover_command(3))["applied"]
    assert leader(log, leases.takeover_command(4))["applied"]
    stale = leader(log, leases.expire_command(3, [(lease["id"], refresh)]))
    assert stale["applied"] is False and "stale" in stale["why"]
    assert keys(store) == ["k"]
    assert not leader(log, leases.takeover_command(3))["applied"]  # terms never go back
    assert not leader(log, leases.checkpoint_command(3, [(lease["id"], refresh, 1)]))["applied"]
    rev = store.revision()
    done = leader(log, leases.expire_command(4, [(lease["id"], refresh)]))
    assert done["expired"] == [lease["id"]] and done["revisions"] == [rev + 1]
    assert keys(store) == [] and store.revision() == rev + 1


def test_a_keepalive_between_deadline_and_expiry_wins(store: GroupStore) -> None:
    log = Log(store)
    lease = log.write("lease_grant", ttl=2)["id"]
    log.put("k", "v", lease=lease)
    leader(log, leases.takeover_command(1))
    old = store.lease(lease)[0].refresh  # type: ignore[union-attr]
    log.write("lease_keepalive", id=lease)  # committed before the leader's expiry
    out = leader(log, leases.expire_command(1, [(lease, old)]))
    assert out["expired"] == [] and keys(store) == ["k"]
    out = leader(log, leases.checkpoint_command(1, [(lease, old, 10)]))
    assert out["checkpointed"] == []  # the keepalive's full TTL stands
    assert store.lease(lease)[0].remaining_ms == 2000  # type: ignore[union-attr]


def test_checkpoints_only_shorten(store: GroupStore) -> None:
    log = Log(store)
    lease = log.write("lease_grant", ttl=10)["id"]
    leader(log, leases.takeover_command(1))
    refresh = store.lease(lease)[0].refresh  # type: ignore[union-attr]
    for sent, stored in ((7000, 7000), (9000, 7000), (2500, 2500)):
        leader(log, leases.checkpoint_command(1, [(lease, refresh, sent)]))
        assert store.lease(lease)[0].remaining_ms == stored  # type: ignore[union-attr]


def test_snapshot_carries_lease_state(tmp_path: Path, store: GroupStore) -> None:
    log = Log(store)
    lease = log.write("lease_grant", ttl=4)["id"]
    log.put("k", "v", lease=lease)
    leader(log, leases.takeover_command(5))
    snap = tmp_path / "snap"
    store.snapshot_to(snap)
    with GroupStore(tmp_path / "other", GROUP) as other:
        other.restore_from(snap)
        assert other.lease_table() == store.lease_table()
        assert other.lease_marks() == store.lease_marks()
        assert other.lease_of("k") == lease
        log2 = Log(other)
        assert log2.write("lease_revoke", id=lease, client="c9")["deleted"] == 1
        assert keys(other) == []


def test_malformed_leader_commands_are_rejected(store: GroupStore) -> None:
    log = Log(store)
    for cmd in ({"op": "lease_expire", "term": 1, "leases": [[1]]},
                {"op": "lease_checkpoint", "term": "x", "leases": []},
                {"op": "lease_takeover"}):
        assert leader(log, cmd)["error"]["code"] == "bad_request"
