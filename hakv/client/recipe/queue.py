"""A distributed priority queue: ``client.queue(group, name)``.

Many producers, many consumers; items ordered by priority (lower first, as kazoo's and
etcd's queues), then by the revision of their ``put`` (FIFO). Every item is handed to at
most one consumer (etcd's recipes/queue.go, kazoo's Queue)::

    from hakv import Client

    with Client("127.0.0.1:8202,127.0.0.1:8208") as c:
        jobs = c.queue("220", "jobs")
        jobs.put("resize img-1")                 # priority 0
        jobs.put("resize img-0", priority=-5)     # taken before every priority-0 item
        print(len(jobs))                          # 2
        job = jobs.get()                          # "resize img-0"; blocks while empty
        job = jobs.get(timeout=10)                # None if nothing came within 10 s
        job = jobs.get(timeout=0)                 # None at once if empty

How it works. An item is the key ``_hakv/queue/<name>/<priority: 8 hex><seq: 16 hex>``
holding its value, so the group's key order is the queue order. ``put`` is ONE txn that
increments the sequence key ``_hakv/queue/<name>/seq`` (compare on its mod_revision, as
etcd's sequential keys) and creates the item: sequence numbers follow the order of the
puts' revisions. ``get`` ranges the first keys of the prefix and deletes the first item
with a txn that compares the item's mod_revision: exactly one of the consumers racing for
an item wins it, the others try the next one. When the queue is empty, ``get`` watches
the prefix from the revision it read at for the next put of an item: no polling, and no
item can slip in between the read and the watch.

Delivery semantics: **at most once**. An item leaves the queue in the txn that hands it to
a consumer; a consumer that dies (or is killed, or loses its client) after that txn
applied and before it processed the item loses the item, as with etcd's queue — no other
consumer gets it. If ``get`` raises OutcomeUnknownError (no answer from any endpoint
within the client's timeout), the item it was taking may have been taken (and is then
lost) or not (and stays queued). There is no at-least-once variant (kazoo's LockingQueue):
put the work back yourself, or keep it in keys of your own guarded by a lock.

What happens on failure:

- a leader change or node failure: calls retry across endpoints (writes deduplicated by
  client id and seq, so a retried take reports the outcome of the first attempt), a
  waiting ``get``'s watch resumes from its cursor;
- concurrent producers: the sequence key's compare-and-swap retries until it wins (each
  round one producer wins); ``put`` never overwrites an item (it also compares
  ``create_revision == 0`` on the new key). Do not delete the sequence key while items
  remain: new items would then be ordered before older ones of the same priority;
- bad input: a non-string value, a priority outside -2**31..2**31-1 or a negative
  timeout get BadRequestError, a value over 32 KiB RequestTooLargeError, nothing queued.
"""

from __future__ import annotations

import math
import string
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from hakv.client.recipe._contention import queue_prefix, validate_name, wait_for_batch
from hakv.client.results import KeyValue, RangeResult
from hakv.client.txn import Compare, Op
from hakv.client.watch import WatchBatch
from hakv.errors import BadRequestError, ConflictError, NotFoundError, RequestTooLargeError

if TYPE_CHECKING:
    from hakv.client.client import Client

__all__ = ["MAX_PRIORITY", "MIN_PRIORITY", "QUEUE_ROOT", "Queue", "item_key", "parse_item"]

QUEUE_ROOT = "_hakv/queue/"
MIN_PRIORITY = -(2**31)
MAX_PRIORITY = 2**31 - 1
_PRIO_DIGITS = 8
_SEQ_DIGITS = 16
_ITEM_LEN = _PRIO_DIGITS + _SEQ_DIGITS
_HEX = frozenset(string.hexdigits.lower())
_PAGE = 32  # keys read per look at the head; more only if other keys crowd them out
_RANGE_LIMIT = 10000
_PUT_ATTEMPTS = 1000
_UNKNOWN: tuple[int, int] = (-1, -1)


def item_key(prefix: str, priority: int, seq: int) -> str:
    """The key of the item of ``priority`` put as number ``seq`` in the queue at
    ``prefix``: sorts by priority, then by seq."""
    return f"{prefix}{priority - MIN_PRIORITY:0{_PRIO_DIGITS}x}{seq:0{_SEQ_DIGITS}x}"


def parse_item(prefix: str, key: str) -> tuple[int, int] | None:
    """``(priority, seq)`` of an item key of the queue at ``prefix``; None for any other
    key (the sequence key, the keys of queues whose names extend this one)."""
    if not key.startswith(prefix):
        return None
    rest = key[len(prefix):]
    if len(rest) != _ITEM_LEN or not _HEX.issuperset(rest):
        return None
    return int(rest[:_PRIO_DIGITS], 16) + MIN_PRIORITY, int(rest[_PRIO_DIGITS:], 16)


def _validate_priority(priority: object) -> int:
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise BadRequestError(f"queue priority must be an integer, got {priority!r}")
    if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise BadRequestError(f"queue priority must be in {MIN_PRIORITY}..{MAX_PRIORITY}, "
                              f"got {priority}")
    return priority


def _validate_timeout(timeout: object) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) \
            or math.isnan(timeout) or timeout < 0:
        raise BadRequestError(f"queue get timeout must be None or seconds >= 0, "
                              f"got {timeout!r}")
    return float(timeout)


