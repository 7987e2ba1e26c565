"""Decisions: what a group's leader does next (patent Fig. 4, per group).

:func:`decide` places by precedence, waits for a lease, stops for a move or a fallback, or
does nothing; :func:`node_marks` says which owners to mark down or up;
:func:`handover_target` where the group's Raft leadership should go. The caller (the HA
manager, hakv.node.manager, and the failure explanation, hakv.core.explain) builds the
:class:`GroupView`; only a leader with quorum decides, so quorum is the caller's check.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from hakv.core.ha.lease import lease_expiry
from hakv.core.ha.record import Placement
from hakv.core.ha.spec import HaTuning

__all__ = ["Decision", "GroupView", "candidates", "decide", "handover_target", "node_marks"]


@dataclass(frozen=True)
class GroupView:
    """What the group's leader knows when it decides (all times on its monotonic clock).

    ``live``: owners that answered its probes within the failure timeout (itself
    included); ``unknown``: owners it has not heard from yet and not given up on (it took
    over less than a failure timeout ago); ``stable``: live owners that have been live for
    at least a failure timeout (fallback waits for those). ``lease_seen_at``: when it first
    saw the record's current (token, renewals). ``in_window``: the fallback window allows
    moving now."""

    owners: tuple[str, ...]
    placement: Placement
    live: frozenset[str]
    lease_seen_at: float
    unknown: frozenset[str] = frozenset()
    stable: frozenset[str] | None = None
    fallback: str = "stay"
    in_window: bool = True
    has_app: bool = True


@dataclass(frozen=True)
class Decision:
    """``none``: nothing to do; ``wait``: nothing until ``until`` (or news); ``place``: try
    ``candidates`` in order (the first that gets its capacity wins); ``unplace``: record
    that no owner can run it (``state``); ``stop``: ask the runner to stop (a move)."""

    action: str
    reason: str = ""
    candidates: tuple[str, ...] = ()
    until: float | None = None
    state: str | None = None


def candidates(view: GroupView) -> tuple[str, ...]:
    """Owners that may run the app now, best first: a requested move target, then the
    live owners by precedence, without those where it failed beyond its restart limit."""
    p = view.placement
    ok = [o for o in view.owners if o in view.live and o not in p.failed_on]
    if p.target in ok:
        ok.remove(p.target)
        ok.insert(0, p.target)
    return tuple(ok)


def _waiting_for_unknown(view: GroupView, chosen: str) -> list[str]:
    """Owners of higher precedence than ``chosen`` the leader has not heard from yet."""
    if view.placement.target == chosen:
        return []
    before = view.owners[: view.owners.index(chosen)]
    return [o for o in before if o in view.unknown and o not in view.placement.failed_on]


def _place_or_unplace(view: GroupView, reason: str, now: float,
                      avoid: str | None = None, urgent: bool = False,
                      last: str | None = None) -> Decision:
    """Place by precedence. Owners the leader has not heard from yet are waited for (for
    at most a failure timeout after it took over) so that an app starts on the owner it
    prefers; not when ``urgent`` (a failover: the app is down now). ``avoid`` is left out
    unless it is the only candidate; ``last`` is tried after every other candidate."""
    if urgent:
        view = replace(view, unknown=frozenset())
    order = candidates(view)
    p = view.placement
    if avoid is not None and avoid in order and len(order) > 1 and p.target != avoid:
        order = tuple(o for o in order if o != avoid)  # it just gave the app up
    if last is not None and last in order:
        order = tuple(o for o in order if o != last) + (last,)
    if not order:
        if view.unknown:
            return Decision("wait", f"{reason}; waiting to hear from "
                            f"{', '.join(sorted(view.unknown))}", until=None)
        down = [o for o in view.owners if o not in view.live]
        why = f"{reason}; no owner can run it (down: {', '.join(down) or 'none'}"
        why += f"; failed on: {', '.join(p.failed_on)})" if p.failed_on else ")"
        if p.node is None and p.state == "failed":
            return Decision("none", why)
        return Decision("unplace", why, state="failed")
    pending = _waiting_for_unknown(view, order[0])
    if pending:
        return Decision("wait", f"{reason}; waiting to hear from {', '.join(pending)} "
                        f"(higher precedence than {order[0]})")
    return Decision("place", reason, candidates=order)


def decide(view: GroupView, now: float, tuning: HaTuning) -> Decision:
    """What the group's leader does now (patent Fig. 4, per group). See docs/ha.md."""
    p = view.placement
    if not view.has_app:
        return Decision("none", "the group has no app")
    if p.maintenance:
        return Decision("none", "maintenance: the group's app is not managed")
    if p.state == "none":
        return _place_or_unplace(view, "initial placement on the highest-precedence live "
                                 "owner", now)
    if not p.holds_lease:
        # The runner reported its app stopped (or nobody runs it): no lease to wait for.
        if p.state == "stopped":
            if p.target is not None:
                why = f"move to {p.target} requested"
            else:
                why = f"{p.node} stopped the app ({p.reason})" if p.reason else "stopped"
        elif p.state == "failed" and p.node is not None:
            return _place_or_unplace(view, f"the app failed on {p.node} ({p.reason}); failing "
                                     "over to the next live owner by precedence", now,
                                     urgent=True)
        elif p.state == "suspended":
            why = "resuming after the group's suspension"
        else:
            why = "placing again"
        return _place_or_unplace(view, why, now,
                                 avoid=p.node if p.state == "stopped" else None)
    expiry = lease_expiry(view.lease_seen_at, tuning)
    runner = p.node
    assert runner is not None  # holds_lease
    if now >= expiry:
        silent = now - view.lease_seen_at
        cause = "unreachable" if runner not in view.live else "not renewing"
        # A runner that still looks live but let its lease lapse goes last: most often it
        # just died and its failure is not detected yet (the lease can run out first).
        return _place_or_unplace(view, f"lease of {runner} expired: no renewal for "
                                 f"{silent:.1f}s ({runner} {cause})", now, urgent=True,
                                 last=runner)
    if p.state == "stopping":
        return Decision("wait", f"waiting for {runner} to stop the app", until=expiry)
    order = candidates(view)
    if p.target is not None and p.target != runner and p.target in order:
        return Decision("stop", f"move to {p.target} requested")
    if view.fallback == "return" and p.state == "running":
        stable = view.stable if view.stable is not None else view.live
        best = next((o for o in view.owners if o in stable and o not in p.failed_on), None)
        if (best is not None and best != runner
                and view.owners.index(best) < view.owners.index(runner)):
            if view.in_window:
                return Decision("stop", f"fallback: {best} (higher precedence than {runner}) "
                                "is back")
            return Decision("wait", f"fallback to {best} waits for the fallback window",
                            until=expiry)
    return Decision("wait", f"{runner} holds the lease", until=expiry)


def handover_target(me: str, placement: Placement, live: Iterable[str]) -> str | None:
    """Where the group's Raft leadership should go, or None to keep it: to the node that
    runs the app. Renewals are commits, and nothing commits during an election: with the
    runner leading, losing any other owner costs no election, so no renewal is late and
    the app never stops for it; losing the runner costs an election, which runs while its
    lease runs out anyway."""
    runner = placement.node
    if (runner is None or runner == me or placement.state != "running"
            or placement.maintenance or runner not in set(live)):
        return None
    return runner


def node_marks(owners: Sequence[str], me: str, live: Iterable[str], unknown: Iterable[str],
               statuses: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(node, "down"|"up") for each owner whose recorded status disagrees with what the
    leader sees: unreachable for the failure timeout -> down; reachable again -> up
    (reintegration). ``statuses`` are the group's node-status records."""
    live_set, unknown_set = set(live), set(unknown)
    out = []
    for owner in owners:
        if owner == me or owner in unknown_set:
            continue
        record = statuses.get(owner) or {}
        state = (record.get("status") or {}).get("state")
        if owner not in live_set and state != "down":
            out.append((owner, "down"))
        elif owner in live_set and state == "down":
            out.append((owner, "up"))
    return out

