"""What a lock and a semaphore share (hakv.client.recipe.lock, .semaphore): one contender
of a FIFO queue (hakv.client.recipe._contention) that holds once it is among the first
``limit`` — acquire and release, ``with``, the lease it holds on, and writes guarded by
still holding. The subclasses add what differs: the lock's fencing token, the
semaphore's agreed limit."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from hakv.client.results import DeleteResult, PutResult, TxnResult
from hakv.client.txn import Compare, Op
from hakv.errors import LockLostError, LockTimeoutError

if TYPE_CHECKING:
    import threading

    from hakv.client.client import Client
    from hakv.client.lease import Lease
    from hakv.client.recipe._contention import Contention

__all__ = ["Held"]


class Held:
    """A contender that holds (the lock, or one of a semaphore's slots) once among the
    first ``limit`` of its queue. ``_c`` is its Contention; ``on_lost(self)`` is called
    once, from the keepalive thread, when the lease is lost."""

    _c: Contention

    def __init__(self, client: Client, group: str, name: str, timeout: float | None,
                 value: str, on_lost: Callable[[Any], None] | None) -> None:
        self.client = client
        self.group = group
        self.name = name
        self.timeout = timeout
        self.value = value
        self.on_lost = on_lost

    # -- acquire / release ------------------------------------------------------------

    def _before_joining(self) -> None:
        """Checks before a lease is granted (the semaphore's agreed limit)."""

    def _not_acquired(self, timeout: float | None) -> str:
        """The LockTimeoutError message of ``with`` after ``timeout`` seconds."""
        return (f"{self._c.what} {self.name!r} of group {self.group!r} not acquired within "
                f"{timeout:g}s")

    def acquire(self, timeout: float | None = None, blocking: bool = True) -> bool:
        """Wait until this contender holds: True; False if ``timeout`` seconds passed (or
        ``blocking=False`` and it cannot hold now, or ``cancel()``), and then it has left
        the queue. LockLostError if the lease is lost while waiting; RuntimeError if it
        already holds (not reentrant)."""
        if not blocking:
            timeout = 0.0
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._c.held:  # (if held, enter raises: not reentrant)
            self._before_joining()
        return self._c.enter(self.value, deadline)

    def release(self) -> bool:
        """Release: revoke the lease, so the key goes in one revision and the first waiter
        moves up. True if done now; False if not held or the revoke failed (the key then
        goes when the lease expires)."""
        if not self._c.held:
            return False
        return self._c.leave()

    def cancel(self) -> None:
        """Make an ``acquire`` blocked in another thread return False."""
        self._c.cancel()

    def __enter__(self) -> Self:
        if not self.acquire(self.timeout):
            raise LockTimeoutError(self._not_acquired(self.timeout))
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
    def key(self) -> str | None:
        """Our contender key (``<root><name>/<lease id>``), once queued."""
        return self._c.key

    @property
    def lease(self) -> Lease | None:
        return self._c.lease

    @property
    def lost(self) -> threading.Event:
        """Set when the lease is lost (then stop acting as a holder)."""
        return self._c.lost

    def valid_until(self) -> float:
        """``time.monotonic()`` time before which the lease has surely not expired (so
        nobody else can have been given our place)."""
        return self._c.valid_until()

    def guard(self) -> Compare:
        """A compare for your own txn that holds exactly while we hold (our key, with the
        create_revision it had when we got it)."""
        return self._c.guard()

    def txn(self, success: Sequence[Op], failure: Sequence[Op] = (),
            compare: Sequence[Compare] = ()) -> TxnResult:
        """A txn in our group that applies only while we hold: LockLostError (nothing
        applied) if not; else ``client.txn``'s result (``succeeded`` False when one of
        YOUR ``compare`` failed and ``failure`` ran)."""
        return self._c.guarded_txn(compare, success, failure, LockLostError)

    def put(self, key: str, value: str, lease: int | None = None) -> PutResult:
        """Put ``key`` in our group, only while we hold."""
        result = self.txn([Op.put(key, value, lease=lease)]).results[0]
        assert isinstance(result, PutResult)
        return result

    def delete(self, key: str) -> DeleteResult:
        """Delete ``key`` in our group, only while we hold."""
        result = self.txn([Op.delete(key)]).results[0]
        assert isinstance(result, DeleteResult)
        return result

    def contenders(self) -> list[str]:
        """The values of the contenders, holders first, in queue order (linearizable)."""
        return [c.value for c in self._c.listed(self._c._range())]

    def _lost(self) -> None:
        if self.on_lost is not None:
            self.on_lost(self)
