"""Single runner: at most one instance of a group's app runs at any instant, and fencing
tokens never go backwards.

HA test apps append a heartbeat line ``time node group token`` to a shared file every few
hundred milliseconds while they run (``time`` on the clock all nodes of the test share).
From the beats of one group:

- **tokens**: in time order, a beat never carries a smaller token than an earlier beat (a
  stale runner that wakes up from a pause and beats with its old token is caught here);
- **overlap**: each ``(node, token)`` is one placement, running at least from its first to
  its last beat. Two placements of a group whose intervals overlap (closed intervals: even
  one shared instant) ran at the same time — reported with both.

A heartbeat app only proves it ran at the instants it beat; a runner that stops beating and
keeps running unseen is outside what this checker can see. Beat often (well under the
lease) so a real overlap leaves beats on both sides.

``check_final_placement`` (checker ``ha-placement``) looks at the end of a run, after
every fault was healed: each group's placement record says ``running`` on one node with
token T, that node's supervisor is the only one with an app process, and the beats of a
final window come from that node and token only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos.history import CheckResult

NAME = "single-runner"
PLACEMENT_NAME = "ha-placement"
_MAX_LISTED = 20


@dataclass(frozen=True)
class Heartbeat:
    node: str
    group: str
    token: int
    time: float


@dataclass(frozen=True)
class _Run:
    node: str
    token: int
    first: float
    last: float
    beats: int

    def describe(self) -> str:
        return (f"node {self.node} token {self.token} [{self.first:.6f}, {self.last:.6f}] "
                f"({self.beats} beats)")


def parse_heartbeat_file(path: str | Path) -> list[Heartbeat]:
    """Parse lines ``time node group token``; blank lines and ``#`` comments are skipped.

    A malformed *last* line without a newline is ignored (the writer was killed mid-write);
    any other malformed line is an error naming the line.
    """
    text = Path(path).read_text(encoding="utf-8")
    lines = text.split("\n")
    out: list[Heartbeat] = []
    for lineno, line in enumerate(lines, 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        parts = s.split()
        try:
            if len(parts) != 4:
                raise ValueError(f"expected 4 fields 'time node group token', got {len(parts)}")
            out.append(Heartbeat(node=parts[1], group=parts[2], token=int(parts[3]),
                                 time=float(parts[0])))
        except ValueError as e:
            if lineno == len(lines):  # no trailing newline: torn final write
                break
            raise ValueError(f"{path}:{lineno}: bad heartbeat line {line!r}: {e}") from e
    return out


def _runs(beats: list[Heartbeat]) -> list[_Run]:
    spans: dict[tuple[str, int], list[float]] = {}
    for b in beats:
        s = spans.get((b.node, b.token))
        if s is None:
            spans[(b.node, b.token)] = [b.time, b.time, 1.0]
        else:
            s[0] = min(s[0], b.time)
            s[1] = max(s[1], b.time)
            s[2] += 1
    runs = [_Run(node, token, s[0], s[1], int(s[2])) for (node, token), s in spans.items()]
    runs.sort(key=lambda r: (r.first, r.last, r.node, r.token))
    return runs


def _check_group(group: str, beats: list[Heartbeat]) -> tuple[list[str], list[_Run]]:
    problems: list[str] = []
    beats = sorted(beats, key=lambda b: b.time)
    # tokens never go backwards
    hi: Heartbeat | None = None
    for b in beats:
        if hi is not None and b.token < hi.token:
            problems.append(f"group {group}: token went backwards: node {b.node} beat token "
                            f"{b.token} at {b.time:.6f} after node {hi.node} beat token "
                            f"{hi.token} at {hi.time:.6f}")
            if len(problems) >= _MAX_LISTED:
                break
        if hi is None or b.token > hi.token:
            hi = b
    # overlapping runs: sweep by start, compare with every run still open
    runs = _runs(beats)
    open_runs: list[_Run] = []
    n_overlaps = 0
    for r in runs:
        open_runs = [o for o in open_runs if o.last >= r.first]
        for o in open_runs:
            n_overlaps += 1
            if n_overlaps <= _MAX_LISTED:
                what = "two nodes ran at once" if o.node != r.node else "two tokens on one node"
                problems.append(f"group {group}: {what}: {o.describe()} overlaps "
                                f"{r.describe()}")
        open_runs.append(r)
    return problems, runs


def check_heartbeats(records: Iterable[Heartbeat]) -> CheckResult:
    """Check single runner and fencing-token monotonicity for every group in ``records``."""
    per_group: dict[str, list[Heartbeat]] = {}
    for b in records:
        per_group.setdefault(b.group, []).append(b)
    if not per_group:
        return CheckResult(NAME, False, "vacuous: no heartbeats recorded", None)
    problems: list[str] = []
    summary: list[str] = []
    for group in sorted(per_group):
        p, runs = _check_group(group, per_group[group])
        problems.extend(p)
        summary.append(f"{group}: {len(per_group[group])} beats, {len(runs)} placements")
    if problems:
        return CheckResult(NAME, False, "\n".join(problems), None)
    return CheckResult(NAME, True, "; ".join(summary), None)


def placements(records: Iterable[Heartbeat]) -> dict[str, list[tuple[str, int, float, float, int]]]:
    """Per group, each placement seen in the beats: (node, token, first beat, last beat,
    beats), by first beat."""
    per_group: dict[str, list[Heartbeat]] = {}
    for b in records:
        per_group.setdefault(b.group, []).append(b)
    return {g: [(r.node, r.token, r.first, r.last, r.beats) for r in _runs(beats)]
            for g, beats in sorted(per_group.items())}


@dataclass
class FinalPlacement:
    """What the harness saw of one group at the end of a run (after healing).

    ``record``: the placement record (linearizable read) at the end of the window, None if
    unreadable; ``local``: each running owner's supervisor view (``state``, ``token``,
    ``pid`` of the app's keeper; None: the owner did not answer); ``window``: wall-clock
    [start, end] during which only the runner may beat."""

    group: str
    record: Mapping[str, Any] | None
    local: Mapping[str, Mapping[str, Any] | None] = field(default_factory=dict)
    window: tuple[float, float] = (0.0, 0.0)
    note: str = ""


def check_final_placement(finals: Iterable[FinalPlacement],
                          records: Iterable[Heartbeat]) -> CheckResult:
    """After the run, each group's app runs on exactly one node: the one its placement
    record names (state running), under the record's token; no other owner's supervisor
    holds an app process; every beat of the final window is that node's and token's."""
    beats = list(records)
    problems: list[str] = []
    summary: list[str] = []
    finals = list(finals)
    if not finals:
        return CheckResult(PLACEMENT_NAME, False, "vacuous: no group with an app", None)
    for f in finals:
        g = f.group
        if f.record is None:
            problems.append(f"group {g}: placement record not readable at the end "
                            f"(no quorum?){' — ' + f.note if f.note else ''}")
            continue
        node, state, token = f.record.get("node"), f.record.get("state"), f.record.get("token")
        if state != "running" or not node:
            problems.append(f"group {g}: placement record says {state!r} on {node!r} "
                            f"(token {token}), not running{' — ' + f.note if f.note else ''}")
            continue
        holders = sorted(n for n, v in f.local.items() if v and v.get("pid") is not None)
        silent = sorted(n for n, v in f.local.items() if v is None)
        if holders != [node]:
            problems.append(f"group {g}: the record names {node} (token {token}), but the "
                            f"owners running an app process are {holders or 'none'}")
        elif (f.local.get(node) or {}).get("token") != token:
            problems.append(f"group {g}: {node} runs token "
                            f"{(f.local.get(node) or {}).get('token')}, the record says {token}")
        if silent:
            problems.append(f"group {g}: owner(s) {', '.join(silent)} did not answer: cannot "
                            "tell whether they run the app")
        lo, hi = f.window
        seen = {(b.node, b.token) for b in beats if b.group == g and lo <= b.time <= hi}
        if not seen:
            problems.append(f"group {g}: no heartbeat in the final window "
                            f"({hi - lo:.2f}s): the app does not run")
        elif seen != {(node, token)}:
            problems.append(f"group {g}: beats in the final window came from "
                            f"{sorted(seen)}, not only from ({node!r}, {token})")
        else:
            summary.append(f"{g}: running on {node} (token {token}), the only owner with an "
                           f"app, and the only one beating over the final {hi - lo:.1f}s")
    if problems:
        return CheckResult(PLACEMENT_NAME, False, "\n".join(problems), None)
    return CheckResult(PLACEMENT_NAME, True, "; ".join(summary), None)
