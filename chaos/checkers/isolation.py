"""Group isolation (invariant I6): a fault in some groups has no effect on a group that
shares no node with them.

For every operation on a group *not* in ``affected_groups``:

- it must be ``ok`` — a ``fail`` or ``unknown`` (timeout) is a visible effect. The workload
  must therefore record an expected negative answer (a compare that did not match, a key not
  found) as ``ok`` with that answer as output, and use ``fail`` only for errors;
- if it overlaps a fault window (invoked before the window ends and completed after it
  starts), its latency must be at most ``max_latency`` seconds (no stall, e.g. no election).

Fault windows are ``(start, end)`` on the history's clock. With no operations at all on
unaffected groups the check is vacuous and fails (``require_ops=False`` accepts it).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

from chaos.history import CheckResult, Operation

NAME = "group-isolation"
_MAX_LISTED = 20


def check_untouched(ops: Iterable[Operation], affected_groups: Collection[str],
                    fault_windows: Sequence[tuple[float, float]], max_latency: float, *,
                    require_ops: bool = True) -> CheckResult:
    affected = {str(g) for g in affected_groups}
    windows = sorted((float(s), float(e)) for s, e in fault_windows)
    for s, e in windows:
        if e < s:
            raise ValueError(f"fault window ends before it starts: ({s}, {e})")
    checked = [op for op in ops if op.group not in affected]
    if not checked:
        return CheckResult(NAME, not require_ops,
                           ("vacuous: " if require_ops else "")
                           + "no operations on groups outside the faults", None)
    bad: list[Operation] = []
    problems: list[str] = []
    n_in_window = 0
    for op in checked:
        reason = None
        if op.status != "ok":
            reason = f"{op.status} on an unaffected group"
        overlapping = [(s, e) for s, e in windows if op.invoke <= e and op.end >= s]
        if overlapping:
            n_in_window += 1
            if reason is None and op.latency > max_latency:
                s, e = overlapping[0]
                reason = (f"took {op.latency:.3f}s > {max_latency:.3f}s during the fault "
                          f"window [{s:.3f}, {e:.3f}]")
        if reason is not None:
            bad.append(op)
            if len(problems) < _MAX_LISTED:
                problems.append(f"{reason}: {op.describe()}")
    groups = sorted({op.group for op in checked})
    summary = (f"{len(checked)} operations on unaffected groups {groups}, "
               f"{n_in_window} during faults")
    if bad:
        more = f"\n(+{len(bad) - len(problems)} more)" if len(bad) > len(problems) else ""
        return CheckResult(NAME, False,
                           f"{len(bad)} operations affected ({summary}):\n"
                           + "\n".join(problems) + more, bad)
    return CheckResult(NAME, True, summary, None)
