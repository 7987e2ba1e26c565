"""A fair (FIFO) counting semaphore: ``client.semaphore(group, name, limit, ttl)``.

At most ``limit`` holders at once (kazoo's Semaphore, Curator's InterProcessSemaphoreV2),
granted in the order the contenders arrived; each holder's slot is a key on its own lease,
so a dead holder frees its slot when the lease expires.

::

    from hakv import Client

    with Client("127.0.0.1:8202,127.0.0.1:8208") as c:
        with c.semaphore("220", "db-conns", limit=4, ttl=10, timeout=30) as slot:
            run_query()                       # at most 4 of these at once, cluster-wide
            if slot.lost.is_set() or time.monotonic() >= slot.valid_until():
                raise SystemExit("not sure any more that we hold a slot")

        sem = c.semaphore("220", "db-conns", limit=4, on_lost=lambda s: stop.set())
        if sem.acquire(timeout=5):            # False: no slot in time (the queue was left)
            try: ...
            finally: sem.release()
        print(sem.holders())                  # the values of the current holders

How it works (hakv.client.recipe._contention with ``limit``): the contenders queue under
``_hakv/semaphore/<name>/<lease id>`` exactly as for a lock, by create_revision; the
first ``limit`` of them hold. The first waiter watches the prefix for the deletion of any
holder (holders release in any order); a later waiter watches only its predecessor's
key, which its owner re-puts once it holds, so there is no herd. The limit is agreed in
the group: the first contender creates ``_hakv/semaphore/<name>/limit`` (a txn with
``create_revision == 0``), and every contender joins with a txn that compares that key's
value with its own limit, so all contenders present share one limit — hence never more
than ``limit`` holders (proof in _contention's docstring).

What happens on failure:

- a contender that asks for another limit than the stored one gets
  :class:`~hakv.errors.SemaphoreLimitError` (``details``: ``stored``, ``asked``) and does
  not join; a waiter that finds the stored limit changed under it leaves with the same
  error. The limit key outlives the holders: to change the limit, delete it while nobody
  holds or waits (``hakv del GROUP _hakv/semaphore/NAME/limit``);
- a holder's process dies, or stops keeping its lease alive: its key goes when the lease
  expires — no later than ``ttl + k·(C + E) + M`` after its last acknowledged keepalive
  (docs/api.md, "The bound") — and the first waiter gets the slot;
- a holder's keepalives stop being acknowledged: ``lost`` is set and ``on_lost(sem)``
  called (from the keepalive thread) at ``valid_until()``, *before* the server can have
  expired the lease: stop using the slot. Writes guarded by ``guard()``/``txn`` then raise
  LockLostError and apply nothing once the key is gone. A holder paused past its lease
  (GC, SIGSTOP) may wake up believing it holds a slot while another process has it:
  nothing local prevents that;
- ``acquire(timeout=)`` that runs out, ``cancel()``, or an error while waiting: the
  contender leaves the queue (its lease is revoked), so no orphan takes a place; ``with``
  raises LockTimeoutError when no slot came within ``timeout``;
- a leader change or node failure: calls retry across endpoints, the keepalives go on,
  a waiter's watch resumes from its cursor;
- not reentrant: ``acquire`` on a Semaphore that holds raises RuntimeError (a second
  Semaphore object of the same name takes a second slot like any other contender).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from hakv.client.recipe._contention import (
    SEMAPHORE_ROOT,
    Contender,
    Contention,
    agree,
    contenders_of,
    create_agreed,
    queue_prefix,
)
from hakv.client.recipe._held import Held
from hakv.client.results import KeyValue, RangeResult
from hakv.core import leases
from hakv.errors import (
    BadRequestError,
    SemaphoreLimitError,
)

if TYPE_CHECKING:
    from hakv.client.client import Client

__all__ = ["MAX_LIMIT", "Semaphore", "limit_key", "validate_limit"]

MAX_LIMIT = leases.MAX_LEASES
"""The largest limit: every holder needs a lease, and a group has at most this many."""


def limit_key(name: str) -> str:
    """The key that stores the agreed limit of semaphore ``name``."""
    return f"{queue_prefix(SEMAPHORE_ROOT, name)}limit"


def validate_limit(limit: object) -> int:
    """``limit`` if it is an integer in 1..MAX_LIMIT, else BadRequestError."""
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise BadRequestError(f"semaphore limit must be an integer >= 1, got {limit!r}")
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequestError(
            f"semaphore limit must be in 1..{MAX_LIMIT} (a holder per lease, at most "
            f"{MAX_LIMIT} leases per group), got {limit}")
    return limit


class _Slots(Contention):
    """The contention of a semaphore: the stored limit checked when joining and at each
    look at the queue; the limit key is not a contender."""

    def __init__(self, client: Client, group: str, name: str, limit: int, ttl: float,
                 on_lost: Callable[[], None]) -> None:
        super().__init__(client, group, SEMAPHORE_ROOT, name, ttl, on_lost, "semaphore",
                         limit=limit)
        self.limit_key = limit_key(name)

    def _mismatch(self, stored: KeyValue) -> SemaphoreLimitError:
        return SemaphoreLimitError(
            f"semaphore {self.name!r} of group {self.group!r} has limit "
            f"{stored.value[:40]!r} (stored in {self.limit_key!r} by its first contender), "
            f"not {self.limit}: use that limit, or delete the key while nobody holds or "
            f"waits to choose another", stored=stored.value[:40], asked=self.limit)

    def ensure_limit(self) -> None:
        """Store our limit if none is stored yet; SemaphoreLimitError if another is."""
        agree(self.client, self.group, self.limit_key, str(self.limit), self._mismatch)

    def _create(self, value: str) -> int:
        assert self.lease is not None and self.key is not None
        return create_agreed(self.client, self.group, self.key, value, self.lease.id,
                             self.limit_key, str(self.limit), self._mismatch,
                             f"semaphore {self.name!r} of group {self.group!r}")

    def listed(self, r: RangeResult) -> list[Contender]:
        """The contenders in ``r``, in queue order (the limit key is not one)."""
        return [c for c in contenders_of(self.prefix, r.kvs) if c.key != self.limit_key]

    def contenders(self, r: RangeResult) -> list[Contender]:
        """The same while waiting: SemaphoreLimitError if the stored limit changed."""
        for kv in r.kvs:
            if kv.key == self.limit_key and kv.value != str(self.limit):
                raise self._mismatch(kv)
        return self.listed(r)


class Semaphore(Held):
    """A fair counting semaphore over group ``group``; see the module docstring.

    ``limit``: how many may hold at once (1..10000), agreed by every contender of this
    (group, name). ``ttl``: each contender's lease TTL in seconds (1..86400): how long a
    dead holder keeps its slot. ``timeout``: what ``with sem:`` waits at most (None:
    forever). ``value``: stored in the contender key (``holders()`` shows it).
    ``on_lost(sem)``: called once, from the keepalive thread, when the lease is lost.
    Acquire, release, ``with``, ``lost``, ``valid_until()``, ``guard()`` and the guarded
    ``txn``/``put``/``delete``: hakv.client.recipe._held.Held.
    """

    def __init__(self, client: Client, group: str, name: str, limit: int,
                 ttl: float = 10.0, *, timeout: float | None = None, value: str = "",
                 on_lost: Callable[[Semaphore], None] | None = None) -> None:
        super().__init__(client, group, name, timeout, value, on_lost)
        self.limit = validate_limit(limit)
        leases.ttl_ms(ttl, "ttl")  # LeaseTtlError now rather than at the first acquire
        self._c: _Slots = _Slots(client, group, name, self.limit, ttl, self._lost)

    def __repr__(self) -> str:
        state = "holding a slot" if self.is_acquired else "not holding"
        return (f"Semaphore(group={self.group!r}, name={self.name!r}, limit={self.limit}, "
                f"{state})")

    def _before_joining(self) -> None:
        self._c.ensure_limit()  # before granting a lease: a mismatch costs nothing

    def _not_acquired(self, timeout: float | None) -> str:
        return (f"semaphore {self.name!r} of group {self.group!r}: no slot within "
                f"{timeout:g}s")

    def holders(self) -> list[str]:
        """The values of the contenders that hold a slot now (the first ``limit``)."""
        return self.contenders()[:self.limit]
