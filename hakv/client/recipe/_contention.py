"""The queue behind locks, elections and semaphores (hakv.client.recipe.lock, .election,
.semaphore): FIFO by creation revision over a key prefix, each contender a key attached to
its own lease.

Layout of one queue in a group::

    _hakv/lock/<name>/<lease id, 16 hex digits>        value: the contender's value
    _hakv/election/<name>/<lease id, 16 hex digits>

A contender is a *direct child* of ``<root><name>/`` (no further ``/``), so the queue of
``a`` never mixes with the queue of ``a/b`` although one prefix contains the other.

1. Grant a lease (kept alive in a thread for as long as the contender waits or holds).
2. ONE txn: ``create_revision(own key) == 0`` → ``put(own key, value, lease=own lease)``.
   The key's create_revision is the group revision of that txn: the contender's place
   in the queue and, once it is at the head, its fencing token.
3. Range the prefix (linearizable) at revision R. The holder is the contender with the
   lowest create_revision. If it is not us, watch ONLY our predecessor (the contender just
   before us) from R + 1 — no herd, no seam between the range and the watch — and go back
   to 3 when it is deleted (it released, or its lease expired).
4. Release = revoke the lease: the key goes (in one revision), the next contender's watch
   fires. A dead holder's key goes when its lease expires.

With ``limit`` N > 1 (a semaphore) the holders are the first N contenders and step 3
becomes: a contender with fewer than N before it holds; the *first waiter* (exactly N
before it) watches the prefix for the deletion of any of those N (holders release in any
order); a later waiter watches only its predecessor's key, for any change: a holder with
N > 1 re-puts its key (same value, same lease, same create_revision) right after it got
its slot, so the waiter behind it learns that it has become the first waiter. One prefix
watcher per semaphore, no herd. With N = 1 (locks, elections) nothing changes: a waiter
watches its predecessor's key for its deletion, and holders write nothing.

Why at most N hold at once (N = 1: mutual exclusion): a contender holds once a range at
revision R showed fewer than N contenders created before it. Take the holder H created
last among those that hold at some moment: every other holder was created before H and
its key still exists, so it existed at H's R too; hence fewer than N others hold.

Why the token only grows: a holder is the lowest create_revision among the keys present;
a contender created while another holds gets a higher revision (revisions grow by one
per write, through the group's Raft log, so also across leader changes), and one that
was there before it had a higher revision already (it was behind in the queue). A key
exists over one interval and is never re-created under the same create_revision. So
each later holder of a queue has a larger token than every earlier one.

The pure functions here (names, keys, who holds, who is whose predecessor) are
table-tested in tests/test_recipe.py; ``Contention`` does the I/O.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hakv.client import lease as lease_api
from hakv.client.results import KeyValue, RangeResult, TxnResult
from hakv.client.txn import Compare, Op
from hakv.client.watch import Watch, WatchBatch
from hakv.core.codec import MAX_KEY_BYTES
from hakv.errors import (
    BadRequestError,
    CompactedError,
    HakvError,
    LeaseNotFoundError,
    LockLostError,
    NotFoundError,
    PermanentError,
    RequestTooLargeError,
)

if TYPE_CHECKING:
    from hakv.client.client import Client
    from hakv.client.lease import Lease

__all__ = ["ELECTION_ROOT", "LOCK_ROOT", "SEMAPHORE_ROOT", "Contender", "Contention",
           "ahead_of", "contender_key", "contenders_of", "holder", "is_contender",
           "agree", "create_agreed", "predecessor", "queue_prefix", "validate_name",
           "wait_for_batch", "waits_for"]

log = logging.getLogger("hakv.client.recipe")

LOCK_ROOT = "_hakv/lock/"
ELECTION_ROOT = "_hakv/election/"
SEMAPHORE_ROOT = "_hakv/semaphore/"
_ID_DIGITS = 16  # a lease id in hex
_RANGE_LIMIT = 10000  # the API's maximum
_WATCH_POLL = 2.0  # seconds per long-poll of a waiter's watch


# --------------------------------------------------------------------------- pure part


def validate_name(root: str, name: str, what: str = "lock", tail: str | None = None) -> str:
    """``name`` if its keys fit the key limits (docs/api.md "Limits"): BadRequestError
    for a non-string, empty or NUL-holding name, RequestTooLargeError if its longest key
    exceeds the 1024-byte key limit: ``<root><name>/<16 hex digits>`` (a contender), or
    ``<root><name><tail>`` when the recipe names its longest key's ``tail``."""
    if not isinstance(name, str):
        raise BadRequestError(f"{what} name must be a string, got {type(name).__name__}")
    if not name:
        raise BadRequestError(f"{what} name must not be empty")
    if "\x00" in name:
        raise BadRequestError(f"{what} name must not contain NUL characters")
    longest = contender_key(root, name, 0) if tail is None else f"{root}{name}{tail}"
    size = len(longest.encode("utf-8", "surrogatepass"))
    if size > MAX_KEY_BYTES:
        room = MAX_KEY_BYTES - (size - len(name.encode("utf-8", "surrogatepass")))
        raise RequestTooLargeError(
            f"{what} name {name[:40]!r}...: its keys would be {size} bytes UTF-8, over the "
            f"{MAX_KEY_BYTES}-byte key limit (names up to {room} bytes)")
    return name


