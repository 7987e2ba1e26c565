"""A fair (FIFO) distributed lock with a fencing token: ``client.lock(group, name, ttl)``.

::

    from hakv import Client

    with Client("127.0.0.1:8202,127.0.0.1:8208") as c:
        with c.lock("220", "deploy", ttl=10, timeout=30) as lock:   # LockTimeoutError
            print("holding it, fencing token", lock.fence)
            lock.put("deploy/version", "v42")     # applies only while we still hold it
            storage.write(blob, fence=lock.fence) # an external store checks the token
            if time.monotonic() >= lock.valid_until() or lock.lost.is_set():
                raise SystemExit("not sure any more that we hold it")
        # released: our key is gone in one revision, the next waiter gets it

    lock = c.lock("220", "deploy", ttl=10, on_lost=lambda lk: stop_work.set())
    if lock.acquire(timeout=5):        # False: not acquired in time (the queue was left)
        try: ...
        finally: lock.release()

How it works (hakv.client.recipe._contention): each contender gets its own lease and
creates ``_hakv/lock/<name>/<lease id>`` attached to it in ONE txn; the holder is the
contender with the lowest create_revision; a waiter watches only its predecessor's key
(no herd) and re-checks when it is deleted. ``lock.fence`` is the holder key's
create_revision: every later holder of the same (group, name) has a larger one, across
leader changes of the group too (revisions are replicated state).

What happens on failure:

- the holder's process dies, or stops keeping its lease alive (frozen, partitioned from
  the group's majority): its key goes when the lease expires — no later than
  ``ttl + k·(C + E) + M`` after its last acknowledged keepalive (docs/api.md, "The
  bound") — and the next waiter gets the lock with a larger token;
- the holder's keepalives stop being acknowledged: ``lock.lost`` is set and
  ``on_lost(lock)`` called (from the keepalive thread) at ``lock.valid_until()``,
  *before* the server can have expired the lease. From then on the holder must stop;
  writes guarded by the lock (``lock.txn``/``put``/``delete``, or your own txn with
  ``lock.guard()``) raise LockLostError and apply nothing once the key is gone;
- a holder that was paused (GC, SIGSTOP) may wake up still believing it holds the lock:
  nothing local can prevent that. Guarded hakv writes are rejected, and an external
  resource is safe only if it remembers the highest ``fence`` it has seen and rejects
  lower ones (Kleppmann's fencing; Chubby's sequencer);
- ``acquire(timeout=)`` that runs out, ``cancel()``, an error while waiting: the contender
  leaves the queue (its lease is revoked), so no orphan key blocks the lock (kazoo #760).
  If even the revoke fails the key goes at lease expiry;
- a leader change or node failure while waiting or holding: calls retry across
  endpoints, the keepalive thread goes on, the watch resumes from its cursor;
- the lock is not reentrant: ``acquire`` on a held Lock raises RuntimeError (a second
  Lock object of the same name waits in the queue like any other contender).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING

from hakv.client.recipe._contention import LOCK_ROOT, Contention, contenders_of
from hakv.client.results import DeleteResult, PutResult, TxnResult
from hakv.client.txn import Compare, Op
from hakv.errors import LockLostError, LockTimeoutError

if TYPE_CHECKING:
    import threading

    from hakv.client.client import Client
    from hakv.client.lease import Lease

__all__ = ["Lock"]


class Lock:
    """A fair lock over group ``group``; see the module docstring.

    ``ttl``: the lease's TTL in seconds (1..86400): how long a dead holder keeps the lock.
    ``timeout``: what ``with lock:`` waits at most (None: forever). ``value``: stored in
    the contender key (who holds it; ``contenders()`` shows them). ``on_lost(lock)``:
    called once, from the keepalive thread, when the lease is lost.
    """

    def __init__(self, client: Client, group: str, name: str, ttl: float = 10.0, *,
                 timeout: float | None = None, value: str = "",
                 on_lost: Callable[[Lock], None] | None = None) -> None:
        self.client = client
        self.group = group
        self.name = name
        self.timeout = timeout
        self.value = value
        self.on_lost = on_lost
        self._c = Contention(client, group, LOCK_ROOT, name, ttl, self._lost, "lock")

    def __repr__(self) -> str:
        state = f"held, fence {self.fence}" if self.is_acquired else "not held"
        return f"Lock(group={self.group!r}, name={self.name!r}, {state})"

    # -- acquire / release ------------------------------------------------------------

    def acquire(self, timeout: float | None = None, blocking: bool = True) -> bool:
        """Wait until this contender holds the lock: True; False if ``timeout`` seconds
        passed (or ``blocking=False`` and it is held by another, or ``cancel()``), and
        then this contender has left the queue. LockLostError if the lease is lost while
        waiting; RuntimeError if this Lock is already held (not reentrant)."""
        if not blocking:
            timeout = 0.0
        deadline = None if timeout is None else time.monotonic() + timeout
        return self._c.enter(self.value, deadline)

    def release(self) -> bool:
        """Release: revoke the lease, so the key goes in one revision and the next waiter
        gets the lock. True if done now; False if not held or the revoke failed (the key
        then goes when the lease expires)."""
        if not self._c.held:
            return False
        return self._c.leave()

    def cancel(self) -> None:
        """Make an ``acquire`` blocked in another thread return False."""
        self._c.cancel()

    def __enter__(self) -> Lock:
        if not self.acquire(self.timeout):
            raise LockTimeoutError(
                f"lock {self.name!r} of group {self.group!r} not acquired within "
                f"{self.timeout:g}s")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    # -- while held -------------------------------------------------------------------

    @property
    def is_acquired(self) -> bool:
        """Held, as far as this process knows (acquired and the lease not lost)."""
        return self._c.held and not self._c.lost.is_set()

    @property
    def fence(self) -> int | None:
        """The fencing token: the create_revision of our key, set once acquired. Every
        later holder of this (group, name) gets a larger one."""
        return self._c.token if self._c.held else None

    @property
    def key(self) -> str | None:
        """Our contender key (``_hakv/lock/<name>/<lease id>``), once queued."""
        return self._c.key

    @property
    def lease(self) -> Lease | None:
        return self._c.lease

    @property
    def lost(self) -> threading.Event:
        """Set when the lease is lost (then stop acting as the holder)."""
        return self._c.lost

    def valid_until(self) -> float:
        """``time.monotonic()`` time before which the lease has surely not expired (so
        nobody else can have been granted the lock)."""
        return self._c.valid_until()

    def guard(self) -> Compare:
        """A compare for your own txn that holds exactly while we hold the lock (our key,
        with the create_revision it had when we got the lock)."""
        return self._c.guard()

    def txn(self, success: Sequence[Op], failure: Sequence[Op] = (),
            compare: Sequence[Compare] = ()) -> TxnResult:
        """A txn in the lock's group that applies only while we hold the lock:
        LockLostError (nothing applied) if not; else ``client.txn``'s result (``succeeded``
        False when one of YOUR ``compare`` failed and ``failure`` ran)."""
        return self._c.guarded_txn(compare, success, failure, LockLostError)

    def put(self, key: str, value: str, lease: int | None = None) -> PutResult:
        """Put ``key`` in the lock's group, only while we hold the lock."""
        result = self.txn([Op.put(key, value, lease=lease)]).results[0]
        assert isinstance(result, PutResult)
        return result

    def delete(self, key: str) -> DeleteResult:
        """Delete ``key`` in the lock's group, only while we hold the lock."""
        result = self.txn([Op.delete(key)]).results[0]
        assert isinstance(result, DeleteResult)
        return result

    def contenders(self) -> list[str]:
        """The values of the contenders, holder first (a linearizable read)."""
        r = self._c._range()
        return [c.value for c in contenders_of(self._c.prefix, r.kvs)]

    def _lost(self) -> None:
        if self.on_lost is not None:
            self.on_lost(self)
