"""The node's watch hub: long-poll watches parked until their group applies something.

``POST /v1/watch`` (docs/api.md, "Watches") is handed here by the API server
(hakv.node.api) with a ``reply(status, payload)`` that answers on the raft thread. Then:

1. a worker validates it (hakv.core.watch); a group not hosted here is forwarded to its
   owners (at most ``max_forwarded`` at once, each holding one forwarding thread for the
   long-poll);
2. for a hosted group, the worker reads the history from the group store's committed
   state in ONE read transaction (hakv.storage.history via ``GroupStore.history_view``):
   revision, compact revision, events from the watcher's cursor, and for a
   ``"snapshot"`` start (after a linearizable barrier) the keys of the prefix;
3. whole-revision batches found: answered at once. None yet: the watcher is *parked*
   here (no thread held), with its cursor moved past what it scanned;
4. the store's commit calls :meth:`WatchHub.on_commit` (raft thread, cheap: marks the
   group); the hub thread hands the group's parked watchers whose cursor the group
   reached back to a worker (step 2); at its deadline a watcher gets a last read, and an
   answer with no batches is a progress notification ("nothing up to head_revision"),
   read in the same transaction as the events, so it never overtakes one.

Bounds: at most ``max_watches`` watches in the hub (parked or being read) and
``max_forwarded`` forwarded ones, else ``too_many_watches``; answers are bounded by the
request's ``limit`` and hakv.core.watch.MAX_ANSWER_BYTES; the read workers are a small
fixed pool, so a huge catch-up costs one worker for a moment, never the raft thread.

History compaction, per replica, off the critical path: every ``compact_interval`` the
hub computes each group's floor (hakv.core.watch.compaction_floor: the retention, the
cursors of watchers seen recently, the byte cap) and posts a bounded
``compact_history`` to the raft thread.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from hakv import errors
from hakv.core import watch as core
from hakv.node.ports import Abort, PeerApi, PeerUnreachable, TopologyView

log = logging.getLogger("hakv.node.watch")

Reply = Callable[[int, bytes], None]


class HistoryStore(Protocol):
    """What the hub reads and compacts (hakv.storage.store.GroupStore)."""

    def history_view(self, fn: Callable[[Any], Any]) -> Any: ...

    def history_info(self) -> tuple[int, int, int]: ...

    def compact_history(self, floor: int, max_entries: int = 2000) -> int: ...

    def revision(self) -> int: ...


@dataclass(order=True)
class _Watcher:
    deadline: float
    serial: int
    request: core.WatchRequest = field(compare=False)
    reply: Reply = field(compare=False)
    cursor: int = field(compare=False, default=0)  # next revision to read
    done: bool = field(compare=False, default=False)
    parked: bool = field(compare=False, default=False)


def _encode(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _error(exc: errors.HakvError) -> tuple[int, bytes]:
    return exc.http_status, _encode(exc.to_wire())


class WatchHub:
    """Parks long-poll watches of the groups hosted here and wakes them on commit."""

    def __init__(self, view: TopologyView, peers: PeerApi,
                 post: Callable[[Callable[[], Any]], None], *,
                 hosts: Callable[[str], bool], store: Callable[[str], HistoryStore],
                 barrier: Callable[[str], None], hosted: Callable[[], list[str]],
                 max_watches: int = 1024, max_forwarded: int = 32, workers: int = 4,
                 retention: core.Retention | None = None, compact_interval: float = 5.0,
                 compact_batch: int = 2000,
                 clock: Callable[[], float] = time.monotonic, skip_every: int = 0) -> None:
        self.view, self.peers, self._post = view, peers, post
        self._hosts, self._store, self._barrier, self._hosted = hosts, store, barrier, hosted
        self.max_watches, self.max_forwarded = max_watches, max_forwarded
        self.retention = (retention or core.Retention()).validate()
        self.compact_interval, self.compact_batch = compact_interval, compact_batch
        self._clock = clock
        self._skip_every = skip_every  # the HAKV_UNSAFE_WATCH_SKIP failpoint (tests only)
        self._cond = threading.Condition()
        self._active = 0  # watches in the hub: being read or parked
        self._forwarded = 0
        self._parked: dict[str, list[_Watcher]] = {}
        self._deadlines: list[_Watcher] = []  # heap; done watchers are skipped
        self._dirty: set[str] = set()
        self._serials = itertools.count()
        self._pins: dict[str, tuple[str, int, float]] = {}  # watch_id -> group, cursor, seen
        self._samples: dict[str, deque[tuple[float, int]]] = {}
        self._next_compaction = clock() + compact_interval
        self._readers = ThreadPoolExecutor(workers, thread_name_prefix="watch")
        self._forwarders = ThreadPoolExecutor(max_forwarded, thread_name_prefix="watch-fwd")
        self._closed = False
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="watches", daemon=True)
        self._thread.start()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._readers.shutdown(wait=False, cancel_futures=True)
        self._forwarders.shutdown(wait=False, cancel_futures=True)

    def stats(self) -> dict[str, int]:
        with self._cond:
            return {"active": self._active, "forwarded": self._forwarded,
                    "parked": sum(len(ws) for ws in self._parked.values())}

    # -- requests in ----------------------------------------------------------------------

    def begin(self, raw: bytes, reply: Reply,
              on_behalf: str | None = None) -> Callable[[], None] | None:
        """Serve one ``/v1/watch`` request; ``reply`` is called exactly once (any thread)
        unless the watch is abandoned. Never blocks: called on the raft thread.
        ``on_behalf``: the caller, when the API checked a user's identity
        (``"user/<name>"``): a forwarded watch carries it to the owner, which checks it
        again (the node never lends its own identity).

        Returns ``abandon`` (None if answered at once): the API calls it when the client
        goes away before the answer, and the watch leaves the hub at once (its slot
        freed, never answered) instead of holding a slot until its timeout; a forwarded
        one breaks its request to the owner off, and the owner drops its side too."""
        try:
            body = json.loads(raw.decode("utf-8")) if raw else None
            if not isinstance(body, dict):
                raise errors.BadRequestError("request body must be a JSON object")
            request = core.watch_request(body)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            reply(*_error(errors.BadRequestError(f"request body is not valid JSON: {exc}")))
            return None
        except errors.HakvError as exc:
            reply(*_error(exc))
            return None
        if not self._hosts(request.group):
            return self._forward(request, raw, reply, on_behalf)
        with self._cond:
            if self._closed or self._active >= self.max_watches:
                full = not self._closed
            else:
                full = None
                self._active += 1
        if full is not None:
            reply(*_error(errors.TooManyWatchesError(
                f"this node already serves {self.max_watches} watches; retry later or at "
                "another owner of the group") if full else
                errors.UnavailableError("the node is shutting down; retry elsewhere")))
            return None
        watcher = _Watcher(self._clock() + request.timeout, next(self._serials), request,
                           reply)
        self._submit(lambda: self._first(watcher))
        return functools.partial(self._abandon, watcher)

    def _abandon(self, watcher: _Watcher) -> None:
        """The client went away: drop the watch without answering (any thread)."""
        with self._cond:
            if watcher.done:
                return
            watcher.done = True
            self._active -= 1
            if watcher.parked:
                self._unpark(watcher)  # its deadline entry is skipped once popped

    def _submit(self, fn: Callable[[], None]) -> None:
        try:
            self._readers.submit(fn)
        except RuntimeError:  # shut down
            pass

    def _forward(self, request: core.WatchRequest, raw: bytes, reply: Reply,
                 on_behalf: str | None) -> Callable[[], None] | None:
        with self._cond:
            full = self._forwarded >= self.max_forwarded
            if not full:
                self._forwarded += 1
        if full:
            reply(*_error(errors.TooManyWatchesError(
                f"this node already forwards {self.max_forwarded} watches; watch through an "
                f"owner of group {request.group} instead")))
            return None
        abort = Abort()

        def work() -> None:
            try:
                answer = self._forward_now(request, raw, on_behalf, abort)
            except errors.HakvError as exc:
                answer = _error(exc)
            except Exception as exc:  # never leave a request unanswered
                log.exception("forwarding a watch failed")
                answer = _error(errors.InternalError(f"{type(exc).__name__}: {exc}"))
            finally:
                with self._cond:
                    self._forwarded -= 1
            if not abort.fired:  # (abandoned: nobody to answer)
                reply(*answer)

        try:
            self._forwarders.submit(work)
        except RuntimeError:
            with self._cond:
                self._forwarded -= 1
            reply(*_error(errors.UnavailableError("the node is shutting down; retry elsewhere")))
            return None
        return abort.fire

    def _forward_now(self, request: core.WatchRequest, raw: bytes, on_behalf: str | None,
                     abort: Abort) -> tuple[int, bytes]:
        topology = self.view.topology
        spec = topology.group(request.group)  # UnknownGroupError if absent
        failures = []
        for owner in spec.owners:
            if abort.fired:
                break
            try:
                return self.peers.post(topology.node(owner).api_address, "watch", raw,
                                       request.timeout + 5.0, on_behalf=on_behalf,
                                       abort=abort)
            except PeerUnreachable as exc:
                failures.append(f"{owner}: {exc}")
        raise errors.UnavailableError("no owner of the group answered: " + "; ".join(failures))

    # -- reading --------------------------------------------------------------------------

    def _finish(self, watcher: _Watcher, status: int, payload: bytes) -> None:
        with self._cond:
            if watcher.done:
                return
            watcher.done = True
            self._active -= 1
        watcher.reply(status, payload)

    def _first(self, watcher: _Watcher) -> None:
        """The first read of a new watch: where its cursor starts (worker thread)."""
        request = watcher.request
        try:
            store = self._store(request.group)
            if request.snapshot:
                self._barrier(request.group)  # everything acknowledged before is applied
                self._serve_snapshot(watcher, store)
                return
            if request.start is None:
                watcher.cursor = store.revision() + 1
            else:
                watcher.cursor = request.start
            self._read(watcher, final=request.timeout <= 0)
        except errors.HakvError as exc:
            self._finish(watcher, *_error(exc))
        except Exception as exc:
            log.exception("serving a watch failed")
            self._finish(watcher, *_error(errors.InternalError(f"{type(exc).__name__}: {exc}")))

    def _serve_snapshot(self, watcher: _Watcher, store: HistoryStore) -> None:
        request = watcher.request

        def read(view: Any) -> dict[str, Any]:
            if request.exact:
                kvs, more = view.range(request.prefix, 1)
                kvs = [kv for kv in kvs if kv["key"] == request.prefix]
            else:
                kvs, more = view.range(request.prefix, core.MAX_SNAPSHOT_KEYS)
            if more:
                raise errors.RequestTooLargeError(
                    f"prefix {request.prefix!r} holds more than {core.MAX_SNAPSHOT_KEYS} "
                    "keys: watch a narrower prefix, or range it in pages and watch from "
                    "the revision of the first page")
            return core.answer(core.Collected([], view.head), view.compact,
                               {"revision": view.head, "kvs": kvs})

        body = store.history_view(read)
        self._pin(request, body["head_revision"] + 1)
        self._finish(watcher, 200, _encode(body))

    def _read(self, watcher: _Watcher, final: bool) -> None:
        """Read from the watcher's cursor; answer, or park it (worker thread)."""
        request = watcher.request
        while True:
            outcome = self._store(request.group).history_view(
                lambda view: self._scan(view, watcher, final))
            if outcome is None:  # scanned a slice of a long history: go on (no answer yet)
                continue
            if outcome == "park":
                self._park(watcher)
                return
            status, payload, through = outcome
            if through is not None:
                self._pin(request, through + 1)
            self._finish(watcher, status, payload)
            return

    def _scan(self, view: Any, watcher: _Watcher, final: bool) -> Any:
        request, cursor = watcher.request, watcher.cursor
        if cursor <= view.compact:
            return (*_error(errors.CompactedError(
                f"revisions up to {view.compact} of group {request.group} are compacted on "
                f"this replica (head {view.head}); you asked from {cursor}: resync with "
                'start_revision "snapshot"', compact_revision=view.compact,
                head_revision=view.head)), None)
        if cursor - 1 > view.head:
            if not final:
                return "park"
            return (*_error(errors.FutureRevisionError(
                f"this replica of group {request.group} is at revision {view.head}; it did "
                f"not reach {cursor - 1} within the timeout: try another owner, or watch "
                f"from {view.head + 1}")), None)
        collected = core.collect(view.entries(cursor), cursor, view.head, request)
        if self._skip_every:  # broken build (tests only): a watcher misses these revisions
            collected.batches = [b for b in collected.batches
                                 if b["revision"] % self._skip_every]
        if collected.batches or final:
            return 200, _encode(core.answer(collected, view.compact)), collected.through
        watcher.cursor = collected.through + 1
        if collected.through < view.head:
            return None
        return "park"

    def _pin(self, request: core.WatchRequest, cursor: int) -> None:
        if request.watch_id is None:
            return
        with self._cond:
            self._pins.pop(request.watch_id, None)  # re-inserted last: oldest first
            self._pins[request.watch_id] = (request.group, cursor, self._clock())
            while len(self._pins) > 4 * self.max_watches:
                self._pins.pop(next(iter(self._pins)))

    # -- parking --------------------------------------------------------------------------

    def _park(self, watcher: _Watcher) -> None:
        with self._cond:
            if watcher.done:
                return  # abandoned while it was being read
            if self._closed:
                watcher.done = True
                self._active -= 1
                closed = True
            else:
                closed = False
                watcher.parked = True
                self._parked.setdefault(watcher.request.group, []).append(watcher)
                heapq.heappush(self._deadlines, watcher)
                self._cond.notify()
        if closed:
            watcher.reply(*_error(errors.UnavailableError("the node is shutting down")))

    def on_commit(self, group: str) -> None:
        """The group's store committed new events (raft thread): wake its watchers."""
        with self._cond:
            if group in self._parked:
                self._dirty.add(group)
                self._cond.notify()

    def _unpark(self, watcher: _Watcher) -> None:
        """(with the lock)"""
        watcher.parked = False
        waiting = self._parked.get(watcher.request.group)
        if waiting is not None:
            try:
                waiting.remove(watcher)
            except ValueError:
                pass
            if not waiting:
                del self._parked[watcher.request.group]

    def _run(self) -> None:
        last_recheck = self._clock()
        while True:
            wake: list[tuple[_Watcher, bool]] = []
            with self._cond:
                if self._closed:
                    return
                now = self._clock()
                while self._deadlines and (self._deadlines[0].deadline <= now
                                           or not self._deadlines[0].parked):
                    watcher = heapq.heappop(self._deadlines)
                    if watcher.parked:
                        self._unpark(watcher)
                        wake.append((watcher, True))
                dirty, self._dirty = self._dirty, set()
                if now - last_recheck >= 1.0:  # e.g. a snapshot restored: no commit hook
                    dirty |= set(self._parked)
                    last_recheck = now
                groups = {g: list(self._parked.get(g, ())) for g in dirty}
            for group, watchers in groups.items():
                try:
                    head = self._store(group).revision()
                except errors.HakvError:
                    head = None
                except Exception:
                    log.exception("reading the revision of group %s failed", group)
                    head = None
                with self._cond:
                    for watcher in watchers:
                        if watcher.parked and (head is None or watcher.cursor <= head):
                            self._unpark(watcher)
                            wake.append((watcher, False))
            for watcher, final in wake:
                self._submit(functools.partial(self._reread, watcher, final))
            if now >= self._next_compaction:
                self._next_compaction = now + self.compact_interval
                self._compact_all(now)
            with self._cond:
                if self._closed:
                    return
                if self._dirty:
                    continue
                due = min([self._next_compaction]
                          + ([self._deadlines[0].deadline] if self._deadlines else []))
                if self._parked:
                    due = min(due, last_recheck + 1.0)
                timeout = max(0.0, due - self._clock())
                self._cond.wait(timeout + 0.005)  # a little slack: fewer, fuller wake-ups

    def _reread(self, watcher: _Watcher, final: bool) -> None:
        if watcher.done:
            return  # abandoned
        try:
            if not final and self._clock() >= watcher.deadline:
                final = True
            self._read(watcher, final)
        except errors.HakvError as exc:
            self._finish(watcher, *_error(exc))
        except Exception as exc:
            log.exception("serving a watch failed")
            self._finish(watcher, *_error(errors.InternalError(f"{type(exc).__name__}: {exc}")))

    # -- compaction -----------------------------------------------------------------------

    def _compact_all(self, now: float) -> None:
        with self._cond:
            for wid, (_, _, seen) in list(self._pins.items()):
                if seen < now - self.retention.seconds:
                    del self._pins[wid]
            pins: dict[str, list[int]] = {}
            for group, cursor, _ in self._pins.values():
                pins.setdefault(group, []).append(cursor)
            for group, watchers in self._parked.items():
                pins.setdefault(group, []).extend(w.cursor for w in watchers)
        for group in self._hosted():
            try:
                self._compact(group, now, pins.get(group, []))
            except Exception:  # a store being replaced or closed: next round
                log.debug("history compaction of group %s skipped", group, exc_info=True)

    def _compact(self, group: str, now: float, pins: list[int]) -> None:
        store = self._store(group)
        compact, _, size = store.history_info()
        head = store.revision()
        samples = self._samples.setdefault(group, deque())
        samples.append((now, head))
        while len(samples) > 1 and samples[1][0] <= now - self.retention.seconds:
            samples.popleft()  # keep one sample at least as old as the retention
        floor = core.compaction_floor(head=head, compact=compact, history_bytes=size, now=now,
                                      samples=list(samples), pins=pins,
                                      retention=self.retention)
        if floor > compact:
            batch = self.compact_batch
            self._post(lambda: store.compact_history(floor, batch))

