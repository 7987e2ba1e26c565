"""A resource group's key-value state machine on LMDB (the only module that imports lmdb).

Layout, key encodings and the reasons behind them: docs/storage.md. In short, one LMDB
environment (a directory) per group with seven named databases:

``meta``      format, group id, applied_index, revision, keys, next_bucket
``kv``        the keys, as a tree of <= 502-byte segments (LMDB keys are <= 511 bytes)
``clients``   sha256(client) -> max_seq, last_index, client id     (exactly-once sessions)
``results``   sha256(client) + seq -> the write's result as JSON
``idle``      last_index -> sha256(client)                         (eviction order)
``history``   revision + n -> event (watches; hakv.storage.history, compacted per replica)
``leases``    replicated lease state (hakv.storage.leases)

Writes are batched: :meth:`GroupStore.apply` runs each log entry in a nested transaction
of one open write transaction and records ``applied_index`` in it; :meth:`commit` makes the
whole batch durable with one fsync. Apply never raises for a bad command (pysyncobj would
retry a raising apply forever). Apply tells two kinds of failure apart:

- a **deterministic rejection** (the command is invalid, a compare fails, or hakv has a
  bug that any replica would hit the same way on the same entry and state): an error
  result, recorded like any result, identical on every replica;
- an **environmental failure** (LMDB or the disk failed, memory ran out, the stack
  overflowed: ``_ENVIRONMENTAL``): :class:`~hakv.errors.StorageFailure`, on which the node
  crash-stops; the Raft log replays the entry when it restarts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import struct
import threading
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import closing
from pathlib import Path
from types import TracebackType
from typing import Any

import lmdb

from hakv.core import backup, codec, ha, leases
from hakv.errors import (
    BadRequestError,
    ConflictError,
    DataDirError,
    HakvError,
    InternalError,
    RequestExpiredError,
    StorageFailure,
    UnavailableError,
)
from hakv.storage import history
from hakv.storage.leases import LeaseTable

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
DEFAULT_MAX_CLIENTS = 4096
DEFAULT_SESSION_WINDOW = 256
INSPECT_MAX_KVS = 1000

#: Bytes of a key per level of the kv tree: 8 (bucket) + 502 + 1 (pointer mark) = 511,
#: LMDB's default maximum key size. Part of the on-disk format: never derive it at runtime.
SEGMENT = 502
_LMDB_MIN_KEY_SIZE = 8 + SEGMENT + 1

_U64 = struct.Struct(">Q")
_REC = struct.Struct(">QQQ")  # create_revision, mod_revision, version; then the value
_SESSION = struct.Struct(">QQ")  # max_seq, last_index; then the client id
_ROOT = _U64.pack(0)
_PTR = b"\x00"

_DB_NAMES = (b"meta", b"kv", b"clients", b"results", b"idle")
_CORRUPT = (
    lmdb.InvalidError,
    lmdb.CorruptedError,
    lmdb.VersionMismatchError,
    lmdb.PageNotFoundError,
    lmdb.BadValsizeError,
    lmdb.BadDbiError,
    lmdb.IncompatibleError,
    lmdb.PanicError,
)

KV = dict[str, Any]


#: Failures of the machine, not of the command: the same entry may apply fine on another
#: replica, or here after a restart. Apply turns them into a crash-stop (StorageFailure)
#: instead of an error result, which would make this replica's state differ from the others'.
_ENVIRONMENTAL = (lmdb.Error, MemoryError, OSError, RecursionError)


# --- kv tree -----------------------------------------------------------------------------
#
# A key of up to 1024 bytes does not fit LMDB's 511-byte key limit, so keys are stored as a
# tree of buckets. A bucket is an 8-byte id prefix (root = 0). In a bucket, a key rest of
# <= SEGMENT bytes is a leaf ``bucket + rest -> record``; a longer rest goes through a
# pointer ``bucket + rest[:SEGMENT] + NUL -> child bucket id``. Keys never contain NUL, so a
# pointer sorts right after the leaf equal to its segment and before every other leaf that
# is greater: LMDB's order of the tree entries is the byte order of the full keys.


def _kv_get(txn: lmdb.Transaction, db: Any, kb: bytes) -> bytes | None:
    bucket = _ROOT
    while len(kb) > SEGMENT:
        child = txn.get(bucket + kb[:SEGMENT] + _PTR, db=db)
        if child is None:
            return None
        bucket, kb = bytes(child), kb[SEGMENT:]
    value = txn.get(bucket + kb, db=db)
    return None if value is None else bytes(value)


def _kv_put(txn: lmdb.Transaction, db: Any, meta: Any, kb: bytes, record: bytes) -> None:
    bucket = _ROOT
    while len(kb) > SEGMENT:
        pointer = bucket + kb[:SEGMENT] + _PTR
        child = txn.get(pointer, db=db)
        if child is None:
            child = _U64.pack(_meta_int(txn, meta, b"next_bucket"))
            _meta_set(txn, meta, b"next_bucket", _U64.unpack(child)[0] + 1)
            txn.put(pointer, child, db=db)
        bucket, kb = bytes(child), kb[SEGMENT:]
    txn.put(bucket + kb, record, db=db)


def _kv_delete(txn: lmdb.Transaction, db: Any, kb: bytes) -> None:
    path: list[tuple[bytes, bytes]] = []
    bucket = _ROOT
    while len(kb) > SEGMENT:
        pointer = bucket + kb[:SEGMENT] + _PTR
        child = txn.get(pointer, db=db)
        if child is None:
            return
        path.append((pointer, bytes(child)))
        bucket, kb = bytes(child), kb[SEGMENT:]
    txn.delete(bucket + kb, db=db)
    for pointer, child in reversed(path):  # drop buckets left empty
        with txn.cursor(db=db) as cur:
            if cur.set_range(child) and bytes(cur.key()[:8]) == child:
                return
        txn.delete(pointer, db=db)


def _kv_scan(
    txn: lmdb.Transaction, db: Any, bucket: bytes, prefix: bytes, above: bytes
) -> Generator[tuple[bytes, bytes], None, None]:
    """(full key, record) of every key ``above + prefix...`` in the bucket, in key order."""
    if len(prefix) > SEGMENT:
        child = txn.get(bucket + prefix[:SEGMENT] + _PTR, db=db)
        if child is not None:
            yield from _kv_scan(txn, db, bytes(child), prefix[SEGMENT:], above + prefix[:SEGMENT])
        return
    start = bucket + prefix
    with txn.cursor(db=db) as cur:
        if not cur.set_range(start):
            return
        for raw_key, raw_value in cur.iternext():
            key, value = bytes(raw_key), bytes(raw_value)
            if not key.startswith(start):
                return
            segment = key[8:]
            if segment.endswith(_PTR):
                with closing(_kv_scan(txn, db, value, b"", above + segment[:-1])) as sub:
                    yield from sub
            else:
                yield above + segment, value


def _record(create: int, mod: int, version: int, value: str) -> bytes:
    return _REC.pack(create, mod, version) + value.encode("utf-8")


def _kv_dict(key: bytes, record: bytes) -> KV:
    create, mod, version = _REC.unpack_from(record)
    return {
        "key": key.decode("utf-8"),
        "value": bytes(record[_REC.size :]).decode("utf-8"),
        "create_revision": create,
        "mod_revision": mod,
        "version": version,
    }


# --- meta --------------------------------------------------------------------------------


def _meta_int(txn: lmdb.Transaction, meta: Any, name: bytes) -> int:
    raw = txn.get(name, db=meta)
    return 0 if raw is None else int(_U64.unpack(raw)[0])


def _meta_set(txn: lmdb.Transaction, meta: Any, name: bytes, value: int) -> None:
    txn.put(name, _U64.pack(value), db=meta)


def _client_id(client: str) -> bytes:
    return hashlib.sha256(client.encode("utf-8")).digest()


def _err(exc: HakvError) -> dict[str, Any]:
    wire = exc.to_wire()
    wire["error"].pop("details", None)
    return wire


# --- opening -----------------------------------------------------------------------------


def _open_env(path: Path, *, map_size: int, readonly: bool, sync: bool = True) -> lmdb.Environment:
    subdir = not path.is_file()
    try:
        return lmdb.open(
            str(path),
            map_size=map_size,
            subdir=subdir,
            readonly=readonly,
            lock=not readonly,
            sync=sync,
            metasync=False,
            readahead=False,
            max_dbs=len(_DB_NAMES) + 3,
            create=not readonly,
        )
    except _CORRUPT as exc:
        raise _corrupt(path, exc) from exc
    except lmdb.Error as exc:
        raise DataDirError(
            f"cannot open group store {path} ({type(exc).__name__}: {exc}); check the path"
            " and its permissions, or if it is damaged move it away and let the node resync"
            " from its peers"
        ) from exc


def _corrupt(path: Path, exc: BaseException) -> DataDirError:
    return DataDirError(
        f"group store {path} is corrupt (lmdb {type(exc).__name__}: {exc}); move it away"
        " and let the node resync from its peers"
    )


def _open_dbs(env: lmdb.Environment, path: Path, group_id: str | None) -> dict[bytes, Any]:
    """Open (and for a fresh env with ``group_id``, create) the named DBs; check meta."""
    readonly = group_id is None
    txn = env.begin(write=not readonly)
    try:
        main_names = [bytes(k) for k in txn.cursor().iternext(values=False)]
        if not main_names:
            if readonly:
                raise DataDirError(
                    f"{path} holds no group store (empty LMDB environment): wrong --data-dir?"
                )
            dbs = {name: env.open_db(name, txn=txn, create=True) for name in _DB_NAMES}
            txn.put(b"format", str(FORMAT_VERSION).encode(), db=dbs[b"meta"])
            txn.put(b"group", group_id.encode("utf-8"), db=dbs[b"meta"])  # type: ignore[union-attr]
            _meta_set(txn, dbs[b"meta"], b"next_bucket", 1)
            txn.commit()
            return dbs
        if b"meta" not in main_names:
            raise DataDirError(
                f"{path} is an LMDB environment but not a hakv group store: wrong --data-dir?"
            )
        meta = env.open_db(b"meta", txn=txn, create=False)
        fmt = txn.get(b"format", db=meta)
        if fmt != str(FORMAT_VERSION).encode():
            shown = "missing" if fmt is None else bytes(fmt).decode("utf-8", "replace")
            raise DataDirError(
                f"{path} has store format {shown}, this hakv reads format {FORMAT_VERSION}:"
                " use a matching hakv version, or move it away and let the node resync"
            )
        stored = txn.get(b"group", db=meta)
        if stored is None:
            raise DataDirError(f"{path} has no group id in its meta data: corrupt, move it away")
        stored_group = bytes(stored).decode("utf-8", "replace")
        if group_id is not None and stored_group != group_id:
            raise DataDirError(
                f"{path} belongs to group {stored_group}, not {group_id}: wrong --data-dir?"
            )
        try:
            if readonly:  # a read txn's commit drops the handles it opened: open outside
                txn.abort()
                return {name: env.open_db(name, create=False) for name in _DB_NAMES}
            dbs = {name: env.open_db(name, txn=txn, create=False) for name in _DB_NAMES}
        except lmdb.NotFoundError as exc:
            raise DataDirError(
                f"{path} lacks part of a group store ({exc}): corrupt, move it away and let the"
                " node resync from its peers"
            ) from exc
        txn.commit()
        return dbs
    except BaseException:
        txn.abort()
        raise


def _open_checked(
    path: Path, group_id: str | None, map_size: int, sync: bool = True
) -> tuple[lmdb.Environment, dict[bytes, Any]]:
    readonly = group_id is None
    env = _open_env(path, map_size=map_size, readonly=readonly, sync=sync)
    try:
        if not readonly and env.max_key_size() < _LMDB_MIN_KEY_SIZE:
            raise DataDirError(f"this lmdb build allows keys of {env.max_key_size()} bytes only")
        return env, _open_dbs(env, path, group_id)
    except DataDirError:
        env.close()
        raise
    except _CORRUPT as exc:
        env.close()
        raise _corrupt(path, exc) from exc
    except lmdb.Error as exc:
        env.close()
        raise DataDirError(
            f"cannot read group store {path} ({type(exc).__name__}: {exc}); move it away and"
            " let the node resync from its peers"
        ) from exc


def _recover_swap(path: Path) -> None:
    """Finish or roll back a restore_from that a crash interrupted (see restore_from)."""
    incoming = path.with_name(path.name + ".restore")
    outgoing = path.with_name(path.name + ".old")
    if incoming.exists():
        if path.exists():
            shutil.rmtree(incoming)  # crashed before the swap: the old state stays
        else:
            os.rename(incoming, path)  # crashed between the two renames: finish
            _fsync(path.parent)
    if outgoing.exists() and path.exists():
        shutil.rmtree(outgoing)


def _fsync(path: Path) -> None:
    """fsync a file, or a directory (so that renames in it are durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- the store ---------------------------------------------------------------------------


class GroupStore:
    """One group's state: an LMDB environment in the directory ``path``.

    Thread-safe (one lock); the raft thread applies and commits, other threads may read.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        group_id: str,
        map_size: int = 1 << 30,
        *,
        max_clients: int = DEFAULT_MAX_CLIENTS,
        session_window: int = DEFAULT_SESSION_WINDOW,
        durable_commits: bool = True,
    ) -> None:
        """``durable_commits=False`` skips the fsync of each batch commit: for a caller
        that keeps its own fsynced log of everything since the last ``sync()`` and can
        rebuild the store after an OS crash (hakv.storage.machine does; a process crash loses
        nothing either way, the page cache survives it)."""
        self.path = Path(path)
        self.durable_commits = durable_commits
        self.group_id = group_id
        self.map_size = map_size
        self.max_clients = max_clients
        self.session_window = session_window
        self._lock = threading.RLock()
        self._txn: lmdb.Transaction | None = None
        self._txn_thread = 0
        self._applying = 0  # log index of the command being applied
        self._outbox_grew = False
        self.on_outbox: Callable[[], None] | None = None
        self.on_commit: Callable[[float], None] | None = None
        """Called with the seconds each batch's commit took (for /metrics)."""
        self._history_grew = False
        self.on_history: Callable[[], None] | None = None
        """Called after a commit that recorded watch events (the node wakes its watches)."""
        """Called after a commit that added outbox entries (the node pokes its bridge)."""
        try:
            _recover_swap(self.path)
            if not self.path.exists():
                self.path.mkdir(parents=True)
        except OSError as exc:
            raise DataDirError(f"cannot create group store directory {self.path}: {exc}") from exc
        if not self.path.is_dir():
            raise DataDirError(f"{self.path} is not a directory: wrong --data-dir?")
        self._env, dbs = _open_checked(self.path, group_id, map_size, durable_commits)
        self._set_dbs(dbs)

    def _set_dbs(self, dbs: dict[bytes, Any]) -> None:
        self._meta = dbs[b"meta"]
        self._kv = dbs[b"kv"]
        self._clients = dbs[b"clients"]
        self._results = dbs[b"results"]
        self._idle = dbs[b"idle"]
        self._history = history.open_db(self._env, self._meta)  # watches (history.py)
        self._leases = LeaseTable(self._env, self._delete_keys)  # leases (leases.py)

    # -- context ---------------------------------------------------------------------------

    def __enter__(self) -> GroupStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Abort an uncommitted batch (replay re-applies it), flush and close."""
        with self._lock:
            if self._env is None:
                return
            self.abort()
            try:
                self._env.sync(True)
            except lmdb.Error:
                log.exception("final sync of %s failed", self.path)
            self._env.close()
            self._env = None  # type: ignore[assignment]

    # -- batches ---------------------------------------------------------------------------

    def commit(self) -> None:
        """Commit the open batch durably (one fsync); no-op without one."""
        with self._lock:
            txn, self._txn = self._txn, None
            if txn is None:
                return
            started = time.perf_counter()
            try:
                txn.commit()
            except lmdb.Error as exc:
                raise StorageFailure(f"commit to {self.path} failed: {exc}") from exc
            took = time.perf_counter() - started
            grew, self._outbox_grew = self._outbox_grew, False
            events, self._history_grew = self._history_grew, False
        if self.on_commit is not None:
            self.on_commit(took)
        if grew and self.on_outbox is not None:
            self.on_outbox()
        if events and self.on_history is not None:
            self.on_history()

    def sync(self) -> None:
        """Force everything committed so far to disk."""
        with self._lock:
            try:
                self._env.sync(True)
            except lmdb.Error as exc:
                raise StorageFailure(f"sync of {self.path} failed: {exc}") from exc

    def abort(self) -> None:
        """Discard the open batch; no-op without one."""
        with self._lock:
            txn, self._txn = self._txn, None
            self._outbox_grew = False
            if txn is not None:
                txn.abort()

    def space(self) -> tuple[int, int]:
        """(map size, bytes up to the last page in use): what ``_grow_map`` compares, for
        /metrics (hakv.node.metrics). Raises StorageFailure once the store is closed."""
        with self._lock:
            if self._env is None:
                raise StorageFailure(f"{self.path} is closed")
            info = self._env.info()
            return info["map_size"], (info["last_pgno"] + 1) * self._env.stat()["psize"]

    def _grow_map(self) -> None:
        """Double the map when half of it is used (only possible between batches).

        Keeps MDB_MAP_FULL (a crash-stop, on every replica at the same entry) for a single
        batch larger than the free half; ``map_size`` is only the initial size.
        """
        info = self._env.info()
        used = (info["last_pgno"] + 1) * self._env.stat()["psize"]
        if 2 * used > info["map_size"]:
            self._env.set_mapsize(max(2 * info["map_size"], 4 * used))

    def apply(self, index: int, payload: bytes) -> dict[str, Any] | None:
        """Apply log entry ``index``; None if already applied. Raises only StorageFailure."""
        with self._lock:
            try:
                if self._txn is None:
                    self._grow_map()
                    self._txn = self._env.begin(write=True)
                    self._txn_thread = threading.get_ident()
                batch = self._txn
                if index <= _meta_int(batch, self._meta, b"applied_index"):
                    return None
                txn = self._env.begin(write=True, parent=batch)
                try:
                    result = self._apply(txn, index, payload)
                except _ENVIRONMENTAL:
                    txn.abort()
                    raise
                except HakvError as exc:  # a rejection that escaped _apply's own handling
                    txn.abort()
                    result = _err(exc)
                except Exception as exc:  # a bug, deterministic: every replica gets the same
                    txn.abort()
                    log.exception("BUG: applying entry %d of group %s failed", index,
                                  self.group_id)
                    result = _err(InternalError(f"applying the command failed: {exc!r}"))
                else:
                    txn.commit()
                _meta_set(batch, self._meta, b"applied_index", index)
                return result
            except _ENVIRONMENTAL as exc:
                self.abort()
                raise StorageFailure(
                    f"applying entry {index} to {self.path} failed: {type(exc).__name__}: {exc}"
                ) from exc

    def _apply(self, txn: lmdb.Transaction, index: int, payload: bytes) -> dict[str, Any]:
        self._applying = index
        try:
            raw = codec.decode(payload)
        except HakvError as exc:
            return _err(BadRequestError(f"undecodable command: {exc.message}"))
        if raw.get("op") == "barrier":
            return {"revision": _meta_int(txn, self._meta, b"revision")}
        if raw.get("op") == codec.NODE_STATUS_OP:
            return self._node_status(txn, index, raw)
        if raw.get("op") == codec.FORWARDED_OP:
            return self._forwarded(txn, index, raw)
        if raw.get("op") == ha.PLACEMENT_OP:
            return self._placement(txn, index, raw)
        if raw.get("op") == backup.RESTORE_OP:  # an online restore (hakv.core.backup)
            return self._restore(txn, backup.restore_command(raw))
        if raw.get("op") in leases.LESSOR_OPS:  # the leader's lessor (hakv.storage.leases)
            try:
                return self._leases.lessor(txn, index, leases.validate_lessor_command(raw))
            except HakvError as exc:
                return _err(BadRequestError(f"invalid command: {exc.message}"))
        try:
            client, seq = codec.client_and_seq(raw)
        except HakvError as exc:
            return _err(BadRequestError(f"invalid command: {exc.message}"))
        if client is None or seq is None:
            return _err(BadRequestError("invalid command: a write needs client and seq"))

        cid = _client_id(client)
        raw_session = txn.get(cid, db=self._clients)
        if raw_session is None:
            max_seq, last_index = 0, 0
            if txn.stat(self._clients)["entries"] >= self.max_clients:
                self._evict(txn)
        else:
            max_seq, last_index = _SESSION.unpack_from(raw_session)
            txn.delete(_U64.pack(last_index), db=self._idle)
            if seq <= max_seq - self.session_window:
                self._touch(txn, cid, client, max_seq, index)
                return _err(
                    RequestExpiredError(
                        f"seq {seq} of client {client!r} is older than the last"
                        f" {self.session_window} writes of that client (latest {max_seq}):"
                        " its outcome is no longer known"
                    )
                )
            stored = txn.get(cid + _U64.pack(seq), db=self._results)
            if stored is not None:
                self._touch(txn, cid, client, max_seq, index)
                result: dict[str, Any] = json.loads(bytes(stored))
                return result

        try:
            cmd = codec.validate_command(raw)
        except HakvError as exc:
            result = _err(BadRequestError(f"invalid command: {exc.message}"))
        else:
            result = self._execute(txn, cmd)

        txn.put(
            cid + _U64.pack(seq),
            codec.JSON_ENCODER.encode(result).encode("utf-8"),
            db=self._results,
        )
        if seq > max_seq:
            self._expire(txn, cid, seq - self.session_window)
            max_seq = seq
        self._touch(txn, cid, client, max_seq, index)
        return result

    def _node_status(self, txn: lmdb.Transaction, index: int, raw: dict[str, Any]) -> dict[str, Any]:
        """Store a node's status record (kept apart from the key space, in meta)."""
        try:
            cmd = codec.validate_node_status(raw)
        except HakvError as exc:
            return _err(BadRequestError(f"invalid command: {exc.message}"))
        key = _NODE_STATUS_PREFIX + cmd["node"].encode("utf-8")
        if cmd.get("forget"):
            txn.delete(key, db=self._meta)
            return {"node": cmd["node"], "index": index, "forgotten": True}
        record = {"status": cmd["status"], "time": cmd["time"], "index": index}
        old_raw = txn.get(key, db=self._meta)
        old = (json.loads(bytes(old_raw)).get("status") or {}) if old_raw is not None else {}
        new = cmd["status"]
        if old.get("state") != new.get("state") or old.get("since") != new.get("since"):
            self._event(txn, index, {  # node status changes are events (docs/ha.md)
                "kind": "node_status", "time": cmd["time"], "index": index,
                "node": cmd["node"], "state": new.get("state"),
                "reason": new.get("reason") or ("started" if old.get("state") != "down"
                                                else "back (reintegrated)"),
                "by": new.get("by", cmd["node"])})
        txn.put(key, json.dumps(record, separators=(",", ":")).encode("utf-8"), db=self._meta)
        return {"node": cmd["node"], "index": index}

    # -- HA placement (hakv.core.ha) ------------------------------------------------------------

    def _placement(self, txn: lmdb.Transaction, index: int, raw: dict[str, Any]) -> dict[str, Any]:
        """Apply a placement command (hakv.core.ha.apply_command): the record, and an event."""
        try:
            cmd = ha.validate_command(raw)
        except HakvError as exc:
            return _err(BadRequestError(f"invalid command: {exc.message}"))
        cur_raw = txn.get(_PLACEMENT_KEY, db=self._meta)
        current = ha.Placement.from_dict(json.loads(bytes(cur_raw)) if cur_raw else None)
        new, result, event = ha.apply_command(current, cmd, index)
        if new is not None:
            txn.put(_PLACEMENT_KEY, json.dumps(new.to_dict(), separators=(",", ":")).encode(),
                    db=self._meta)
        if event is not None:
            self._event(txn, index, event)
        return result

    def _event(self, txn: lmdb.Transaction, index: int, event: dict[str, Any]) -> None:
        """Keep ``event`` under its log index; only the newest MAX_EVENTS are kept."""
        event = {**event, "group": self.group_id}
        txn.put(_EVENT_PREFIX + _U64.pack(index),
                json.dumps(event, separators=(",", ":")).encode("utf-8"), db=self._meta)
        count = _meta_int(txn, self._meta, b"event_count") + 1
        if count > MAX_EVENTS:
            with txn.cursor(db=self._meta) as cur:
                if cur.set_range(_EVENT_PREFIX) and bytes(cur.key()).startswith(_EVENT_PREFIX):
                    cur.delete()
                    count -= 1
        _meta_set(txn, self._meta, b"event_count", count)

    def placement(self) -> ha.Placement:
        """The group's placement record (committed state; hakv.core.ha.Placement)."""
        def read(txn: lmdb.Transaction) -> ha.Placement:
            raw = txn.get(_PLACEMENT_KEY, db=self._meta)
            return ha.Placement.from_dict(json.loads(bytes(raw)) if raw else None)
        result: ha.Placement = self._reading(read)
        return result

    def events(self, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """Placement and node-status events with log index > ``after``, oldest first."""
        def scan(txn: lmdb.Transaction) -> list[dict[str, Any]]:
            return [json.loads(v) for _, v in _prefixed(txn, self._meta, _EVENT_PREFIX,
                                                        _EVENT_PREFIX + _U64.pack(after + 1),
                                                        limit)]
        result: list[dict[str, Any]] = self._reading(scan)
        return result

    # -- cross-group changes (bridges) -----------------------------------------------------

    def _outbox(self, txn: lmdb.Transaction, about: str, kind: str,
                data: dict[str, Any]) -> dict[str, Any]:
        """Record a change about node ``about`` for the bridges to forward; keyed by the
        log index being applied, so forwarding order is log order."""
        index = self._applying
        change = {"about": about, "kind": kind, "data": data, "index": index}
        txn.put(_OUTBOX_PREFIX + _U64.pack(index),
                json.dumps(change, separators=(",", ":")).encode("utf-8"), db=self._meta)
        _meta_set(txn, self._meta, b"outbox_head", index)
        self._outbox_grew = True
        return {"index": index}

    def _forwarded(self, txn: lmdb.Transaction, index: int, raw: dict[str, Any]) -> dict[str, Any]:
        try:
            cmd = codec.validate_forwarded(raw)
        except HakvError as exc:
            return _err(BadRequestError(f"invalid command: {exc.message}"))
        stream = f"{cmd['source']}/{cmd['about']}".encode()
        hwm_key = _HWM_PREFIX + stream
        raw_hwm = txn.get(hwm_key, db=self._meta)
        hwm = _U64.unpack(bytes(raw_hwm))[0] if raw_hwm is not None else 0
        if cmd["source_index"] <= hwm:
            return {"applied": False, "high_water_mark": hwm}  # a duplicate: ignore it
        record = {**cmd, "index": index}
        txn.put(_INBOX_PREFIX + stream + b"/" + _U64.pack(cmd["source_index"]),
                json.dumps(record, separators=(",", ":")).encode("utf-8"), db=self._meta)
        txn.put(hwm_key, _U64.pack(cmd["source_index"]), db=self._meta)
        return {"applied": True, "high_water_mark": cmd["source_index"]}

    def outbox(self, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """Changes recorded here for other groups, in log order, with index > ``after``."""
        def scan(txn: lmdb.Transaction) -> list[dict[str, Any]]:
            return [json.loads(v) for _, v in _prefixed(txn, self._meta, _OUTBOX_PREFIX,
                                                        _OUTBOX_PREFIX + _U64.pack(after + 1),
                                                        limit)]
        result: list[dict[str, Any]] = self._reading(scan)
        return result

    def outbox_head(self) -> int:
        """Log index of the newest outbox entry (0 if none): lets bridges skip idle groups."""
        return int(self._reading(lambda txn: _meta_int(txn, self._meta, b"outbox_head")))

    def inbox(self, limit: int = 10000) -> list[dict[str, Any]]:
        """Changes forwarded into this group by bridges, by (source, about, source index)."""
        def scan(txn: lmdb.Transaction) -> list[dict[str, Any]]:
            return [json.loads(v) for _, v in _prefixed(txn, self._meta, _INBOX_PREFIX,
                                                        _INBOX_PREFIX, limit)]
        result: list[dict[str, Any]] = self._reading(scan)
        return result

    def high_water_mark(self, source: str, about: str) -> int:
        def read(txn: lmdb.Transaction) -> int:
            raw = txn.get(_HWM_PREFIX + f"{source}/{about}".encode(), db=self._meta)
            return _U64.unpack(bytes(raw))[0] if raw is not None else 0
        return int(self._reading(read))

    def allocation(self, node: str) -> int:
        """The load this group has placed on ``node`` (0 if none)."""
        def read(txn: lmdb.Transaction) -> int:
            raw = txn.get(_ALLOC_PREFIX + node.encode("utf-8"), db=self._meta)
            return _U64.unpack(bytes(raw))[0] if raw is not None else 0
        return int(self._reading(read))

    # -- sessions --------------------------------------------------------------------------

    def _touch(
        self, txn: lmdb.Transaction, cid: bytes, client: str, max_seq: int, index: int
    ) -> None:
        txn.put(cid, _SESSION.pack(max_seq, index) + client.encode("utf-8"), db=self._clients)
        txn.put(_U64.pack(index), cid, db=self._idle)

    def _expire(self, txn: lmdb.Transaction, cid: bytes, upto: int) -> None:
        """Drop the stored results of seqs <= ``upto``."""
        if upto < 1:
            return
        end = cid + _U64.pack(upto)
        with txn.cursor(db=self._results) as cur:
            if not cur.set_range(cid):
                return
            while True:
                key = bytes(cur.key())
                if not key.startswith(cid) or key > end:
                    return
                if not cur.delete():
                    return

    def _evict(self, txn: lmdb.Transaction) -> None:
        """Forget the client whose last write has the smallest log index."""
        with txn.cursor(db=self._idle) as cur:
            if not cur.first():
                return
            cid = bytes(cur.value())
            cur.delete()
        txn.delete(cid, db=self._clients)
        with txn.cursor(db=self._results) as cur:
            if cur.set_range(cid):
                while bytes(cur.key()).startswith(cid):
                    if not cur.delete():
                        break

    # -- commands --------------------------------------------------------------------------

    def _execute(self, txn: lmdb.Transaction, cmd: dict[str, Any]) -> dict[str, Any]:
        op = cmd["op"]
        if op == "notify":
            return self._outbox(txn, cmd["about"], cmd["kind"], cmd["data"])
        if op == "allocation":
            txn.put(_ALLOC_PREFIX + cmd["node"].encode("utf-8"), _U64.pack(cmd["load"]),
                    db=self._meta)
            return self._outbox(txn, cmd["node"], "allocation",
                                {"group": self.group_id, "load": cmd["load"]})
        if op == "barrier":
            return {"revision": _meta_int(txn, self._meta, b"revision")}
        if op in leases.WRITE_OPS:  # grant, keepalive, revoke (hakv.storage.leases)
            try:
                return self._leases.write(txn, self._applying, cmd)
            except HakvError as exc:
                return _err(exc)
        revision = _meta_int(txn, self._meta, b"revision")
        if op == "put":
            prev = self._get(txn, cmd["key"])
            if "if_mod_revision" in cmd:
                actual = prev["mod_revision"] if prev else 0
                if actual != cmd["if_mod_revision"]:
                    return _err(
                        ConflictError(
                            f"key {cmd['key']!r} has mod_revision {actual}"
                            f" (0 = absent), not {cmd['if_mod_revision']}"
                        )
                    )
            try:
                self._leases.check_puts(txn, [(cmd["key"], cmd.get("lease", 0))])
            except HakvError as exc:  # unknown lease: nothing changes
                return _err(exc)
            self._put(txn, cmd["key"], cmd["value"], prev, revision + 1)
            self._leases.attach(txn, cmd["key"], cmd.get("lease", 0))
            _meta_set(txn, self._meta, b"revision", revision + 1)
            return {"revision": revision + 1, "prev": prev}
        if op == "delete":
            prev = self._get(txn, cmd["key"])
            if prev is None:
                return {"revision": revision, "deleted": 0, "prev": None}
            self._delete(txn, cmd["key"])
            _meta_set(txn, self._meta, b"revision", revision + 1)
            return {"revision": revision + 1, "deleted": 1, "prev": prev}
        # txn
        succeeded = all(self._compare(txn, c) for c in cmd["compare"])
        new = revision + 1
        changed = False
        results: list[dict[str, Any]] = []
        branch = cmd["success"] if succeeded else cmd["failure"]
        try:
            self._leases.check_puts(txn, [(i["key"], i.get("lease", 0)) for i in branch
                                          if i["op"] == "put"])
        except HakvError as exc:  # unknown lease: nothing changes
            return _err(exc)
        for item in branch:
            prev = self._get(txn, item["key"])
            if item["op"] == "put":
                self._put(txn, item["key"], item["value"], prev, new)
                self._leases.attach(txn, item["key"], item.get("lease", 0))
                changed = True
                results.append({"revision": new, "prev": prev})
            elif item["op"] == "delete":
                if prev is not None:
                    self._delete(txn, item["key"])
                    changed = True
                results.append({"deleted": 0 if prev is None else 1, "prev": prev})
            else:
                results.append({"kv": prev})
        if changed:
            _meta_set(txn, self._meta, b"revision", new)
        return {
            "succeeded": succeeded,
            "revision": new if changed else revision,
            "results": results,
        }

    def _compare(self, txn: lmdb.Transaction, cmp: dict[str, Any]) -> bool:
        kv = self._get(txn, cmp["key"])
        target = cmp["target"]
        actual: Any
        if target == "value":
            actual = kv["value"] if kv else None
        else:
            actual = kv[target] if kv else 0
        expected = cmp["value"]
        op = cmp["op"]
        if op == "==":
            return bool(actual == expected)
        if op == "!=":
            return bool(actual != expected)
        if actual is None or expected is None:
            return False
        return bool(actual < expected) if op == "<" else bool(actual > expected)

    def _get(self, txn: lmdb.Transaction, key: str) -> KV | None:
        kb = key.encode("utf-8")
        record = _kv_get(txn, self._kv, kb)
        return None if record is None else _kv_dict(kb, record)

    def _put(
        self, txn: lmdb.Transaction, key: str, value: str, prev: KV | None, revision: int
    ) -> None:
        if prev is None:
            record = _record(revision, revision, 1, value)
            _meta_set(txn, self._meta, b"keys", _meta_int(txn, self._meta, b"keys") + 1)
        else:
            record = _record(prev["create_revision"], revision, prev["version"] + 1, value)
        _kv_put(txn, self._kv, self._meta, key.encode("utf-8"), record)
        # Every change is a watch event of its revision, in the same transaction.
        history.record(txn, self._history, revision,
                       history.put_event(key, _kv_dict(key.encode("utf-8"), record), prev))
        self._history_grew = True

    def _delete_keys(self, txn: lmdb.Transaction, keys: list[str]) -> int:
        """Delete ``keys`` in one revision through the write path of a txn (a lease's
        revocation or expiry, hakv.storage.leases); the group's revision after it."""
        result = self._execute(txn, {"op": "txn", "compare": [], "failure": [],
                                     "success": [{"op": "delete", "key": k} for k in keys]})
        return int(result["revision"])

    # -- leases (hakv.storage.leases) ------------------------------------------------------

    def lease_marks(self) -> tuple[int, int, int]:
        """(lessor term, log index of the last lease change, live leases)."""
        result: tuple[int, int, int] = self._reading(self._leases.marks)
        return result

    def lease_table(self) -> dict[int, leases.LeaseRecord]:
        """Every live lease, by id."""
        result: dict[int, leases.LeaseRecord] = self._reading(self._leases.table)
        return result

    def lease(self, lease_id: int, keys: bool = False
              ) -> tuple[leases.LeaseRecord | None, list[str]]:
        """One lease (None if absent) and, if asked, its keys (sorted)."""
        def read(txn: lmdb.Transaction) -> tuple[leases.LeaseRecord | None, list[str]]:
            rec = self._leases.get(txn, lease_id)
            return rec, (self._leases.keys_of(txn, lease_id) if keys and rec else [])
        result: tuple[leases.LeaseRecord | None, list[str]] = self._reading(read)
        return result

    def lease_of(self, key: str) -> int:
        """The lease ``key`` is attached to (0: none)."""
        return int(self._reading(lambda txn: self._leases.lease_of(txn, key)))

    def _delete(self, txn: lmdb.Transaction, key: str) -> None:
        """Delete ``key`` at the revision being written: callers set meta ``revision`` to
        revision + 1 after their deletes and puts (the watch event is recorded at it)."""
        prev = self._get(txn, key)
        _kv_delete(txn, self._kv, key.encode("utf-8"))
        self._leases.detach(txn, key)
        _meta_set(txn, self._meta, b"keys", _meta_int(txn, self._meta, b"keys") - 1)
        if prev is not None:
            revision = _meta_int(txn, self._meta, b"revision") + 1
            history.record(txn, self._history, revision,
                           history.delete_event(key, revision, prev))
            self._history_grew = True

    # -- reads -----------------------------------------------------------------------------

    def _read(self) -> tuple[lmdb.Transaction, bool]:
        """The open batch (sees uncommitted applies) if this thread opened it, else a
        fresh read txn of the committed state (an LMDB write txn belongs to its thread)."""
        if self._txn is not None and self._txn_thread == threading.get_ident():
            return self._txn, False
        if self._env is None:
            raise StorageFailure(f"group store {self.path} is closed")
        return self._env.begin(), True

    def _reading(self, fn: Any) -> Any:
        with self._lock:
            txn, owned = self._read()
            try:
                return fn(txn)
            except lmdb.Error as exc:
                raise StorageFailure(f"reading {self.path} failed: {exc}") from exc
            finally:
                if owned:
                    txn.abort()

    def get(self, key: str) -> KV | None:
        """The record of ``key``, or None."""
        result: KV | None = self._reading(lambda txn: self._get(txn, key))
        return result

    def range(self, prefix: str, limit: int) -> tuple[list[KV], bool]:
        """Up to ``limit`` records whose key starts with ``prefix``, by key; and "more"."""
        result: tuple[list[KV], bool] = self._reading(lambda txn: self._scan(txn, prefix, limit))
        return result

    def _scan(self, txn: lmdb.Transaction, prefix: str, limit: int) -> tuple[list[KV], bool]:
        kvs: list[KV] = []
        with closing(_kv_scan(txn, self._kv, _ROOT, prefix.encode("utf-8"), b"")) as it:
            for key, record in it:
                if len(kvs) >= limit:
                    return kvs, True
                kvs.append(_kv_dict(key, record))
        return kvs, False

    def get_at(self, key: str) -> tuple[KV | None, int]:
        """``get`` and the revision it was read at, from one transaction."""
        result: tuple[KV | None, int] = self._reading(
            lambda txn: (self._get(txn, key), _meta_int(txn, self._meta, b"revision"))
        )
        return result

    def range_at(self, prefix: str, limit: int) -> tuple[list[KV], bool, int]:
        """``range`` and the revision it was read at, from one transaction."""

        def read(txn: lmdb.Transaction) -> tuple[list[KV], bool, int]:
            kvs, more = self._scan(txn, prefix, limit)
            return kvs, more, _meta_int(txn, self._meta, b"revision")

        result: tuple[list[KV], bool, int] = self._reading(read)
        return result

    def node_statuses(self) -> dict[str, dict[str, Any]]:
        """The status records of the nodes of this group (the group's owners' own records)."""
        result: dict[str, dict[str, Any]] = self._reading(
            lambda txn: _node_statuses(txn, self._meta))
        return result

    def revision(self) -> int:
        return int(self._reading(lambda txn: _meta_int(txn, self._meta, b"revision")))

    def applied_index(self) -> int:
        return int(self._reading(lambda txn: _meta_int(txn, self._meta, b"applied_index")))

    def key_count(self) -> int:
        return int(self._reading(lambda txn: _meta_int(txn, self._meta, b"keys")))

    def session_count(self) -> int:
        return int(self._reading(lambda txn: txn.stat(self._clients)["entries"]))

    # -- online backup and restore (hakv.core.backup; docs/operations.md) ----------------

    def backup_pages(self, page_bytes: int) -> Iterator[dict[str, Any]]:
        """Every key, from ONE read transaction of the committed state, in pages: first
        ``{"revision", "compact_revision"}``, then ``{"records", "dropped_ephemeral"}``
        pages of about ``page_bytes`` of keys and values each (records as lists of
        hakv.core.backup, by key; keys attached to a lease are left out and counted).
        The transaction lives as long as the generator: iterate it in one thread (LMDB
        ties a transaction to its thread) and close it when done."""
        with self._lock:
            if self._env is None:
                raise StorageFailure(f"group store {self.path} is closed")
            txn = self._env.begin()  # the committed state; a batch in progress is not seen
        try:
            yield {"revision": _meta_int(txn, self._meta, b"revision"),
                   "compact_revision": history.info(txn, self._history)[0]}
            records: list[list[Any]] = []
            dropped = size = 0
            with closing(_kv_scan(txn, self._kv, _ROOT, b"", b"")) as it:
                for key, record in it:
                    kv = _kv_dict(key, record)
                    if self._leases.lease_of(txn, kv["key"]):
                        dropped += 1
                        continue
                    records.append([kv["key"], kv["value"], kv["create_revision"],
                                    kv["mod_revision"], kv["version"]])
                    size += len(key) + len(record)
                    if size >= page_bytes:
                        yield {"records": records, "dropped_ephemeral": dropped}
                        records, dropped, size = [], 0, 0
            yield {"records": records, "dropped_ephemeral": dropped}
        except lmdb.Error as exc:
            raise StorageFailure(f"reading {self.path} for a snapshot failed: {exc}") from exc
        finally:
            txn.abort()

    def _restore_state(self, txn: lmdb.Transaction) -> dict[str, Any] | None:
        raw = txn.get(_RESTORE_STATE, db=self._meta)
        return None if raw is None else dict(json.loads(bytes(raw)))

    def _restore_drop_staged(self, txn: lmdb.Transaction) -> None:
        for key, _ in _prefixed(txn, self._meta, _RESTORE_CHUNK, _RESTORE_CHUNK, 1 << 62):
            txn.delete(key, db=self._meta)
        txn.delete(_RESTORE_STATE, db=self._meta)

    def _restore(self, txn: lmdb.Transaction, cmd: dict[str, Any]) -> dict[str, Any]:
        """Apply a restore command (hakv.core.backup): stage chunks, then swap them in at
        ``commit``, in this one entry's transaction (a reader sees all or nothing). The
        group's revision becomes max(its own, the backup's) + 1 and the watch history is
        compacted up to it: a watcher from an older revision gets ``compacted``."""
        rid, phase = cmd["id"], cmd["phase"]
        keys = _meta_int(txn, self._meta, b"keys")
        revision = _meta_int(txn, self._meta, b"revision")
        done_raw = txn.get(_RESTORE_DONE, db=self._meta)
        done = json.loads(bytes(done_raw)) if done_raw is not None else {}
        if done.get("id") == rid and phase in ("commit", "chunk", "begin"):
            return dict(done["result"])  # a retry of a restore already committed
        state = self._restore_state(txn)
        busy = (f"group {self.group_id} holds {keys} keys (revision {revision}): refusing to "
                "restore over them; restore onto an empty group (fresh or wiped owners), or "
                "use --force to replace them")
        if phase == "begin":
            if not cmd["force"] and keys:
                raise ConflictError(busy, group=self.group_id, keys=keys)
            if state is None or state["id"] != rid:
                self._restore_drop_staged(txn)
                state = {"id": rid, "revision": cmd["revision"], "keys": cmd["keys"],
                         "force": cmd["force"], "next": 0, "staged": 0, "last": None}
                txn.put(_RESTORE_STATE, codec.JSON_ENCODER.encode(state).encode(),
                        db=self._meta)
            return {"id": rid, "phase": phase, "revision": revision, "keys": keys,
                    "next": state["next"]}
        if state is None or state["id"] != rid:
            if phase == "abort":
                return {"id": rid, "phase": phase, "aborted": False}
            raise ConflictError(f"no restore {rid} is in progress in group {self.group_id} "
                                "(another restore began, or it was aborted): start again")
        if phase == "abort":
            self._restore_drop_staged(txn)
            return {"id": rid, "phase": phase, "aborted": True}
        if phase == "chunk":
            n = cmd["n"]
            if n < state["next"]:
                return {"id": rid, "phase": phase, "n": n, "duplicate": True}
            if n > state["next"]:
                raise BadRequestError(f"restore {rid}: chunk {n} out of order, expected "
                                      f"{state['next']}")
            records = cmd["records"]
            backup.records_after(records, state["last"], state["revision"])
            if state["staged"] + len(records) > state["keys"]:
                raise BadRequestError(f"restore {rid}: more records than the {state['keys']} "
                                      "announced")
            txn.put(_RESTORE_CHUNK + _U64.pack(n),
                    codec.JSON_ENCODER.encode(records).encode("utf-8"), db=self._meta)
            state.update(next=n + 1, staged=state["staged"] + len(records),
                         last=records[-1][0])
            txn.put(_RESTORE_STATE, codec.JSON_ENCODER.encode(state).encode(), db=self._meta)
            return {"id": rid, "phase": phase, "n": n, "staged": state["staged"]}
        # commit
        if cmd["chunks"] != state["next"] or not cmd["keys"] == state["staged"] == state["keys"]:
            raise BadRequestError(
                f"restore {rid}: {state['next']} chunks with {state['staged']} keys staged, of "
                f"{state['keys']} announced; the commit says {cmd['chunks']} chunks, "
                f"{cmd['keys']} keys")
        if keys and not state["force"]:
            raise ConflictError(busy, group=self.group_id, keys=keys)
        if keys:  # --force: the keys there go first
            old, _ = self._scan(txn, "", 1 << 62)
            for kv in old:
                self._delete(txn, kv["key"])
            revision = _meta_int(txn, self._meta, b"revision")
        count = 0
        for _, blob in _prefixed(txn, self._meta, _RESTORE_CHUNK, _RESTORE_CHUNK, 1 << 62):
            for key, value, create, mod, version in json.loads(blob):
                _kv_put(txn, self._kv, self._meta, key.encode("utf-8"),
                        _record(create, mod, version, value))
                count += 1
        new_revision = max(revision, state["revision"]) + 1
        _meta_set(txn, self._meta, b"keys", count)
        _meta_set(txn, self._meta, b"revision", new_revision)
        history.compact(txn, self._history, new_revision, 1 << 62)
        self._history_grew = True  # wake the watches: they now get "compacted"
        self._restore_drop_staged(txn)
        result = {"id": rid, "phase": phase, "revision": new_revision, "keys": count,
                  "backup_revision": state["revision"], "replaced": keys}
        txn.put(_RESTORE_DONE, codec.JSON_ENCODER.encode({"id": rid, "result": result}
                                                         ).encode(), db=self._meta)
        return result

    # -- watch history (hakv.storage.history) ----------------------------------------------

    def history_view(self, fn: Callable[[history.HistoryView], Any]) -> Any:
        """``fn(view)`` over one read transaction of the committed state: the revision,
        the history and the keys as of one instant. The store lock is held only to begin
        the transaction, so a long read never delays apply. A restore that replaces the
        store meanwhile makes the read fail with UnavailableError (retryable)."""
        with self._lock:
            if self._env is None:
                raise StorageFailure(f"group store {self.path} is closed")
            txn = self._env.begin()
        try:
            view = history.HistoryView(txn, self._history,
                                       _meta_int(txn, self._meta, b"revision"), self._scan)
            return fn(view)
        except lmdb.Error as exc:
            raise UnavailableError(f"reading the watch history of {self.path} failed ({exc});"
                                   " retry") from exc
        finally:
            try:
                txn.abort()
            except lmdb.Error:
                pass

    def history_info(self) -> tuple[int, int, int]:
        """(compact revision, last revision recorded, bytes of events) of the history."""
        result: tuple[int, int, int] = self._reading(
            lambda txn: history.info(txn, self._history))
        return result

    def compact_history(self, floor: int, max_entries: int = 2000) -> int:
        """Drop the history of revisions <= ``floor`` (at most ``max_entries`` events per
        call); the new compact revision. Runs on the raft thread (a write): inside the open
        batch if there is one, else in a transaction of its own."""
        with self._lock:
            try:
                if self._txn is not None:
                    return history.compact(self._txn, self._history, floor, max_entries)
                with self._env.begin(write=True) as txn:
                    return history.compact(txn, self._history, floor, max_entries)
            except lmdb.Error as exc:
                raise StorageFailure(f"compacting the history of {self.path} failed: {exc}"
                                     ) from exc

    # -- snapshots -------------------------------------------------------------------------

    def snapshot_to(self, path: str | os.PathLike[str]) -> None:
        """Write a compact copy of the committed state as ONE file (an LMDB data file).

        An open batch is committed first, so the copy holds everything applied so far.
        The file is written to ``path + ".tmp"``, fsynced and renamed into place.
        """
        target = Path(path)
        tmp = target.with_name(target.name + ".tmp")
        with self._lock:
            self.commit()
            try:
                self._env.sync(True)  # the live store is durable at least up to the copy
                with open(tmp, "wb") as out:
                    self._env.copyfd(out.fileno(), compact=True)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, target)
                _fsync(target.parent)
            except (lmdb.Error, OSError) as exc:
                tmp.unlink(missing_ok=True)
                raise StorageFailure(f"snapshot of {self.path} to {target} failed: {exc}") from exc

    def restore_from(self, path: str | os.PathLike[str]) -> None:
        """Replace this store's state by a snapshot (a file from snapshot_to, or a store
        directory holding data.mdb). Any open batch is discarded.

        The snapshot is copied to ``<store>.restore/``, fsynced, then swapped in with two
        renames (store -> ``<store>.old``, ``.restore`` -> store); a crash in between is
        completed on the next open.
        """
        source = Path(path)
        data = source / "data.mdb" if source.is_dir() else source
        info = inspect_store(source, max_kvs=0)
        if info["group"] != self.group_id:
            raise DataDirError(
                f"snapshot {source} belongs to group {info['group']}, not {self.group_id}"
            )
        incoming = self.path.with_name(self.path.name + ".restore")
        outgoing = self.path.with_name(self.path.name + ".old")
        with self._lock:
            self.abort()
            try:
                shutil.rmtree(incoming, ignore_errors=True)
                incoming.mkdir()
                shutil.copyfile(data, incoming / "data.mdb")
                _fsync(incoming / "data.mdb")
                _fsync(incoming)
                self._env.close()
                self._env = None  # type: ignore[assignment]
                shutil.rmtree(outgoing, ignore_errors=True)
                os.rename(self.path, outgoing)
                os.rename(incoming, self.path)
                _fsync(self.path.parent)
                shutil.rmtree(outgoing, ignore_errors=True)
            except OSError as exc:
                raise StorageFailure(f"restoring {self.path} from {source} failed: {exc}") from exc
            finally:
                if self._env is None and self.path.is_dir():
                    self._env, dbs = _open_checked(
                        self.path, self.group_id, self.map_size, self.durable_commits)
                    self._set_dbs(dbs)


_NODE_STATUS_PREFIX = b"node_status/"
_OUTBOX_PREFIX = b"outbox/"
_INBOX_PREFIX = b"inbox/"
_HWM_PREFIX = b"hwm/"
_ALLOC_PREFIX = b"alloc/"
_PLACEMENT_KEY = b"placement"
_RESTORE_STATE = b"restore/state"  # an online restore in progress (GroupStore._restore)
_RESTORE_CHUNK = b"restore/chunk/"  # + u64 n: its staged records
_RESTORE_DONE = b"restore/done"  # the last committed restore: {"id", "result"}
_EVENT_PREFIX = b"event/"
MAX_EVENTS = 2000


def _prefixed(txn: lmdb.Transaction, db: Any, prefix: bytes, start: bytes,
              limit: int) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    with txn.cursor(db=db) as cur:
        if not cur.set_range(start):
            return out
        for key, value in cur:
            if not bytes(key).startswith(prefix) or len(out) >= limit:
                break
            out.append((bytes(key), bytes(value)))
    return out


def _node_statuses(txn: lmdb.Transaction, meta: Any) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    with txn.cursor(db=meta) as cur:
        if not cur.set_range(_NODE_STATUS_PREFIX):
            return out
        for key, value in cur:
            key = bytes(key)
            if not key.startswith(_NODE_STATUS_PREFIX):
                break
            out[key[len(_NODE_STATUS_PREFIX):].decode("utf-8")] = json.loads(bytes(value))
    return out


def inspect_store(
    path: str | os.PathLike[str], *, max_kvs: int = INSPECT_MAX_KVS
) -> dict[str, Any]:
    """Offline, read-only dump of a group store directory (or a snapshot file).

    Opens without LMDB's lock, so it works while the node is down or running (a running
    node's concurrent commit can make it fail; just retry).
    """
    p = Path(path)
    if not p.exists():
        raise DataDirError(f"{p} does not exist: no group store there")
    if p.is_dir() and not (p / "data.mdb").is_file():
        raise DataDirError(f"{p} holds no group store (no data.mdb): wrong --data-dir?")
    env, dbs = _open_checked(p, None, 1 << 20)
    try:
        with env.begin() as txn:
            meta = dbs[b"meta"]
            kvs: list[KV] = []
            if max_kvs > 0:
                with closing(_kv_scan(txn, dbs[b"kv"], _ROOT, b"", b"")) as it:
                    for key, record in it:
                        kvs.append(_kv_dict(key, record))
                        if len(kvs) >= max_kvs:
                            break
            return {
                "group": bytes(txn.get(b"group", db=meta) or b"").decode("utf-8", "replace"),
                "applied_index": _meta_int(txn, meta, b"applied_index"),
                "revision": _meta_int(txn, meta, b"revision"),
                "keys": _meta_int(txn, meta, b"keys"),
                "kvs": kvs,
                "sessions": txn.stat(dbs[b"clients"])["entries"],
                "node_status": _node_statuses(txn, meta),
            }
    except _CORRUPT as exc:
        raise _corrupt(p, exc) from exc
    except lmdb.Error as exc:
        raise DataDirError(f"cannot read group store {p}: {type(exc).__name__}: {exc}") from exc
    finally:
        env.close()
