"""The lease workload: holders grant leases, attach keys, keep them alive, then let go.

Each of ``clients`` threads (own client each) runs lease after lease until ``until``:

1. ``grant`` a lease of a TTL drawn from ``ttl`` with an id of its own choosing
   (``<group index><client><n>``, so even a grant of unknown outcome names its lease);
2. ``put`` ``keys`` keys ``l/<lease>/k<i>`` attached to it (outside the watch workload's
   ``w/``: their deletion by expiry is no write of the watch history);
3. for a time drawn from ``hold``: a keepalive every TTL/3 — sent by this workload, not
   the library's background thread, so **every** keepalive is recorded (``start`` = send,
   ``end`` = ack; ``lease_not_found`` is a ``fail``: it refreshed nothing) — followed
   by the lease's ``safe_until`` as the library computes it; and every ``observe``
   seconds a linearizable ``range`` of ``l/<lease>/``: one ``observe`` record per key
   with the read's interval and its revision;
4. with probability ``revoke`` a ``revoke``, else nothing: the holder just stops;
5. observe the keys every ``observe`` seconds until both were seen gone twice, or until
   ``ttl + bound + 2`` s after the last keepalive's ack (``bound`` = docs/api.md's
   ``ttl + k(C + E) + M``), also after ``until`` (only for leases already let go) until
   ``drain_until``.

Checked by ``chaos.checkers.lease.check_leases`` with the scenario's bound
(``[workload.lease] leader_changes`` = k).
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from chaos.workload import classify
from hakv.client import lease as lease_api
from hakv.client.client import Client
from hakv.core.leases import expiry_bound
from hakv.errors import HakvError, LeaseNotFoundError

if TYPE_CHECKING:
    from chaos.workload_coord import CoordSpec, Journal
    from hakv.client.lease import Lease

__all__ = ["PREFIX", "run"]

PREFIX = "l/"


class _Holder:
    def __init__(self, spec: CoordSpec, index: int, journal: Journal, stop: threading.Event
                 ) -> None:
        self.spec, self.index, self.journal, self.stop = spec, index, journal, stop
        self.rng = spec.rng(f"holder{index}")
        self.pid = spec.process_base() + 1000 + index
        o = spec.options
        self.ttl_range = tuple(o.get("ttl", (2.0, 4.0)))
        self.hold_range = tuple(o.get("hold", (0.5, 3.0)))
        self.nkeys = int(o.get("keys", 2))
        self.p_revoke = float(o.get("revoke", 0.2))
        self.every = float(o.get("observe", 0.3))
        self.election_timeout = float(o.get("election_timeout", 1.0))
        self.leader_changes = int(o.get("leader_changes", 1))
        self.client = Client(spec.endpoints, timeout=spec.timeout,
                             client_id=f"chaos-{spec.group}-l{index}-{uuid.uuid4().hex[:8]}")

    def rec(self, kind: str, lease: int, **fields: Any) -> dict[str, Any]:
        row = {"kind": kind, "lease": lease, "start": time.monotonic(), "end": None,
               "status": "unknown", "process": self.pid, "group": self.spec.group}
        row.update(fields)
        return self.journal.begin(row)

    def done(self, row: dict[str, Any], err: BaseException | None = None, **fields: Any
             ) -> str:
        if err is None:
            status = "ok"
        elif isinstance(err, LeaseNotFoundError):
            status = "fail"
        else:
            status = classify(err)[0]
        self.journal.finish(row, status=status, end=time.monotonic(), **fields)
        return status

    def run(self) -> None:
        n = 0
        try:
            while not self.stop.is_set() and time.monotonic() < self.spec.until:
                n += 1
                self.cycle(self.spec.group_index * 10_000_000 + self.index * 100_000 + n)
        finally:
            self.client.close()

    def cycle(self, lease_id: int) -> None:
        g = self.spec.group
        ttl = round(self.rng.uniform(*self.ttl_range), 3)
        row = self.rec("grant", lease_id, ttl=ttl)
        due = row["start"] + ttl / 3  # the next keepalive
        try:
            lease = lease_api.grant(self.client, g, ttl, lease_id=lease_id)
        except Exception as err:  # noqa: BLE001 - recorded
            self.done(row, err)
            self.stop.wait(0.2)
            return
        self.done(row)
        self.safe(lease)
        keys = []
        for i in range(self.nkeys):
            key = f"{PREFIX}{lease_id}/k{i}"
            row = self.rec("put", lease_id, key=key)
            try:
                res = self.client.put(g, key, f"c{self.index}", lease=lease_id)
            except Exception as err:  # noqa: BLE001
                self.done(row, err)
                continue
            self.done(row, revision=res.revision)
            keys.append(key)
        last_ack = time.monotonic()
        hold_until = last_ack + self.rng.uniform(*self.hold_range)
        next_observe = last_ack + self.every
        lost = False
        while not lost and not self.stop.is_set() and time.monotonic() < min(
                hold_until, self.spec.until):
            now = time.monotonic()
            if now >= due:
                row = self.rec("keepalive", lease_id)
                try:
                    lease.keepalive(timeout=max(0.1, min(self.spec.timeout, ttl / 3)))
                except Exception as err:  # noqa: BLE001
                    self.done(row, err)
                    lost = isinstance(err, LeaseNotFoundError)
                    due = time.monotonic() + 0.1  # retry soon, as the library's thread does
                    continue
                self.done(row)
                due = row["start"] + ttl / 3
                last_ack = time.monotonic()
                self.safe(lease)
            elif now >= next_observe:
                self.observe(lease_id, keys)
                next_observe = time.monotonic() + self.every
            else:
                self.stop.wait(min(due, next_observe, hold_until) - now)
        if not lost and self.rng.random() < self.p_revoke:
            row = self.rec("revoke", lease_id)
            try:
                lease_api.revoke(self.client, g, lease_id)
            except Exception as err:  # noqa: BLE001
                self.done(row, err)
            else:
                self.done(row)
        bound = expiry_bound(ttl, self.election_timeout, leader_changes=self.leader_changes)
        watch_until = min(last_ack + bound + 2.0, self.spec.drain_until)
        gone = 0
        while keys and gone < 2 and not self.stop.is_set() and time.monotonic() < watch_until:
            if self.observe(lease_id, keys) == 0:
                gone += 1
            self.stop.wait(self.every)

    def observe(self, lease_id: int, keys: list[str]) -> int | None:
        """One linearizable range of the lease's keys: an ``observe`` per key; how many
        were present (None: the read failed)."""
        if not keys:
            return None
        start = time.monotonic()
        try:
            res = self.client.range(self.spec.group, f"{PREFIX}{lease_id}/", limit=100)
        except HakvError:
            return None
        end = time.monotonic()
        present = {kv.key for kv in res.kvs}
        for key in keys:
            self.journal.add({"kind": "observe", "lease": lease_id, "key": key,
                              "present": key in present, "start": start, "end": end,
                              "status": "ok", "revision": res.revision,
                              "process": self.pid, "group": self.spec.group})
        return sum(1 for k in keys if k in present)

    def safe(self, lease: Lease) -> None:
        self.journal.add({"kind": "safe_until", "lease": lease.id, "start": time.monotonic(),
                          "safe_until": lease.safe_until(), "status": "ok",
                          "process": self.pid, "group": self.spec.group})


def run(spec: CoordSpec, journal: Journal, stop: threading.Event) -> None:
    holders = [_Holder(spec, i, journal, stop)
               for i in range(int(spec.options.get("clients", 3)))]
    threads = [threading.Thread(target=h.run, name=f"holder-{i}", daemon=True)
               for i, h in enumerate(holders)]
    for i, t in enumerate(threads):
        t.start()
        stop.wait(0.4 * (i + 1) / len(threads))  # spread the holders' phases
    for t in threads:
        while t.is_alive() and not stop.is_set():
            t.join(0.2)
