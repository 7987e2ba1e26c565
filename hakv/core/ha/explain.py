"""Why a group's app runs where it runs, and where it would go next, in plain words
(``hakv explain placement G``). The caller gathers the facts (:class:`PlacementFacts`)
from a node's answer; the only clock read is turning record times into ``HH:MM:SS``.
"""

from __future__ import annotations

import time as _time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hakv.core.ha.record import Placement
from hakv.core.ha.spec import AppSpec, HaTuning
from hakv.core.quorum import majority

__all__ = ["PlacementFacts", "explain_placement"]


def _clock(ts: float) -> str:
    if not ts:
        return "-"
    return _time.strftime("%H:%M:%S", _time.localtime(ts)) + f".{int(ts * 1000) % 1000:03d}"


@dataclass(frozen=True)
class PlacementFacts:
    """Everything :func:`explain_placement` says, gathered by the caller."""

    group: str
    owners: tuple[str, ...]
    placement: Placement
    statuses: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    quorum: bool | None = None
    leader: str | None = None
    app: AppSpec | None = None
    fallback: str = "stay"
    fallback_window: str | None = None
    tuning: HaTuning = HaTuning()


def _state_of(facts: PlacementFacts, node: str) -> str:
    record = facts.statuses.get(node) or {}
    status = record.get("status") or {}
    return str(status.get("state") or "unknown")


def explain_placement(facts: PlacementFacts) -> str:
    """Why the app runs where it runs, and where it would go next, in plain words."""
    p = facts.placement
    g = facts.group
    lines: list[str] = []
    if facts.app is None:
        lines.append(f"Group {g} has no app: nothing to place.")
    elif p.state == "none":
        lines.append(f"Group {g}'s app has not been placed yet.")
    elif p.node is None:
        lines.append(f"Group {g}'s app runs nowhere: {p.state} since {_clock(p.time)}.")
    else:
        verb = {"running": "runs on", "starting": "is starting on", "stopping": "is stopping on",
                "stopped": "was stopped on", "failed": "failed on",
                "suspended": "was suspended on"}.get(p.state, "is on")
        lines.append(f"Group {g}'s app {verb} {p.node} (state {p.state}, fencing token "
                     f"{p.token}) since {_clock(p.time)}.")
    if p.reason:
        lines.append(f"Why: {p.reason}.")
    owner_words = []
    for o in facts.owners:
        state = _state_of(facts, o)
        extra = ""
        if o == p.node and p.holds_lease:
            extra = ", runs the app"
        if o in p.failed_on:
            extra += ", app failed here (skipped until `hakv group cleanup`)"
        owner_words.append(f"{o} ({state}{extra})")
    lines.append(f"Owners by precedence: {', '.join(owner_words)}.")
    up = [o for o in facts.owners if _state_of(facts, o) != "down"]
    need = majority(len(facts.owners))
    if facts.quorum is False:
        lines.append(f"Quorum: NO ({need} of {len(facts.owners)} owners needed): the group "
                     "refuses writes and its app is stopped by lease expiry; it resumes on "
                     "its own when enough owners return (patent Fig. 4, step 412).")
    else:
        lines.append(f"Quorum: {len(up)} of {len(facts.owners)} owners up as recorded, "
                     f"{need} needed"
                     + (f"; leader {facts.leader}." if facts.leader else "."))
    if facts.app is not None:
        if p.maintenance:
            lines.append("Maintenance: ON. hakv neither starts, stops, checks nor moves the "
                         "app (leases and self-fencing still apply); `hakv group maintenance "
                         f"{g} off` resumes management.")
        live = frozenset(o for o in facts.owners if _state_of(facts, o) != "down")
        if p.node is not None and p.holds_lease:
            nxt = [o for o in facts.owners
                   if o in live and o != p.node and o not in p.failed_on]
            if nxt:
                lines.append(f"Next: if {p.node} fails, the app restarts on {nxt[0]} (the "
                             "next live owner by precedence) once the lease of "
                             f"{p.node} has surely expired "
                             f"({facts.tuning.takeover_wait:.2f}s after its last renewal).")
            else:
                lines.append(f"Next: if {p.node} fails, no other live owner can take the "
                             "app.")
        if p.target:
            lines.append(f"A move to {p.target} is requested.")
        if facts.fallback == "return":
            when = (f" (only between {facts.fallback_window.replace('-', ' and ')})"
                    if facts.fallback_window else "")
            lines.append(f"Fallback: return. When {facts.owners[0]} (highest precedence) is "
                         f"up again, the app moves back to it{when}.")
        else:
            lines.append("Fallback: stay. The app stays where it runs when a higher-precedence "
                         "owner returns; `hakv group move` moves it.")
        if p.failed_on:
            lines.append(f"Failed on: {', '.join(p.failed_on)}.")
    return "\n".join(lines)
