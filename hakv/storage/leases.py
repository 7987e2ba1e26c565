"""A group's replicated lease state, in one named LMDB database (``leases``) of the group
store (hakv.storage.store calls this from its apply; the commands and the reasons are
hakv.core.leases', the contract docs/api.md's "Leases").

Layout (integers are u64 big-endian, as in the rest of the store; docs/storage.md):

===============================  ==============================================================
``T``                            lessor term: the term of the last applied ``lease_takeover``
``N``                            next lease id the group assigns
``n``                            number of live leases
``C``                            log index of the last grant, keepalive, revoke or expiry
                                 (the leader's lessor re-reads the table when it moves)
``L`` + id                       ttl_ms, remaining_ms, refresh (index of the last grant or
                                 keepalive), keys (attached)
``K`` + id + sha256(key)         the key (UTF-8): the keys of a lease
``A`` + sha256(key)              id: the lease a key is attached to
===============================  ==============================================================

Keys are hashed because they may be 1024 bytes and an LMDB key at most 511. The table
never deletes a key itself: revocation and expiry hand the attached keys to the store's
own write path (``delete_keys``, a transaction of deletes), so the deletions are one
revision, recorded like any other delete; each delete then detaches its key here.

No lmdb import: the transaction and database handles come from the store.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from typing import Any

from hakv.core import leases
from hakv.core.leases import LeaseRecord
from hakv.errors import ConflictError, LeaseNotFoundError, RequestTooLargeError

__all__ = ["DB_NAME", "LeaseTable"]

DB_NAME = b"leases"
_U64 = struct.Struct(">Q")
_LEASE = struct.Struct(">QQQQ")  # ttl_ms, remaining_ms, refresh, keys
_TERM, _NEXT, _COUNT, _CHANGED = b"T", b"N", b"n", b"C"


def _hash(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def _lease_key(lease_id: int) -> bytes:
    return b"L" + _U64.pack(lease_id)


class LeaseTable:
    """The lease database of one store. ``delete_keys(txn, keys)`` deletes keys through
    the store's write path in one revision and returns that revision."""

    def __init__(self, env: Any, delete_keys: Callable[[Any, list[str]], int]) -> None:
        self.db = env.open_db(DB_NAME, create=True)
        self._delete_keys = delete_keys

    # -- small helpers -------------------------------------------------------------------

    def _int(self, txn: Any, name: bytes) -> int:
        raw = txn.get(name, db=self.db)
        return 0 if raw is None else int(_U64.unpack(bytes(raw))[0])

    def _set(self, txn: Any, name: bytes, value: int) -> None:
        txn.put(name, _U64.pack(value), db=self.db)

    def get(self, txn: Any, lease_id: int) -> LeaseRecord | None:
        raw = txn.get(_lease_key(lease_id), db=self.db)
        if raw is None:
            return None
        ttl_ms, remaining, refresh, keys = _LEASE.unpack(bytes(raw))
        return LeaseRecord(lease_id, ttl_ms, remaining, refresh, keys)

    def _store(self, txn: Any, rec: LeaseRecord) -> None:
        txn.put(_lease_key(rec.id), _LEASE.pack(rec.ttl_ms, rec.remaining_ms, rec.refresh,
                                                rec.keys), db=self.db)

    def _need(self, txn: Any, lease_id: int) -> LeaseRecord:
        rec = self.get(txn, lease_id)
        if rec is None:
            raise LeaseNotFoundError(
                f"lease {lease_id} does not exist (never granted, revoked, or expired):"
                " grant a new lease", lease=lease_id)
        return rec

    # -- reads ---------------------------------------------------------------------------

    def marks(self, txn: Any) -> tuple[int, int, int]:
        """(lessor term, index of the last lease change, live leases)."""
        return self._int(txn, _TERM), self._int(txn, _CHANGED), self._int(txn, _COUNT)

    def table(self, txn: Any) -> dict[int, LeaseRecord]:
        out: dict[int, LeaseRecord] = {}
        with txn.cursor(db=self.db) as cur:
            if not cur.set_range(b"L"):
                return out
            for raw_key, raw in cur:
                key = bytes(raw_key)
                if not key.startswith(b"L"):
                    break
                lease_id = _U64.unpack(key[1:])[0]
                ttl_ms, remaining, refresh, keys = _LEASE.unpack(bytes(raw))
                out[lease_id] = LeaseRecord(lease_id, ttl_ms, remaining, refresh, keys)
        return out

    def keys_of(self, txn: Any, lease_id: int) -> list[str]:
        """The keys attached to a lease, sorted."""
        prefix = b"K" + _U64.pack(lease_id)
        keys: list[str] = []
        with txn.cursor(db=self.db) as cur:
            if cur.set_range(prefix):
                for raw_key, raw in cur:
                    if not bytes(raw_key).startswith(prefix):
                        break
                    keys.append(bytes(raw).decode("utf-8"))
        return sorted(keys)

    def lease_of(self, txn: Any, key: str) -> int:
        """The lease ``key`` is attached to (0: none)."""
        raw = txn.get(b"A" + _hash(key), db=self.db)
        return 0 if raw is None else int(_U64.unpack(bytes(raw))[0])

    # -- keys ----------------------------------------------------------------------------

    def check_puts(self, txn: Any, puts: list[tuple[str, int]]) -> None:
        """Before any change: every lease named by the (key, lease) puts exists and has
        room for its new keys; raises LeaseNotFoundError / RequestTooLargeError."""
        adding: dict[int, set[str]] = {}
        for key, lease_id in puts:
            if lease_id:
                rec = self._need(txn, lease_id)
                if self.lease_of(txn, key) != lease_id:
                    adding.setdefault(rec.id, set()).add(key)
        for lease_id, keys in adding.items():
            rec = self._need(txn, lease_id)
            if rec.keys + len(keys) > leases.MAX_KEYS_PER_LEASE:
                raise RequestTooLargeError(
                    f"lease {lease_id} has {rec.keys} keys; at most"
                    f" {leases.MAX_KEYS_PER_LEASE} may be attached to one lease")

    def attach(self, txn: Any, key: str, lease_id: int) -> None:
        """After a put of ``key``: attach it to ``lease_id`` (0: to none)."""
        if not lease_id and not self._int(txn, _COUNT):
            return  # no lease in the group: nothing can be attached (the common case)
        digest = _hash(key)
        current = self.lease_of(txn, key)
        if current == lease_id:
            return
        if current:
            self._detach(txn, key, digest, current)
        if lease_id:
            rec = self._need(txn, lease_id)
            txn.put(b"K" + _U64.pack(lease_id) + digest, key.encode("utf-8"), db=self.db)
            txn.put(b"A" + digest, _U64.pack(lease_id), db=self.db)
            self._store(txn, LeaseRecord(rec.id, rec.ttl_ms, rec.remaining_ms, rec.refresh,
                                         rec.keys + 1))

    def detach(self, txn: Any, key: str) -> None:
        """After a delete of ``key``."""
        if not self._int(txn, _COUNT):
            return
        current = self.lease_of(txn, key)
        if current:
            self._detach(txn, key, _hash(key), current)

    def _detach(self, txn: Any, key: str, digest: bytes, lease_id: int) -> None:
        txn.delete(b"K" + _U64.pack(lease_id) + digest, db=self.db)
        txn.delete(b"A" + digest, db=self.db)
        rec = self.get(txn, lease_id)
        if rec is not None:
            self._store(txn, LeaseRecord(rec.id, rec.ttl_ms, rec.remaining_ms, rec.refresh,
                                         max(0, rec.keys - 1)))

    # -- client writes -------------------------------------------------------------------

    def write(self, txn: Any, index: int, cmd: dict[str, Any]) -> dict[str, Any]:
        """Apply a lease_grant / lease_keepalive / lease_revoke (validated by the codec).
        Raises a HakvError (the store records it as the result) before changing anything."""
        op = cmd["op"]
        if op == "lease_grant":
            return self._grant(txn, index, cmd["ttl_ms"], cmd.get("id"))
        rec = self._need(txn, cmd["id"])
        if op == "lease_keepalive":
            self._store(txn, LeaseRecord(rec.id, rec.ttl_ms, rec.ttl_ms, index, rec.keys))
            self._set(txn, _CHANGED, index)
            return {"id": rec.id, "ttl": rec.ttl}
        revision, deleted = self._remove(txn, index, rec)
        return {"id": rec.id, "revision": revision, "deleted": deleted}

    def _grant(self, txn: Any, index: int, ttl_ms: int, wanted: int | None) -> dict[str, Any]:
        count = self._int(txn, _COUNT)
        if count >= leases.MAX_LEASES:
            raise RequestTooLargeError(
                f"the group has {count} leases, the most it keeps: revoke some, or attach"
                " more keys to one lease")
        next_id = max(1, self._int(txn, _NEXT))
        if wanted is None:
            lease_id = next_id
            while self.get(txn, lease_id) is not None:  # skip ids a client chose
                lease_id += 1
        else:
            lease_id = wanted
            if self.get(txn, lease_id) is not None:
                raise ConflictError(f"lease {lease_id} exists already: choose another id,"
                                    " or let the group choose one", lease=lease_id)
        self._set(txn, _NEXT, max(next_id, lease_id + 1))
        self._store(txn, LeaseRecord(lease_id, ttl_ms, ttl_ms, index, 0))
        self._set(txn, _COUNT, count + 1)
        self._set(txn, _CHANGED, index)
        return {"id": lease_id, "ttl": ttl_ms / 1000.0}

    def _remove(self, txn: Any, index: int, rec: LeaseRecord) -> tuple[int, int]:
        """Delete the lease and, in one revision, its keys: (revision, keys deleted)."""
        keys = self.keys_of(txn, rec.id)
        revision = self._delete_keys(txn, keys)  # detaches each key (the store's _delete)
        with txn.cursor(db=self.db) as cur:  # anything left over (never expected)
            prefix = b"K" + _U64.pack(rec.id)
            if cur.set_range(prefix):
                while bytes(cur.key()).startswith(prefix):
                    txn.delete(b"A" + bytes(cur.key())[len(prefix):], db=self.db)
                    if not cur.delete():
                        break
        txn.delete(_lease_key(rec.id), db=self.db)
        self._set(txn, _COUNT, max(0, self._int(txn, _COUNT) - 1))
        self._set(txn, _CHANGED, index)
        return revision, len(keys)

    # -- leader commands -----------------------------------------------------------------

    def lessor(self, txn: Any, index: int, cmd: dict[str, Any]) -> dict[str, Any]:
        """Apply a validated takeover, checkpoint or expiry (hakv.core.leases)."""
        term = self._int(txn, _TERM)
        if cmd["op"] == leases.TAKEOVER_OP:
            if cmd["term"] < term:
                return {"applied": False, "term": term,
                        "why": f"stale: a lessor of term {term} took over already"}
            self._set(txn, _TERM, cmd["term"])
            return {"applied": True, "term": cmd["term"]}
        if cmd["term"] != term:
            return {"applied": False, "term": term,
                    "why": f"stale: proposed in term {cmd['term']}, the lessor's term is {term}"}
        done: list[int] = []
        if cmd["op"] == leases.CHECKPOINT_OP:
            for lease_id, refresh, remaining in cmd["leases"]:
                rec = self.get(txn, lease_id)
                if rec is None or rec.refresh != refresh:
                    continue  # gone, or kept alive since: the keepalive wins
                self._store(txn, LeaseRecord(rec.id, rec.ttl_ms,
                                             min(rec.remaining_ms, remaining), rec.refresh,
                                             rec.keys))
                done.append(lease_id)
            return {"applied": True, "term": term, "checkpointed": done}
        revisions: list[int] = []
        for lease_id, refresh in cmd["leases"]:
            rec = self.get(txn, lease_id)
            if rec is None or rec.refresh != refresh:
                continue
            revision, _ = self._remove(txn, index, rec)
            done.append(lease_id)
            revisions.append(revision)
        return {"applied": True, "term": term, "expired": done, "revisions": revisions}
