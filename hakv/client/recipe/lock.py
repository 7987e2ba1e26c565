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

from collections.abc import Callable
from typing import TYPE_CHECKING

from hakv.client.recipe._contention import LOCK_ROOT, Contention
from hakv.client.recipe._held import Held

if TYPE_CHECKING:
    from hakv.client.client import Client

__all__ = ["Lock"]


class Lock(Held):
    """A fair lock over group ``group``; see the module docstring. Acquire, release,
    ``with``, ``lost``, ``valid_until()`` and the guarded ``txn``/``put``/``delete``:
    hakv.client.recipe._held.Held.

    ``ttl``: the lease's TTL in seconds (1..86400): how long a dead holder keeps the lock.
    ``timeout``: what ``with lock:`` waits at most (None: forever). ``value``: stored in
    the contender key (who holds it; ``contenders()`` shows them). ``on_lost(lock)``:
    called once, from the keepalive thread, when the lease is lost.
    """

    def __init__(self, client: Client, group: str, name: str, ttl: float = 10.0, *,
                 timeout: float | None = None, value: str = "",
                 on_lost: Callable[[Lock], None] | None = None) -> None:
        super().__init__(client, group, name, timeout, value, on_lost)
        self._c = Contention(client, group, LOCK_ROOT, name, ttl, self._lost, "lock")

    def __repr__(self) -> str:
        state = f"held, fence {self.fence}" if self.is_acquired else "not held"
        return f"Lock(group={self.group!r}, name={self.name!r}, {state})"

    @property
    def fence(self) -> int | None:
        """The fencing token: the create_revision of our key, set once acquired. Every
        later holder of this (group, name) gets a larger one."""
        return self._c.token if self._c.held else None
