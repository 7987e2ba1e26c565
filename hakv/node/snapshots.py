"""Online snapshots read in pages (``/v1/snapshot``; docs/operations.md "Backup and
restore").

A snapshot is ONE read transaction of a group's store, however many keys it holds, and
the node never holds more than a few pages of it: a *stream* owns a thread of its own
that opens the transaction (LMDB ties a transaction to its thread), reads the keys in
pages of ``page_bytes`` and hands them over through a queue of two. The first request
starts a stream and gets the header and the first page; each later one names the stream
by its ``cursor`` and gets the next page; the last page has no cursor. A stream nobody
asked for within ``idle`` seconds is dropped with its transaction (a stalled client
cannot pin the store's old pages forever), and at most ``max_streams`` run at once.

The cursor is a random 128-bit name: only its holder can go on. It also names the node
that reads the stream, so any node can route a continuation there (hakv.node.api).
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from hakv import errors

log = logging.getLogger("hakv.node.snapshots")

__all__ = ["PAGE_BYTES", "SnapshotStreams"]

PAGE_BYTES = 4 << 20
"""Keys and values per page (the answer's JSON is at most about twice as much)."""
IDLE = 30.0
MAX_STREAMS = 4
_DONE = object()


class _Stream:
    def __init__(self, name: str, pages: Iterator[dict[str, Any]], idle: float,
                 clock: Callable[[], float]) -> None:
        self.name = name
        self.idle, self.clock = idle, clock
        self.due = clock() + idle
        self.pages: queue.Queue[Any] = queue.Queue(maxsize=2)
        self.stop = threading.Event()
        self.lock = threading.Lock()  # one request at a time reads the next page
        self.thread = threading.Thread(target=self._run, args=(pages,), daemon=True,
                                       name=f"snapshot-{name[:8]}")

    def _run(self, pages: Iterator[dict[str, Any]]) -> None:
        try:
            for page in pages:
                if not self._put(page):
                    return
            self._put(_DONE)
        except Exception as exc:  # noqa: BLE001 - handed to the reader as its answer
            self._put(exc)
        finally:
            close = getattr(pages, "close", None)
            if close is not None:
                close()  # the read transaction ends here, in its own thread

    def _put(self, item: Any) -> bool:
        while not self.stop.is_set():
            try:
                self.pages.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def next(self, timeout: float) -> Any:
        self.due = self.clock() + self.idle
        try:
            return self.pages.get(timeout=timeout)
        except queue.Empty:
            raise errors.UnavailableError(
                "the snapshot's next page was not read in time; retry with the same "
                "cursor") from None
        finally:
            self.due = self.clock() + self.idle


class SnapshotStreams:
    """The snapshot streams a node serves (worker threads call ``start`` and ``next``)."""

    def __init__(self, me: str, *, page_bytes: int = PAGE_BYTES, idle: float = IDLE,
                 max_streams: int = MAX_STREAMS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.me, self.page_bytes, self.idle = me, page_bytes, idle
        self.max_streams, self.clock = max_streams, clock
        self._streams: dict[str, _Stream] = {}
        self._lock = threading.Lock()

    def start(self, pages: Callable[[int], Iterator[dict[str, Any]]], header: dict[str, Any],
              timeout: float) -> dict[str, Any]:
        """Open a stream over ``pages(page_bytes)`` (a store's ``backup_pages``): the
        header, the store's revision and compact revision, and the first page."""
        self._reap()
        with self._lock:
            if len(self._streams) >= self.max_streams:
                raise errors.UnavailableError(
                    f"node {self.me} already streams {self.max_streams} snapshots; retry "
                    "in a while, or at another owner")
            name = f"{self.me}/{secrets.token_hex(16)}"
            stream = self._streams[name] = _Stream(name, pages(self.page_bytes), self.idle,
                                                   self.clock)
        stream.thread.start()
        first = self._next(stream, timeout)
        if not isinstance(first, dict) or "revision" not in first:
            self._drop(stream)
            raise errors.InternalError("a snapshot stream began without its header")
        page = self._page(stream, timeout)
        return {**header, "revision": first["revision"],
                "compact_revision": first["compact_revision"], **page}

    def next(self, cursor: str, timeout: float) -> dict[str, Any]:
        """The page after the one ``cursor`` came with."""
        self._reap()
        with self._lock:
            stream = self._streams.get(cursor)
        if stream is None:
            raise errors.NotFoundError(
                f"snapshot cursor {cursor[:48]!r} is unknown here: finished, idle for more "
                f"than {self.idle:g} s, or its node restarted; start the snapshot again")
        return self._page(stream, timeout)

    def close(self) -> None:
        with self._lock:
            streams, self._streams = list(self._streams.values()), {}
        for stream in streams:
            stream.stop.set()

    def active(self) -> int:
        with self._lock:
            return len(self._streams)

    # -- inside ---------------------------------------------------------------------------

    def _page(self, stream: _Stream, timeout: float) -> dict[str, Any]:
        if not stream.lock.acquire(timeout=timeout):
            raise errors.UnavailableError("another request reads this snapshot's next page; "
                                          "retry with the same cursor")
        try:
            item = self._next(stream, timeout)
            if item is _DONE:  # (an empty last page was already sent: cannot happen twice)
                self._drop(stream)
                return {"records": [], "dropped_ephemeral": 0, "cursor": None}
            # Look ahead: the page after this one says whether it is the last.
            after = self._next(stream, timeout)
        finally:
            stream.lock.release()
        if after is _DONE:
            self._drop(stream)
            return {**item, "cursor": None}
        stream.pages = _prepend(stream.pages, after)
        return {**item, "cursor": stream.name}

    def _next(self, stream: _Stream, timeout: float) -> Any:
        item = stream.next(timeout)
        if isinstance(item, BaseException):
            self._drop(stream)
            if isinstance(item, errors.HakvError):
                raise item
            raise errors.InternalError(f"reading the snapshot failed: "
                                       f"{type(item).__name__}: {item}")
        return item

    def _drop(self, stream: _Stream) -> None:
        stream.stop.set()
        with self._lock:
            self._streams.pop(stream.name, None)

    def _reap(self) -> None:
        now = self.clock()
        with self._lock:
            stale = [s for s in self._streams.values() if s.due < now]
            for s in stale:
                self._streams.pop(s.name, None)
        for s in stale:
            log.info("snapshot stream %s idle for %.0f s: dropped", s.name, self.idle)
            s.stop.set()


def _prepend(q: queue.Queue[Any], item: Any) -> queue.Queue[Any]:
    """``q`` with ``item`` put back in front (the look-ahead page)."""
    with q.mutex:
        q.queue.appendleft(item)
        q.unfinished_tasks += 1
        q.not_empty.notify()
    return q
