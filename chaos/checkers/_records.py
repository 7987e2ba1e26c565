"""JSON-lines plumbing shared by the coordination checkers (watch, lease, fencing).

Each of their records is a flat frozen dataclass; a stored history is one JSON object per
line (``dump_records`` / ``load_records``), blank lines and ``#`` comments skipped, a bad
line an error naming it — as ``chaos.history.History``. Nested values (a write's changes, a
batch's events) are lists of objects; the record classes rebuild them in ``from_dict``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

MAX_LISTED = 20
"""Violations listed per checker before the rest is only counted."""


def to_json(record: object) -> str:
    """One record as a JSON line (keys sorted, no NaN/inf: a missing time is null)."""
    if not is_dataclass(record) or isinstance(record, type):
        raise TypeError(f"not a record: {record!r}")
    return json.dumps(asdict(record), sort_keys=True, allow_nan=False)


def dump_records(path: str | Path, records: Iterable[object]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(to_json(rec))
            f.write("\n")


def load_records(path: str | Path, parse: Callable[[dict[str, Any]], T]) -> list[T]:
    out: list[T] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                d = json.loads(line)
                if not isinstance(d, dict):
                    raise ValueError("not a JSON object")
                out.append(parse(d))
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"{path}:{lineno}: bad record: {e}") from e
    return out


def opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def fmt_time(t: float | None) -> str:
    if t is None or math.isinf(t):
        return "…"
    return f"{t:.6f}"


def capped(problems: Sequence[str], total: int | None = None) -> str:
    """The first ``MAX_LISTED`` problems, one a line, and how many more."""
    n = len(problems) if total is None else total
    lines = list(problems[:MAX_LISTED])
    if n > len(lines):
        lines.append(f"... and {n - len(lines)} more")
    return "\n".join(lines)