def queue_prefix(root: str, name: str) -> str:
    """The prefix under which the contenders of queue ``name`` live."""
    return f"{root}{name}/"


def contender_key(root: str, name: str, lease_id: int) -> str:
    """The key of the contender holding lease ``lease_id``."""
    return f"{queue_prefix(root, name)}{lease_id:0{_ID_DIGITS}x}"


def is_contender(prefix: str, key: str) -> bool:
    """``key`` is a contender of the queue at ``prefix`` (a direct child, not a key of a
    longer name's queue)."""
    return key.startswith(prefix) and len(key) > len(prefix) and "/" not in key[len(prefix):]


@dataclass(frozen=True, order=True)
class Contender:
    """One contender: its place (``create_revision``, the fencing token if it holds),
    its key and its value."""

    create_revision: int
    key: str
    value: str = ""


def contenders_of(prefix: str, kvs: Iterable[KeyValue]) -> list[Contender]:
    """The contenders among ``kvs`` (a range of ``prefix``), in queue order."""
    return sorted(Contender(kv.create_revision, kv.key, kv.value)
                  for kv in kvs if is_contender(prefix, kv.key))


def holder(contenders: Sequence[Contender]) -> Contender | None:
    """The contender at the head of the queue (lowest create_revision), None if empty."""
    return min(contenders, default=None)


def predecessor(contenders: Sequence[Contender], mine: int) -> Contender | None:
    """The contender just before the one created at revision ``mine`` (the one it must
    wait for); None when it is at the head."""
    before = [c for c in contenders if c.create_revision < mine]
    return max(before, default=None)


def ahead_of(contenders: Sequence[Contender], mine: int) -> list[Contender]:
    """The contenders created before revision ``mine``, in queue order."""
    return sorted(c for c in contenders if c.create_revision < mine)


def waits_for(contenders: Sequence[Contender], mine: int,
              limit: int = 1) -> tuple[str, list[Contender]]:
    """What the contender created at ``mine`` does when at most ``limit`` may hold:
    ``("hold", [])`` with fewer than ``limit`` before it; ``("deleted", [p])``: wait for
    its predecessor's deletion (``limit`` 1); ``("any", [h1..hN])``: the first waiter of
    a semaphore waits for the deletion of any of the N before it; ``("changed", [p])``: a
    later waiter of a semaphore waits for any change of its predecessor's key (deleted,
    or re-put when it got its slot)."""
    ahead = ahead_of(contenders, mine)
    if len(ahead) < limit:
        return "hold", []
    if limit == 1:
        return "deleted", [ahead[-1]]
    if len(ahead) == limit:
        return "any", ahead
    return "changed", [ahead[-1]]


def _deletes_any(keys: frozenset[str]) -> Callable[[WatchBatch], bool]:
    """A ``done`` for :func:`wait_for_batch`: the batch deletes one of ``keys``."""
    return lambda batch: any(e.type == "delete" and e.key in keys for e in batch.events)


