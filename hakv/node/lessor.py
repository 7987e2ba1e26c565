"""The lessor: the timer of the leases of the groups this node leads (hakv.core.leases has
the commands and the bound, hakv.storage.leases the replicated state; docs/api.md,
"Leases"). A small leader-side component driven like the HA manager: it takes the
``GroupHost`` and ``Clock`` ports, never the node.

Every node runs one lessor thread. Each round (``LESSOR_ROUND``, jittered, for a group
led here that has leases; ``SLOW_ROUND`` otherwise), for every group this node leads
with quorum:

1. **Take over.** Once per term, and only when the group has leases (an idle group stays
   quiet), propose ``lease_takeover {term}``. Until it applied, nothing else: checkpoints
   and expiries of this term would be rejected at apply anyway.
2. **Track.** When the group's lease table changed (a grant, keepalive, revoke or expiry
   moved its change index), re-read it: a lease seen for the first time, or kept alive
   since (its refresh index moved), gets the deadline ``now + remaining`` on this node's
   monotonic clock, where remaining is what the log recorded (the TTL after a grant or
   keepalive, the last checkpoint's value otherwise). Deadlines are never re-read
   otherwise: the table only says how much was left when it was recorded.
3. **Expire** every lease whose deadline passed: one ``lease_expire {term, [[id,
   refresh]...]}`` (batched), re-proposed only after ``EXPIRE_RETRY`` if it did not
   apply.
4. **Checkpoint.** When some lease's recorded remaining time is older than 60-80 % of
   ``CHECKPOINT_INTERVAL`` (the fraction jittered per round), propose one
   ``lease_checkpoint`` with the remaining time of every lease recorded more than half an
   interval ago: a successor then counts down from at most one interval ago.

Losing the lead (or the term changing) drops all of it; the next leader starts at 1.
"""

from __future__ import annotations

import logging
import random
import threading
from dataclasses import dataclass, field
from typing import Any

from hakv import errors
from hakv.core import codec, leases
from hakv.node.ports import Clock, GroupHost

log = logging.getLogger("hakv.node.lessor")

__all__ = ["EXPIRE_RETRY", "SLOW_ROUND", "Lessor"]

SLOW_ROUND = 0.25
"""Seconds between two looks at a group that has no lease led here."""
EXPIRE_RETRY = 1.0
"""Seconds before an expiry that did not apply is proposed again."""
PROPOSE_TIMEOUT = 2.0


@dataclass
class _Track:
    deadline: float
    refresh: int
    recorded: float  # when the remaining time the log holds was computed
    expiring: float = float("-inf")  # when an expiry was last proposed


@dataclass
class _Led:
    term: int
    taken: bool = False
    changed: int = -1
    tracks: dict[int, _Track] = field(default_factory=dict)
    checkpoint_after: float = 0.0


