"""Watches: every acknowledged write of a watched prefix is delivered exactly once, in
revision order, one whole revision per batch, across disconnects and resumptions.

Two recordings, both JSON lines (``WatchWrite.from_dict`` / ``WatchRecord.from_dict``;
``load_watch_history`` reads a file holding both, told apart by ``kind``):

- the **writers' history**: one ``WatchWrite`` per write — its changes (put key=value /
  delete key), its outcome (``ok`` / ``fail`` / ``unknown``, as in ``chaos.history``) and,
  when ok, the ``revision`` the server answered. A txn changing several keys is one write
  with several changes; an ok write that changed nothing (a delete of an absent key) has
  no changes. **Put values must be unique** (e.g. ``"p3-17"``): an event of a write whose
  outcome is unknown is recognised by what it changed.
- each **watcher's stream**, in the order the application saw it: ``WatchRecord``s of kind
  ``start`` (the watch (re)starts at ``revision`` = its cursor, the first revision wanted;
  with ``snapshot=True`` it resynced from a snapshot at ``revision`` and continues after
  it), ``batch`` (``revision`` and its ``events``), ``progress`` (an empty batch: nothing
  for this watch up to ``revision`` = the answer's head_revision), ``disconnect``,
  ``compacted`` (``CompactedError``: ``revision`` = compact_revision, ``head_revision``)
  and ``end`` (the watcher drained through ``revision``: it claims everything up to it).

Per group, with each watcher's coverage ``[first start, end]`` (without an ``end`` record:
through its last batch or progress, and the details say so):

- **no gap**: every ok write with a change under the prefix whose revision is in the
  coverage is delivered (a skipped revision; a resume from past the cursor);
- **exactly once**: no revision delivered twice (a duplicate after resume; a resume at or
  below a revision already delivered is reported even before it duplicates anything);
- **revision order**: batches in strictly increasing revision;
- **whole revisions**: a batch's events all have ``mod_revision`` = its revision (never
  merged) and are all of that revision's changes under the prefix (never split);
- **no phantom**: every batch is explained by an ok write at that revision or by a write
  of unknown outcome with exactly those changes; never by a failed write; an unknown write
  appears at one revision at most (across all watchers) and after every write that was
  acknowledged before it was invoked; watchers agree on what each revision holds;
- **progress never overtakes**: after a progress notification at P no batch at a revision
  ≤ P arrives, and progress revisions never go below a delivered batch (etcd#15220);
- **compaction is real**: ``compacted`` only when the watcher's cursor is ≤ compact_revision;
  the revisions it then lost, and those a snapshot resync covers, are not expected;
- **the writers' revisions** are unique and follow real time (a write acknowledged before
  another was invoked has the smaller revision);
- put events are self-consistent (version 1 iff created at this revision).

The watcher's true cursor may move past its last batch silently (an empty answer without
progress); the checker's cursor is a lower bound, so every rule above is sound with it.
Deletions the server makes on its own (lease expiry) are not writes: keep them out of the
watched prefix, or add them to the writers' history as ok writes.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from chaos.checkers._records import capped, fmt_time, load_records, opt_float, opt_int
from chaos.history import STATUSES, CheckResult, Status

NAME = "watch"

EventType = Literal["put", "delete"]
RecordKind = Literal["start", "batch", "progress", "disconnect", "compacted", "end"]
RECORD_KINDS: frozenset[str] = frozenset(
    ("start", "batch", "progress", "disconnect", "compacted", "end"))
_WITH_REVISION = frozenset(("start", "batch", "progress", "compacted", "end"))

Sig = tuple[tuple[str, str, str | None], ...]


@dataclass(frozen=True)
class Change:
    """One key a write changed: ``put`` key=value, or ``delete`` key (value None)."""

    type: EventType
    key: str
    value: str | None = None

    def __post_init__(self) -> None:
        if self.type not in ("put", "delete"):
            raise ValueError(f"change type must be put or delete, not {self.type!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Change:
        return cls(cast(EventType, d["type"]), str(d["key"]),
                   None if d.get("value") is None else str(d["value"]))


@dataclass(frozen=True)
class WatchWrite:
    """One write of the writers' history: ``changes``, ``status`` (``ok``: acknowledged at
    ``revision``; ``fail``: never applied; ``unknown``: maybe, at an unknown revision),
    ``invoke``/``complete`` on the harness's one monotonic clock."""

    process: int
    changes: tuple[Change, ...]
    status: Status
    revision: int | None
    invoke: float
    complete: float | None
    group: str = ""
    kind: Literal["write"] = "write"

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"write status must be one of {sorted(STATUSES)}, "
                             f"not {self.status!r}")
        if self.status == "ok" and self.changes and self.revision is None:
            raise ValueError("an ok write with changes needs its revision")
        if self.status == "ok" and self.complete is None:
            raise ValueError("an ok write needs a completion time")

    @classmethod
    def put(cls, process: int, key: str, value: str, revision: int | None, invoke: float,
            complete: float | None, status: Status = "ok", group: str = "") -> WatchWrite:
        return cls(process, (Change("put", key, value),), status, revision, invoke, complete,
                   group)

    @classmethod
    def delete(cls, process: int, key: str, revision: int | None, invoke: float,
               complete: float | None, status: Status = "ok", group: str = "") -> WatchWrite:
        return cls(process, (Change("delete", key),), status, revision, invoke, complete,
                   group)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WatchWrite:
        return cls(int(d["process"]), tuple(Change.from_dict(c) for c in d["changes"]),
                   cast(Status, d["status"]), opt_int(d.get("revision")), float(d["invoke"]),
                   opt_float(d.get("complete")), str(d.get("group", "")))

    @property
    def end(self) -> float:
        return math.inf if self.status != "ok" or self.complete is None else self.complete

    def under(self, prefix: str) -> Sig:
        return _sig(c for c in self.changes if c.key.startswith(prefix))

    def describe(self) -> str:
        what = ", ".join(f"{c.type} {c.key}" + (f"={c.value}" if c.type == "put" else "")
                         for c in self.changes) or "no change"
        rev = f" @{self.revision}" if self.revision is not None else ""
        return (f"p{self.process} [{what}] -> {self.status}{rev} "
                f"[{fmt_time(self.invoke)}, {fmt_time(self.complete)}]")