def wait_for_batch(client: Client, group: str, start: int, done: Callable[[WatchBatch], bool],
                   deadline: float | None, wake: threading.Event, *, key: str | None = None,
                   prefix: str = "", what: str = "recipe") -> None:
    """Watch ``key`` (or ``prefix``) of ``group`` from revision ``start`` in a thread of
    its own until a batch satisfies ``done``, ``deadline`` (monotonic; None: never) or
    someone sets ``wake``. A CompactedError ends the wait (the caller re-reads); another
    permanent error of the watch is raised; retryable ones are retried by the watch."""
    wake.clear()
    w = Watch(client, group, prefix, start_revision=start, key=key, poll_timeout=_WATCH_POLL)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            for batch in w:
                if done(batch):
                    return
        except CompactedError:
            pass  # the history moved on: re-check with a fresh range
        except BaseException as exc:  # re-raised by the waiting thread
            failure.append(exc)
        finally:
            wake.set()

    thread = threading.Thread(target=run, daemon=True, name=f"hakv-{what}")
    thread.start()
    try:
        if deadline is None:
            wake.wait()
        else:
            wake.wait(max(0.0, deadline - time.monotonic()))
    finally:
        w.close()  # the thread ends within one long-poll
    if failure and isinstance(failure[0], PermanentError):
        raise failure[0]
    if failure:
        log.debug("%s: watch of %s failed: %s", what, key or prefix, failure[0])


# --------------------------------------------------------------------------- I/O part


_AGREE_ATTEMPTS = 10  # rounds of "store the agreed value, then join" lost to deletions


def agree(client: Client, group: str, key: str, want: str,
          mismatch: Callable[[KeyValue], HakvError]) -> None:
    """A parameter every participant must share (a semaphore's limit, a double barrier's
    count), kept at ``key``: store ``want`` if nothing is stored yet, else raise
    ``mismatch(stored)`` if another value is (a linearizable read when it is stored, a
    txn only to create it)."""
    try:
        stored: KeyValue | None = client.get(group, key)
    except NotFoundError:
        stored = None
    if stored is not None:
        if stored.value != want:
            raise mismatch(stored)
        return
    r = client.txn(group, [Compare.create_revision(key, "==", 0)], [Op.put(key, want)],
                   [Op.get(key)])
    if r.succeeded:
        return
    stored = r.results[0].kv  # type: ignore[union-attr]
    if stored is not None and stored.value != want:
        raise mismatch(stored)


def create_agreed(client: Client, group: str, key: str, value: str, lease: int,
                  agreed: str, want: str, mismatch: Callable[[KeyValue], HakvError],
                  what: str) -> int:
    """Create our ``key`` (on ``lease``) in ONE txn that also compares the agreed value at
    ``agreed`` with ``want``: the create_revision of our key (also when an earlier attempt
    created it). ``mismatch(stored)`` is raised if another value is stored; one deleted
    meanwhile (by an operator) is stored again (:func:`agree`)."""
    for _ in range(_AGREE_ATTEMPTS):
        r = client.txn(group, [Compare.create_revision(key, "==", 0),
                               Compare.value(agreed, "==", want)],
                       [Op.put(key, value, lease=lease)], [Op.get(key), Op.get(agreed)])
        if r.succeeded:
            return r.revision
        mine, stored = (res.kv for res in r.results)  # type: ignore[union-attr]
        if mine is not None:
            return mine.create_revision  # our own key, from an earlier attempt
        if stored is not None and stored.value != want:
            raise mismatch(stored)
        agree(client, group, agreed, want, mismatch)
    raise LockLostError(f"{what}: {agreed!r} kept vanishing while joining "
                        f"({_AGREE_ATTEMPTS} attempts)")


