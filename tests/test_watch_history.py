"""The watch history of a group store (hakv.storage.history): written with each change in
its own transaction, read back in whole revisions, compacted in bounds, carried by
snapshots, started afresh on stores that have none."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import lmdb

from hakv.core import codec
from hakv.core import watch as core
from hakv.storage.store import GroupStore

_seq = itertools.count(1)
_index = itertools.count(1)


def write(store: GroupStore, op: str, **body: Any) -> dict[str, Any]:
    payload = codec.encode(codec.write_command(op, body, "c", next(_seq)))
    result = store.apply(next(_index), payload)
    store.commit()
    assert result is not None and "error" not in result, result
    return result


def events(store: GroupStore, start: int, prefix: str = "") -> tuple[list[Any], int, int]:
    request = core.watch_request({"group": "g", "prefix": prefix, "prev_kv": True})
    return store.history_view(lambda v: (
        [(b["revision"], [(e["type"], e["key"], (e["prev_kv"] or {}).get("value"))
                          for e in b["events"]])
         for b in core.collect(v.entries(start), start, v.head, request).batches],
        v.head, v.compact))


def test_every_change_is_recorded_with_its_revision_and_prev(tmp_path: Path) -> None:
    with GroupStore(tmp_path / "s", "g") as store:
        write(store, "put", key="a", value="1")
        write(store, "put", key="a", value="2")
        write(store, "delete", key="missing")  # changes nothing: no revision, no event
        write(store, "txn", compare=[], failure=[],
              success=[{"op": "put", "key": "b", "value": "x"}, {"op": "delete", "key": "a"},
                       {"op": "get", "key": "b"}])
        batches, head, compact = events(store, 1)
        assert (head, compact) == (3, 0)
        assert batches == [(1, [("put", "a", None)]), (2, [("put", "a", "1")]),
                           (3, [("put", "b", None), ("delete", "a", "2")])]
        assert store.history_view(lambda v: v.head) == store.revision()
        assert events(store, 3, prefix="b") == ([(3, [("put", "b", None)])], 3, 0)


def test_compaction_drops_whole_revisions_in_bounded_steps(tmp_path: Path) -> None:
    with GroupStore(tmp_path / "s", "g") as store:
        for i in range(10):
            write(store, "txn", compare=[], failure=[],
                  success=[{"op": "put", "key": f"k{i}/{j}", "value": "v"} for j in range(3)])
        _, _, size = store.history_info()
        # 4 events per step: revision 2 is cut in half, so it counts as compacted too.
        assert store.compact_history(5, max_entries=4) == 2
        assert events(store, 3)[0][0][0] == 3
        assert store.compact_history(5, max_entries=100) == 5
        compact, head, smaller = store.history_info()
        assert (compact, head) == (5, 10) and 0 < smaller < size
        assert [b[0] for b in events(store, 6)[0]] == [6, 7, 8, 9, 10]


def test_snapshot_carries_the_history_and_restore_keeps_it_consistent(tmp_path: Path) -> None:
    with GroupStore(tmp_path / "a", "g") as a, GroupStore(tmp_path / "b", "g") as b:
        for i in range(3):
            write(a, "put", key=f"k{i}", value="v")
        a.snapshot_to(tmp_path / "snap")
        b.restore_from(tmp_path / "snap")
        assert events(b, 1) == events(a, 1)
        assert b.history_info() == a.history_info()


def test_a_store_without_history_starts_it_at_its_revision(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with GroupStore(path, "g") as store:
        for i in range(4):
            write(store, "put", key=f"k{i}", value="v")
    env = lmdb.open(str(path), max_dbs=10)  # as a store written before watches existed
    with env.begin(write=True) as txn:
        txn.drop(env.open_db(b"history", txn=txn), delete=True)
    env.close()
    with GroupStore(path, "g") as store:
        assert store.history_info()[:2] == (4, 4)  # compact = head = its revision
        write(store, "put", key="k9", value="v")
        assert events(store, 5) == ([(5, [("put", "k9", None)])], 5, 4)


def test_history_lagging_the_store_is_restarted_not_trusted(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with GroupStore(path, "g") as store:
        write(store, "put", key="a", value="1")
    env = lmdb.open(str(path), max_dbs=10)  # a downgraded hakv wrote revision 2 without it
    with env.begin(write=True) as txn:
        meta = env.open_db(b"meta", txn=txn)
        txn.put(b"revision", (2).to_bytes(8, "big"), db=meta)
    env.close()
    with GroupStore(path, "g") as store:
        assert store.history_info()[:2] == (2, 2)
        assert events(store, 3) == ([], 2, 2)