@dataclass(frozen=True)
class WatchEvent:
    """One event of a batch, as the server sent it (delete: value None, create/version 0)."""

    type: EventType
    key: str
    value: str | None
    mod_revision: int
    create_revision: int = 0
    version: int = 0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WatchEvent:
        return cls(cast(EventType, d["type"]), str(d["key"]),
                   None if d.get("value") is None else str(d["value"]), int(d["mod_revision"]),
                   int(d.get("create_revision", 0)), int(d.get("version", 0)))


@dataclass(frozen=True)
class WatchRecord:
    """One thing a watcher saw, in order (see the module docstring for each ``kind``)."""

    watcher: str
    kind: RecordKind
    time: float
    revision: int | None = None
    events: tuple[WatchEvent, ...] = ()
    prefix: str = ""
    group: str = ""
    snapshot: bool = False
    head_revision: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in RECORD_KINDS:
            raise ValueError(f"watch record kind must be one of {sorted(RECORD_KINDS)}, "
                             f"not {self.kind!r}")
        if self.kind in _WITH_REVISION and self.revision is None:
            raise ValueError(f"a {self.kind} record needs a revision")
        if self.events and self.kind != "batch":
            raise ValueError(f"a {self.kind} record has no events")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WatchRecord:
        return cls(str(d["watcher"]), cast(RecordKind, d["kind"]), float(d["time"]),
                   opt_int(d.get("revision")),
                   tuple(WatchEvent.from_dict(e) for e in d.get("events") or ()),
                   str(d.get("prefix", "")), str(d.get("group", "")),
                   bool(d.get("snapshot", False)), opt_int(d.get("head_revision")))

    def where(self) -> str:
        return f"watcher {self.watcher} at {fmt_time(self.time)}"


