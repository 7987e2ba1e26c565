"""Fencing: lock tokens only grow, and a register guarded by them never lets an older
holder's write in after a newer holder's.

The record (JSON lines; ``load_fencing_history`` reads a file holding both kinds):

- ``Grant(lock, holder, token, invoke, complete)``: ``holder`` acquired ``lock`` with
  fencing ``token``; ``[invoke, complete]`` is the acquire call (it took effect inside).
  Only acknowledged grants are recorded.
- ``FencedWrite(lock, holder, token, invoke, complete, status, seq, value)``: a write the
  holder made to the register the lock guards, carrying its token; ``status`` is
  ``accepted`` (the register took it), ``rejected`` (the register refused the token) or
  ``unknown`` (no answer). ``seq`` is the register's own order of accepted writes when it
  has one (for a hakv key: the revision of the write), else ``None``.

Per lock:

- **tokens grow**: no token granted twice, and a grant acknowledged before another was
  invoked has the smaller token (grants that overlap in time may come in either order);
- **no stale token accepted**: accepted writes, in the register's order, never go back to
  a smaller token. The order is ``seq`` when both writes have one, else real time (write
  ``b`` surely precedes ``a`` when ``b`` completed before ``a`` was invoked). Reported as
  **critical sections overlap** when the older holder had an accepted write before the
  newer one's too (its section A … B … A straddles the newer one), else as a **stale
  token accepted**. Rejected writes are what fencing is for and never count; unknown ones
  cannot be placed and are left out;
- **only granted tokens**: an accepted write carries a token granted on this lock, by its
  own holder, and was not accepted before that grant was even invoked.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from chaos.checkers._records import (
    MAX_LISTED,
    capped,
    fmt_time,
    load_records,
    opt_float,
    opt_int,
)
from chaos.history import CheckResult

NAME = "fencing"

WriteStatus = Literal["accepted", "rejected", "unknown"]
WRITE_STATUSES: frozenset[str] = frozenset(("accepted", "rejected", "unknown"))


@dataclass(frozen=True)
class Grant:
    """An acknowledged lock grant with its fencing token."""

    lock: str
    holder: str
    token: int
    invoke: float
    complete: float
    kind: Literal["grant"] = "grant"

    def __post_init__(self) -> None:
        if self.complete < self.invoke:
            raise ValueError(f"grant completes ({self.complete}) before it is invoked "
                             f"({self.invoke})")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Grant:
        return cls(str(d["lock"]), str(d["holder"]), int(d["token"]), float(d["invoke"]),
                   float(d["complete"]))

    def describe(self) -> str:
        return (f"grant {self.lock} token {self.token} to {self.holder} "
                f"[{fmt_time(self.invoke)}, {fmt_time(self.complete)}]")


@dataclass(frozen=True)
class FencedWrite:
    """A holder's write to the guarded register, with the token it carried."""

    lock: str
    holder: str
    token: int
    invoke: float
    complete: float | None
    status: WriteStatus
    seq: int | None = None
    value: object = None
    kind: Literal["write"] = "write"

    def __post_init__(self) -> None:
        if self.status not in WRITE_STATUSES:
            raise ValueError(f"write status must be one of {sorted(WRITE_STATUSES)}, "
                             f"not {self.status!r}")
        if self.status != "unknown" and self.complete is None:
            raise ValueError(f"an {self.status} write needs its completion time")
        if self.complete is not None and self.complete < self.invoke:
            raise ValueError(f"write completes ({self.complete}) before it is invoked "
                             f"({self.invoke})")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FencedWrite:
        return cls(str(d["lock"]), str(d["holder"]), int(d["token"]), float(d["invoke"]),
                   opt_float(d.get("complete")), cast(WriteStatus, d["status"]),
                   opt_int(d.get("seq")), d.get("value"))

    @property
    def end(self) -> float:
        """When the register had surely taken it (+inf while unanswered)."""
        return math.inf if self.complete is None else self.complete

    def describe(self) -> str:
        seq = f" seq {self.seq}" if self.seq is not None else ""
        val = f" {self.value!r}" if self.value is not None else ""
        return (f"write{val} by {self.holder} token {self.token} -> {self.status}{seq} "
                f"[{fmt_time(self.invoke)}, {fmt_time(self.complete)}]")


def load_fencing_history(path: str | Path) -> tuple[list[Grant], list[FencedWrite]]:
    rows = load_records(path, lambda d: d)
    grants = [Grant.from_dict(d) for d in rows if d.get("kind") == "grant"]
    writes = [FencedWrite.from_dict(d) for d in rows if d.get("kind") != "grant"]
    return grants, writes


