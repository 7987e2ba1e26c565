"""The lock workload: contenders take a lock and write to the register it guards.

Each of ``clients`` threads (own client each, holder name ``c<i>``) loops until
``until``: pick one of ``locks`` lock names ``L<j>``; ``client.lock(group, name, ttl)``;
(recorded as lock ``<group>/L<j>``: the fencing checker's records name no group);
``acquire`` (at most 2·ttl + 3 s) — an acknowledged acquire is a ``grant`` record with
``lock.fence`` as its token and the acquire call as its interval —; then ``writes``
guarded writes ``lock.put("fence/<name>", "<holder>-<n>")`` (the txn compares our lock
key, hakv's fencing): ``accepted`` with ``seq`` = the write's revision, ``rejected`` on
``LockLostError`` (nothing applied), ``unknown`` on a timeout after sending; a definite
refusal (``no_quorum`` ...) is not recorded (nothing was applied); then ``release``.

With probability ``stall`` a holder **stalls** after its first write, as a process in a
long GC pause: it stops its lease's keepalives and sleeps past the lease's expiry and the
stated bound (``ttl + 2(C + E) + M + 1`` s) while the others take the lock, then goes on
writing with its old token. Those writes must be rejected.

``guard = false`` is a deliberately broken client for the self-test: plain ``put``s that
carry the token but are not made conditional on holding the lock. A stalled holder's
writes are then accepted after a newer holder's, and ``chaos.checkers.fencing`` must say
so.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import TYPE_CHECKING

from chaos.workload import classify
from hakv.client.client import Client
from hakv.core.leases import expiry_bound
from hakv.errors import LockLostError

if TYPE_CHECKING:
    from chaos.workload_coord import CoordSpec, Journal
    from hakv.client.recipe.lock import Lock

__all__ = ["REGISTER", "run"]

REGISTER = "fence/"


class _Contender:
    def __init__(self, spec: CoordSpec, index: int, journal: Journal, stop: threading.Event
                 ) -> None:
        self.spec, self.index, self.journal, self.stop = spec, index, journal, stop
        o = spec.options
        self.rng = spec.rng(f"contender{index}")
        self.holder = f"c{index}"
        self.locks = int(o.get("locks", 1))
        self.ttl = float(o.get("ttl", 2.0))
        self.writes = int(o.get("writes", 3))
        self.p_stall = float(o.get("stall", 0.25))
        self.guard = bool(o.get("guard", True))
        self.think = float(o.get("think", 0.05))
        self.stall_for = expiry_bound(self.ttl, float(o.get("election_timeout", 1.0)),
                                      leader_changes=2) + 1.0
        self.client = Client(spec.endpoints, timeout=spec.timeout,
                             client_id=f"chaos-{spec.group}-k{index}-{uuid.uuid4().hex[:8]}")
        self.n = 0

    def run(self) -> None:
        try:
            while not self.stop.is_set() and time.monotonic() < self.spec.until:
                self.once()
        finally:
            self.client.close()

    def once(self) -> None:
        name = f"L{self.rng.randrange(self.locks)}"
        lock = self.client.lock(self.spec.group, name, ttl=self.ttl, value=self.holder)
        invoke = time.monotonic()
        try:
            got = lock.acquire(timeout=2 * self.ttl + 3.0)
        except Exception:  # noqa: BLE001 - no grant: nothing to record
            self.stop.wait(0.2)
            return
        if not got:
            return
        token = lock.fence
        assert token is not None
        self.journal.add({"kind": "grant", "lock": f"{self.spec.group}/{name}", "holder": self.holder,
                          "token": token, "invoke": invoke, "complete": time.monotonic()})
        try:
            stall = self.rng.random() < self.p_stall
            for i in range(self.writes):
                if stall and i == 1:
                    self.stall(lock)
                if self.stop.is_set():
                    break
                self.write(lock, name, token)
                self.stop.wait(self.rng.uniform(0, 2 * self.think))
        finally:
            try:
                lock.release()
            except Exception:  # noqa: BLE001, S110 - its lease expires on its own
                pass

    def stall(self, lock: Lock) -> None:
        """A long pause: no keepalives, no work, until the lease surely expired."""
        lease = lock.lease
        if lease is not None:
            lease.stop_keepalive()
        self.stop.wait(self.stall_for)

    def write(self, lock: Lock, name: str, token: int) -> None:
        self.n += 1
        value = f"{self.holder}-{self.n}"
        key = REGISTER + name
        row = self.journal.begin({"kind": "write", "lock": f"{self.spec.group}/{name}", "holder": self.holder,
                                  "token": token, "invoke": time.monotonic(),
                                  "complete": None, "status": "unknown", "seq": None,
                                  "value": value})
        try:
            if self.guard:
                revision = lock.put(key, value).revision
            else:  # broken client (self-test): the token is not checked
                revision = self.client.put(self.spec.group, key, value).revision
        except LockLostError:
            self.journal.finish(row, status="rejected", complete=time.monotonic())
        except Exception as err:  # noqa: BLE001
            if classify(err)[0] == "fail":
                self.journal.drop(row)  # definitely not applied: neither accepted nor not
            else:
                self.journal.finish(row, complete=None)
        else:
            self.journal.finish(row, status="accepted", seq=revision,
                                complete=time.monotonic())


def run(spec: CoordSpec, journal: Journal, stop: threading.Event) -> None:
    contenders = [_Contender(spec, i, journal, stop)
                  for i in range(int(spec.options.get("clients", 3)))]
    threads = [threading.Thread(target=c.run, name=f"contender-{i}", daemon=True)
               for i, c in enumerate(contenders)]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive() and not stop.is_set():
            t.join(0.2)