def _sig(changes: Iterable[Change | WatchEvent]) -> Sig:
    return tuple(sorted((c.type, c.key, c.value if c.type == "put" else None)
                        for c in changes))


def _show(sig: Sig) -> str:
    return "[" + ", ".join(f"{t} {k}" + (f"={v}" if t == "put" else "")
                           for t, k, v in sig) + "]"


def _contains(big: Sig, small: Sig) -> bool:
    rest = list(big)
    for x in small:
        if x not in rest:
            return False
        rest.remove(x)
    return True


def load_watch_history(path: str | Path) -> tuple[list[WatchWrite], list[WatchRecord]]:
    """Read a JSON-lines file of writes (``kind: write``) and watcher records."""
    rows = load_records(path, lambda d: d)
    writes: list[WatchWrite] = []
    records: list[WatchRecord] = []
    for i, d in enumerate(rows, 1):
        try:
            if d.get("kind") == "write":
                writes.append(WatchWrite.from_dict(d))
            else:
                records.append(WatchRecord.from_dict(d))
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: record {i}: {e}") from e
    return writes, records


# --- the writers' side ------------------------------------------------------------------


@dataclass
class _Writes:
    """The writers' history of one group, indexed for the watchers' checks."""

    ok_at: dict[int, WatchWrite] = field(default_factory=dict)
    unknown: list[WatchWrite] = field(default_factory=list)
    failed: list[WatchWrite] = field(default_factory=list)
    by_complete: list[WatchWrite] = field(default_factory=list)
    complete_times: list[float] = field(default_factory=list)
    max_rev_prefix: list[tuple[int, WatchWrite | None]] = field(default_factory=list)
    assigned: dict[int, int] = field(default_factory=dict)  # id(unknown write) -> revision
    at_rev: dict[int, WatchWrite] = field(default_factory=dict)  # revision -> unknown write

    @classmethod
    def build(cls, writes: Sequence[WatchWrite], problems: list[str], group: str) -> _Writes:
        w = cls()
        for x in writes:
            if x.status == "ok" and x.revision is not None and x.changes:
                other = w.ok_at.get(x.revision)
                if other is not None:
                    problems.append(f"group {group}: two acknowledged writes claim revision "
                                    f"{x.revision}: {other.describe()} and {x.describe()}")
                    continue
                w.ok_at[x.revision] = x
            elif x.status == "unknown":
                w.unknown.append(x)
            elif x.status == "fail":
                w.failed.append(x)
        w.by_complete = sorted(w.ok_at.values(), key=lambda x: x.end)
        w.complete_times = [x.end for x in w.by_complete]
        best: tuple[int, WatchWrite | None] = (0, None)
        for x in w.by_complete:
            assert x.revision is not None
            if x.revision > best[0]:
                best = (x.revision, x)
            w.max_rev_prefix.append(best)
        # revisions follow real time: acknowledged before invoked => smaller revision
        for x in sorted(w.ok_at.values(), key=lambda x: x.invoke):
            rev, before = w.latest_before(x.invoke)
            assert x.revision is not None
            if before is not None and rev >= x.revision:
                problems.append(f"group {group}: revision order contradicts real time: "
                                f"{before.describe()} was acknowledged before "
                                f"{x.describe()} was invoked")
        return w

    def latest_before(self, t: float) -> tuple[int, WatchWrite | None]:
        """The highest revision among ok writes acknowledged strictly before ``t``."""
        i = bisect.bisect_left(self.complete_times, t)
        return self.max_rev_prefix[i - 1] if i else (0, None)


# --- one watcher ------------------------------------------------------------------------


@dataclass
class _Stream:
    watcher: str
    group: str
    prefix: str
    begin: int
    last: int = 0  # highest revision delivered
    progress: int = 0  # highest progress revision
    progress_rec: WatchRecord | None = None
    delivered: dict[int, WatchRecord] = field(default_factory=dict)
    exempt: list[tuple[int, int]] = field(default_factory=list)
    resumes: list[tuple[WatchRecord, int]] = field(default_factory=list)  # (start, cursor)
    through: int | None = None

    @property
    def cursor(self) -> int:
        """A lower bound of the watcher's cursor: the first revision it may still need."""
        return max(self.begin, self.last + 1, self.progress + 1)


