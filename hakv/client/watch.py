"""Watches in the client library: ``client.watch(...)`` (docs/api.md, "Watches").

::

    with client.watch("220", "config/", start_revision="snapshot") as w:
        for batch in w:                       # WatchBatch: ONE whole revision
            for event in batch.events:        # WatchEvent: put or delete
                print(batch.revision, event.type, event.key, event.value)

What happens on failure:

- an endpoint that fails, a node killed, a leader change, ``no_quorum``,
  ``future_revision`` (a lagging replica), ``too_many_watches``: the watch goes on at the
  next endpoint from its cursor (``watch.cursor``: the next revision it wants), so every
  event after the last batch it delivered comes exactly once, in revision order; it never
  gives up on a retryable error (``close()`` it to stop);
- the history it needs was compacted on the replica it asks (it fell more than the
  retention behind): :class:`~hakv.errors.CompactedError` (``compact_revision``,
  ``head_revision``). ``watch.resync()`` starts over from a consistent snapshot: the next
  batch is ``snapshot=True`` with one put event per key at its revision, then the events
  after it; a watch-fed cache clears itself and applies it;
- permanent errors (a bad prefix, an unknown group) raise at once.

``callback=fn`` runs the watch in a thread of its own and calls ``fn(batch)`` for each
batch; an error ends the thread and is kept in ``watch.error``. ``wait_until(revision)``
returns once a batch-consumer has been handed everything up to ``revision`` (for a cache
fed by the watch that must serve a read at least as new as a write that returned
``revision``).
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from hakv.client.connection import (
    CONNECT_TIMEOUT_MAX,
    ConnectFailed,
    Connection,
    Malformed,
    decode_answer,
    describe_oserror,
    exchange,
)
from hakv.client.results import KeyValue, want
from hakv.errors import ConfigError, InternalError, RetryableError

if TYPE_CHECKING:
    from hakv.client.client import Client

__all__ = ["Watch", "WatchBatch", "WatchEvent"]

_PATH = "/v1/watch"
_BACKOFF_START = 0.05
_BACKOFF_MAX = 1.0


@dataclass(frozen=True)
class WatchEvent:
    """One change: ``type`` "put" (``value``, ``create_revision``, ``version`` set) or
    "delete" (``value`` None, create_revision and version 0); ``prev`` with prev_kv."""

    type: str
    key: str
    value: str | None
    mod_revision: int
    create_revision: int = 0
    version: int = 0
    prev: KeyValue | None = None

    @classmethod
    def from_wire(cls, body: Any) -> WatchEvent:
        kind = want(body, "type", str)
        prev = KeyValue.from_wire_or_none(body.get("prev_kv"))
        if kind == "put":
            return cls("put", want(body, "key", str), want(body, "value", str),
                       want(body, "mod_revision", int), want(body, "create_revision", int),
                       want(body, "version", int), prev)
        return cls("delete", want(body, "key", str), None, want(body, "mod_revision", int),
                   prev=prev)


@dataclass(frozen=True)
class WatchBatch:
    """All events of ONE committed revision of the watched keys (never split), or with
    ``snapshot=True`` the keys as of ``revision`` (one put event each); an empty batch is a
    progress notification (only with ``progress=True``): nothing up to ``revision``."""

    revision: int
    events: list[WatchEvent]
    compact_revision: int
    head_revision: int
    snapshot: bool = False


@dataclass
class Watch:
    """A resumable watch of one group's prefix (or one key); see the module docstring."""

    client: Client
    group: str
    prefix: str = ""
    start_revision: int | str | None = None
    prev_kv: bool = False
    key: str | None = None
    progress: bool = False
    poll_timeout: float = 10.0
    limit: int = 1000
    cursor: int | None = field(init=False, default=None)
    """The next revision this watch asks for (None: not started, or a snapshot pending)."""
    delivered: int = field(init=False, default=0)
    """Every event up to this revision has been handed to the consumer."""
    error: BaseException | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        start = self.start_revision
        if not (start is None or start == "snapshot"
                or (isinstance(start, int) and not isinstance(start, bool))):
            raise ConfigError(f'start_revision: expected None, a revision or "snapshot", '
                              f"got {start!r}")
        if not 0 <= self.poll_timeout <= 30:
            raise ConfigError("poll_timeout: expected 0..30 seconds")
        self.cursor = start if isinstance(start, int) else None
        self._snapshot = start == "snapshot"
        self._buffer: deque[WatchBatch] = deque()
        self._closed = False
        self._conns: dict[str, Connection] = {}
        self._preferred = 0
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._id = uuid.uuid4().hex

    # -- iteration ------------------------------------------------------------------------

    def __iter__(self) -> Iterator[WatchBatch]:
        return self

    def __next__(self) -> WatchBatch:
        self._mark(self._handed)  # the consumer is back: it processed what it was handed
        while not self._buffer:
            if self._closed:
                raise StopIteration
            self._poll()
        batch = self._buffer.popleft()
        self._handed = batch.revision if self._buffer else max(batch.revision, self._through)
        return batch

    def _mark(self, revision: int) -> None:
        with self._cond:
            if revision > self.delivered:
                self.delivered = revision
                self._cond.notify_all()

    def resync(self) -> Watch:
        """Start over from a consistent snapshot (after CompactedError): the next batch
        is the snapshot (``snapshot=True``), then the events after it."""
        self._buffer.clear()
        self.cursor = None
        self._snapshot = True
        self.error = None
        return self

    def wait_until(self, revision: int, timeout: float | None = None) -> bool:
        """Block until the consumer (the iterating thread, or ``callback``) was handed
        every event up to ``revision``; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self.delivered < revision and self.error is None and not self._closed:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
            return self.delivered >= revision

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for conn in list(self._conns.values()):
            conn.close()

    def run_callback(self, callback: Callable[[WatchBatch], Any]) -> Watch:
        """Call ``callback(batch)`` for each batch in a thread of its own."""

        def run() -> None:
            try:
                for batch in self:
                    callback(batch)
            except BaseException as exc:  # kept for the owner; the thread ends
                with self._cond:
                    self.error = exc
                    self._cond.notify_all()

        self._thread = threading.Thread(target=run, name=f"hakv-watch-{self.group}",
                                        daemon=True)
        self._thread.start()
        return self

    # -- the wire -------------------------------------------------------------------------

    _through = 0  # the last answer's head_revision
    _handed = 0  # everything up to this was handed to the consumer

    def _request(self) -> bytes:
        body: dict[str, Any] = {"group": self.group, "prev_kv": self.prev_kv,
                                "timeout": self.poll_timeout, "limit": self.limit,
                                "watch_id": self._id}
        if self.key is not None:
            body["key"] = self.key
        else:
            body["prefix"] = self.prefix
        body["start_revision"] = "snapshot" if self._snapshot else self.cursor
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    def _poll(self) -> None:
        """One long-poll, retried across endpoints until an answer (or close)."""
        endpoints = self.client.endpoints
        backoff = _BACKOFF_START
        i = self._preferred
        while not self._closed:
            endpoint = endpoints[i % len(endpoints)]
            try:
                answer = self._exchange(endpoint)
            except RetryableError:
                pass
            except Exception:
                if self._closed:  # close() from another thread broke the connection
                    return
                raise
            else:
                self._preferred = i % len(endpoints)
                self._take(answer)
                return
            i += 1
            if i % len(endpoints) == self._preferred:
                time.sleep(backoff)
                backoff = min(2 * backoff, _BACKOFF_MAX)

    def _exchange(self, endpoint: str) -> dict[str, Any]:
        conn = self._conns.get(endpoint)
        if conn is None:
            host, port = self.client._addresses[endpoint]
            conn = self._conns[endpoint] = Connection(host, port, tls=self.client.tls,
                                                             token=self.client.token)
        try:
            status, data = exchange(conn, _PATH, self._request(), self.poll_timeout + 5.0,
                                    CONNECT_TIMEOUT_MAX)
        except ConnectFailed as exc:
            raise _Retry(f"{endpoint}: {exc}") from None
        except Malformed as exc:
            raise InternalError(f"malformed answer from {endpoint} to {_PATH}: {exc}") from None
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise _Retry(f"{endpoint}: {describe_oserror(exc)}") from None
        return decode_answer(endpoint, _PATH, status, data)

    def _take(self, answer: dict[str, Any]) -> None:
        try:
            head = want(answer, "head_revision", int)
            compact = want(answer, "compact_revision", int)
            snapshot = answer.get("snapshot")
            batches = want(answer, "batches", list)
            if snapshot is not None and self._snapshot:
                kvs = [KeyValue.from_wire(kv) for kv in want(snapshot, "kvs", list)]
                events = [WatchEvent("put", kv.key, kv.value, kv.mod_revision,
                                     kv.create_revision, kv.version) for kv in kvs]
                self._buffer.append(WatchBatch(want(snapshot, "revision", int), events,
                                               compact, head, snapshot=True))
                self._snapshot = False
            for raw in batches:
                revision = want(raw, "revision", int)
                if self.cursor is not None and revision < self.cursor:
                    continue  # never twice (cannot happen with a correct server)
                events = [WatchEvent.from_wire(e) for e in want(raw, "events", list)]
                self._buffer.append(WatchBatch(revision, events, compact, head))
        except (TypeError, KeyError, ValueError) as exc:
            raise InternalError(f"malformed watch answer: {exc}: {answer!r:.200}") from None
        if self.cursor is None or head + 1 > self.cursor:
            self.cursor = head + 1
        self._through = head
        if not self._buffer:
            if self.progress:
                self._buffer.append(WatchBatch(head, [], compact, head))
            else:
                self._mark(head)  # nothing to hand over up to head


class _Retry(RetryableError):
    """A transport failure: try the next endpoint (never leaves this module)."""
