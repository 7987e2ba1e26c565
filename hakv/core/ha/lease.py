"""Lease arithmetic: when a runner must have stopped its app, and when the manager may
place it elsewhere.

The runner holds a lease renewed through the group's log and must have stopped its app by
``renewal request + lease`` on its own monotonic clock (:func:`runner_deadline`); the
manager re-places only after ``renewal first seen + lease * (1 + clock_drift) +
lease_margin`` on *its* monotonic clock (:func:`lease_expiry`), and only if no renewal
slipped in meanwhile (the place command compares the renewal count: a compare-and-set, so
a renewal that commits just before the new placement makes the placement fail instead of
overlapping). :func:`observe` keeps what a node last saw of the lease.
"""

from __future__ import annotations

from dataclasses import dataclass

from hakv.core.ha.record import Placement
from hakv.core.ha.spec import HaTuning

__all__ = ["LeaseWatch", "lease_expiry", "observe", "runner_deadline"]


def runner_deadline(requested_at: float, tuning: HaTuning) -> float:
    """When a runner must have stopped its app: the *request* time of its last renewal
    that committed, plus the lease, on the runner's own monotonic clock."""
    return requested_at + tuning.lease


def lease_expiry(seen_at: float, tuning: HaTuning) -> float:
    """When the group's leader may place the app elsewhere: ``seen_at`` is when (on the
    leader's monotonic clock) it first saw the current renewal count. The runner asked for
    that renewal before it committed, so before ``seen_at``: its deadline is at most
    ``seen_at + lease`` on its clock, and the drift factor and margin cover a runner
    clock that runs slower than the leader's."""
    return seen_at + tuning.takeover_wait


@dataclass(frozen=True)
class LeaseWatch:
    """What a node last saw of a group's lease: (token, renewals) and since when."""

    token: int
    renewals: int
    seen_at: float


def observe(previous: LeaseWatch | None, placement: Placement, now: float) -> LeaseWatch:
    """Update the watch: a new (token, renewals) pair restarts the clock at ``now``.

    A node that has seen nothing yet (just started, or just took over) starts the clock at
    ``now`` too: it cannot know when the last renewal happened, so it assumes just now.
    """
    if (previous is not None and previous.token == placement.token
            and previous.renewals == placement.renewals):
        return previous
    return LeaseWatch(placement.token, placement.renewals, now)