class _WatchChecker:
    def __init__(self, writes: Sequence[WatchWrite]) -> None:
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.per_group: dict[str, _Writes] = {}
        groups: dict[str, list[WatchWrite]] = {}
        for x in writes:
            groups.setdefault(x.group, []).append(x)
        for g in sorted(groups):
            self.per_group[g] = _Writes.build(groups[g], self.problems, g)
        self.seen: dict[tuple[str, int], tuple[Sig, str, str]] = {}
        self.expected_total = 0
        self.delivered_total = 0

    def writes(self, group: str) -> _Writes:
        if group not in self.per_group:
            self.per_group[group] = _Writes.build([], self.problems, group)
        return self.per_group[group]

    def bad(self, msg: str) -> None:
        self.problems.append(msg)

    # --- the stream ---------------------------------------------------------------------

    def stream(self, watcher: str, records: Sequence[WatchRecord]) -> None:
        if records[0].kind != "start":
            self.bad(f"watcher {watcher}: its first record is a {records[0].kind}, not a "
                     "start (the checker needs the first revision it asked for)")
            return
        first = records[0]
        assert first.revision is not None
        s = _Stream(watcher, first.group, first.prefix,
                    first.revision + 1 if first.snapshot else first.revision)
        prev: WatchRecord | None = None
        for rec in records:
            if rec.kind == "start" and rec is not first:
                self.resume(s, rec)
            elif rec.kind == "batch" and not rec.events:
                self.progress(s, rec)  # an empty batch is a progress notification
            elif rec.kind == "batch":
                self.batch(s, rec, prev)
            elif rec.kind == "progress":
                self.progress(s, rec)
            elif rec.kind == "compacted":
                self.compacted(s, rec)
            elif rec.kind == "end":
                assert rec.revision is not None
                s.through = rec.revision
            prev = rec
        self.coverage(s)

    def resume(self, s: _Stream, rec: WatchRecord) -> None:
        assert rec.revision is not None
        if rec.group != s.group or rec.prefix != s.prefix:
            self.bad(f"{rec.where()}: resumed on {_label(rec.group, rec.prefix)}, the watch "
                     f"was on {_label(s.group, s.prefix)}")
        cursor = s.cursor
        if rec.snapshot:
            if rec.revision < s.last:
                self.bad(f"{rec.where()}: resynced from a snapshot at revision "
                         f"{rec.revision}, below revision {s.last} it already delivered")
            if rec.revision >= cursor:
                s.exempt.append((cursor, rec.revision))  # the snapshot stands for them
            s.begin = max(s.begin, rec.revision + 1)
        elif rec.revision <= s.last:
            self.bad(f"{rec.where()}: resumed from revision {rec.revision}, but revision "
                     f"{s.last} was already delivered (cursor {s.last + 1}): it would "
                     "deliver it again")
        s.resumes.append((rec, cursor))

    def progress(self, s: _Stream, rec: WatchRecord) -> None:
        assert rec.revision is not None
        if rec.revision < s.last:
            self.bad(f"{rec.where()}: progress notification at revision {rec.revision} "
                     f"after an event at revision {s.last} was delivered (the watch's "
                     "revision went backwards)")
        if rec.revision > s.progress:
            s.progress, s.progress_rec = rec.revision, rec

    def compacted(self, s: _Stream, rec: WatchRecord) -> None:
        assert rec.revision is not None
        cursor = s.cursor
        if cursor > rec.revision:
            self.bad(f"{rec.where()}: CompactedError(compact_revision={rec.revision}) "
                     f"although the watcher needed only revisions >= {cursor}")
        else:
            s.exempt.append((cursor, rec.revision))  # the watcher was told it lost them
            self.notes.append(f"watcher {s.watcher}: compacted at {rec.revision}, lost "
                              f"{cursor}..{rec.revision}")

    def batch(self, s: _Stream, rec: WatchRecord, prev: WatchRecord | None) -> None:
        r = rec.revision
        assert r is not None
        w = self.writes(s.group)
        where = rec.where()
        # order, duplicates, splits, progress overtaken
        if r in s.delivered:
            first = s.delivered[r]
            if (prev is first and prev.revision == r
                    and not set(_sig(prev.events)) & set(_sig(rec.events))):
                self.bad(f"{where}: revision {r} split across batches: "
                         f"{_show(_sig(first.events))} then {_show(_sig(rec.events))}")
            else:
                after = [res for res, _ in s.resumes if first.time <= res.time <= rec.time]
                why = (f" after the resume at {fmt_time(after[-1].time)} from revision "
                       f"{after[-1].revision}" if after else "")
                self.bad(f"{where}: revision {r} delivered twice (first at "
                         f"{fmt_time(first.time)}){why}")
            return
        if r < s.last:
            self.bad(f"{where}: revision {r} delivered after revision {s.last} (out of "
                     "revision order)")
        if r <= s.progress and s.progress_rec is not None:
            self.bad(f"{where}: event at revision {r} arrived after a progress "
                     f"notification at revision {s.progress} "
                     f"({fmt_time(s.progress_rec.time)}): progress overtook an event "
                     "(etcd#15220 class)")
        if r < s.begin:
            self.bad(f"{where}: revision {r} is before the watch's start {s.begin}")
        s.delivered[r] = rec
        s.last = max(s.last, r)
        self.delivered_total += 1
        # event shape
        own: list[WatchEvent] = []
        for e in rec.events:
            if not e.key.startswith(s.prefix):
                self.bad(f"{where}: event {e.type} {e.key} is outside the watched prefix "
                         f"{s.prefix!r}")
            if e.mod_revision != r:
                self.bad(f"{where}: batch {r} merges an event of revision {e.mod_revision} "
                         f"({e.type} {e.key}): one batch is one revision")
                s.delivered.setdefault(e.mod_revision, rec)
                continue
            if e.type == "put" and (e.version < 1 or e.create_revision > e.mod_revision
                                    or (e.version == 1) != (e.create_revision == r)):
                self.bad(f"{where}: put {e.key} at {r} has create_revision "
                         f"{e.create_revision}, version {e.version}: inconsistent")
            own.append(e)
        got = _sig(own)
        if not got:
            return
        # agreement between watchers, on the keys both watch
        key = (s.group, r)
        if key not in self.seen:
            self.seen[key] = (got, s.watcher, s.prefix)
        else:
            other, who, their = self.seen[key]
            both = _narrower(s.prefix, their)
            if both is not None and _under(got, both) != _under(other, both):
                self.bad(f"{where}: revision {r} holds {_show(got)}, watcher {who} saw "
                         f"{_show(other)}")
        # explanation by the writers' history
        ok = w.ok_at.get(r)
        if ok is not None:
            want = ok.under(s.prefix)
            if got == want:
                return
            if _contains(want, got):
                self.bad(f"{where}: batch {r} holds {len(got)} of the {len(want)} events "
                         f"of that revision (split): {_show(got)} of {_show(want)}")
                return
            self.bad(f"{where}: batch {r} holds {_show(got)}, but the write acknowledged "
                     f"at {r} is {ok.describe()} (phantom events)")
            return
        self.explain_unknown(s, rec, got, w)

    def explain_unknown(self, s: _Stream, rec: WatchRecord, got: Sig, w: _Writes) -> None:
        r = rec.revision
        assert r is not None
        where = rec.where()
        held = w.at_rev.get(r)
        if held is not None and held.under(s.prefix) == got:
            return
        candidates = [u for u in w.unknown if u.under(s.prefix) == got]
        free = [u for u in candidates if id(u) not in w.assigned]
        fits = [u for u in free if w.latest_before(u.invoke)[0] < r]
        if fits:
            u = min(fits, key=lambda u: u.invoke)
            w.assigned[id(u)] = r
            w.at_rev[r] = u
            return
        if free:
            u = free[0]
            _, before = w.latest_before(u.invoke)
            assert before is not None
            self.bad(f"{where}: revision {r} applies {u.describe()} before "
                     f"{before.describe()}, which was acknowledged before it was invoked")
            w.assigned[id(u)] = r
            return
        if candidates:
            u = candidates[0]
            self.bad(f"{where}: {u.describe()} (outcome unknown) appears at revision {r} "
                     f"and at revision {w.assigned[id(u)]}: applied twice")
            return
        if any(f.under(s.prefix) == got for f in w.failed):
            f = next(f for f in w.failed if f.under(s.prefix) == got)
            self.bad(f"{where}: revision {r} holds {_show(got)} of a failed write "
                     f"{f.describe()}")
            return
        if any(_contains(u.under(s.prefix), got) for u in w.unknown):
            u = next(u for u in w.unknown if _contains(u.under(s.prefix), got))
            self.bad(f"{where}: batch {r} holds {len(got)} of the changes of "
                     f"{u.describe()} (split revision)")
            return
        self.bad(f"{where}: revision {r} holds {_show(got)}, which no write explains "
                 "(phantom event)")

    def coverage(self, s: _Stream) -> None:
        w = self.writes(s.group)
        through = s.through
        if through is None:
            through = max(s.last, s.progress)
            self.notes.append(f"watcher {s.watcher}: no end record, checked through its "
                              f"last batch or progress ({through})")
        first_start = s.begin
        for r in sorted(w.ok_at):
            if r < first_start or r > through or not w.ok_at[r].under(s.prefix):
                continue
            if any(lo <= r <= hi for lo, hi in s.exempt):
                continue
            self.expected_total += 1
            if r in s.delivered:
                continue
            why = ""
            for res, cursor in s.resumes:
                assert res.revision is not None
                if cursor <= r < res.revision and not res.snapshot:
                    why = (f": skipped by the resume at {fmt_time(res.time)} from revision "
                           f"{res.revision} (cursor was {cursor})")
            if not why and r <= s.progress and s.progress_rec is not None:
                why = (f": a progress notification at {s.progress} "
                       f"({fmt_time(s.progress_rec.time)}) claimed nothing up to it")
            self.bad(f"watcher {s.watcher} ({_label(s.group, s.prefix)}, {first_start}.."
                     f"{through}): acknowledged write at revision {r} never delivered "
                     f"{w.ok_at[r].describe()}{why}")


