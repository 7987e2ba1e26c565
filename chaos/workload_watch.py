"""The watch workload: writers under ``w/`` and watchers recording what they see.

Records (docs/chaos-checkers.md, "Watches"; checked by ``chaos.checkers.watch``):

- **writers** (``writers`` threads, own client each): ``put`` of a unique value
  ``p<process>-<n>`` to one of ``w/k0 .. w/k<keys-1>`` (70 %), a txn putting two keys in
  one revision (15 %), a ``delete`` (15 %; one that found nothing is an ok write with no
  changes). Each is a ``WatchWrite`` with the server's ``revision`` when ok; ``unknown``
  on a timeout after sending (``OutcomeUnknownError``) or an unexpected error, ``fail`` on
  a definite refusal — as in ``chaos.workload.classify``.
- **watchers** (``watchers`` threads): a linearizable ``range`` gives the revision R to
  start from, then ``client.watch(group, "w/", start_revision=R + 1, progress=True)``;
  ``start`` (the cursor), every ``batch`` with its events, every ``progress``
  (empty answer up to head_revision), ``compacted`` (then ``resync()``: the snapshot
  batch is recorded as a ``start`` with ``snapshot: true``). About every ``reconnect``
  seconds the watcher closes its watch (``disconnect``) and opens a new one from
  ``Watch.cursor`` — the resume under test, on top of the library's own failover across
  endpoints — at a point where nothing can be buffered in the client (right after a
  progress notification, or after a batch when the cursor is that batch's revision + 1).
  After ``until`` the writers stop; a linearizable read gives the final revision F, and
  each watcher goes on until it saw a batch or progress at or beyond F, then records
  ``end`` (it claims everything through that revision) — or, at ``drain_until``, stops
  without one (the checker notes it).
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from chaos.workload import classify
from hakv.client.client import Client, Op
from hakv.errors import CompactedError, HakvError

if TYPE_CHECKING:
    from chaos.workload_coord import CoordSpec, Journal
    from hakv.client.watch import Watch, WatchBatch

__all__ = ["PREFIX", "run"]

PREFIX = "w/"


def _client(spec: CoordSpec, name: str) -> Client:
    return Client(spec.endpoints, timeout=spec.timeout,
                  client_id=f"chaos-{spec.group}-{name}-{uuid.uuid4().hex[:8]}")


def _writer(spec: CoordSpec, index: int, journal: Journal, stop: threading.Event) -> None:
    opts = spec.options
    rng = spec.rng(f"writer{index}")
    generation = 0
    n = 0
    keys = int(opts.get("keys", 4))
    think = float(opts.get("think", 0.03))
    with _client(spec, f"ww{index}") as client:
        while not stop.is_set() and time.monotonic() < spec.until:
            pid = spec.process_base() + index + 100 * generation
            n += 1
            r = rng.random()
            key = f"{PREFIX}k{rng.randrange(keys)}"
            changes: list[dict[str, Any]]
            if r < 0.7:
                changes = [{"type": "put", "key": key, "value": f"p{pid}-{n}"}]
            elif r < 0.85:
                other = f"{PREFIX}k{(int(key[len(PREFIX) + 1:]) + 1) % max(keys, 2)}"
                changes = [{"type": "put", "key": key, "value": f"p{pid}-{n}a"},
                           {"type": "put", "key": other, "value": f"p{pid}-{n}b"}]
            else:
                changes = [{"type": "delete", "key": key}]
            rec = journal.begin({"kind": "write", "process": pid, "group": spec.group,
                                 "changes": changes, "status": "unknown", "revision": None,
                                 "invoke": time.monotonic(), "complete": None})
            try:
                if changes[0]["type"] == "delete":
                    res = client.delete(spec.group, key)
                    revision = res.revision
                    if not res.deleted:
                        changes = []  # an ok write that changed nothing
                elif len(changes) == 1:
                    revision = client.put(spec.group, key, changes[0]["value"]).revision
                else:
                    revision = client.txn(spec.group, [], [
                        Op.put(c["key"], c["value"]) for c in changes]).revision
            except Exception as err:  # noqa: BLE001 - every failure is recorded
                status, _ = classify(err)
                journal.finish(rec, status=status, complete=time.monotonic())
                if status == "unknown":
                    generation += 1
            else:
                journal.finish(rec, status="ok", revision=revision, changes=changes,
                               complete=time.monotonic())
            if think > 0:
                stop.wait(rng.uniform(0, 2 * think))


def _head(spec: CoordSpec, client: Client, deadline: float, stop: threading.Event
          ) -> int | None:
    """The group's revision by a linearizable read, retried until ``deadline``."""
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            return client.range(spec.group, PREFIX, limit=1).revision
        except HakvError:
            stop.wait(0.2)
    return None


