"""Watches, the pure part: the request, the answer's batches, and the compaction floor.

No I/O and no clock: times are arguments. The storage (hakv.storage.history) keeps each
revision's events; the node's watch hub (hakv.node.watch) parks long-polls and decides
when to compact with :func:`compaction_floor`; the wire contract is docs/api.md,
"Watches".

Why a batch is one whole revision: a client resumes from the last complete batch, so a
revision split over two answers could not be resumed exactly (python-etcd3#729).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from hakv.core.codec import MAX_INT, MAX_KEY_BYTES, MAX_RANGE_LIMIT
from hakv.errors import BadRequestError, RequestTooLargeError

#: Long-poll timeout: default and cap (seconds). A client's read timeout must exceed it.
DEFAULT_TIMEOUT = 10.0
MAX_TIMEOUT = 30.0
#: Events per answer: default and cap (a batch is never split, so one answer holds at
#: least one whole batch even when that batch alone is larger).
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10000
#: An answer stops at a batch boundary once it holds this many bytes of events.
MAX_ANSWER_BYTES = 1 << 20
#: Revisions one answer scans at most (a prefix that matches rarely in a busy group):
#: the answer is then a progress notification up to the last revision scanned.
MAX_SCAN_REVISIONS = 20000
#: A "snapshot" start serves at most this many keys (more: too_large, watch a narrower
#: prefix).
MAX_SNAPSHOT_KEYS = MAX_RANGE_LIMIT
MAX_WATCH_ID = 64

SNAPSHOT = "snapshot"


@dataclass(frozen=True)
class WatchRequest:
    """A validated ``/v1/watch`` body."""

    group: str
    prefix: str  # "" = every key of the group
    exact: bool  # True: ``prefix`` is one key (``key`` in the request)
    start: int | None  # None: after this replica's head; else the first revision wanted
    snapshot: bool
    prev_kv: bool
    timeout: float
    limit: int
    watch_id: str | None

    def matches(self, key: str) -> bool:
        return key == self.prefix if self.exact else key.startswith(self.prefix)


def _text(body: dict[str, Any], name: str, *, empty: bool) -> str:
    value = body[name]
    if not isinstance(value, str):
        raise BadRequestError(f"{name}: expected a string, got {type(value).__name__}; "
                              f"send the {name} to watch as a JSON string")
    if not value and not empty:
        raise BadRequestError(f"{name}: must not be empty (use prefix \"\" to watch every key)")
    if "\x00" in value:
        raise BadRequestError(f"{name}: must not contain NUL characters")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise BadRequestError(f"{name}: must be valid UTF-8 text") from None
    if size > MAX_KEY_BYTES:
        raise RequestTooLargeError(
            f"{name}: {size} bytes UTF-8 exceeds the {MAX_KEY_BYTES}-byte key limit")
    return value


def watch_request(body: dict[str, Any]) -> WatchRequest:
    """Validate a ``/v1/watch`` body; BadRequestError / RequestTooLargeError name the field."""
    group = body.get("group")
    if not isinstance(group, str) or not group:
        raise BadRequestError('group: required, a group id string')
    if ("key" in body) == ("prefix" in body):
        raise BadRequestError('give exactly one of "prefix" (every key starting with it; "" '
                              'for all) or "key" (one key)')
    exact = "key" in body
    prefix = _text(body, "key", empty=False) if exact else _text(body, "prefix", empty=True)
    raw_start = body.get("start_revision")
    start: int | None = None
    snapshot = False
    if raw_start == SNAPSHOT:
        snapshot = True
    elif raw_start is not None:
        if type(raw_start) is not int or not 1 <= raw_start <= MAX_INT:
            raise BadRequestError(
                f"start_revision: expected an integer in 1..{MAX_INT}, \"snapshot\" or null "
                f"(after the current revision), got {raw_start!r}")
        start = raw_start
    prev_kv = body.get("prev_kv", False)
    if not isinstance(prev_kv, bool):
        raise BadRequestError("prev_kv: expected true or false")
    raw_timeout = body.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(raw_timeout, bool) or not isinstance(raw_timeout, int | float) \
            or not 0 <= raw_timeout <= 3600:
        raise BadRequestError(f"timeout: expected seconds in 0..{MAX_TIMEOUT:g} (longer is "
                              f"capped to {MAX_TIMEOUT:g}), got {raw_timeout!r}")
    limit = body.get("limit", DEFAULT_LIMIT)
    if type(limit) is not int or not 1 <= limit <= MAX_LIMIT:
        raise BadRequestError(f"limit: expected an integer in 1..{MAX_LIMIT} (events per "
                              f"answer), got {limit!r}")
    watch_id = body.get("watch_id")
    if watch_id is not None and (not isinstance(watch_id, str)
                                 or not 1 <= len(watch_id) <= MAX_WATCH_ID):
        raise BadRequestError(f"watch_id: expected a string of 1..{MAX_WATCH_ID} characters")
    return WatchRequest(group, prefix, exact, start, snapshot, prev_kv,
                        min(float(raw_timeout), MAX_TIMEOUT), limit, watch_id)


# --- answers ---------------------------------------------------------------------------


@dataclass
class Collected:
    """What one scan of the history produced for one watcher.

    ``through``: every event of the watched keys with revision <= ``through`` (and >= the
    start) is in ``batches``: the client's next start is ``through + 1``."""

    batches: list[dict[str, Any]]
    through: int