class Queue:
    """The queue ``name`` of ``group``; see the module docstring. A Queue object may be
    shared between threads (each ``get`` is independent)."""

    def __init__(self, client: Client, group: str, name: str) -> None:
        self.client = client
        self.group = group
        self.name = validate_name(QUEUE_ROOT, name, "queue", tail="/" + "0" * _ITEM_LEN)
        self.prefix = queue_prefix(QUEUE_ROOT, name)
        self.seq_key = f"{self.prefix}seq"
        self._last = _UNKNOWN  # (seq, mod_revision of the seq key) last seen: a hint

    def __repr__(self) -> str:
        return f"Queue(group={self.group!r}, name={self.name!r})"

    def _is_item(self, key: str) -> bool:
        return parse_item(self.prefix, key) is not None

    # -- put ----------------------------------------------------------------------------

    def _read_seq(self) -> tuple[int, int]:
        try:
            kv: KeyValue | None = self.client.get(self.group, self.seq_key)
        except NotFoundError:
            kv = None
        return self._seq_of(kv)

    def _seq_of(self, kv: KeyValue | None) -> tuple[int, int]:
        if kv is None:
            return 0, 0
        try:
            return int(kv.value), kv.mod_revision
        except ValueError:
            raise BadRequestError(f"queue {self.name!r}: its sequence key {self.seq_key!r} "
                                  f"holds {kv.value[:40]!r}, not an integer") from None

    def put(self, value: str, priority: int = 0) -> str:
        """Queue ``value`` with ``priority`` (lower is taken first; ties: in the order of
        the puts); the item's key."""
        if not isinstance(value, str):
            raise BadRequestError(f"queue value must be a string, got {type(value).__name__}")
        priority = _validate_priority(priority)
        seq, seq_rev = self._last if self._last != _UNKNOWN else self._read_seq()
        n = seq + 1
        for _ in range(_PUT_ATTEMPTS):
            key = item_key(self.prefix, priority, n)
            guard = (Compare.mod_revision(self.seq_key, "==", seq_rev) if seq_rev
                     else Compare.version(self.seq_key, "==", 0))
            r = self.client.txn(self.group, [guard, Compare.create_revision(key, "==", 0)],
                                [Op.put(self.seq_key, str(n)), Op.put(key, value)],
                                [Op.get(self.seq_key)])
            if r.succeeded:
                self._last = (n, r.revision)
                return key
            now = self._seq_of(r.results[0].kv)  # type: ignore[union-attr]
            if now[1] == seq_rev:
                n += 1  # the sequence key was not moved: our item key exists; skip it
            else:
                seq, seq_rev = now
                n = seq + 1
        raise ConflictError(f"queue {self.name!r}: {_PUT_ATTEMPTS} rounds lost to "
                            f"concurrent producers")

    # -- get ----------------------------------------------------------------------------

    def _head(self) -> tuple[RangeResult, list[KeyValue]]:
        """The first items (in queue order) and the revision they were read at."""
        limit = _PAGE
        while True:
            r = self.client.range(self.group, self.prefix, limit=limit)
            items = [kv for kv in r.kvs if self._is_item(kv.key)]
            if items or not r.more:
                return r, items
            if limit >= _RANGE_LIMIT:
                raise RequestTooLargeError(
                    f"queue {self.name!r}: more than {_RANGE_LIMIT} keys of queues whose "
                    f"names extend this one come before its first item")
            limit = min(limit * 16, _RANGE_LIMIT)

    def _new_item(self, batch: WatchBatch) -> bool:
        return any(e.type == "put" and self._is_item(e.key) for e in batch.events)

    def get(self, timeout: float | None = None) -> str | None:
        """Take the first item: its value, removed from the queue for everyone else.
        Blocks while the queue is empty: ``timeout`` None waits forever, else None is
        returned if no item could be taken within ``timeout`` seconds (0: at once)."""
        wait = _validate_timeout(timeout)
        deadline = None if wait is None else time.monotonic() + wait
        wake = threading.Event()
        while True:
            r, items = self._head()
            taken = self._take(items)
            if taken is not None:
                return taken.value
            if items:
                continue  # every one of them went to another consumer: look again
            if deadline is not None and time.monotonic() >= deadline:
                return None
            wait_for_batch(self.client, self.group, r.revision + 1, self._new_item,
                           deadline, wake, prefix=self.prefix,
                           what=f"queue-{self.group}-{self.name}")

    def _take(self, items: Iterable[KeyValue]) -> KeyValue | None:
        """The first of ``items`` this consumer could delete (the others lost a race)."""
        for kv in items:
            r = self.client.txn(self.group,
                                [Compare.mod_revision(kv.key, "==", kv.mod_revision)],
                                [Op.delete(kv.key)])
            if r.succeeded:
                return kv
        return None

    # -- size ---------------------------------------------------------------------------

    def __len__(self) -> int:
        """How many items are queued: one linearizable read while the prefix holds at most
        10000 keys; beyond, a sum of reads of narrower prefixes (not one instant)."""
        return self._count("")

    def _count(self, rest: str) -> int:
        prefix = self.prefix + rest
        r = self.client.range(self.group, prefix, limit=_RANGE_LIMIT)
        if not r.more:
            return sum(1 for kv in r.kvs if self._is_item(kv.key))
        if len(rest) >= _ITEM_LEN:  # the item itself, then keys of longer queue names
            return 1 if r.kvs and r.kvs[0].key == prefix and self._is_item(prefix) else 0
        return sum(self._count(rest + digit) for digit in "0123456789abcdef")
