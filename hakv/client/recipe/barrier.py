"""Barriers: ``client.barrier(group, name)`` and ``client.double_barrier(group, name, count)``.

A :class:`Barrier` (kazoo's Barrier) holds processes back until someone removes it::

    from hakv import Client

    with Client("127.0.0.1:8202,127.0.0.1:8208") as c:
        gate = c.barrier("220", "deploy-gate")
        gate.create()                    # raise it (True if this call raised it)
        ...                              # elsewhere: workers call gate.wait()
        gate.remove()                    # every waiter is released

        if gate.wait(timeout=60):        # True: the barrier is down (or was never up)
            start_work()                 # False: still up after 60 s

A :class:`DoubleBarrier` (etcd's recipes/double_barrier.go, kazoo's DoubleBarrier) lets
``count`` processes start together and finish together::

    db = c.double_barrier("220", "round-7", count=3, ttl=10)
    db.enter()                           # blocks until 3 participants have entered
    compute()
    db.leave()                           # blocks until all 3 have left

How it works. A barrier is the key ``_hakv/barrier/<name>``: ``create`` is a txn with
``create_revision == 0``, ``remove`` deletes it, ``wait`` reads it at revision R and, if it
is there, watches that one key from R + 1 for its deletion (no polling, no seam between
the read and the watch). A double barrier keeps one key per participant,
``_hakv/double_barrier/<name>/waiters/<lease id>``, each on the participant's own lease
(kept alive in a thread), and a flag ``_hakv/double_barrier/<name>/ready``. ``enter``
creates the participant's key and counts the keys: the ``count``-th participant puts the
flag; the others watch the flag from their own key's revision for that put. ``leave``:
the participant whose key is oldest (the *lowest*) waits for the newest key's deletion,
every other participant deletes its key (revokes its lease) and waits for the lowest's;
each re-reads after a wake-up, and the lowest, once alone, deletes the flag, the agreed
``count`` key and its own key in one txn, which releases everyone.

What happens on failure:

- Barrier: the key is not on a lease (kazoo's barrier node is not ephemeral either): a
  process that raised it and died leaves it up until someone calls ``remove()``; use
  ``wait(timeout=)`` when that matters. A waiter survives leader changes and node
  failures (calls retry across endpoints, the watch resumes from its cursor); a removal
  releases every waiter even if the barrier is raised again right after.
- DoubleBarrier: a participant that dies (or stops keeping its lease alive) loses its key
  when its lease expires — no later than ``ttl + k·(C + E) + M`` after its last
  acknowledged keepalive (docs/api.md, "The bound") — so it never blocks the others
  forever: before the ``count`` is reached it simply no longer counts (``enter`` keeps
  waiting for a live ``count``-th participant), after it the others' ``leave`` goes on
  without it. A participant whose own lease is lost while entering gets LockLostError.
- ``enter`` when ``count`` participants are already in raises ConflictError (nothing
  left behind), as etcd's ErrTooManyClients; so does an ``enter`` that raced another one
  past ``count``. A dead participant counts until its lease expires.
- ``enter(timeout=)`` / ``leave(timeout=)`` that run out return False, after removing the
  participant's key (an ``enter`` that finds the flag put after all returns True). A
  timed-out ``enter`` that raced the ``count``-th participant may have been counted by
  the others. ``leave`` may be called again after a timeout: it waits for the others.
- The ``count`` is agreed as a semaphore's limit is: the first participant stores it in
  ``_hakv/double_barrier/<name>/count`` and every participant joins with a txn that
  compares it with its own, so one that asks for another count gets ConflictError
  (``details``: ``stored``, ``asked``) and does not join. The last participant out
  deletes it with the flag, so each round agrees anew. A double barrier is reused only
  after everyone left it (participants of the next round entering while the previous
  round still leaves are counted by both).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from hakv.client import lease as lease_api
from hakv.client.lease import Lease
from hakv.client.recipe._contention import (
    Contender,
    agree,
    contenders_of,
    create_agreed,
    validate_name,
    wait_for_batch,
)
from hakv.client.results import KeyValue, RangeResult
from hakv.client.txn import Compare, Op
from hakv.client.watch import WatchBatch
from hakv.core import leases
from hakv.errors import (
    BadRequestError,
    ConflictError,
    HakvError,
    LeaseNotFoundError,
    LockLostError,
    RequestTooLargeError,
)

if TYPE_CHECKING:
    from hakv.client.client import Client

__all__ = ["BARRIER_ROOT", "DOUBLE_BARRIER_ROOT", "MAX_COUNT", "Barrier", "DoubleBarrier"]

BARRIER_ROOT = "_hakv/barrier/"
DOUBLE_BARRIER_ROOT = "_hakv/double_barrier/"
MAX_COUNT = leases.MAX_LEASES
"""The largest ``count``: a lease per participant, at most this many per group."""
_RANGE_LIMIT = 10000


def _deletes(batch: WatchBatch) -> bool:
    return any(e.type == "delete" for e in batch.events)


def _puts(batch: WatchBatch) -> bool:
    return any(e.type == "put" for e in batch.events)


class Barrier:
    """A barrier ``name`` in ``group``; see the module docstring."""

    def __init__(self, client: Client, group: str, name: str) -> None:
        self.client = client
        self.group = group
        self.name = validate_name(BARRIER_ROOT, name, "barrier", tail="")
        self.key = f"{BARRIER_ROOT}{name}"

    def __repr__(self) -> str:
        return f"Barrier(group={self.group!r}, name={self.name!r})"

    def create(self) -> bool:
        """Raise the barrier: True if this call raised it, False if it was up already."""
        r = self.client.txn(self.group, [Compare.create_revision(self.key, "==", 0)],
                            [Op.put(self.key, "")])
        return r.succeeded

    def remove(self) -> bool:
        """Drop the barrier, releasing every waiter: True if this call removed it, False
        if it was not up."""
        return self.client.delete(self.group, self.key).deleted == 1

    def exists(self) -> bool:
        """The barrier is up (a linearizable read)."""
        return self._read()[0] is not None

    def _read(self) -> tuple[KeyValue | None, int]:
        # The key is the smallest one with itself as prefix: the first of the range.
        r = self.client.range(self.group, self.key, limit=1)
        kv = r.kvs[0] if r.kvs and r.kvs[0].key == self.key else None
        return kv, r.revision

    def wait(self, timeout: float | None = None) -> bool:
        """Block while the barrier is up: True once it is removed (at once if it is not
        up), False if it is still up after ``timeout`` seconds. A watch of its key from
        the revision it was read at: never polls."""
        deadline = None if timeout is None else time.monotonic() + timeout
        wake = threading.Event()
        while True:
            kv, revision = self._read()
            if kv is None:
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            removed = threading.Event()

            def done(batch: WatchBatch, removed: threading.Event = removed) -> bool:
                if _deletes(batch):
                    removed.set()
                return removed.is_set()

            wait_for_batch(self.client, self.group, revision + 1, done, deadline, wake,
                           key=self.key, what=f"barrier-{self.group}-{self.name}")
            if removed.is_set():
                return True  # removed, even if raised again since


class DoubleBarrier:
    """One participant of double barrier ``name`` in ``group`` for ``count`` participants;
    see the module docstring. ``ttl``: the participant's lease TTL (1..86400 s): how long
    a dead participant keeps counting. ``value``: stored in its key (``participants()``).
    ``on_lost(db)``: called once, from the keepalive thread, if its lease is lost."""

    def __init__(self, client: Client, group: str, name: str, count: int,
                 ttl: float = 10.0, *, value: str = "",
                 on_lost: Callable[[DoubleBarrier], None] | None = None) -> None:
        if isinstance(count, bool) or not isinstance(count, int):
            raise BadRequestError(f"double barrier count must be an integer >= 1, "
                                  f"got {count!r}")
        if not 1 <= count <= MAX_COUNT:
            raise BadRequestError(f"double barrier count must be in 1..{MAX_COUNT} (a lease "
                                  f"per participant), got {count}")
        leases.ttl_ms(ttl, "ttl")  # LeaseTtlError now rather than at enter
        self.client = client
        self.group = group
        self.name = validate_name(DOUBLE_BARRIER_ROOT, name, "double barrier",
                                  tail="/waiters/" + "0" * 16)
        self.count = count
        self.ttl = ttl
        self.value = value
        self.on_lost = on_lost
        self.waiters = f"{DOUBLE_BARRIER_ROOT}{name}/waiters/"
        self.ready_key = f"{DOUBLE_BARRIER_ROOT}{name}/ready"
        self.count_key = f"{DOUBLE_BARRIER_ROOT}{name}/count"
        self.lost = threading.Event()
        self.lease: Lease | None = None
        self.key: str | None = None
        self.revision: int | None = None  # our key's create_revision
        self._wake = threading.Event()

    def __repr__(self) -> str:
        state = "in" if self.key is not None else "out"
        return (f"DoubleBarrier(group={self.group!r}, name={self.name!r}, "
                f"count={self.count}, {state})")

    # -- reads --------------------------------------------------------------------------

    def _range(self) -> tuple[list[Contender], RangeResult]:
        r = self.client.range(self.group, self.waiters, limit=_RANGE_LIMIT)
        if r.more:
            raise RequestTooLargeError(
                f"double barrier {self.name!r}: more than {_RANGE_LIMIT} keys under "
                f"{self.waiters!r}")
        return contenders_of(self.waiters, r.kvs), r

    def participants(self) -> list[str]:
        """The values of the participants in now, oldest first (a linearizable read)."""
        return [c.value for c in self._range()[0]]

    def _ready(self) -> tuple[KeyValue | None, int]:
        r = self.client.range(self.group, self.ready_key, limit=1)
        kv = r.kvs[0] if r.kvs and r.kvs[0].key == self.ready_key else None
        return kv, r.revision

    def valid_until(self) -> float:
        """``time.monotonic()`` time before which our lease has surely not expired."""
        if self.lease is None:
            raise RuntimeError(f"double barrier {self.name!r}: not entered")
        return self.lease.safe_until()

    # -- enter --------------------------------------------------------------------------

    def _full(self, n: int) -> ConflictError:
        return ConflictError(
            f"double barrier {self.name!r} of group {self.group!r} already has {n} "
            f"participant(s) for a count of {self.count} (a dead participant counts until "
            f"its lease expires; a new round starts once everyone left)")

    def _mismatch(self, stored: KeyValue) -> ConflictError:
        return ConflictError(
            f"double barrier {self.name!r} of group {self.group!r} has count "
            f"{stored.value[:40]!r} (stored in {self.count_key!r} by its first participant), "
            f"not {self.count}: use that count (it goes when the last participant of this "
            f"round leaves)", stored=stored.value[:40], asked=self.count)

    def enter(self, timeout: float | None = None) -> bool:
        """Join, then block until ``count`` participants have entered: True; False if
        ``timeout`` seconds passed first (our key removed again). ConflictError if
        ``count`` are in already, or the double barrier was set up with another count;
        LockLostError if our lease is lost meanwhile; RuntimeError if this object is in
        already."""
        if self.key is not None:
            raise RuntimeError(f"double barrier {self.name!r} of group {self.group!r}: "
                               f"this participant entered already (leave first)")
        deadline = None if timeout is None else time.monotonic() + timeout
        agree(self.client, self.group, self.count_key, str(self.count), self._mismatch)
        present, _ = self._range()
        if len(present) >= self.count:
            raise self._full(len(present))
        self.lost.clear()
        self.lease = lease_api.grant(self.client, self.group, self.ttl,
                                     on_lost=self._lease_lost)
        self.lease.start_keepalive()
        self.key = f"{self.waiters}{self.lease.id:016x}"
        try:
            self.revision = self._create()
            present, _ = self._range()
            if len(present) > self.count:
                raise self._full(len(present) - 1)
            if len(present) == self.count:
                self.client.put(self.group, self.ready_key, str(self.count))
                return True
            if self._wait_ready(deadline):
                return True
        except BaseException:
            self._drop()
            raise
        self._drop()
        return False

    def _create(self) -> int:
        assert self.lease is not None and self.key is not None
        return create_agreed(self.client, self.group, self.key, self.value, self.lease.id,
                             self.count_key, str(self.count), self._mismatch,
                             f"double barrier {self.name!r} of group {self.group!r}")

    def _wait_ready(self, deadline: float | None) -> bool:
        """Until the flag is put after our key was created (True) or the deadline."""
        assert self.revision is not None
        while True:
            if self.lost.is_set():
                raise LockLostError(
                    f"double barrier {self.name!r} of group {self.group!r}: our lease was "
                    f"lost while entering ({self.lease.lost_reason if self.lease else ''})")
            ready, revision = self._ready()
            if ready is not None and ready.mod_revision > self.revision:
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            wait_for_batch(self.client, self.group, revision + 1, _puts, deadline,
                           self._wake, key=self.ready_key,
                           what=f"double-barrier-{self.group}-{self.name}")

    # -- leave --------------------------------------------------------------------------

    def leave(self, timeout: float | None = None) -> bool:
        """Leave, then block until every participant has left: True; False if
        ``timeout`` seconds passed first (our key is removed in any case; calling
        ``leave`` again waits for the others)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                present, r = self._range()
                if not present:
                    return True
                mine = [c for c in present if c.key == self.key]
                lowest, highest = present[0], present[-1]
                if mine and len(present) == 1:
                    self._finish(mine[0])
                    continue  # re-read: nobody is left, unless our key vanished first
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                if mine and lowest.key == self.key:
                    watched = highest.key  # the lowest waits for the others, newest first
                else:
                    if mine:
                        self._drop()  # every other participant leaves at once
                    watched = lowest.key  # ... and waits for the lowest, who goes last
                wait_for_batch(self.client, self.group, r.revision + 1, _deletes,
                               deadline, self._wake, key=watched,
                               what=f"double-barrier-{self.group}-{self.name}")
        finally:
            self._drop()

    def _finish(self, mine: Contender) -> None:
        """The last one out: the flag, the agreed count and our key go in one txn
        (guarded by our key)."""
        assert self.key is not None
        self.client.txn(self.group, [Compare.create_revision(self.key, "==",
                                                             mine.create_revision)],
                        [Op.delete(self.ready_key), Op.delete(self.count_key),
                         Op.delete(self.key)])
        self._drop()

    def _drop(self) -> None:
        """Remove our key: revoke the lease (if even that fails, it expires)."""
        lease, self.lease = self.lease, None
        self.key = None
        if lease is None:
            return
        lease.stop_keepalive()
        try:
            lease.revoke()
        except LeaseNotFoundError:
            pass
        except HakvError:
            pass  # it expires on its own within its bound

    def _lease_lost(self, _lease: Lease) -> None:
        self.lost.set()
        self._wake.set()
        if self.on_lost is not None:
            self.on_lost(self)