def _check_grants(lock: str, grants: list[Grant], problems: list[str]) -> None:
    by_token: dict[int, Grant] = {}
    for g in grants:
        other = by_token.get(g.token)
        if other is not None:
            problems.append(f"lock {lock}: token {g.token} granted twice: "
                            f"{other.describe()} and {g.describe()}")
        else:
            by_token[g.token] = g
    # real time: the highest token among grants acknowledged before each invocation
    done = sorted(grants, key=lambda g: g.complete)
    times = [g.complete for g in done]
    best: list[Grant] = []
    for g in done:
        best.append(g if not best or g.token > best[-1].token else best[-1])
    for g in sorted(grants, key=lambda g: g.invoke):
        i = bisect.bisect_left(times, g.invoke)
        if i and best[i - 1].token >= g.token:
            problems.append(f"lock {lock}: token not increasing: {g.describe()} was invoked "
                            f"after {best[i - 1].describe()} was acknowledged")


def _surely_before(b: FencedWrite, a: FencedWrite) -> bool:
    """Did the register take ``b`` before ``a`` (both accepted)?"""
    if a.seq is not None and b.seq is not None:
        return b.seq < a.seq
    return b.complete is not None and b.complete < a.invoke


def _check_writes(lock: str, grants: list[Grant], writes: list[FencedWrite],
                  problems: list[str]) -> int:
    granted = {g.token: g for g in grants}
    accepted = [w for w in writes if w.status == "accepted"]
    for w in accepted:
        g = granted.get(w.token)
        if g is None:
            problems.append(f"lock {lock}: accepted a token never granted: {w.describe()}")
        elif g.holder != w.holder:
            problems.append(f"lock {lock}: {w.holder} wrote with {g.holder}'s token: "
                            f"{w.describe()} ({g.describe()})")
        elif w.complete is not None and w.complete < g.invoke:
            problems.append(f"lock {lock}: write accepted before its token was granted: "
                            f"{w.describe()} ({g.describe()})")
    seqs: dict[int, FencedWrite] = {}
    for w in accepted:
        if w.seq is not None:
            if w.seq in seqs:
                problems.append(f"lock {lock}: two accepted writes at seq {w.seq}: "
                                f"{seqs[w.seq].describe()} and {w.describe()}")
            seqs[w.seq] = w
    # a stale write a: some accepted b with a larger token surely before it. Sweep in the
    # register's order (seq when every accepted write has one, else real time), keeping
    # the largest token accepted so far.
    exact = all(w.seq is not None for w in accepted)
    first: dict[int, FencedWrite] = {}  # per token, its earliest accepted write
    for w in sorted(accepted, key=lambda w: cast(int, w.seq) if exact else w.end):
        first.setdefault(w.token, w)
    if exact:
        order = sorted(accepted, key=lambda w: cast(int, w.seq))
        keys: list[float] = [cast(int, w.seq) for w in order]
    else:
        order = sorted(accepted, key=lambda w: w.end)
        keys = [w.end for w in order]
    best: list[FencedWrite] = []
    for w in order:
        best.append(w if not best or w.token > best[-1].token else best[-1])
    found = 0
    for a in sorted(accepted, key=lambda w: cast(int, w.seq) if exact else w.invoke):
        i = bisect.bisect_left(keys, cast(int, a.seq) if exact else a.invoke)
        if not i or best[i - 1].token <= a.token:
            continue
        newer = best[i - 1]
        found += 1
        if found > MAX_LISTED:
            continue
        older = first[a.token]
        if older is not a and _surely_before(older, newer):
            problems.append(f"lock {lock}: critical sections overlap: token {a.token} "
                            f"wrote before and after token {newer.token}: "
                            f"{older.describe()}, then {newer.describe()}, then "
                            f"{a.describe()}")
        else:
            problems.append(f"lock {lock}: stale token accepted: {a.describe()} after "
                            f"{newer.describe()}")
    if found > MAX_LISTED:
        problems.append(f"lock {lock}: ... and {found - MAX_LISTED} more stale writes accepted")
    return len(accepted)


def check_fencing(grants: Iterable[Grant], writes: Iterable[FencedWrite]) -> CheckResult:
    """Check token monotonicity per lock and that the guarded register never accepted a
    smaller token after a larger one (see the module docstring)."""
    per_lock: dict[str, tuple[list[Grant], list[FencedWrite]]] = {}
    for g in grants:
        per_lock.setdefault(g.lock, ([], []))[0].append(g)
    for w in writes:
        per_lock.setdefault(w.lock, ([], []))[1].append(w)
    if not per_lock:
        return CheckResult(NAME, False, "vacuous: no grant and no write recorded", None)
    problems: list[str] = []
    n_grants = n_accepted = 0
    for lock in sorted(per_lock):
        gs, ws = per_lock[lock]
        n_grants += len(gs)
        _check_grants(lock, gs, problems)
        n_accepted += _check_writes(lock, gs, ws, problems)
    summary = f"{len(per_lock)} locks, {n_grants} grants, {n_accepted} accepted writes"
    if problems:
        return CheckResult(NAME, False, capped(problems) + f"\n({summary})", None)
    if n_grants == 0:
        return CheckResult(NAME, False, f"vacuous: no grant recorded ({summary})", None)
    return CheckResult(NAME, True, summary, None)