def collect(entries: Iterable[tuple[int, dict[str, Any]]], start: int, head: int,
            request: WatchRequest, *, max_bytes: int = MAX_ANSWER_BYTES,
            max_scan: int = MAX_SCAN_REVISIONS) -> Collected:
    """Group history ``entries`` ((revision, event) in revision order, revisions >= start)
    into whole-revision batches of the events ``request`` watches.

    Stops at a batch boundary when the next batch would take the answer over
    ``request.limit`` events or ``max_bytes`` (the first batch is always taken whole), or
    after ``max_scan`` revisions. ``head`` is the revision the store was read at."""
    batches: list[dict[str, Any]] = []
    count = size = 0
    current: dict[str, Any] | None = None
    through = start - 1
    scanned = 0
    last_rev = start - 1

    def close_batch() -> bool:
        """Add ``current``; False if the answer is full (then the batch is not added)."""
        nonlocal current, count, size
        if current is None:
            return True
        events = current["events"]
        cost = sum(_event_cost(e) for e in events)
        if batches and (count + len(events) > request.limit or size + cost > max_bytes):
            return False
        batches.append(current)
        count += len(events)
        size += cost
        current = None
        return True

    for revision, event in entries:
        if revision > head:
            break
        if revision != last_rev:  # a new revision starts: the previous one is complete
            if not close_batch():
                return Collected(batches, last_rev - 1)
            through = last_rev
            last_rev = revision
            scanned += 1
            if scanned > max_scan:
                return Collected(batches, through)
        if not request.matches(event["key"]):
            continue
        if not request.prev_kv and "prev_kv" in event:
            event = {k: v for k, v in event.items() if k != "prev_kv"}
        if current is None:
            current = {"revision": revision, "events": []}
        current["events"].append(event)
    if not close_batch():
        return Collected(batches, last_rev - 1)
    return Collected(batches, max(head, start - 1))


def _event_cost(event: dict[str, Any]) -> int:
    prev = event.get("prev_kv") or {}
    return 96 + len(event["key"]) + len(event.get("value") or "") + len(prev.get("value") or "")


def answer(collected: Collected, compact: int,
           snapshot: dict[str, Any] | None = None) -> dict[str, Any]:
    """The wire answer (docs/api.md, "Watches")."""
    body: dict[str, Any] = {"batches": collected.batches, "head_revision": collected.through,
                            "compact_revision": compact}
    if snapshot is not None:
        body["snapshot"] = snapshot
    return body


# --- compaction ------------------------------------------------------------------------


@dataclass(frozen=True)
class Retention:
    """How much history a replica keeps (docs/api.md, "Watches", "History").

    Everything newer than ``seconds`` OR among the last ``min_revisions`` revisions, and
    every revision a watcher seen in the last ``seconds`` still needs; but never more than
    ``max_bytes`` (a soft cap, enforced each compaction round): beyond it the oldest
    revisions go even if a watcher needs them (it then gets ``compacted``)."""

    seconds: float = 600.0
    min_revisions: int = 1000
    max_bytes: int = 64 << 20

    def validate(self) -> Retention:
        if self.seconds < 0 or self.min_revisions < 0 or self.max_bytes < 1:
            raise BadRequestError(f"bad history retention {self}: all bounds must be >= 0")
        return self


def compaction_floor(*, head: int, compact: int, history_bytes: int, now: float,
                     samples: Sequence[tuple[float, int]], pins: Iterable[int],
                     retention: Retention) -> int:
    """The revision to compact through (history keeps revisions > floor); ``compact``
    when nothing should go.

    ``samples``: (time, head revision then), oldest first; ``pins``: the next revision
    each recently seen watcher wants."""
    aged = 0  # revisions <= aged were all applied more than ``seconds`` ago
    for when, revision in samples:
        if when <= now - retention.seconds:
            aged = revision
        else:
            break
    floor = min(aged, head - retention.min_revisions)
    for pin in pins:
        floor = min(floor, pin - 1)
    if history_bytes > retention.max_bytes and head > compact:
        # Drop the oldest share that brings the history to 3/4 of the cap (revisions
        # are assumed of equal size; the next round corrects the estimate).
        excess = history_bytes - (retention.max_bytes * 3) // 4
        share = (head - compact) * excess // history_bytes
        floor = max(floor, compact + max(1, share))
    return max(compact, min(floor, head))


RETENTION_ENV = "HAKV_WATCH_RETENTION"


def retention_from(text: str | None) -> tuple[Retention, float]:
    """``seconds=600,revisions=1000,bytes=67108864,interval=5`` (any subset; the
    environment variable HAKV_WATCH_RETENTION of a node) -> (Retention, compaction
    interval in seconds). Bad text: BadRequestError naming the part."""
    values: dict[str, float] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, sep, raw = part.partition("=")
        name = name.strip()
        if not sep or name not in ("seconds", "revisions", "bytes", "interval"):
            raise BadRequestError(f"{RETENTION_ENV}: {part!r} is not one of seconds=, "
                                  "revisions=, bytes=, interval=")
        try:
            values[name] = float(raw)
        except ValueError:
            raise BadRequestError(f"{RETENTION_ENV}: {part!r}: not a number") from None
        if not math.isfinite(values[name]) or values[name] < 0:
            raise BadRequestError(f"{RETENTION_ENV}: {part!r}: expected a finite number "
                                  ">= 0 (seconds, revisions or bytes)")
    retention = Retention(values.get("seconds", 600.0), int(values.get("revisions", 1000)),
                          int(values.get("bytes", 64 << 20))).validate()
    interval = values.get("interval", 5.0)
    if not interval > 0:
        raise BadRequestError(f"{RETENTION_ENV}: interval must be > 0")
    return retention, interval
