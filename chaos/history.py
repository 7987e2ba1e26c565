"""Operation histories of a chaos run, and the result type the checkers return.

A chaos workload is a set of client *processes* (one integer id each) issuing operations
against the cluster. Every operation is recorded twice on one monotonic clock: when it is
invoked and when it completes. Its outcome is one of

- ``"ok"``: the cluster acknowledged it; ``output`` holds what it answered;
- ``"fail"``: it definitely did not take effect (e.g. rejected before being proposed);
- ``"unknown"``: timed out or was cut off; it may have taken effect at any moment after its
  invocation, or never. Checkers treat its completion time as +infinity whatever
  ``complete`` says (the recorder keeps the time the client gave up, for plots).

This module is pure data: no sockets, no processes. ``Recorder`` is the only part with
state shared between threads; its clock is an argument so tests can drive it by hand.

A history is stored as JSON lines, one operation per line (see ``History.dump``).
"""

from __future__ import annotations

import itertools
import json
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

Status = Literal["ok", "fail", "unknown"]
STATUSES: frozenset[str] = frozenset(("ok", "fail", "unknown"))


@dataclass(frozen=True)
class Operation:
    """One client operation with its invocation and completion.

    ``process`` is the client id; ``kind`` e.g. ``read``, ``write``, ``cas``, ``delete``,
    ``add``, ``append``, ``read_list``; ``group``/``key`` name the register or collection
    (each group has its own keyspace). ``input``/``output`` are per kind (see the checkers).
    ``complete`` is ``None`` when the operation never completed.
    """

    process: int
    kind: str
    key: str
    group: str
    input: object
    output: object
    invoke: float
    complete: float | None
    status: Status

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"operation status must be one of {sorted(STATUSES)}, "
                             f"not {self.status!r}")
        if self.status == "ok" and self.complete is None:
            raise ValueError("an 'ok' operation needs a completion time")
        if self.complete is not None and self.complete < self.invoke:
            raise ValueError(f"operation completes ({self.complete}) before it is "
                             f"invoked ({self.invoke})")

    @property
    def end(self) -> float:
        """Latest moment the operation may take effect: +inf unless it is ``ok``/``fail``."""
        if self.status == "unknown" or self.complete is None:
            return math.inf
        return self.complete

    @property
    def latency(self) -> float:
        """Observed duration; +inf for an operation that never completed."""
        if self.complete is None:
            return math.inf
        return self.complete - self.invoke

    @property
    def register(self) -> tuple[str, str]:
        """The ``(group, key)`` the operation addresses."""
        return (self.group, self.key)

    def describe(self) -> str:
        """One line for reports: ``p3 write 7 -> ok [1.200000, 1.350000] 220/k1``."""
        end = "…" if self.complete is None else f"{self.complete:.6f}"
        if self.status != "ok" or self.kind in ("write", "delete", "add", "append"):
            res = self.status if self.output is None else f"{self.status} {self.output!r}"
        else:
            res = f"{self.output!r} (ok)"
        inp = "" if self.input is None else f" {self.input!r}"
        return (f"p{self.process} {self.kind}{inp} -> {res} "
                f"[{self.invoke:.6f}, {end}] {self.group}/{self.key}")


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one checker. ``details`` starts with ``inconclusive:`` when the checker
    ran out of budget (then ``ok`` is False, so a run never passes unchecked)."""

    name: str
    ok: bool
    details: str
    counterexample: list[Operation] | None = None

    @property
    def inconclusive(self) -> bool:
        return self.details.startswith("inconclusive:")


# --- JSON encoding ---------------------------------------------------------------------
# Tuples are tagged so that a dump/load round trip gives back equal operations (a cas input
# is a tuple (expected, new)); lists and dicts pass through as JSON arrays/objects.

_TUPLE_TAG = "__tuple__"


def _encode(value: object) -> Any:
    if isinstance(value, tuple):
        return {_TUPLE_TAG: [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"cannot encode non-finite float {value!r}")
    return value


def _decode(value: Any) -> object:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict):
        if len(value) == 1 and _TUPLE_TAG in value:
            return tuple(_decode(v) for v in value[_TUPLE_TAG])
        return {k: _decode(v) for k, v in value.items()}
    return value


def operation_to_json(op: Operation) -> str:
    d = asdict(op)
    d["input"] = _encode(op.input)
    d["output"] = _encode(op.output)
    return json.dumps(d, sort_keys=True, allow_nan=False)


def operation_from_json(line: str) -> Operation:
    d = json.loads(line)
    complete = d.get("complete")
    return Operation(
        process=int(d["process"]),
        kind=str(d["kind"]),
        key=str(d["key"]),
        group=str(d["group"]),
        input=_decode(d.get("input")),
        output=_decode(d.get("output")),
        invoke=float(d["invoke"]),
        complete=None if complete is None else float(complete),
        status=cast(Status, d["status"]),
    )


@dataclass
class History:
    """An ordered list of operations (the recorder orders them by invocation)."""

    ops: list[Operation] = field(default_factory=list)

    def append(self, op: Operation) -> None:
        self.ops.append(op)

    def extend(self, ops: Iterable[Operation]) -> None:
        self.ops.extend(ops)

    def __iter__(self) -> Iterator[Operation]:
        return iter(self.ops)

    def __len__(self) -> int:
        return len(self.ops)

    def by_key(self) -> dict[tuple[str, str], list[Operation]]:
        """Operations per ``(group, key)``, in history order (keyspaces are per group)."""
        return partition_by_key(self.ops)

    def by_group(self) -> dict[str, list[Operation]]:
        out: dict[str, list[Operation]] = {}
        for op in self.ops:
            out.setdefault(op.group, []).append(op)
        return out

    def dump(self, path: str | Path) -> None:
        """Write one JSON object per line (keys: process, kind, key, group, input, output,
        invoke, complete, status). Tuples are written as ``{"__tuple__": [...]}``."""
        with open(path, "w", encoding="utf-8") as f:
            for op in self.ops:
                f.write(operation_to_json(op))
                f.write("\n")

    @classmethod
    def load(cls, path: str | Path) -> History:
        ops: list[Operation] = []
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                try:
                    ops.append(operation_from_json(line))
                except (ValueError, KeyError, TypeError) as e:
                    raise ValueError(f"{path}:{lineno}: bad operation: {e}") from e
        return cls(ops)


def partition_by_key(ops: Iterable[Operation]) -> dict[tuple[str, str], list[Operation]]:
    out: dict[tuple[str, str], list[Operation]] = {}
    for op in ops:
        out.setdefault((op.group, op.key), []).append(op)
    return out


@dataclass
class _Pending:
    process: int
    kind: str
    group: str
    key: str
    input: object
    invoke: float


class Recorder:
    """Thread-safe recorder of invocations and completions on one clock.

    >>> rec = Recorder()
    >>> tok = rec.invoke(1, "write", "220", "k", 5)
    >>> rec.complete(tok, "ok", None)
    >>> [op.status for op in rec.history()]
    ['ok']

    Operations invoked but never completed appear as ``unknown`` (``complete=None``).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._next = itertools.count()
        self._pending: dict[int, _Pending] = {}
        self._done: dict[int, Operation] = {}

    def now(self) -> float:
        return self._clock()

    def invoke(self, process: int, kind: str, group: str, key: str, input: object) -> int:
        """Record an invocation now; returns the token to pass to ``complete``."""
        with self._lock:
            token = next(self._next)
            # read the clock under the lock so invocation times follow token order
            self._pending[token] = _Pending(process, kind, group, key, input, self._clock())
        return token

    def complete(self, token: int, status: Status, output: object = None) -> Operation:
        """Record the completion of ``token`` now and return the finished operation."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {sorted(STATUSES)}, not {status!r}")
        with self._lock:
            p = self._pending.pop(token, None)
            if p is None:
                if token in self._done:
                    raise ValueError(f"operation {token} already completed")
                raise ValueError(f"unknown operation token {token}")
            op = Operation(process=p.process, kind=p.kind, key=p.key, group=p.group,
                           input=p.input, output=output, invoke=p.invoke,
                           complete=self._clock(), status=status)
            self._done[token] = op
        return op

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def history(self) -> History:
        """Snapshot in invocation order; still-pending operations appear as ``unknown``."""
        with self._lock:
            items: list[tuple[int, Operation]] = list(self._done.items())
            for token, p in self._pending.items():
                items.append((token, Operation(
                    process=p.process, kind=p.kind, key=p.key, group=p.group, input=p.input,
                    output=None, invoke=p.invoke, complete=None, status="unknown")))
        items.sort(key=lambda t: t[0])
        return History([op for _, op in items])


def aggregate(name: str, results: Sequence[CheckResult]) -> CheckResult:
    """Combine per-key (or per-group) results: ok only if all are ok. A violation wins over
    an inconclusive result in the details; the first failing counterexample is kept."""
    bad = [r for r in results if not r.ok]
    if not bad:
        shown = [r.details for r in results[:10]]
        if len(results) > 10:
            shown.append(f"... and {len(results) - 10} more")
        return CheckResult(name, True, f"{len(results)} checked, all ok\n" + "\n".join(shown),
                           None)
    violations = [r for r in bad if not r.inconclusive]
    first = violations[0] if violations else bad[0]
    lines = [r.details for r in (violations or bad)]
    if violations:
        head = f"{len(violations)} of {len(results)} violated"
        if len(violations) < len(bad):
            head += f", {len(bad) - len(violations)} inconclusive"
    else:
        head = f"inconclusive: {len(bad)} of {len(results)} not decided within budget"
    return CheckResult(name, False, head + "\n" + "\n".join(lines), first.counterexample)
