"""Leases: the keys of an expired lease go, never before the TTL, never later than the
stated bound after the holder stopped keeping it alive, all in one revision; and the
holder's ``safe_until`` never outlives the lease.

The record: ``LeaseRecord``s (JSON lines, ``LeaseRecord.from_dict``), each naming its
``lease`` (and ``group``), with ``start``/``end`` on the harness's **one monotonic clock**
(the harness runs every process on one host, so the client's clock is the checker's):

| kind | fields | meaning |
|---|---|---|
| ``grant`` | ``ttl``, ``start``/``end`` = send/ack, ``status`` | the lease was granted |
| ``keepalive`` | ``start``/``end`` = send/ack, ``status`` | a keepalive (every one sent) |
| ``revoke`` | ``start``/``end``, ``status`` | a revoke |
| ``put`` | ``key``, ``start``/``end``, ``status``, ``revision`` | ``key`` attached to the lease |
| ``observe`` | ``key``, ``present``, ``start``/``end`` = the read's interval, ``revision`` | a linearizable read saw the key present/absent (at store ``revision``, if known) |
| ``deleted`` | ``key``, ``revision``, ``start`` = when seen | a watch delivered the key's deletion at ``revision`` |
| ``safe_until`` | ``safe_until``, ``start`` = when read | the client library's deadline for the lease |

``status`` is ``ok`` / ``fail`` / ``unknown`` as in ``chaos.history``: an unknown keepalive
may have been applied at any moment after it was sent, or never.

``bound`` is the stated bound: seconds after the **acknowledgement** of a lease's last
keepalive (or its grant) by which its keys are deleted — a number, or a function of the
TTL such as ``lambda ttl: hakv.core.leases.expiry_bound(ttl, election_timeout, ...)``.

Rules, per lease, each sound given that a read took effect at one instant inside its
``[start, end]``, that a keepalive was applied inside its ``[send, ack]`` (ok) or after its
send (unknown), and that a lease's TTL runs from no earlier than the apply:

- **never before the TTL**: the lease lives at least until ``E = max(send + ttl)`` over its
  ok grant and keepalives. A key observed *absent* by a read that **ended** before ``E``
  (and started after the key's put was acknowledged, with no revoke sent before the read
  ended) was deleted early.
- **never later than the bound**: the keys are gone by ``D = max(ack) + bound`` over the ok
  grant and keepalives; each unknown keepalive sent before the current ``D`` may have
  applied just before it, so it moves ``D`` on by one more ``bound`` (sound, loose: record
  keepalives as ok whenever you can); an ok revoke's ack caps ``D``. A key observed
  *present* by a read that **started** after ``D`` survived the bound.
- **one revision**: from reads with a ``revision`` (present at R: deleted after R; absent
  at R: deleted at or before R) and ``deleted`` events, each key's deletion revision lies in
  ``(lo, hi]``; the keys of a lease must share one, so ``max lo < min hi`` across them.
- **safe_until**: no ``safe_until`` the client reported is later than the end of a read
  that saw a key of the lease absent (expired, not revoked): the holder believed it held a
  lease that was already gone.

Keep the keys of the lease workload for the lease only: each key put once, never deleted or
overwritten by anything but the lease's expiry or revoke. Every keepalive sent must be
recorded (a missing ok keepalive makes ``D`` too early: a false alarm, never a miss).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from chaos.checkers._records import capped, fmt_time, load_records, opt_float, opt_int
from chaos.history import STATUSES, CheckResult, Status

NAME = "lease"

LeaseKind = Literal["grant", "keepalive", "revoke", "put", "observe", "deleted", "safe_until"]
LEASE_KINDS: frozenset[str] = frozenset(
    ("grant", "keepalive", "revoke", "put", "observe", "deleted", "safe_until"))
Bound = float | Callable[[float], float]


@dataclass(frozen=True)
class LeaseRecord:
    """One recorded lease operation or observation (see the module docstring)."""

    kind: LeaseKind
    lease: int
    start: float
    end: float | None = None
    status: Status = "ok"
    ttl: float | None = None
    key: str | None = None
    present: bool | None = None
    revision: int | None = None
    safe_until: float | None = None
    process: int = 0
    group: str = ""

    def __post_init__(self) -> None:
        if self.kind not in LEASE_KINDS:
            raise ValueError(f"lease record kind must be one of {sorted(LEASE_KINDS)}, "
                             f"not {self.kind!r}")
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {sorted(STATUSES)}, not {self.status!r}")
        if self.status == "ok" and self.kind in ("grant", "keepalive", "revoke", "put",
                                                 "observe") and self.end is None:
            raise ValueError(f"an ok {self.kind} needs its end (ack) time")
        if self.end is not None and self.end < self.start:
            raise ValueError(f"{self.kind} ends ({self.end}) before it starts ({self.start})")
        if self.kind == "grant" and (self.ttl is None or self.ttl <= 0):
            raise ValueError("a grant needs a positive ttl")
        if self.kind in ("put", "observe", "deleted") and self.key is None:
            raise ValueError(f"a {self.kind} record needs a key")
        if self.kind == "observe" and self.present is None:
            raise ValueError("an observe record needs present: true/false")
        if self.kind == "deleted" and self.revision is None:
            raise ValueError("a deleted record needs the deletion's revision")
        if self.kind == "safe_until" and self.safe_until is None:
            raise ValueError("a safe_until record needs the safe_until value")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LeaseRecord:
        present = d.get("present")
        return cls(cast(LeaseKind, d["kind"]), int(d["lease"]), float(d["start"]),
                   opt_float(d.get("end")), cast(Status, d.get("status", "ok")),
                   opt_float(d.get("ttl")), None if d.get("key") is None else str(d["key"]),
                   None if present is None else bool(present), opt_int(d.get("revision")),
                   opt_float(d.get("safe_until")), int(d.get("process", 0)),
                   str(d.get("group", "")))

    def describe(self) -> str:
        what: str = self.kind
        if self.kind == "observe":
            what = f"read {self.key} -> {'present' if self.present else 'absent'}"
        elif self.key is not None:
            what += f" {self.key}"
        if self.kind == "safe_until":
            what += f" {fmt_time(self.safe_until)}"
        rev = f" @{self.revision}" if self.revision is not None else ""
        st = "" if self.kind in ("observe", "deleted", "safe_until") else f" {self.status}"
        return (f"p{self.process} lease {self.lease} {what}{st}{rev} "
                f"[{fmt_time(self.start)}, {fmt_time(self.end)}]")


def load_lease_records(path: str | Path) -> list[LeaseRecord]:
    return load_records(path, LeaseRecord.from_dict)


def _bound_for(bound: Bound, ttl: float) -> float:
    b = bound(ttl) if callable(bound) else float(bound)
    if not b >= ttl:
        raise ValueError(f"the bound ({b} s after the last acknowledged keepalive) is below "
                         f"the TTL ({ttl} s): no lease can meet it")
    return b


def _gone_by(r: LeaseRecord) -> float:
    """When a record proves the key gone: a read's end, a watch event's arrival."""
    return r.start if r.kind == "deleted" else (math.inf if r.end is None else r.end)


def _check_lease(lease: tuple[str, int], recs: list[LeaseRecord], bound: Bound,
                 problems: list[str], notes: list[str]) -> int:
    """Check one lease; returns the number of observations it used."""
    label = f"lease {lease[1]}" + (f" ({lease[0]})" if lease[0] else "")
    grants = [r for r in recs if r.kind == "grant" and r.status == "ok"]
    if not grants:
        notes.append(f"{label}: no acknowledged grant, not checked")
        return 0
    grant = grants[0]
    assert grant.ttl is not None
    ttl = grant.ttl
    b = _bound_for(bound, ttl)
    refresh_ok = [grant] + [r for r in recs if r.kind == "keepalive" and r.status == "ok"]
    unknown = sorted((r for r in recs if r.kind == "keepalive" and r.status == "unknown"),
                     key=lambda r: r.start)
    # earliest legitimate expiry
    floor_by = max(refresh_ok, key=lambda r: r.start)
    earliest = floor_by.start + ttl
    # latest legitimate deletion
    last_ack = max(refresh_ok, key=lambda r: cast(float, r.end))
    assert last_ack.end is not None
    deadline = last_ack.end + b
    extended = 0
    for u in unknown:
        if u.start < deadline:
            deadline += b
            extended += 1
    revokes = [r for r in recs if r.kind == "revoke" and r.status != "fail"]
    revoke_sent = min((r.start for r in revokes), default=math.inf)
    revoke_acked = min((cast(float, r.end) for r in revokes if r.status == "ok"),
                       default=math.inf)
    why_deadline = (f"last acknowledged keepalive {fmt_time(last_ack.end)} + bound {b:g}"
                    + (f", + {extended} x bound for unknown keepalives" if extended else ""))
    if revoke_acked < deadline:
        deadline, why_deadline = revoke_acked, f"revoke acknowledged at {fmt_time(revoke_acked)}"

    puts: dict[str, LeaseRecord] = {}
    for r in recs:
        if r.kind == "put" and r.status != "fail" and r.key is not None:
            puts.setdefault(r.key, r)
    observations = [r for r in recs if r.kind == "observe"]
    # when each key's put was surely applied: its ack, or the first read that saw the key
    applied: dict[str, float] = {}
    for k, p in puts.items():
        applied[k] = p.end if p.status == "ok" and p.end is not None else math.inf
    for o in observations:
        if o.present and o.key in applied and o.end is not None:
            applied[o.key] = min(applied[o.key], o.end)

    lo: dict[str, tuple[int, LeaseRecord]] = {}
    hi: dict[str, tuple[int, LeaseRecord]] = {}
    expired_seen: LeaseRecord | None = None
    used = 0
    for o in observations:
        k = cast(str, o.key)
        if k not in puts:
            problems.append(f"{label}: {o.describe()}: no put attached {k} to the lease")
            continue
        end = o.end if o.end is not None else math.inf
        if o.present:
            used += 1
            if o.start > deadline:
                problems.append(f"{label}: key {k} still present at {fmt_time(o.start)}, "
                                f"after its deletion deadline {fmt_time(deadline)} "
                                f"({why_deadline}): {o.describe()}")
            if o.revision is not None and o.revision > lo.get(k, (-1, o))[0]:
                lo[k] = (o.revision, o)
            continue
        put = puts[k]
        after_put = (o.start > applied[k] or (
            put.status == "ok" and put.revision is not None and o.revision is not None
            and o.revision > put.revision))
        if not after_put:
            continue  # absent may mean: not put yet
        used += 1
        revoked = revoke_sent < end
        if end < earliest and not revoked:
            problems.append(f"{label}: key {k} gone by {fmt_time(end)}, before the TTL "
                            f"could end ({fmt_time(earliest)} = keepalive sent at "
                            f"{fmt_time(floor_by.start)} + ttl {ttl:g}): {o.describe()}")
        if not revoked and (expired_seen is None or end < _gone_by(expired_seen)):
            expired_seen = o
        if o.revision is not None and o.revision < hi.get(k, (math.inf, o))[0]:
            hi[k] = (o.revision, o)
    for d in recs:
        if d.kind == "deleted" and d.key is not None and d.revision is not None:
            if d.key not in puts:
                problems.append(f"{label}: {d.describe()}: no put attached {d.key} to it")
                continue
            used += 1
            # the watch saw the deletion at d.start: it happened no later
            if revoke_sent >= d.start and d.start < earliest:
                problems.append(f"{label}: key {d.key} deleted (seen at "
                                f"{fmt_time(d.start)}) before the TTL could end "
                                f"({fmt_time(earliest)} = keepalive sent at "
                                f"{fmt_time(floor_by.start)} + ttl {ttl:g}): {d.describe()}")
            if revoke_sent >= d.start and (expired_seen is None
                                           or d.start < _gone_by(expired_seen)):
                expired_seen = d
            if d.revision < hi.get(d.key, (math.inf, d))[0]:
                hi[d.key] = (d.revision, d)
            if d.revision - 1 > lo.get(d.key, (-1, d))[0]:
                lo[d.key] = (d.revision - 1, d)
    # one revision for all keys of the lease
    for k in sorted(set(lo) & set(hi)):
        if lo[k][0] >= hi[k][0]:
            problems.append(f"{label}: key {k} present at revision {lo[k][0]} "
                            f"({lo[k][1].describe()}) but deleted by revision {hi[k][0]} "
                            f"({hi[k][1].describe()})")
    if lo and hi:
        k_lo = max(lo, key=lambda k: lo[k][0])
        k_hi = min(hi, key=lambda k: hi[k][0])
        if k_lo != k_hi and lo[k_lo][0] >= hi[k_hi][0]:
            problems.append(f"{label}: keys deleted in different revisions: {k_hi} gone by "
                            f"revision {hi[k_hi][0]} ({hi[k_hi][1].describe()}), {k_lo} "
                            f"still there at revision {lo[k_lo][0]} "
                            f"({lo[k_lo][1].describe()})")
    # the holder's deadline
    if expired_seen is not None:
        gone = _gone_by(expired_seen)
        for s in recs:
            if s.kind == "safe_until" and cast(float, s.safe_until) > gone:
                problems.append(f"{label}: the client reported safe_until "
                                f"{fmt_time(s.safe_until)} (at {fmt_time(s.start)}), but "
                                f"the lease had expired by {fmt_time(gone)}: "
                                f"{expired_seen.describe()}")
                break
    return used


def check_leases(records: Iterable[LeaseRecord], bound: Bound) -> CheckResult:
    """Check every lease in ``records`` against the TTL and the stated ``bound`` (seconds
    after the last acknowledged keepalive, or a function of the TTL); see the module
    docstring for the rules and why each is sound."""
    per_lease: dict[tuple[str, int], list[LeaseRecord]] = {}
    for r in records:
        per_lease.setdefault((r.group, r.lease), []).append(r)
    if not per_lease:
        return CheckResult(NAME, False, "vacuous: no lease recorded", None)
    problems: list[str] = []
    notes: list[str] = []
    used = 0
    for lease in sorted(per_lease):
        used += _check_lease(lease, per_lease[lease], bound, problems, notes)
    summary = f"{len(per_lease)} leases, {used} observations of attached keys"
    if problems:
        return CheckResult(NAME, False, capped(problems) + f"\n({summary})", None)
    if used == 0:
        return CheckResult(NAME, False, f"vacuous: no usable observation ({summary})", None)
    extra = ("; " + "; ".join(notes[:5])) if notes else ""
    return CheckResult(NAME, True, summary + extra, None)
