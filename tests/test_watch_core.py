"""Watches, the pure part (hakv.core.watch): requests, batches, the compaction floor."""

from __future__ import annotations

from typing import Any

import pytest

from hakv.core import watch as core
from hakv.errors import BadRequestError, RequestTooLargeError

BAD_REQUESTS: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"prefix": "a"}, BadRequestError, "group"),
    ({"group": "g"}, BadRequestError, "exactly one"),
    ({"group": "g", "prefix": "a", "key": "a"}, BadRequestError, "exactly one"),
    ({"group": "g", "key": ""}, BadRequestError, "must not be empty"),
    ({"group": "g", "prefix": 5}, BadRequestError, "expected a string"),
    ({"group": "g", "prefix": "a\x00"}, BadRequestError, "NUL"),
    ({"group": "g", "prefix": "x" * 1025}, RequestTooLargeError, "1024"),
    ({"group": "g", "prefix": "", "start_revision": -1}, BadRequestError, "start_revision"),
    ({"group": "g", "prefix": "", "start_revision": 0}, BadRequestError, "start_revision"),
    ({"group": "g", "prefix": "", "start_revision": True}, BadRequestError, "start_revision"),
    ({"group": "g", "prefix": "", "start_revision": "now"}, BadRequestError, "start_revision"),
    ({"group": "g", "prefix": "", "timeout": -1}, BadRequestError, "timeout"),
    ({"group": "g", "prefix": "", "limit": 0}, BadRequestError, "limit"),
    ({"group": "g", "prefix": "", "limit": 10001}, BadRequestError, "limit"),
    ({"group": "g", "prefix": "", "prev_kv": 1}, BadRequestError, "prev_kv"),
    ({"group": "g", "prefix": "", "watch_id": ""}, BadRequestError, "watch_id"),
]


@pytest.mark.parametrize(("body", "error", "says"), BAD_REQUESTS)
def test_bad_watch_requests_get_typed_errors_naming_the_field(
        body: dict[str, Any], error: type[Exception], says: str) -> None:
    with pytest.raises(error, match=says):
        core.watch_request(body)


def test_a_valid_request_is_normalized_and_the_timeout_capped() -> None:
    r = core.watch_request({"group": "g", "prefix": "", "start_revision": "snapshot",
                            "timeout": 999})
    assert (r.snapshot, r.start, r.timeout, r.limit, r.prev_kv) == (
        True, None, core.MAX_TIMEOUT, core.DEFAULT_LIMIT, False)
    k = core.watch_request({"group": "g", "key": "a", "start_revision": 7})
    assert k.exact and k.matches("a") and not k.matches("ab") and k.start == 7


def _put(rev: int, key: str, value: str = "v") -> tuple[int, dict[str, Any]]:
    return rev, {"type": "put", "key": key, "value": value, "create_revision": rev,
                 "mod_revision": rev, "version": 1, "prev_kv": None}


HISTORY = [_put(5, "a/1"), _put(6, "a/2"), _put(6, "b/1"), _put(6, "a/3"), _put(7, "b/2"),
           _put(8, "a/4"), _put(8, "a/5")]

# (start, head, limit, expected [(revision, n events)], expected through)
COLLECT_CASES = [
    (5, 8, 1000, [(5, 1), (6, 2), (8, 2)], 8),        # all, b/ filtered, 7 has none
    (6, 8, 1000, [(6, 2), (8, 2)], 8),
    (9, 8, 1000, [], 8),                              # nothing new: progress up to head
    (5, 6, 1000, [(5, 1), (6, 2)], 6),                # read at head 6: later ones unseen
    (5, 8, 1, [(5, 1)], 5),                           # limit at a batch boundary
    (5, 8, 2, [(5, 1)], 5),                           # 6 would exceed 2: not split
    (6, 8, 1, [(6, 2)], 7),                           # a first batch is whole even if big; 7 holds none
    (7, 8, 1, [(8, 2)], 8),
]


@pytest.mark.parametrize(("start", "head", "limit", "batches", "through"), COLLECT_CASES)
def test_collect_makes_whole_revision_batches_and_stops_at_boundaries(
        start: int, head: int, limit: int, batches: list[tuple[int, int]],
        through: int) -> None:
    request = core.watch_request({"group": "g", "prefix": "a/", "limit": limit})
    got = core.collect((e for e in HISTORY if e[0] >= start), start, head, request)
    assert [(b["revision"], len(b["events"])) for b in got.batches] == batches
    assert got.through == through
    assert all("prev_kv" not in e for b in got.batches for e in b["events"])


def test_collect_scan_budget_answers_progress_up_to_what_it_scanned() -> None:
    request = core.watch_request({"group": "g", "prefix": "zzz"})
    got = core.collect(iter(HISTORY), 5, 8, request, max_scan=2)
    assert (got.batches, got.through) == ([], 6)


R = core.Retention(seconds=60, min_revisions=10, max_bytes=1000)
# (head, compact, bytes, now, samples, pins, expected floor)
FLOOR_CASES = [
    (100, 0, 10, 100.0, [(0.0, 50), (50.0, 80)], [], 50),      # older than 60 s: up to 50
    (100, 0, 10, 30.0, [(0.0, 50)], [], 0),                    # nothing that old yet
    (55, 0, 10, 100.0, [(0.0, 50)], [], 45),                   # keep the last 10 revisions
    (100, 0, 10, 100.0, [(0.0, 50)], [31], 30),                # a live watcher at 31
    (100, 60, 10, 100.0, [(0.0, 50)], [], 60),                 # never backwards
    (100, 0, 2000, 100.0, [(0.0, 50)], [31], 62),              # over the byte cap: pins yield
]


@pytest.mark.parametrize(("head", "compact", "size", "now", "samples", "pins", "floor"),
                         FLOOR_CASES)
def test_compaction_floor(head: int, compact: int, size: int, now: float,
                          samples: list[tuple[float, int]], pins: list[int],
                          floor: int) -> None:
    assert core.compaction_floor(head=head, compact=compact, history_bytes=size, now=now,
                                 samples=samples, pins=pins, retention=R) == floor


def test_retention_from_text() -> None:
    retention, interval = core.retention_from("seconds=5,revisions=3,interval=0.5")
    assert (retention.seconds, retention.min_revisions, interval) == (5.0, 3, 0.5)
    assert core.retention_from(None)[0] == core.Retention()
    with pytest.raises(BadRequestError, match="weeks"):
        core.retention_from("weeks=2")