class Contention:
    """One contender's side of a queue (shared by Lock, Election and Semaphore): it holds
    while fewer than ``limit`` contenders are before it (1: at the head).

    Not reentrant: ``enter`` while queued or holding raises RuntimeError. ``lost`` is set
    (and ``on_lost()`` called, from the keepalive thread) when the lease is lost: no
    acknowledged keepalive before its safe-until deadline, or the server says it is gone.
    """

    def __init__(self, client: Client, group: str, root: str, name: str, ttl: float,
                 on_lost: Callable[[], None] | None = None, what: str = "lock",
                 limit: int = 1) -> None:
        self.client = client
        self.group = group
        self.name = validate_name(root, name, what)
        self.root = root
        self.prefix = queue_prefix(root, name)
        self.ttl = ttl
        self.what = what
        self.limit = limit
        self.on_lost = on_lost
        self.lost = threading.Event()
        self.lease: Lease | None = None
        self.key: str | None = None
        self.token: int | None = None  # our create_revision (held: the fencing token)
        self.held = False
        self._wake = threading.Event()
        self._cancelled = threading.Event()
        self._busy = threading.Lock()

    # -- entering the queue -----------------------------------------------------------

    def enter(self, value: str, deadline: float | None) -> bool:
        """Queue with ``value`` and wait until at the head (True), or until ``deadline``
        (monotonic; None: forever) or ``cancel()`` (False: the queue was left)."""
        if self.held:
            raise RuntimeError(
                f"{self.what} {self.name!r} of group {self.group!r} is already held by this "
                f"object: hakv {self.what}s are not reentrant (release it first)")
        if not self._busy.acquire(blocking=False):
            raise RuntimeError(
                f"{self.what} {self.name!r} of group {self.group!r}: another thread is "
                f"already waiting for it through this object")
        try:
            self.lost.clear()
            self._cancelled.clear()
            self._wake.clear()
            self.lease = lease_api.grant(self.client, self.group, self.ttl,
                                         on_lost=self._lease_lost)
            self.lease.start_keepalive()
            self.key = contender_key(self.root, self.name, self.lease.id)
            try:
                self.token = self._create(value)
                got = self._wait_for_head(deadline)
                if got and self.limit > 1:
                    self._announce(value)
            except BaseException:
                self._leave()
                raise
            if not got:
                self._leave()
                return False
            self.held = True
            return True
        finally:
            self._busy.release()

    def _create(self, value: str) -> int:
        assert self.lease is not None and self.key is not None
        r = self.client.txn(self.group, [Compare.create_revision(self.key, "==", 0)],
                            [Op.put(self.key, value, lease=self.lease.id)],
                            [Op.get(self.key)])
        if r.succeeded:
            return r.revision
        kv = r.results[0].kv  # type: ignore[union-attr]
        if kv is None:  # cannot happen: the compare said it exists
            raise LockLostError(f"{self.what} key {self.key!r} vanished while created")
        return kv.create_revision  # our own key, from an earlier attempt

    def _announce(self, value: str) -> None:
        """With ``limit`` > 1: re-put our key (same value, lease and create_revision) now
        that we hold, so the waiter behind us, which watches only our key, wakes up and
        becomes the first waiter (module docstring)."""
        assert self.lease is not None and self.key is not None and self.token is not None
        r = self.client.txn(self.group, [Compare.create_revision(self.key, "==", self.token)],
                            [Op.put(self.key, value, lease=self.lease.id)])
        if not r.succeeded:
            self.lost.set()
            raise LockLostError(
                f"{self.what} {self.name!r} of group {self.group!r}: our key {self.key!r} "
                f"is gone (its lease expired or was revoked)")

    def listed(self, r: RangeResult) -> list[Contender]:
        """The contenders in the range ``r`` of our prefix, in queue order (for showing
        them; a recipe that keeps other direct children under the prefix leaves them out)."""
        return contenders_of(self.prefix, r.kvs)

    def contenders(self, r: RangeResult) -> list[Contender]:
        """``listed(r)`` while waiting (a recipe may also check its own keys here)."""
        return self.listed(r)

    def _range(self) -> RangeResult:
        r = self.client.range(self.group, self.prefix, limit=_RANGE_LIMIT)
        if r.more:
            raise RequestTooLargeError(
                f"{self.what} {self.name!r}: more than {_RANGE_LIMIT} keys under "
                f"{self.prefix!r} (contenders and the queues of longer names)")
        return r

    def _wait_for_head(self, deadline: float | None) -> bool:
        assert self.key is not None and self.token is not None
        while True:
            self._check_alive()
            if self._cancelled.is_set():
                return False
            r = self._range()
            queue = self.contenders(r)
            if not any(c.key == self.key and c.create_revision == self.token for c in queue):
                self.lost.set()
                raise LockLostError(
                    f"{self.what} {self.name!r} of group {self.group!r}: our key "
                    f"{self.key!r} is gone (its lease expired or was revoked)")
            how, keys = waits_for(queue, self.token, self.limit)
            if how == "hold":
                self._check_alive()  # among the first `limit`, the lease alive as we read it
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            start = r.revision + 1
            if how == "any":
                self._wait(start, deadline, prefix=self.prefix,
                           done=_deletes_any(frozenset(c.key for c in keys)))
            elif how == "changed":
                self._wait(start, deadline, key=keys[0].key, done=lambda b: bool(b.events))
            else:
                self._wait_deleted(keys[0].key, start, deadline)

    def _wait_deleted(self, key: str, start: int, deadline: float | None) -> None:
        """Until ``key`` is deleted at or after revision ``start``, the deadline, a lost
        lease or cancel(): a watch of that ONE key, in a thread of its own."""
        self._wait(start, deadline, key=key,
                   done=lambda b: any(e.type == "delete" for e in b.events))

    def _wait(self, start: int, deadline: float | None, done: Callable[[WatchBatch], bool],
              *, key: str | None = None, prefix: str = "") -> None:
        wait_for_batch(self.client, self.group, start, done, deadline, self._wake, key=key,
                       prefix=prefix, what=f"{self.what}-{self.group}-{self.name}")

    def _check_alive(self) -> None:
        if self.lost.is_set():
            reason = self.lease.lost_reason if self.lease is not None else None
            raise LockLostError(
                f"{self.what} {self.name!r} of group {self.group!r}: lease lost "
                f"({reason or 'no keepalive acknowledged in time'})")
        if self.lease is not None and time.monotonic() >= self.lease.safe_until():
            raise LockLostError(
                f"{self.what} {self.name!r} of group {self.group!r}: lease past its "
                f"safe-until deadline")

    # -- while queued or holding ------------------------------------------------------

    def _lease_lost(self, _lease: Lease) -> None:
        self.lost.set()
        self._wake.set()
        if self.on_lost is not None:
            self.on_lost()

    def cancel(self) -> None:
        """Make a blocking ``enter`` (in another thread) give up and return False."""
        self._cancelled.set()
        self._wake.set()

    def guard(self) -> Compare:
        """The compare that holds exactly while we hold: our key still exists with the
        create_revision it had when we got to the head."""
        if not self.held or self.key is None or self.token is None:
            raise LockLostError(f"{self.what} {self.name!r} of group {self.group!r} is not "
                                f"held (released, lost, or never acquired)")
        return Compare.create_revision(self.key, "==", self.token)

    def guarded_txn(self, compare: Sequence[Compare], success: Sequence[Op],
                    failure: Sequence[Op], lost: type[LockLostError]) -> TxnResult:
        """``client.txn`` with ``guard()`` first; ``lost`` raised (and nothing applied) if
        we no longer hold; else the result, ``results`` those of the caller's branch."""
        try:
            guard = self.guard()
        except LockLostError as err:
            raise lost(err.message) from None
        assert self.key is not None
        r = self.client.txn(self.group, [guard, *compare], success,
                            [*failure, Op.get(self.key)])
        if r.succeeded:
            return r
        mine = r.results[-1].kv  # type: ignore[union-attr]
        if mine is None or mine.create_revision != self.token:
            self.held = False
            self.lost.set()
            raise lost(f"{self.what} {self.name!r} of group {self.group!r} is no longer "
                       f"held (our key {self.key!r} is gone): nothing was applied")
        return TxnResult(False, r.revision, r.results[:-1])

    def valid_until(self) -> float:
        """``time.monotonic()`` time before which our lease has surely not expired."""
        if self.lease is None:
            raise RuntimeError(f"{self.what} {self.name!r} of group {self.group!r} is not "
                               f"held")
        return self.lease.safe_until()

    # -- leaving ----------------------------------------------------------------------

    def leave(self) -> bool:
        """Leave the queue (release / resign): revoke the lease, so our key goes in one
        revision. True if done now; False if the lease could not be revoked (it then
        expires on its own within its bound, docs/api.md "Leases") or was gone."""
        self.held = False
        return self._leave()

    def _leave(self) -> bool:
        lease, self.lease = self.lease, None
        if lease is None:
            return False
        lease.stop_keepalive()
        try:
            lease.revoke()
        except LeaseNotFoundError:
            return False
        except HakvError as err:
            log.warning("%s %s of group %s: revoking lease %s failed (%s); it expires "
                        "within its bound", self.what, self.name, self.group, lease.id, err)
            return False
        return True
