"""hakv.storage.store: the group state machine on LMDB."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lmdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hakv.core import codec
from hakv.errors import DataDirError
from hakv.storage.store import SEGMENT, GroupStore, StorageFailure, inspect_store

GROUP = "220"


class Log:
    """Feeds a store like Raft does: consecutive indexes, one seq counter per client."""

    def __init__(self, store: GroupStore) -> None:
        self.store = store
        self.index = store.applied_index()
        self.seqs: dict[str, int] = {}

    def raw(self, payload: bytes) -> dict[str, Any] | None:
        self.index += 1
        return self.store.apply(self.index, payload)

    def write(
        self, op: str, client: str = "c1", seq: int | None = None, **body: Any
    ) -> dict[str, Any]:
        if seq is None:
            seq = self.seqs.get(client, 0) + 1
        self.seqs[client] = max(seq, self.seqs.get(client, 0))
        result = self.raw(codec.encode(codec.write_command(op, body, client, seq)))
        assert result is not None
        return result

    def put(self, key: str, value: str, **kw: Any) -> dict[str, Any]:
        return self.write("put", key=key, value=value, **kw)

    def delete(self, key: str, **kw: Any) -> dict[str, Any]:
        return self.write("delete", key=key, **kw)

    def txn(self, compare: list[Any], success: list[Any], failure: list[Any] | None = None) -> Any:
        return self.write("txn", compare=compare, success=success, failure=failure or [])


def kv(key: str, value: str, create: int, mod: int, version: int) -> dict[str, Any]:
    return {
        "key": key,
        "value": value,
        "create_revision": create,
        "mod_revision": mod,
        "version": version,
    }


def error_code(result: dict[str, Any] | None) -> str:
    assert result is not None and "error" in result, result
    assert set(result["error"]) == {"code", "message", "retryable"}
    assert result["error"]["retryable"] is False
    return str(result["error"]["code"])


@pytest.fixture
def store(tmp_path: Path) -> Iterator[GroupStore]:
    with GroupStore(tmp_path / "g", GROUP) as s:
        yield s


@pytest.fixture
def log(store: GroupStore) -> Log:
    return Log(store)


# --- put / delete semantics -------------------------------------------------------------

SEQUENCES: list[tuple[str, list[tuple[str, dict[str, Any]]], list[dict[str, Any]]]] = [
    (
        "first-put-creates",
        [("put", {"key": "a", "value": "1"})],
        [{"revision": 1, "prev": None}],
    ),
    (
        "second-put-bumps-version-keeps-create",
        [("put", {"key": "a", "value": "1"}), ("put", {"key": "a", "value": "2"})],
        [{"revision": 1, "prev": None}, {"revision": 2, "prev": kv("a", "1", 1, 1, 1)}],
    ),
    (
        "same-value-put-still-bumps",
        [("put", {"key": "a", "value": "1"}), ("put", {"key": "a", "value": "1"})],
        [{"revision": 1, "prev": None}, {"revision": 2, "prev": kv("a", "1", 1, 1, 1)}],
    ),
    (
        "delete-existing",
        [("put", {"key": "a", "value": "1"}), ("delete", {"key": "a"})],
        [{"revision": 1, "prev": None}, {"revision": 2, "deleted": 1, "prev": kv("a", "1", 1, 1, 1)}],
    ),
    (
        "delete-missing-changes-nothing",
        [("put", {"key": "a", "value": "1"}), ("delete", {"key": "b"})],
        [{"revision": 1, "prev": None}, {"revision": 1, "deleted": 0, "prev": None}],
    ),
    (
        "recreate-after-delete-resets",
        [
            ("put", {"key": "a", "value": "1"}),
            ("put", {"key": "a", "value": "2"}),
            ("delete", {"key": "a"}),
            ("put", {"key": "a", "value": "3"}),
        ],
        [
            {"revision": 1, "prev": None},
            {"revision": 2, "prev": kv("a", "1", 1, 1, 1)},
            {"revision": 3, "deleted": 1, "prev": kv("a", "2", 1, 2, 2)},
            {"revision": 4, "prev": None},
        ],
    ),
    (
        "if-mod-revision-zero-creates",
        [("put", {"key": "a", "value": "1", "if_mod_revision": 0})],
        [{"revision": 1, "prev": None}],
    ),
    (
        "if-mod-revision-matches",
        [
            ("put", {"key": "a", "value": "1"}),
            ("put", {"key": "a", "value": "2", "if_mod_revision": 1}),
        ],
        [{"revision": 1, "prev": None}, {"revision": 2, "prev": kv("a", "1", 1, 1, 1)}],
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("steps", "expected"), [s[1:] for s in SEQUENCES], ids=[s[0] for s in SEQUENCES]
)
def test_write_sequence_results(
    log: Log, steps: list[tuple[str, dict[str, Any]]], expected: list[dict[str, Any]]
) -> None:
    assert [log.write(op, **body) for op, body in steps] == expected


def test_final_records_and_revision(log: Log, store: GroupStore) -> None:
    log.put("a", "1")  # r1
    log.put("b", "x")  # r2
    log.put("a", "2")  # r3
    log.delete("b")  # r4
    log.put("b", "y")  # r5
    assert store.get("a") == kv("a", "2", 1, 3, 2)
    assert store.get("b") == kv("b", "y", 5, 5, 1)
    assert store.get("zz") is None
    assert store.revision() == 5
    assert store.key_count() == 2


@pytest.mark.parametrize(
    ("existing", "if_mod_revision"),
    [(False, 1), (True, 0), (True, 2)],
    ids=["absent-but-expected-1", "present-but-expected-absent", "stale-revision"],
)
def test_put_if_mod_revision_mismatch_is_a_conflict(
    log: Log, store: GroupStore, existing: bool, if_mod_revision: int
) -> None:
    if existing:
        log.put("a", "1")
    before = store.revision()
    result = log.put("a", "new", if_mod_revision=if_mod_revision)
    assert error_code(result) == "conflict"
    assert f"not {if_mod_revision}" in result["error"]["message"]
    assert store.revision() == before
    assert (store.get("a") or {}).get("value") != "new"


def test_values_and_keys_keep_unicode(log: Log, store: GroupStore) -> None:
    log.put("ключ/🙂", "значение\n\t\"'")
    assert store.get("ключ/🙂") == kv("ключ/🙂", "значение\n\t\"'", 1, 1, 1)


# --- txn --------------------------------------------------------------------------------

# "k": value "b", create_revision 1, mod_revision 2, version 2. "m" does not exist.
COMPARES: list[tuple[str, str, str, Any, bool]] = [
    ("k", "value", "==", "b", True),
    ("k", "value", "!=", "b", False),
    ("k", "value", "<", "c", True),
    ("k", "value", "<", "a", False),
    ("k", "value", ">", "a", True),
    ("k", "value", ">", "c", False),
    ("k", "value", "==", None, False),
    ("k", "value", "!=", None, True),
    ("k", "value", "<", None, False),
    ("k", "value", ">", None, False),
    ("m", "value", "==", None, True),
    ("m", "value", "!=", None, False),
    ("m", "value", "!=", "x", True),
    ("m", "value", "==", "", False),
    ("m", "value", "<", "x", False),
    ("m", "value", ">", "", False),
    ("k", "version", "==", 2, True),
    ("k", "version", "!=", 2, False),
    ("k", "version", "<", 3, True),
    ("k", "version", "<", 2, False),
    ("k", "version", ">", 1, True),
    ("k", "version", ">", 2, False),
    ("m", "version", "==", 0, True),
    ("m", "version", ">", 0, False),
    ("k", "mod_revision", "==", 2, True),
    ("k", "mod_revision", "!=", 1, True),
    ("k", "mod_revision", "<", 2, False),
    ("k", "mod_revision", ">", 1, True),
    ("m", "mod_revision", "==", 0, True),
    ("m", "mod_revision", "<", 1, True),
    ("k", "create_revision", "==", 1, True),
    ("k", "create_revision", "!=", 1, False),
    ("k", "create_revision", "<", 2, True),
    ("k", "create_revision", ">", 1, False),
    ("m", "create_revision", "==", 0, True),
    ("m", "create_revision", "!=", 0, False),
]


@pytest.mark.parametrize(("key", "target", "op", "value", "holds"), COMPARES)
def test_txn_compare(log: Log, key: str, target: str, op: str, value: Any, holds: bool) -> None:
    log.put("k", "a")
    log.put("k", "b")
    result = log.txn(
        [{"key": key, "target": target, "op": op, "value": value}],
        [{"op": "get", "key": "k"}],
        [{"op": "get", "key": "m"}],
    )
    assert result["succeeded"] is holds
    assert result["results"] == ([{"kv": kv("k", "b", 1, 2, 2)}] if holds else [{"kv": None}])
    assert result["revision"] == 2


def test_txn_value_compare_is_a_string_comparison(log: Log) -> None:
    log.put("n", "10")
    cmp = {"key": "n", "target": "value", "op": "<", "value": "9"}
    assert log.txn([cmp], [])["succeeded"] is True


def test_txn_needs_all_compares_to_hold(log: Log) -> None:
    log.put("k", "a")
    ok = {"key": "k", "target": "version", "op": "==", "value": 1}
    bad = {"key": "k", "target": "value", "op": "==", "value": "z"}
    assert log.txn([ok, ok], [])["succeeded"] is True
    assert log.txn([ok, bad], [])["succeeded"] is False


def test_txn_without_compares_succeeds(log: Log) -> None:
    assert log.txn([], [])["succeeded"] is True


def test_txn_branch_shares_one_revision_and_results_follow_ops(log: Log, store: GroupStore) -> None:
    log.put("old", "o")  # r1
    log.put("gone", "g")  # r2
    result = log.txn(
        [{"key": "lock", "target": "version", "op": "==", "value": 0}],
        [
            {"op": "put", "key": "lock", "value": "me"},
            {"op": "get", "key": "lock"},
            {"op": "put", "key": "old", "value": "o2"},
            {"op": "delete", "key": "gone"},
            {"op": "delete", "key": "never"},
            {"op": "get", "key": "gone"},
        ],
    )
    assert result == {
        "succeeded": True,
        "revision": 3,
        "results": [
            {"revision": 3, "prev": None},
            {"kv": kv("lock", "me", 3, 3, 1)},
            {"revision": 3, "prev": kv("old", "o", 1, 1, 1)},
            {"deleted": 1, "prev": kv("gone", "g", 2, 2, 1)},
            {"deleted": 0, "prev": None},
            {"kv": None},
        ],
    }
    assert store.revision() == 3
    assert store.get("old") == kv("old", "o2", 1, 3, 2)
    assert store.key_count() == 2


def test_txn_failure_branch_runs_when_a_compare_fails(log: Log, store: GroupStore) -> None:
    log.put("lock", "other")
    result = log.txn(
        [{"key": "lock", "target": "version", "op": "==", "value": 0}],
        [{"op": "put", "key": "lock", "value": "me"}],
        [{"op": "get", "key": "lock"}, {"op": "put", "key": "waiters", "value": "me"}],
    )
    assert result == {
        "succeeded": False,
        "revision": 2,
        "results": [{"kv": kv("lock", "other", 1, 1, 1)}, {"revision": 2, "prev": None}],
    }
    assert store.get("lock") == kv("lock", "other", 1, 1, 1)


@pytest.mark.parametrize(
    "branch",
    [[], [{"op": "get", "key": "a"}], [{"op": "delete", "key": "missing"}]],
    ids=["empty", "only-get", "delete-missing"],
)
def test_txn_that_changes_nothing_keeps_the_revision(
    log: Log, store: GroupStore, branch: list[Any]
) -> None:
    log.put("a", "1")
    result = log.txn([], branch)
    assert result["revision"] == 1
    assert store.revision() == 1


def test_txn_puts_of_one_key_twice(log: Log, store: GroupStore) -> None:
    log.txn([], [{"op": "put", "key": "a", "value": "1"}, {"op": "put", "key": "a", "value": "2"}])
    assert store.get("a") == kv("a", "2", 1, 1, 2)


# --- barrier, bad commands, internal errors ----------------------------------------------


def test_barrier_returns_revision_and_advances_applied_index(log: Log, store: GroupStore) -> None:
    log.put("a", "1")
    assert log.raw(codec.encode(codec.BARRIER)) == {"revision": 1}
    assert store.applied_index() == 2
    assert store.revision() == 1


BAD_PAYLOADS: list[tuple[str, bytes]] = [
    ("garbage", b"\x00\xff garbage"),
    ("json-list", b"[1,2]"),
    ("no-op", b'{"key":"a"}'),
    ("unknown-op", b'{"op":"explode","client":"c","seq":1}'),
    ("read-op", b'{"op":"get","client":"c","seq":1,"key":"a"}'),
    ("no-client", b'{"op":"put","key":"a","value":"v"}'),
    ("no-seq", b'{"op":"put","client":"c","key":"a","value":"v"}'),
    ("seq-zero", b'{"op":"put","client":"c","seq":0,"key":"a","value":"v"}'),
    ("client-int", b'{"op":"put","client":5,"seq":1,"key":"a","value":"v"}'),
    ("key-int", b'{"op":"put","client":"c","seq":1,"key":5,"value":"v"}'),
    ("key-too-long", json.dumps({"op": "put", "client": "c", "seq": 1, "key": "k" * 2000, "value": ""}).encode()),
    ("bad-compare", b'{"op":"txn","client":"c","seq":1,"compare":[{"key":"a"}]}'),
]  # fmt: skip


@pytest.mark.parametrize("payload", [p for _, p in BAD_PAYLOADS], ids=[i for i, _ in BAD_PAYLOADS])
def test_bad_command_is_a_result_and_advances_applied_index(
    log: Log, store: GroupStore, payload: bytes
) -> None:
    log.put("a", "1")
    result = log.raw(payload)
    assert error_code(result) == "bad_request"
    assert store.applied_index() == 2
    assert store.revision() == 1
    assert store.get("a") == kv("a", "1", 1, 1, 1)


def test_unexpected_failure_mid_command_is_rolled_back(
    log: Log, store: GroupStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    log.put("b", "1")

    def broken_delete(*args: Any) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(store, "_delete", broken_delete)
    result = log.txn([], [{"op": "put", "key": "a", "value": "x"}, {"op": "delete", "key": "b"}])
    assert error_code(result) == "internal"
    assert store.applied_index() == 2
    assert store.get("a") is None
    assert store.revision() == 1
    monkeypatch.undo()
    assert log.put("c", "1")["revision"] == 2


def test_map_grows_between_batches(tmp_path: Path) -> None:
    with GroupStore(tmp_path / "small", GROUP, map_size=256 * 1024) as store:
        log = Log(store)
        for i in range(100):
            log.put(f"k{i}", "v" * 30000)
            store.commit()
        assert store.key_count() == 100


@pytest.mark.parametrize("failure", [MemoryError(), OSError(5, "Input/output error"),
                                     RecursionError("maximum recursion depth exceeded")])
def test_an_environmental_failure_mid_command_crash_stops_instead_of_answering(
    log: Log, store: GroupStore, monkeypatch: pytest.MonkeyPatch, failure: BaseException
) -> None:
    """Another replica (or this one after a restart) may apply the entry fine: an error
    result here would make this replica differ, so apply raises StorageFailure (the raft
    thread crash-stops the node) and records nothing of the batch."""
    log.put("b", "1")

    def failing_delete(*args: Any) -> None:
        raise failure

    monkeypatch.setattr(store, "_delete", failing_delete)
    with pytest.raises(StorageFailure, match=type(failure).__name__):
        log.txn([], [{"op": "put", "key": "a", "value": "x"}, {"op": "delete", "key": "b"}])
    assert store.applied_index() == 0  # the open batch was discarded: the log replays it
    monkeypatch.undo()
    store.abort()
    assert store.get("a") is None


def test_storage_failure_raises(tmp_path: Path) -> None:
    with GroupStore(tmp_path / "small", GROUP, map_size=256 * 1024) as store:
        log = Log(store)
        with pytest.raises(StorageFailure, match="MapFull"):
            for i in range(1000):
                log.put(f"k{i}", "v" * 30000)
        assert store.applied_index() == 0  # the failed batch was discarded


# --- idempotent apply, durability, batches ----------------------------------------------


def test_same_index_is_applied_once(store: GroupStore) -> None:
    payload = codec.encode(codec.write_command("put", {"key": "a", "value": "1"}, "c", 1))
    assert store.apply(1, payload) == {"revision": 1, "prev": None}
    assert store.apply(1, payload) is None
    other = codec.encode(codec.write_command("put", {"key": "a", "value": "2"}, "c", 2))
    assert store.apply(1, other) is None
    assert store.revision() == 1
    assert store.applied_index() == 1


def test_replay_after_reopen_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "g"
    payloads = [
        codec.encode(codec.write_command("put", {"key": f"k{i % 3}", "value": str(i)}, "c", i + 1))
        for i in range(10)
    ]
    with GroupStore(path, GROUP) as store:
        for i, payload in enumerate(payloads, 1):
            store.apply(i, payload)
        store.commit()
        before = (store.range("", 100), store.revision(), store.applied_index())
    with GroupStore(path, GROUP) as store:
        assert [store.apply(i, p) for i, p in enumerate(payloads, 1)] == [None] * 10
        assert (store.range("", 100), store.revision(), store.applied_index()) == before
        assert before[1:] == (10, 10)


def test_committed_batch_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "g"
    with GroupStore(path, GROUP) as store:
        Log(store).put("a", "1")
        store.commit()
    with GroupStore(path, GROUP) as store:
        assert store.get("a") == kv("a", "1", 1, 1, 1)
        assert store.applied_index() == 1


def test_uncommitted_batch_is_lost_on_close(tmp_path: Path) -> None:
    path = tmp_path / "g"
    with GroupStore(path, GROUP) as store:
        log = Log(store)
        log.put("a", "1")
        store.commit()
        log.put("b", "2")
    with GroupStore(path, GROUP) as store:
        assert store.get("b") is None
        assert store.applied_index() == 1


def test_reads_see_the_open_batch(log: Log, store: GroupStore) -> None:
    log.put("a", "1")
    assert store.get("a") == kv("a", "1", 1, 1, 1)
    assert store.range("", 10) == ([kv("a", "1", 1, 1, 1)], False)
    assert (store.revision(), store.applied_index(), store.key_count()) == (1, 1, 1)


def test_abort_discards_the_open_batch(log: Log, store: GroupStore) -> None:
    log.put("a", "1")
    store.commit()
    log.put("b", "2")
    store.abort()
    assert store.get("b") is None
    assert store.applied_index() == 1
    store.commit()  # no batch: no-op
    store.abort()


def test_other_threads_read_committed_state(log: Log, store: GroupStore) -> None:
    log.put("a", "1")
    store.commit()
    log.put("b", "2")
    seen: list[Any] = []
    thread = threading.Thread(target=lambda: seen.extend([store.get("b"), store.applied_index()]))
    thread.start()
    thread.join()
    assert seen == [None, 1]
    store.commit()


# --- exactly-once sessions -------------------------------------------------------------


def test_retry_returns_the_first_result_and_applies_once(log: Log, store: GroupStore) -> None:
    first = log.put("a", "1", client="c", seq=1)
    log.put("a", "2", client="other", seq=1)
    retry = log.put("a", "1", client="c", seq=1)
    assert retry == first == {"revision": 1, "prev": None}
    assert store.revision() == 2
    assert store.get("a") == kv("a", "2", 1, 2, 2)
    assert store.applied_index() == 3


def test_retry_returns_a_stored_conflict_verbatim(log: Log, store: GroupStore) -> None:
    log.put("a", "1", client="w", seq=1)
    conflict = log.put("b", "x", client="c", seq=1, if_mod_revision=5)
    assert error_code(conflict) == "conflict"
    assert log.put("b", "x", client="c", seq=1, if_mod_revision=5) == conflict
    assert store.get("b") is None


def test_retry_of_a_bad_command_returns_the_same_error(log: Log) -> None:
    payload = b'{"op":"put","client":"c","seq":1,"key":"","value":"v"}'
    first = log.raw(payload)
    assert error_code(first) == "bad_request"
    assert log.raw(payload) == first


def test_sessions_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "g"
    with GroupStore(path, GROUP) as store:
        first = Log(store).put("a", "1", client="c", seq=1)
        store.commit()
    with GroupStore(path, GROUP) as store:
        assert Log(store).put("a", "1", client="c", seq=1) == first
        assert store.revision() == 1


def test_seqs_may_arrive_out_of_order_within_the_window(log: Log, store: GroupStore) -> None:
    log.put("a", "3", client="c", seq=3)
    assert log.put("a", "1", client="c", seq=1)["revision"] == 2
    assert log.put("a", "2", client="c", seq=2)["revision"] == 3
    assert log.put("a", "1", client="c", seq=1)["revision"] == 2


def test_retry_below_the_window_is_expired(tmp_path: Path) -> None:
    with GroupStore(tmp_path / "g", GROUP, session_window=4) as store:
        log = Log(store)
        results = [log.put("a", str(seq), client="c", seq=seq) for seq in range(1, 7)]
        # window is now seqs 3..6
        assert log.put("a", "x", client="c", seq=3) == results[2]
        expired = log.put("a", "x", client="c", seq=2)
        assert error_code(expired) == "request_expired"
        assert "seq 2" in expired["error"]["message"]
        assert store.revision() == 6
        assert store.get("a") == kv("a", "6", 1, 6, 6)


def test_default_window_keeps_256_seqs(log: Log) -> None:
    results = [log.put("a", str(seq), client="c", seq=seq) for seq in range(1, 258)]
    assert log.put("a", "x", client="c", seq=2) == results[1]
    assert error_code(log.put("a", "x", client="c", seq=1)) == "request_expired"


def test_client_idle_longest_is_evicted(tmp_path: Path) -> None:
    with GroupStore(tmp_path / "g", GROUP, max_clients=3) as store:
        log = Log(store)
        log.put("k", "a1", client="a", seq=1)  # index 1
        b1 = log.put("k", "b1", client="b", seq=1)  # index 2
        log.put("k", "c1", client="c", seq=1)  # index 3
        log.put("k", "a2", client="a", seq=2)  # index 4: a is now recent, b idle longest
        log.put("k", "d1", client="d", seq=1)  # index 5: evicts b
        assert store.session_count() == 3
        assert log.put("k", "a2", client="a", seq=2)["revision"] == 4  # a still deduplicated
        again = log.put("k", "b1", client="b", seq=1)  # b forgotten: applied again (evicts c)
        assert again != b1 and again["revision"] == 6
        assert log.put("k", "c1", client="c", seq=1)["revision"] == 7  # c was evicted
        assert store.session_count() == 3


def test_eviction_is_deterministic_across_replicas(tmp_path: Path) -> None:
    payloads = [
        codec.encode(
            codec.write_command("put", {"key": f"k{i % 7}", "value": str(i)}, f"c{i * 7 % 11}", i)
        )
        for i in range(1, 200)
    ]
    dumps = []
    for name in ("r1", "r2"):
        with GroupStore(tmp_path / name, GROUP, max_clients=4, session_window=8) as store:
            results = [store.apply(i, p) for i, p in enumerate(payloads, 1)]
            store.commit()
        dumps.append((results, inspect_store(tmp_path / name)))
    assert dumps[0] == dumps[1]
    assert dumps[0][1]["sessions"] == 4


# --- ranges and long keys ---------------------------------------------------------------


def test_range_is_sorted_and_limited(log: Log, store: GroupStore) -> None:
    for key in ["b/2", "a", "b/1", "b/10", "c", "b"]:
        log.put(key, key)
    assert [k["key"] for k in store.range("b", 10)[0]] == ["b", "b/1", "b/10", "b/2"]
    assert [k["key"] for k in store.range("", 10)[0]] == ["a", "b", "b/1", "b/10", "b/2", "c"]
    assert store.range("b/", 2) == ([kv("b/1", "b/1", 3, 3, 1), kv("b/10", "b/10", 4, 4, 1)], True)
    assert store.range("b/", 3)[1] is False
    assert store.range("zz", 3) == ([], False)


def test_reads_with_their_revision(log: Log, store: GroupStore) -> None:
    log.put("a", "1")
    log.put("b", "2")
    assert store.get_at("a") == (kv("a", "1", 1, 1, 1), 2)
    assert store.get_at("zz") == (None, 2)
    assert store.range_at("", 1) == ([kv("a", "1", 1, 1, 1)], True, 2)


LONG_KEYS = [
    "x" * (SEGMENT - 1),
    "x" * SEGMENT,
    "x" * (SEGMENT + 1),
    "x" * SEGMENT + "a",
    "x" * SEGMENT + "\x01",
    "x" * (SEGMENT - 1) + "y",
    "x" * (SEGMENT - 1) + "é" + "z" * 400,
    "x" * (2 * SEGMENT) + "q" * 20,
    "x" * (2 * SEGMENT + 1),
    "x" * 1024,
    "é" * 512,
    "é" * 251 + "e" + "é" * 200,
    "w",
    "y",
]


def test_long_keys_are_stored_and_sorted_by_bytes(log: Log, store: GroupStore) -> None:
    for key in LONG_KEYS:
        log.put(key, key[-3:])
    expected = sorted(LONG_KEYS, key=lambda k: k.encode())
    assert [k["key"] for k in store.range("", 100)[0]] == expected
    for key in LONG_KEYS:
        assert store.get(key) == kv(
            key, key[-3:], LONG_KEYS.index(key) + 1, LONG_KEYS.index(key) + 1, 1
        )
    for prefix in ["x" * SEGMENT, "x" * (SEGMENT + 1), "x" * 1000, "é" * 300, "x" * SEGMENT + "a"]:
        got = [k["key"] for k in store.range(prefix, 100)[0]]
        assert got == [k for k in expected if k.startswith(prefix)]


def test_deleting_long_keys_leaves_no_buckets(log: Log, store: GroupStore) -> None:
    for key in LONG_KEYS:
        log.put(key, "v")
    for key in LONG_KEYS:
        assert log.delete(key)["deleted"] == 1
    assert store.range("", 100) == ([], False)
    assert store.key_count() == 0
    store.commit()
    with store._env.begin() as txn:
        assert txn.stat(store._kv)["entries"] == 0


@settings(max_examples=40, deadline=None)
@given(
    ops=st.lists(
        st.tuples(
            st.booleans(),
            st.sampled_from(["", "x" * 400, "x" * SEGMENT, "x" * (SEGMENT + 200)]),
            st.text(alphabet="ab\u00e9", min_size=1, max_size=4),
        ),
        max_size=40,
    ),
    prefix=st.sampled_from(["", "a", "x" * 300, "x" * SEGMENT, "x" * (SEGMENT + 1), "x" * 800]),
)
def test_range_matches_a_dict_model(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[bool, str, str]], prefix: str
) -> None:
    model: dict[str, str] = {}
    with GroupStore(tmp_path_factory.mktemp("model") / "g", GROUP) as store:
        log = Log(store)
        for is_put, head, tail in ops:
            key = head + tail
            if is_put:
                log.put(key, tail)
                model[key] = tail
            else:
                log.delete(key)
                model.pop(key, None)
        kvs, more = store.range(prefix, 10)
        want = sorted((k for k in model if k.startswith(prefix)), key=lambda k: k.encode())
        assert [k["key"] for k in kvs] == want[:10]
        assert [k["value"] for k in kvs] == [model[k] for k in want[:10]]
        assert more is (len(want) > 10)
        assert store.key_count() == len(model)


# --- snapshots --------------------------------------------------------------------------


def test_snapshot_round_trip_into_another_store(tmp_path: Path) -> None:
    with GroupStore(tmp_path / "a", GROUP) as src:
        log = Log(src)
        log.put("a", "1")
        first = log.put("x" * 900, "long", client="c", seq=7)
        log.delete("a")
        src.snapshot_to(tmp_path / "snap")  # commits the open batch first
        assert (tmp_path / "snap").is_file()
        expected = (src.range("", 100), src.revision(), src.applied_index(), src.session_count())
    with GroupStore(tmp_path / "b", GROUP) as dst:
        Log(dst).put("junk", "1")
        dst.commit()
        dst.restore_from(tmp_path / "snap")
        assert (
            dst.range("", 100),
            dst.revision(),
            dst.applied_index(),
            dst.session_count(),
        ) == expected
        assert expected[2] == 3
        log = Log(dst)
        assert log.put("x" * 900, "long", client="c", seq=7) == first  # sessions came along
        assert log.put("b", "2", client="new")["revision"] == 4
        dst.commit()
    with GroupStore(tmp_path / "b", GROUP) as dst:
        assert dst.applied_index() == 5
    assert not (tmp_path / "b.old").exists() and not (tmp_path / "b.restore").exists()


def test_restore_from_a_store_directory(tmp_path: Path) -> None:
    with GroupStore(tmp_path / "a", GROUP) as src:
        Log(src).put("a", "1")
        src.commit()
    with GroupStore(tmp_path / "b", GROUP) as dst:
        dst.restore_from(tmp_path / "a")
        assert dst.get("a") == kv("a", "1", 1, 1, 1)


def test_restore_refuses_another_groups_snapshot(tmp_path: Path) -> None:
    with GroupStore(tmp_path / "other", "222") as other:
        other.snapshot_to(tmp_path / "snap")
    with GroupStore(tmp_path / "g", GROUP) as store:
        Log(store).put("a", "1")
        store.commit()
        with pytest.raises(DataDirError, match="belongs to group 222, not 220"):
            store.restore_from(tmp_path / "snap")
        assert store.get("a") == kv("a", "1", 1, 1, 1)


def test_interrupted_restore_is_finished_on_open(tmp_path: Path) -> None:
    with GroupStore(tmp_path / "a", GROUP) as src:
        Log(src).put("a", "1")
        src.snapshot_to(tmp_path / "snap")
    (tmp_path / "g.restore").mkdir()
    os.replace(tmp_path / "snap", tmp_path / "g.restore" / "data.mdb")
    with GroupStore(tmp_path / "g", GROUP) as store:  # crash between the two renames
        assert store.get("a") == kv("a", "1", 1, 1, 1)
    assert not (tmp_path / "g.restore").exists()


def test_incomplete_restore_is_discarded_on_open(tmp_path: Path) -> None:
    with GroupStore(tmp_path / "g", GROUP) as store:
        Log(store).put("keep", "1")
        store.commit()
    (tmp_path / "g.restore").mkdir()
    (tmp_path / "g.restore" / "data.mdb").write_bytes(b"half")
    with GroupStore(tmp_path / "g", GROUP) as store:
        assert store.get("keep") is not None
    assert not (tmp_path / "g.restore").exists()


# --- data dir checks and inspect_store ---------------------------------------------------


def test_wrong_group_is_refused(tmp_path: Path) -> None:
    GroupStore(tmp_path / "g", "222").close()
    with pytest.raises(DataDirError) as info:
        GroupStore(tmp_path / "g", GROUP)
    assert f"{tmp_path / 'g'} belongs to group 222, not 220: wrong --data-dir?" in str(info.value)


def test_garbage_directory_is_refused_as_corrupt(tmp_path: Path) -> None:
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "data.mdb").write_bytes(os.urandom(64 * 1024))
    with pytest.raises(DataDirError, match="is corrupt .*move it away and let the node resync"):
        GroupStore(tmp_path / "g", GROUP)


def test_foreign_lmdb_environment_is_refused(tmp_path: Path) -> None:
    env = lmdb.open(str(tmp_path / "g"))
    with env.begin(write=True) as txn:
        txn.put(b"hello", b"world")
    env.close()
    with pytest.raises(DataDirError, match="not a hakv group store"):
        GroupStore(tmp_path / "g", GROUP)


def test_unknown_format_is_refused(tmp_path: Path) -> None:
    GroupStore(tmp_path / "g", GROUP).close()
    env = lmdb.open(str(tmp_path / "g"), max_dbs=8)
    meta = env.open_db(b"meta")
    with env.begin(write=True) as txn:
        txn.put(b"format", b"99", db=meta)
    env.close()
    with pytest.raises(DataDirError, match="has store format 99, this hakv reads format 1"):
        GroupStore(tmp_path / "g", GROUP)


def test_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "g").write_text("x")
    with pytest.raises(DataDirError, match="not a directory"):
        GroupStore(tmp_path / "g", GROUP)


def test_inspect_store_dumps_a_store(tmp_path: Path) -> None:
    with GroupStore(tmp_path / "g", GROUP) as store:
        log = Log(store)
        log.put("b", "2", client="x")
        log.put("a", "1", client="y")
        log.raw(codec.encode(codec.BARRIER))
        log.raw(codec.encode(codec.node_status_command("n1", {"state": "up"}, 12.5)))
        store.commit()
        store.snapshot_to(tmp_path / "snap")
    expected = {
        "group": GROUP,
        "applied_index": 4,
        "revision": 2,
        "keys": 2,
        "kvs": [kv("a", "1", 2, 2, 1), kv("b", "2", 1, 1, 1)],
        "sessions": 2,
        "node_status": {"n1": {"status": {"state": "up"}, "time": 12.5, "index": 4}},
    }
    assert inspect_store(tmp_path / "g") == expected
    assert inspect_store(tmp_path / "snap") == expected


def test_inspect_store_caps_the_dump_at_1000_kvs(tmp_path: Path) -> None:
    with GroupStore(tmp_path / "g", GROUP) as store:
        log = Log(store)
        for i in range(1001):
            log.put(f"k{i:05d}", "v")
        store.commit()
    info = inspect_store(tmp_path / "g")
    assert (info["keys"], len(info["kvs"]), info["kvs"][-1]["key"]) == (1001, 1000, "k00999")


@pytest.mark.parametrize(
    ("setup", "fragment"),
    [
        ("missing", "does not exist"),
        ("empty-dir", "no data.mdb"),
        ("garbage", "is corrupt"),
        ("garbage-file", "is corrupt"),
    ],
)
def test_inspect_store_refuses_non_stores(tmp_path: Path, setup: str, fragment: str) -> None:
    path = tmp_path / "g"
    if setup == "empty-dir":
        path.mkdir()
    elif setup == "garbage":
        path.mkdir()
        (path / "data.mdb").write_bytes(b"\x17" * 20000)
    elif setup == "garbage-file":
        path.write_bytes(b"\x17" * 20000)
    with pytest.raises(DataDirError, match=fragment):
        inspect_store(path)


def test_a_node_status_record_is_kept_apart_from_the_key_space(tmp_path: Path) -> None:
    with GroupStore(tmp_path / "g", GROUP) as store:
        cmd = codec.encode(codec.node_status_command("n2", {"state": "up", "load": 1}, 5.0))
        assert store.apply(1, cmd) == {"node": "n2", "index": 1}
        store.apply(2, codec.encode(codec.node_status_command("n2", {"state": "down"}, 6.0)))
        store.commit()
        assert store.node_statuses() == {
            "n2": {"status": {"state": "down"}, "time": 6.0, "index": 2}}
        assert (store.revision(), store.key_count()) == (0, 0)


@pytest.mark.parametrize("bad", [
    {"op": "node_status", "node": "", "status": {}, "time": 1.0},
    {"op": "node_status", "node": "n1", "status": "up", "time": 1.0},
    {"op": "node_status", "node": "n1", "status": {}, "time": "now"},
], ids=["empty-node", "status-not-object", "time-not-number"])
def test_a_malformed_node_status_is_an_error_result_not_a_crash(
        tmp_path: Path, bad: dict) -> None:  # type: ignore[type-arg]
    with GroupStore(tmp_path / "g", GROUP) as store:
        result = store.apply(1, json.dumps(bad).encode())
        assert result is not None and result["error"]["code"] == "bad_request"
        assert store.applied_index() == 1 and store.node_statuses() == {}


def test_a_forgotten_node_status_record_is_gone(tmp_path: Path) -> None:
    with GroupStore(tmp_path / "g", GROUP) as store:
        store.apply(1, codec.encode(codec.node_status_command("n2", {"state": "up"}, 5.0)))
        store.apply(2, codec.encode(codec.node_status_command("n3", {"state": "up"}, 5.0)))
        result = store.apply(3, codec.encode(codec.node_status_forget_command("n2")))
        store.commit()
        assert result is not None and result["forgotten"] is True
        assert sorted(store.node_statuses()) == ["n3"]
