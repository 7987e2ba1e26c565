"""A group store's watch history: the events of each revision, in the ``history`` DB.

Written by hakv.storage.store in the same LMDB transaction as the change itself (``_put``
and ``_delete`` call :func:`record`), so after any crash the history holds exactly the
events of the revisions the store holds. History is derived data: each replica compacts
its own (hakv.node.watch decides when, :func:`compact` runs on the raft thread), and a
snapshot carries the sender's history with the rest of the store.

Layout (integers are big-endian u64 unless said otherwise)::

    u64 revision + u16 n  ->  event n of that revision, compact UTF-8 JSON (the wire
                              form of docs/api.md "Watches", prev_kv included)
    \\xff"compact"          ->  the history holds every revision > compact
    \\xff"head"             ->  the last revision recorded
    \\xff"bytes"            ->  total size of the stored events

Revisions are < 2**63, so their first byte is < 0x80 and the three ``\\xff`` keys sort
after every event. A store opened with no history yet (created before watches existed),
or whose recorded head is not its revision (written by a hakv without history), starts
its history afresh at its current revision: ``compact = revision``.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from typing import Any

import lmdb

DB_NAME = b"history"

_U64 = struct.Struct(">Q")
_EVENT_KEY = struct.Struct(">QH")
_COMPACT = b"\xffcompact"
_HEAD = b"\xffhead"
_BYTES = b"\xffbytes"
_META_START = b"\xff"
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _int(txn: lmdb.Transaction, db: Any, key: bytes) -> int | None:
    raw = txn.get(key, db=db)
    return None if raw is None else int(_U64.unpack(bytes(raw))[0])


def open_db(env: lmdb.Environment, meta: Any) -> Any:
    """Open (creating it if needed) the history DB of a writable store; restart the
    history at the store's revision (``meta``'s ``revision``) when it is missing or
    incomplete."""
    with env.begin(write=True) as txn:
        revision = _int(txn, meta, b"revision") or 0
        db = env.open_db(DB_NAME, txn=txn, create=True)
        compact, head = _int(txn, db, _COMPACT), _int(txn, db, _HEAD)
        if compact is None or head != revision or compact > revision:
            txn.drop(db, delete=False)
            txn.put(_COMPACT, _U64.pack(revision), db=db)
            txn.put(_HEAD, _U64.pack(revision), db=db)
            txn.put(_BYTES, _U64.pack(0), db=db)
    return db


def record(txn: lmdb.Transaction, db: Any, revision: int, event: dict[str, Any]) -> None:
    """Append ``event`` to ``revision``'s events (inside the change's own transaction)."""
    n = 0
    with txn.cursor(db=db) as cur:
        # The \xff keys always exist, so set_range lands on a key; the one before it is
        # the last event of ``revision`` if that revision has any.
        if cur.set_range(_U64.pack(revision + 1)) and cur.prev():
            key = bytes(cur.key())
            if len(key) == _EVENT_KEY.size and key[:8] == _U64.pack(revision):
                n = _EVENT_KEY.unpack(key)[1] + 1
    value = _ENCODER.encode(event).encode("utf-8")
    txn.put(_EVENT_KEY.pack(revision, n), value, db=db)
    txn.put(_HEAD, _U64.pack(revision), db=db)
    txn.put(_BYTES, _U64.pack((_int(txn, db, _BYTES) or 0) + len(value)), db=db)


def put_event(key: str, record: dict[str, Any], prev: dict[str, Any] | None) -> dict[str, Any]:
    return {"type": "put", "key": key, "value": record["value"],
            "create_revision": record["create_revision"],
            "mod_revision": record["mod_revision"], "version": record["version"],
            "prev_kv": prev}


def delete_event(key: str, revision: int, prev: dict[str, Any] | None) -> dict[str, Any]:
    return {"type": "delete", "key": key, "mod_revision": revision, "prev_kv": prev}


class HistoryView:
    """One read transaction's view of the history, the revision and the keys."""

    def __init__(self, txn: lmdb.Transaction, db: Any, head: int,
                 scan: Any) -> None:
        self._txn, self._db = txn, db
        self.head = head
        self.compact = _int(txn, db, _COMPACT) or 0
        self._scan = scan

    def entries(self, start: int) -> Iterator[tuple[int, dict[str, Any]]]:
        """(revision, event) of every event with revision >= ``start``, in order."""
        with self._txn.cursor(db=self._db) as cur:
            if not cur.set_range(_U64.pack(start)):
                return
            for raw_key, raw_value in cur.iternext():
                key = bytes(raw_key)
                if key.startswith(_META_START):
                    return
                yield _EVENT_KEY.unpack(key)[0], json.loads(bytes(raw_value))

    def range(self, prefix: str, limit: int) -> tuple[list[dict[str, Any]], bool]:
        """The keys starting with ``prefix`` at ``head`` (same transaction)."""
        result: tuple[list[dict[str, Any]], bool] = self._scan(self._txn, prefix, limit)
        return result


def info(txn: lmdb.Transaction, db: Any) -> tuple[int, int, int]:
    """(compact revision, last recorded revision, bytes of events)."""
    return (_int(txn, db, _COMPACT) or 0, _int(txn, db, _HEAD) or 0,
            _int(txn, db, _BYTES) or 0)


def compact(txn: lmdb.Transaction, db: Any, floor: int, max_entries: int) -> int:
    """Delete the events of revisions <= ``floor``, at most ``max_entries`` of them; the
    new compact revision (a revision partly deleted counts as compacted: no reader may
    see half of it)."""
    current = _int(txn, db, _COMPACT) or 0
    if floor <= current:
        return current
    freed = deleted = 0
    reached = current
    with txn.cursor(db=db) as cur:
        if cur.first():
            while True:
                key = bytes(cur.key())
                if key.startswith(_META_START):
                    break
                revision = _EVENT_KEY.unpack(key)[0]
                if revision > floor or deleted >= max_entries:
                    break
                freed += len(cur.value())
                deleted += 1
                reached = max(reached, revision)
                if not cur.delete():  # moved to the next entry, or none left
                    break
    done = deleted < max_entries
    new = floor if done else max(current, reached)
    txn.put(_COMPACT, _U64.pack(new), db=db)
    txn.put(_BYTES, _U64.pack(max(0, (_int(txn, db, _BYTES) or 0) - freed)), db=db)
    return new
