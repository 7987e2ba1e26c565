"""Lost writes: every acknowledged add/append is in the final read after healing.

Workloads (one collection per ``(group, key)``):

- set-add: ``add`` operations with the element in ``input``;
- list-append: ``append`` operations with the element in ``input``.

Elements must be unique per attempt (e.g. ``"p3-17"``); a client that retries one logical
write with the same request id may record several attempts with the same element.

After the faults are healed the workload reads every collection once more; that *final read*
is given as ``final_reads`` (``{(group, key): [elements...]}``, ``None`` = key absent = empty)
or, if omitted, taken from the history: the last ``ok`` ``read_list``/``read_set`` per key.

``ok`` adds must be present; ``unknown`` ones may or may not be; ``fail`` ones must not be;
an element nobody tried to add is a *phantom*. ``check_append_order`` also requires that no
element appears twice (a double apply breaks exactly-once) and that the list order respects
real time: if append x was acknowledged before append y was invoked, x comes first — in
particular each client's acknowledged appends appear in the order it issued them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from chaos.checkers.linearizable import freeze
from chaos.history import CheckResult, Operation, aggregate, partition_by_key

FINAL_READ_KINDS = frozenset(("read_list", "read_set"))
FinalReads = Mapping[tuple[str, str], Sequence[object] | None]

_MAX_LISTED = 20


def final_reads_from(ops: Iterable[Operation],
                     kinds: Iterable[str] = FINAL_READ_KINDS) -> dict[tuple[str, str], list[object]]:
    """The last ``ok`` read (by completion) of each collection in ``ops``."""
    wanted = frozenset(kinds)
    best: dict[tuple[str, str], Operation] = {}
    for op in ops:
        if op.kind in wanted and op.status == "ok":
            cur = best.get(op.register)
            if cur is None or op.end >= cur.end:
                best[op.register] = op
    out: dict[tuple[str, str], list[object]] = {}
    for reg, op in best.items():
        out[reg] = [] if op.output is None else list(_as_seq(op.output, op))
    return out


def _as_seq(value: object, op: Operation) -> Sequence[object]:
    if isinstance(value, list | tuple):
        return value
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    raise ValueError(f"final read output must be a list, got {value!r}: {op.describe()}")


@dataclass
class _Attempts:
    """All attempts to add one element."""

    ops: list[Operation] = field(default_factory=list)

    @property
    def acked(self) -> bool:
        return any(op.status == "ok" for op in self.ops)

    @property
    def maybe(self) -> bool:
        return any(op.status != "fail" for op in self.ops)

    @property
    def start(self) -> float:
        """Earliest moment it may have taken effect."""
        return min(op.invoke for op in self.ops if op.status != "fail")

    @property
    def end(self) -> float:
        """Latest moment it must have taken effect by (+inf when never acknowledged)."""
        return min((op.end for op in self.ops if op.status == "ok"), default=math.inf)

    def first(self) -> Operation:
        ok = [op for op in self.ops if op.status == "ok"]
        return (ok or self.ops)[0]


def _listing(items: Sequence[object]) -> str:
    shown = ", ".join(repr(x) for x in items[:_MAX_LISTED])
    more = f" (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
    return f"[{shown}]{more}"


def _check_collection(name: str, kind: str, reg: tuple[str, str], adds: list[Operation],
                      final: Sequence[object] | None, have_final: bool,
                      ordered: bool) -> CheckResult:
    label = f"{reg[0]}/{reg[1]}"
    attempts: dict[object, _Attempts] = {}
    for op in adds:
        attempts.setdefault(freeze(op.input), _Attempts()).ops.append(op)
    n_acked = sum(1 for a in attempts.values() if a.acked)
    if not have_final:
        if n_acked:
            return CheckResult(name, False,
                               f"{label}: no final read, {n_acked} acknowledged {kind}s "
                               f"unverified", [a.first() for a in attempts.values() if a.acked])
        return CheckResult(name, True, f"{label}: nothing acknowledged, no final read", None)

    read = [] if final is None else list(final)
    frozen = [freeze(x) for x in read]
    counts: dict[object, int] = {}
    position: dict[object, int] = {}
    for i, x in enumerate(frozen):
        counts[x] = counts.get(x, 0) + 1
        position.setdefault(x, i)

    problems: list[str] = []
    cex: list[Operation] = []
    lost = [e for e, a in attempts.items() if a.acked and e not in counts]
    if lost:
        problems.append(f"{len(lost)} acknowledged {kind}s lost: {_listing(lost)}")
        cex.extend(attempts[e].first() for e in lost)
    phantoms = [x for x in counts if x not in attempts]
    if phantoms:
        problems.append(f"{len(phantoms)} phantom elements never attempted: "
                        f"{_listing(phantoms)}")
    failed = [x for x in counts if x in attempts and not attempts[x].maybe]
    if failed:
        problems.append(f"{len(failed)} elements of failed {kind}s present: {_listing(failed)}")
        cex.extend(attempts[e].first() for e in failed)
    if ordered:
        dups = [x for x, c in counts.items() if c > 1]
        if dups:
            problems.append(f"{len(dups)} elements appear more than once (applied twice): "
                            + _listing([f"{x!r} x{counts[x]}" for x in dups]))
            cex.extend(attempts[e].first() for e in dups if e in attempts)
        problems.extend(_order_violations(frozen, position, attempts, kind, cex))

    unknown = [e for e, a in attempts.items() if a.maybe and not a.acked]
    n_unknown_present = sum(1 for e in unknown if e in counts)
    summary = (f"{len(read)} elements read, {n_acked} acknowledged {kind}s, "
               f"{len(unknown)} unknown ({n_unknown_present} present)")
    if problems:
        return CheckResult(name, False, f"{label}: " + "; ".join(problems) + f" ({summary})",
                           cex)
    return CheckResult(name, True, f"{label}: ok ({summary})", None)


def _order_violations(frozen: list[object], position: dict[object, int],
                      attempts: dict[object, _Attempts], kind: str,
                      cex: list[Operation]) -> list[str]:
    """x acknowledged before y was invoked, yet y precedes x in the list."""
    # walk the list backwards keeping the element with the earliest acknowledgement seen
    found: list[str] = []
    min_end = math.inf
    witness: object = None
    for i in range(len(frozen) - 1, -1, -1):
        y = frozen[i]
        if position[y] != i or y not in attempts or not attempts[y].maybe:
            continue
        ay = attempts[y]
        if min_end < ay.start:
            ax = attempts[witness]
            opx, opy = ax.first(), ay.first()
            who = (f"client {opx.process}'s {kind}s out of issue order"
                   if opx.process == opy.process else "real-time order violated")
            found.append(f"{who}: {y!r} (invoked {ay.start:.6f}) precedes {witness!r} "
                         f"(acknowledged {ax.end:.6f})")
            cex.extend((opy, opx))
            if len(found) >= _MAX_LISTED:
                break
        if ay.end < min_end:
            min_end = ay.end
            witness = y
    return found


def _check(name: str, kind: str, ops: Iterable[Operation], final_reads: FinalReads | None,
           ordered: bool) -> CheckResult:
    ops = list(ops)
    if final_reads is None:
        final_reads = final_reads_from(ops)
    adds = partition_by_key(op for op in ops if op.kind == kind)
    regs = sorted(set(adds) | set(final_reads))
    results = [
        _check_collection(name, kind, reg, adds.get(reg, []), final_reads.get(reg),
                          reg in final_reads, ordered)
        for reg in regs
    ]
    if not results:
        return CheckResult(name, False, f"vacuous: no {kind} operations and no final reads",
                           None)
    return aggregate(name, results)


def check_sets(ops: Iterable[Operation], final_reads: FinalReads | None = None) -> CheckResult:
    """Set-add workload: no acknowledged ``add`` lost, no phantom, no failed add present."""
    return _check("lost-writes-set", "add", ops, final_reads, ordered=False)


def check_append_order(ops: Iterable[Operation],
                       final_reads: FinalReads | None = None) -> CheckResult:
    """List-append workload: as ``check_sets`` for ``append``, plus exactly once (no
    duplicates) and real-time order (per client: issue order) of the final list."""
    return _check("lost-writes-append", "append", ops, final_reads, ordered=True)
