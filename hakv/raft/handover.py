"""Leadership hand-over: a leader leaving its group hands leadership to a chosen member
(the target is chosen by hakv.core.ha.handover_target). Pure: no socket, no clock read,
no pysyncobj; ``now`` is an argument.

Appending stops (new proposals wait in the queue), the target gets every entry, then it
is told to start an election at once (TimeoutNow). Without the pause the target asks for
votes with a log already behind the others' and loses, and the old leader wins again.
The hand-over gives up after its window, at once when the target is not connected (or
the member no longer leads), and one minimum election timeout after TimeoutNow went out
(a target that died meanwhile must not stall the group for long).
"""

from __future__ import annotations

import enum


class HandOverStep(enum.Enum):
    """What the leader does with its proposals this tick."""

    RELEASE = "release"  # no hand-over (over, or given up): append as usual
    HOLD = "hold"  # proposals wait: the target is catching up or standing
    TIMEOUT_NOW = "timeout_now"  # proposals wait; ask the target to stand now


class HandOver:
    """One hand-over in progress (or none)."""

    def __init__(self) -> None:
        self.target: str | None = None
        self._deadline = 0.0
        self._sent = False

    @property
    def active(self) -> bool:
        return self.target is not None

    def start(self, target: str, now: float, within: float) -> None:
        """Hand over to ``target`` within ``within`` seconds (the member leads)."""
        self.target, self._deadline, self._sent = target, now + within, False

    def step(self, now: float, *, leading: bool, target_connected: bool) -> HandOverStep:
        if self.target is None:
            return HandOverStep.RELEASE
        if not leading or now > self._deadline or not target_connected:
            self.target = None
            return HandOverStep.RELEASE
        return HandOverStep.HOLD if self._sent else HandOverStep.TIMEOUT_NOW

    def timeout_now_sent(self, now: float, election_timeout_min: float) -> None:
        """TimeoutNow went out: give up one minimum election timeout later, at the latest
        (a TimeoutNow denied because the target lags is simply asked again next tick)."""
        self._deadline = min(self._deadline, now + election_timeout_min)
        self._sent = True
