"""Leases in the client library: keys that vanish when their holder stops keeping them
alive (docs/api.md, "Leases").

::

    from hakv import Client

    def lost(lease):                     # called once, before the server can expire it
        stop_acting_as_the_holder()

    with Client("127.0.0.1:8202") as c:
        with c.lease("220", ttl=5, on_lost=lost) as lease:   # keepalives in a thread
            c.put("220", "members/me", "10.0.0.7", lease=lease.id)
            while work_to_do():
                if time.monotonic() >= lease.safe_until():
                    break                # not sure any more that the key still exists
                do_some_work()
        # leaving the block revokes the lease: the key is gone, in one revision

What happens on failure:

- ``lease.safe_until()`` is a deadline on *this* process's monotonic clock: the send time
  of the last acknowledged keepalive (or grant) plus the TTL, minus a margin for clock
  rates (hakv.core.leases.safe_until). The server counts the TTL from no earlier than
  the keepalive's apply, which follows its send, so before ``safe_until()`` the lease
  has surely not expired, whatever leader changes happen.
- The auto-keepalive thread sends a keepalive every TTL/3; a failed one is retried with
  back-off (100 ms doubling, at most TTL/6), each attempt bounded so it returns by
  ``safe_until()``. When ``safe_until()`` arrives without an acknowledgement, or the
  server answers ``lease_not_found`` (it expired or was revoked), ``on_lost(lease)`` is
  called once, from that thread, and ``lease.lost`` becomes true. The keys may still
  exist for a while (the server's bound, docs/api.md), but the holder must act as if not.
- A keepalive is a replicated write (deduplicated by client id and seq): acknowledged
  means committed, so a leader change after it cannot lose it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from hakv.client.results import parse, want
from hakv.core import leases
from hakv.errors import HakvError, LeaseNotFoundError

if TYPE_CHECKING:
    from hakv.client.client import Client

__all__ = ["Lease", "LeaseTtl", "grant", "keepalive", "revoke", "time_to_live"]

log = logging.getLogger("hakv.client.lease")

_BACKOFF_START = 0.1


@dataclass(frozen=True)
class LeaseTtl:
    """What ``lease_ttl`` answers: seconds left (exact when the group's leader answered,
    else as of its last checkpoint), the granted TTL, and the attached keys if asked."""

    id: int
    ttl: float
    granted_ttl: float
    keys: list[str] = field(default_factory=list)
    exact: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "ttl": self.ttl, "granted_ttl": self.granted_ttl,
                "keys": list(self.keys), "exact": self.exact}


def _number(body: dict[str, Any], key: str) -> float:
    value = body[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"field {key!r} should be a number, got {value!r}")
    return float(value)


def grant(client: Client, group: str, ttl: float, lease_id: int | None = None,
          on_lost: Callable[[Lease], None] | None = None) -> Lease:
    """Grant a lease of ``ttl`` seconds in ``group`` (``lease_id``: choose its id)."""
    request: dict[str, Any] = {"group": group, "ttl": ttl}
    if lease_id is not None:
        request["id"] = lease_id
    sent = time.monotonic()
    body = client._call("/v1/lease_grant", request, write=True)
    granted = parse("/v1/lease_grant", lambda: (want(body, "id", int), _number(body, "ttl")))
    return Lease(client, group, granted[0], granted[1], sent, on_lost)


def keepalive(client: Client, group: str, lease_id: int,
              timeout: float | None = None) -> float:
    """One keepalive: the lease's TTL again (seconds); LeaseNotFoundError if it is gone."""
    body = client._call("/v1/lease_keepalive", {"group": group, "id": lease_id}, write=True,
                        timeout=timeout)
    return parse("/v1/lease_keepalive", lambda: _number(body, "ttl"))


def revoke(client: Client, group: str, lease_id: int) -> int:
    """Revoke: the lease and, in one revision, its keys are deleted; how many keys."""
    body = client._call("/v1/lease_revoke", {"group": group, "id": lease_id}, write=True)
    return parse("/v1/lease_revoke", lambda: int(want(body, "deleted", int)))


