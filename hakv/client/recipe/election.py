"""Leader election with fencing tokens: ``client.election(group, name, ttl)``.

::

    from hakv import Client

    with Client("127.0.0.1:8202,127.0.0.1:8208") as c:
        e = c.election("220", "scheduler", ttl=10, on_lost=lambda e: stop_leading.set())
        token = e.campaign("10.0.0.7:9000")     # blocks until leader (timeout= optional)
        e.proclaim("10.0.0.7:9001")              # a new value, only while leader
        e.txn([Op.put("scheduler/plan", plan)])  # a write applied only while leader
        e.resign()                               # the next candidate becomes leader

        print(e.leader())                        # Leader(value, token, key) or None
        with e.observe() as changes:             # every change, in order, exactly once
            for leader in changes:               # Leader, or None (no candidate)
                print(leader)

How it works: the FIFO queue of hakv.client.recipe.lock under
``_hakv/election/<name>/`` — each candidate's key, attached to its own lease, is created
by ONE txn; the leader is the candidate with the lowest create_revision, and a candidate
waits for its predecessor's key only. The token is the leader key's create_revision: every
later leader of this (group, name) has a larger one, across leader changes of the group's
Raft ensemble too. ``observe()`` is ONE watch of the prefix started with a "snapshot"
(the candidates and their revision read together, then every revision after it), so no
leader change falls between a read and a watch (tikv/pd#1317) and none is reported twice.

What happens on failure:

- the leader's process dies or stops keeping its lease alive: its key goes when the lease
  expires (docs/api.md, "The bound"), observers see the next candidate (with a larger
  token) become leader;
- the leader's keepalives stop being acknowledged: ``e.lost`` is set and
  ``on_lost(e)`` called at ``e.valid_until()``, before the server can expire the lease.
  ``proclaim`` and guarded writes then raise LeadershipLostError and apply nothing once
  the key is gone; a paused leader that wakes up is fenced by the same compare (hakv
  writes) or by the token (external resources that keep the highest token seen);
- ``campaign(timeout=)`` that runs out raises LockTimeoutError after leaving the queue;
- a leader change or node failure of the group: calls retry across endpoints, the
  observer's watch resumes from its cursor (no gap, no repeat); only when the observer
  was away longer than the history's retention (CompactedError) does it start over from a
  fresh snapshot, and then it reports the leader as of that snapshot (intermediate leaders
  it missed are not replayed).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from hakv.client.recipe._contention import (
    ELECTION_ROOT,
    Contender,
    Contention,
    contenders_of,
    holder,
    is_contender,
)
from hakv.client.results import TxnResult
from hakv.client.txn import Compare, Op
from hakv.client.watch import Watch, WatchBatch
from hakv.errors import CompactedError, LeadershipLostError, LockTimeoutError

if TYPE_CHECKING:
    import threading

    from hakv.client.client import Client

__all__ = ["Election", "Leader", "Observation", "leader_after"]


@dataclass(frozen=True)
class Leader:
    """The leader of an election: its ``value``, its fencing ``token`` (the create_revision
    of its key) and its ``key``."""

    value: str
    token: int
    key: str

    def to_dict(self) -> dict[str, object]:
        return {"value": self.value, "token": self.token, "key": self.key}


def _leader(contenders: Sequence[Contender]) -> Leader | None:
    head = holder(contenders)
    return None if head is None else Leader(head.value, head.create_revision, head.key)


def leader_after(prefix: str, candidates: dict[str, Contender],
                 batch: WatchBatch) -> Leader | None:
    """Apply one watch ``batch`` to ``candidates`` (key -> Contender, updated in place)
    and return the leader after it. Pure; table-tested."""
    if batch.snapshot:
        candidates.clear()
    for ev in batch.events:
        if not is_contender(prefix, ev.key):
            continue
        if ev.type == "put":
            candidates[ev.key] = Contender(ev.create_revision, ev.key, ev.value or "")
        else:
            candidates.pop(ev.key, None)
    return _leader(list(candidates.values()))


class Observation:
    """An iterator (and context manager) of leader changes: a :class:`Leader`, or None
    when there is no candidate. The first item is the leader as of the start; then one
    item per change (a new leader, or a new value proclaimed), in revision order.
    ``revision``: the group revision of the last item. ``close()`` from any thread."""

    def __init__(self, client: Client, group: str, prefix: str,
                 poll_timeout: float = 10.0) -> None:
        self.prefix = prefix
        self._watch = Watch(client, group, prefix, "snapshot", poll_timeout=poll_timeout)
        self._candidates: dict[str, Contender] = {}
        self._started = False
        self._last: Leader | None = None
        self.revision = 0

    def __iter__(self) -> Iterator[Leader | None]:
        return self

    def __next__(self) -> Leader | None:
        while True:
            try:
                batch = next(self._watch)
            except CompactedError:
                self._watch.resync()  # away longer than the retention: start over
                continue
            now = leader_after(self.prefix, self._candidates, batch)
            if not self._started or now != self._last:
                self._started = True
                self._last = now
                self.revision = batch.revision
                return now

    def close(self) -> None:
        self._watch.close()

    def __enter__(self) -> Observation:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class Election:
    """One candidate's handle on election ``name`` of ``group``; see the module docstring.

    ``ttl``: the candidate's lease TTL (how long a dead leader keeps the office).
    ``on_lost(election)``: called once, from the keepalive thread, when the lease is lost
    while campaigning or leading.
    """

    def __init__(self, client: Client, group: str, name: str, ttl: float = 10.0, *,
                 on_lost: Callable[[Election], None] | None = None) -> None:
        self.client = client
        self.group = group
        self.name = name
        self.on_lost = on_lost
        self.value: str | None = None
        self._c = Contention(client, group, ELECTION_ROOT, name, ttl, self._lost,
                             "election")

    def __repr__(self) -> str:
        state = f"leader, token {self.token}" if self.is_leader else "not leader"
        return f"Election(group={self.group!r}, name={self.name!r}, {state})"

    # -- candidate --------------------------------------------------------------------

    def campaign(self, value: str, timeout: float | None = None) -> int:
        """Stand with ``value`` and block until leader; the fencing token. LockTimeoutError
        (after leaving the queue) if not leader within ``timeout`` seconds; LockLostError
        if the lease is lost meanwhile; RuntimeError if already leader."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self.value = value
        if not self._c.enter(value, deadline):
            raise LockTimeoutError(
                f"election {self.name!r} of group {self.group!r} not won within "
                f"{timeout:g}s" if timeout is not None else
                f"campaign in election {self.name!r} of group {self.group!r} cancelled")
        assert self._c.token is not None
        return self._c.token

    def resign(self) -> bool:
        """Step down (or leave the queue): the key goes in one revision and the next
        candidate becomes leader. Idempotent; False if there was nothing to resign."""
        if self._c.lease is None:
            return False
        return self._c.leave()

    def cancel(self) -> None:
        """Make a ``campaign`` blocked in another thread give up (LockTimeoutError)."""
        self._c.cancel()

    def proclaim(self, value: str) -> int:
        """Change the leader's value, only while leader (a guarded txn that keeps the key
        on its lease and keeps the token); the revision. LeadershipLostError (nothing
        changed) when not leader."""
        if not self.is_leader:
            raise LeadershipLostError(
                f"election {self.name!r} of group {self.group!r}: not the leader")
        assert self._c.key is not None and self._c.lease is not None
        r = self.txn([Op.put(self._c.key, value, lease=self._c.lease.id)])
        self.value = value
        return r.revision

    # -- while leader -----------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        """Leader, as far as this process knows (won and the lease not lost)."""
        return self._c.held and not self._c.lost.is_set()

    @property
    def token(self) -> int | None:
        """The fencing token of this candidate's term as leader (None if not leader)."""
        return self._c.token if self._c.held else None

    @property
    def key(self) -> str | None:
        return self._c.key

    @property
    def lost(self) -> threading.Event:
        return self._c.lost

    def valid_until(self) -> float:
        """``time.monotonic()`` time before which the lease has surely not expired."""
        return self._c.valid_until()

    def guard(self) -> Compare:
        """A compare that holds exactly while this candidate is the leader."""
        return self._c.guard()

    def txn(self, success: Sequence[Op], failure: Sequence[Op] = (),
            compare: Sequence[Compare] = ()) -> TxnResult:
        """A txn in the election's group applied only while leader (else
        LeadershipLostError and nothing applied)."""
        return self._c.guarded_txn(compare, success, failure, LeadershipLostError)

    # -- anyone -----------------------------------------------------------------------

    def leader(self) -> Leader | None:
        """The current leader (a linearizable read), None if nobody stands."""
        r = self._c._range()
        return _leader(contenders_of(self._c.prefix, r.kvs))

    def contenders(self) -> list[Leader]:
        """Every candidate, leader first."""
        r = self._c._range()
        return [Leader(c.value, c.create_revision, c.key)
                for c in contenders_of(self._c.prefix, r.kvs)]

    def observe(self, poll_timeout: float = 10.0) -> Observation:
        """Leader changes from now on: see :class:`Observation`."""
        return Observation(self.client, self.group, self._c.prefix, poll_timeout)

    def _lost(self) -> None:
        if self.on_lost is not None:
            self.on_lost(self)