class Lessor:
    """Proposes takeovers, checkpoints and expiries for the groups led here (module
    docstring) and answers ``lease_ttl`` with the leader's exact remaining time."""

    def __init__(self, groups: GroupHost, clock: Clock,
                 rng: random.Random | None = None, *, checkpoints: bool = True) -> None:
        self.groups = groups
        self.checkpoints = checkpoints  # False: the HAKV_UNSAFE_LEASE_NO_CHECKPOINT failpoint
        self.clock = clock
        self.stopping = threading.Event()
        self._random = rng or random.Random()
        self._led: dict[str, _Led] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        threading.Thread(target=self.run, name="lessor", daemon=True).start()

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        due: dict[str, float] = {}
        clock = self.clock
        while not self.stopping.is_set():
            for gid in self.groups.hosted():
                now = clock.monotonic()
                if due.get(gid, 0.0) > now:
                    continue
                active = False
                try:
                    active = self.tick(gid)
                except errors.HakvError as exc:
                    log.debug("group %s: lessor round: %s", gid, exc.message)
                except Exception:
                    log.exception("group %s: lessor round failed", gid)
                period = leases.LESSOR_ROUND if active else SLOW_ROUND
                due[gid] = clock.monotonic() + period * self._random.uniform(0.8, 1.0)
            soonest = min(due.values(), default=clock.monotonic() + SLOW_ROUND)
            self.stopping.wait(min(SLOW_ROUND, max(0.005, soonest - clock.monotonic())))

    # ------------------------------------------------------------------ one group

    def _propose(self, gid: str, cmd: dict[str, Any]) -> Any:
        return self.groups.member_of(gid).submit(codec.encode(cmd)).wait(PROPOSE_TIMEOUT)

    def tick(self, gid: str) -> bool:
        """One round for one group; True while it has leases tracked here."""
        member = self.groups.member(gid)
        st = member.status() if member is not None else {}
        if not (st.get("role") == "leader" and st.get("quorum")):
            with self._lock:
                self._led.pop(gid, None)
            return False
        term = int(st.get("term") or 0)
        store = self.groups.store(gid)
        stored_term, changed, count = store.lease_marks()
        with self._lock:
            led = self._led.get(gid)
            if led is None or led.term != term or (led.taken and stored_term != term):
                led = self._led[gid] = _Led(term)  # new term, or another lessor took over
        if not led.taken:
            if count == 0:
                return False  # nothing to time: no takeover, the group may stay quiet
            if stored_term < term:
                result = self._propose(gid, leases.takeover_command(term))
                if not (isinstance(result, dict) and result.get("applied")):
                    return True
                log.info("group %s: lessor took over in term %d (%d leases)", gid, term, count)
            elif stored_term > term:
                return False  # a later leader exists: we are about to learn it
            led.taken = True
            stored_term, changed, count = store.lease_marks()
        now = self.clock.monotonic()
        if changed != led.changed:
            self._sync(led, store.lease_table(), now)
            led.changed = changed
        self._expire(gid, led, now)
        self._checkpoint(gid, led, now)
        return bool(led.tracks)

    def _sync(self, led: _Led, table: dict[int, leases.LeaseRecord], now: float) -> None:
        with self._lock:
            for lease_id in [i for i in led.tracks if i not in table]:
                del led.tracks[lease_id]
            for lease_id, rec in table.items():
                track = led.tracks.get(lease_id)
                if track is None or track.refresh != rec.refresh:
                    led.tracks[lease_id] = _Track(now + rec.remaining_ms / 1000.0,
                                                  rec.refresh, now)

    def _expire(self, gid: str, led: _Led, now: float) -> None:
        due = [(i, t.refresh) for i, t in sorted(led.tracks.items())
               if t.deadline <= now and now - t.expiring >= EXPIRE_RETRY]
        for start in range(0, len(due), leases.EXPIRE_BATCH):
            batch = due[start:start + leases.EXPIRE_BATCH]
            for lease_id, _ in batch:
                led.tracks[lease_id].expiring = now
            result = self._propose(gid, leases.expire_command(led.term, batch))
            if isinstance(result, dict) and result.get("expired"):
                log.info("group %s: leases expired: %s", gid, result["expired"])

    def _checkpoint(self, gid: str, led: _Led, now: float) -> None:
        if not self.checkpoints:
            return  # broken build (tests only): a successor restarts the full TTL
        live = {i: t for i, t in led.tracks.items() if t.deadline > now}
        if not live:
            return
        if max(now - t.recorded for t in live.values()) < led.checkpoint_after:
            return
        interval = leases.CHECKPOINT_INTERVAL
        batch = [(i, t.refresh, leases.remaining_ms(t.deadline, now))
                 for i, t in sorted(live.items()) if now - t.recorded >= interval / 2]
        led.checkpoint_after = interval * self._random.uniform(0.6, 0.8)
        for start in range(0, len(batch), leases.CHECKPOINT_BATCH):
            part = batch[start:start + leases.CHECKPOINT_BATCH]
            result = self._propose(gid, leases.checkpoint_command(led.term, part))
            if isinstance(result, dict) and result.get("applied"):
                for lease_id in result.get("checkpointed", ()):
                    track = led.tracks.get(lease_id)
                    if track is not None:
                        track.recorded = now

    # ------------------------------------------------------------------ client API

    def remaining(self, group: str, lease_id: int, refresh: int) -> float | None:
        """Seconds left by this leader's clock (None: not tracked here, or tracked for
        another grant or keepalive than ``refresh``)."""
        with self._lock:
            led = self._led.get(group)
            track = led.tracks.get(lease_id) if led is not None and led.taken else None
            if track is None or track.refresh != refresh:
                return None
            return max(0.0, track.deadline - self.clock.monotonic())

    def serve(self, op: str, group: str, body: dict[str, Any]) -> dict[str, Any]:
        """``lease_ttl``: the remaining time (exact on the leader; elsewhere as of the
        last checkpoint or keepalive, at most a checkpoint interval old), the granted TTL
        and, if asked, the keys."""
        if op not in leases.READ_OPS:
            raise errors.BadRequestError(f"op: expected lease_ttl, got {op!r}")
        request = leases.ttl_request(body)
        if not request["serializable"]:
            self.groups.barrier(group)
        rec, keys = self.groups.store(group).lease(request["id"], request["keys"])
        if rec is None:
            raise errors.LeaseNotFoundError(
                f"lease {request['id']} does not exist in group {group} (never granted,"
                " revoked, or expired)", group=group, lease=request["id"])
        exact = self.remaining(group, rec.id, rec.refresh)
        ttl = exact if exact is not None else rec.remaining_ms / 1000.0
        return {"group": group, "id": rec.id, "ttl": round(ttl, 3), "granted_ttl": rec.ttl,
                "keys": keys, "exact": exact is not None}