def time_to_live(client: Client, group: str, lease_id: int, keys: bool = False,
                 serializable: bool = False) -> LeaseTtl:
    body = client._call("/v1/lease_ttl", {"group": group, "id": lease_id, "keys": keys,
                                          "serializable": serializable}, write=False)
    return parse("/v1/lease_ttl", lambda: LeaseTtl(
        want(body, "id", int), _number(body, "ttl"), _number(body, "granted_ttl"),
        [str(k) for k in want(body, "keys", list)], bool(body.get("exact", False))))


class Lease:
    """A granted lease; see the module docstring. Used as a context manager it keeps
    itself alive in a background thread and is revoked on exit."""

    def __init__(self, client: Client, group: str, lease_id: int, ttl: float,
                 sent_at: float, on_lost: Callable[[Lease], None] | None = None) -> None:
        self.client = client
        self.group = group
        self.id = lease_id
        self.ttl = ttl
        self.on_lost = on_lost
        self._lock = threading.Lock()
        self._safe_until = leases.safe_until(sent_at, ttl)
        self._last_sent = sent_at
        self._lost = False
        self.lost_reason: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"Lease(group={self.group!r}, id={self.id}, ttl={self.ttl:g})"

    # -- calls ---------------------------------------------------------------------------

    def keepalive(self, timeout: float | None = None) -> float:
        """Keep the lease alive once; moves ``safe_until()``. LeaseNotFoundError if it
        expired or was revoked (then ``lost`` is true)."""
        sent = time.monotonic()
        try:
            ttl = keepalive(self.client, self.group, self.id, timeout)
        except LeaseNotFoundError:
            self._declare_lost("the lease expired or was revoked (lease_not_found)")
            raise
        with self._lock:
            self.ttl = ttl
            self._last_sent = max(self._last_sent, sent)
            self._safe_until = max(self._safe_until, leases.safe_until(sent, ttl))
        return ttl

    def revoke(self) -> int:
        """Stop the keepalives and revoke: the keys go, in one revision; how many."""
        self.stop_keepalive()
        return revoke(self.client, self.group, self.id)

    def time_to_live(self, keys: bool = False) -> LeaseTtl:
        return time_to_live(self.client, self.group, self.id, keys)

    def safe_until(self) -> float:
        """``time.monotonic()`` time before which the lease has surely not expired."""
        with self._lock:
            return self._safe_until

    @property
    def lost(self) -> bool:
        return self._lost

    # -- auto-keepalive ------------------------------------------------------------------

    def start_keepalive(self) -> None:
        """Keep the lease alive in a daemon thread until ``stop_keepalive`` or lost."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._keep_alive, daemon=True,
                                        name=f"lease-{self.group}-{self.id}")
        self._thread.start()

    def stop_keepalive(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self.client.timeout + 1.0)

    def _keep_alive(self) -> None:
        backoff = _BACKOFF_START
        next_at = self._last_sent + self.ttl / 3
        while not self._stop.is_set() and not self._lost:
            now = time.monotonic()
            safe = self.safe_until()
            if now >= safe:
                self._declare_lost("no keepalive acknowledged before safe_until")
                return
            if now < next_at:
                self._stop.wait(min(next_at, safe) - now)
                continue
            if self.client.closed:  # no keepalive can be sent any more: say so now
                self._declare_lost("the Client was closed while the lease was kept alive")
                return
            try:
                self.keepalive(timeout=max(0.05, min(safe - now, self.ttl / 3)))
            except LeaseNotFoundError:
                return  # declared lost by keepalive()
            except HakvError as exc:
                log.debug("lease %s of group %s: keepalive failed: %s", self.id, self.group,
                          exc)
                next_at = time.monotonic() + backoff
                backoff = min(backoff * 2, max(_BACKOFF_START, self.ttl / 6))
                continue
            backoff = _BACKOFF_START
            next_at = self._last_sent + self.ttl / 3

    def _declare_lost(self, why: str) -> None:
        with self._lock:
            if self._lost:
                return
            self._lost = True
            self.lost_reason = why
        log.warning("lease %s of group %s lost: %s", self.id, self.group, why)
        if self.on_lost is not None:
            try:
                self.on_lost(self)
            except Exception:
                log.exception("on_lost callback of lease %s failed", self.id)

    def __enter__(self) -> Lease:
        self.start_keepalive()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop_keepalive()
        if not self._lost:
            try:
                self.revoke()
            except HakvError as err:  # it expires on its own within its bound
                log.warning("revoking lease %s of group %s failed: %s", self.id, self.group,
                            err)