class _Watcher:
    def __init__(self, spec: CoordSpec, index: int, journal: Journal, stop: threading.Event
                 ) -> None:
        self.spec, self.journal, self.stop = spec, journal, stop
        self.name = f"{spec.group}-w{index}"
        self.rng = spec.rng(f"watcher{index}")
        self.final: int | None = None  # set by the main thread after `until`
        self.watch: Watch | None = None
        self.lock = threading.Lock()

    def record(self, kind: str, revision: int | None = None, **extra: Any) -> None:
        self.journal.add({"watcher": self.name, "kind": kind, "time": time.monotonic(),
                          "revision": revision, "group": self.spec.group, "prefix": PREFIX,
                          **extra})

    def close(self) -> None:
        with self.lock:
            if self.watch is not None:
                self.watch.close()

    def run(self) -> None:
        spec, opts = self.spec, self.spec.options
        reconnect = float(opts.get("reconnect", 3.0))
        poll = float(opts.get("poll_timeout", 1.0))
        with _client(spec, self.name) as client:
            head = _head(spec, client, spec.until, self.stop)
            if head is None:
                return
            cursor = head + 1
            seen = head  # last revision of a batch or progress (the checker's cursor - 1)
            while not self.stop.is_set() and time.monotonic() < spec.drain_until:
                with self.lock:
                    w = self.watch = client.watch(spec.group, PREFIX, start_revision=cursor,
                                                  progress=True, poll_timeout=poll)
                self.record("start", cursor)
                restart_at = time.monotonic() + self.rng.uniform(0.5, 1.5) * reconnect
                try:
                    seen, done = self._consume(w, seen, restart_at)
                finally:
                    w.close()
                if done:
                    return
                if w.cursor is not None:
                    cursor = w.cursor
                if self.stop.is_set() or time.monotonic() >= spec.drain_until:
                    return
                self.record("disconnect")

    def _consume(self, w: Watch, seen: int, restart_at: float) -> tuple[int, bool]:
        """Iterate ``w`` until a resume is due (after a progress), the drain is complete
        (then ``end`` is recorded: True) or a deadline."""
        spec = self.spec
        it = iter(w)
        while not self.stop.is_set():
            try:
                batch: WatchBatch = next(it)
            except StopIteration:
                return seen, False
            except CompactedError as err:
                self.record("compacted", err.compact_revision,
                            head_revision=err.head_revision)
                w.resync()
                continue
            except HakvError:
                return seen, False  # a permanent error: start a new watch from the cursor
            if batch.snapshot:
                # the snapshot's keys are state, not events: events continue after it
                self.record("start", batch.revision, snapshot=True)
                seen = max(seen, batch.revision)
            elif batch.events:
                self.record("batch", batch.revision, events=_events(batch))
                seen = max(seen, batch.revision)
            else:
                self.record("progress", batch.revision)
                seen = max(seen, batch.revision)
            final = self.final
            if final is not None and seen >= final:
                self.record("end", seen)
                return seen, True
            now = time.monotonic()
            if now >= spec.drain_until:
                return seen, False
            if now >= restart_at and (not batch.events or w.cursor == batch.revision + 1):
                # nothing is buffered (a progress comes only after an empty answer; the
                # cursor right after this batch leaves no room for another): resume
                return seen, False
        return seen, False


def _events(batch: WatchBatch) -> list[dict[str, Any]]:
    return [{"type": e.type, "key": e.key, "value": e.value, "mod_revision": e.mod_revision,
             "create_revision": e.create_revision, "version": e.version}
            for e in batch.events]


def run(spec: CoordSpec, journal: Journal, stop: threading.Event) -> None:
    opts = spec.options
    watchers = [_Watcher(spec, i, journal, stop) for i in range(int(opts.get("watchers", 2)))]
    threads = [threading.Thread(target=w.run, name=w.name, daemon=True) for w in watchers]
    writers = [threading.Thread(target=_writer, args=(spec, i, journal, stop),
                                name=f"writer-{i}", daemon=True)
               for i in range(int(opts.get("writers", 2)))]
    for t in threads:
        t.start()
    time.sleep(0.3)  # let the watchers find their start before the first write
    for t in writers:
        t.start()
    for t in writers:
        while t.is_alive() and not stop.is_set():
            t.join(0.2)
    with _client(spec, "final") as client:
        final = _head(spec, client, spec.drain_until, stop)
    for w in watchers:
        w.final = final
    for t in threads:
        while t.is_alive() and not stop.is_set() and time.monotonic() < spec.drain_until + 1:
            t.join(0.2)
    for w in watchers:
        w.close()
    for t in threads:
        t.join(spec.timeout)