def _label(group: str, prefix: str) -> str:
    return f"group {group} prefix {prefix!r}" if group else f"prefix {prefix!r}"


def _under(sig: Sig, prefix: str) -> Sig:
    return tuple(x for x in sig if x[1].startswith(prefix))


def _narrower(a: str, b: str) -> str | None:
    """The prefix whose keys both ``a`` and ``b`` watch, None if they share none."""
    if a.startswith(b):
        return a
    if b.startswith(a):
        return b
    return None


def check_watch(writes: Iterable[WatchWrite], watchers: Iterable[WatchRecord]) -> CheckResult:
    """Check every watcher's stream against the writers' history (see the module
    docstring for the rules). ``watchers`` holds the records of all watchers; each
    watcher's own records must be in the order it saw them."""
    checker = _WatchChecker(list(writes))
    streams: dict[str, list[WatchRecord]] = {}
    for rec in watchers:
        streams.setdefault(rec.watcher, []).append(rec)
    if not streams:
        return CheckResult(NAME, False, "vacuous: no watcher recorded anything", None)
    for watcher in sorted(streams):
        checker.stream(watcher, streams[watcher])
    summary = (f"{len(streams)} watchers, {checker.delivered_total} batches, "
               f"{checker.expected_total} expected deliveries")
    if checker.problems:
        return CheckResult(NAME, False, capped(checker.problems) + "\n(" + summary + ")",
                           None)
    if checker.expected_total == 0:
        return CheckResult(NAME, False, "vacuous: no acknowledged write under any watched "
                           "prefix within a watcher's coverage (" + summary + ")", None)
    notes = "; ".join(checker.notes[:5])
    return CheckResult(NAME, True, summary + (f"; {notes}" if notes else ""), None)
