"""Workload worker: client threads against one group, recording a history.

Run by the harness inside the client namespace, one process per group::

    ip netns exec hakv-RUN-client python -m chaos.workload --spec SPEC.json

``SPEC.json`` is a ``WorkerSpec`` (below). The worker writes its history as JSON lines to
``spec.out`` (``chaos.history.History.dump``) when it ends: at ``spec.until``, or on SIGTERM
(operations still in flight are then recorded as ``unknown``).

Each client thread is a logical client (its own ``hakv.client.client.Client``: own client id and
write sequence) issuing, at random by ``spec.mix``:

- ``read``   ``get`` of a register -> output the value, ``None`` when not found;
- ``write``  ``put`` of a unique value ``"p<process>-<n>"``;
- ``cas``    ``txn`` comparing the value with the one this client last saw (read or wrote)
  and putting a unique new value -> output ``True`` (swapped) / ``False`` (compare failed);
- ``add``    ``put`` of key ``set/c<client>/<n>``: element ``c<client>/<n>`` of the
  group's set ``set`` (for the lost-writes check).

Registers are ``r<generation>-<i>``: ``spec.keys`` of them in use at once, a new
generation every ``spec.key_rotate`` seconds, so each key's history stays short enough for
the linearizability search.

Outcomes: ``ok`` on an answer (a missing key and a failed compare are answers);
``unknown`` when a write's outcome cannot be known (``OutcomeUnknownError``: it timed out
after reaching a server) or on an unexpected error; ``fail`` for definite refusals
(``no_quorum``, ``unavailable`` -- nothing was sent --, ``bad_request`` ...). After an
``unknown`` the client takes a new process id (Jepsen retires the process: its old
operation may still be pending).

``final`` mode reads the whole set after the faults are healed: one ``range`` per client
prefix (``set/c<i>/``), retried until ``spec.until``, recorded as one ``read_set``
operation whose output is the list of elements.

Times are ``time.monotonic()``: CLOCK_MONOTONIC is one clock for the whole machine, so
histories of several worker processes (and the harness's fault windows) line up.

The nodes serve HTTPS with client certificates: the harness starts every worker with the
cluster's client files in HAKV_CACERT, HAKV_CERT and HAKV_KEY
(``ChaosCluster.client_env``), where each ``Client`` here finds them.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chaos.history import History, Recorder, Status
from hakv.client.client import Client, Compare, Op
from hakv.errors import (
    HakvError,
    NotFoundError,
    OutcomeUnknownError,
    PermanentError,
    RetryableError,
)

__all__ = ["PROCESS_STRIDE", "SET_KEY", "WorkerSpec", "classify", "run_worker"]

PROCESS_STRIDE = 100_000  # process ids of group i are i * STRIDE + ...
SET_KEY = "set"
SET_PREFIX = "set/"
RANGE_LIMIT = 10_000


@dataclass
class WorkerSpec:
    mode: str  # "run" or "final"
    out: str
    group: str
    group_index: int
    endpoints: list[str]
    clients: int = 3
    start: float = 0.0  # monotonic time the run started (key generations count from it)
    until: float = 0.0  # monotonic time to stop issuing operations
    seed: int = 1
    mix: list[tuple[str, float]] = field(default_factory=lambda: [
        ("read", 0.35), ("write", 0.25), ("cas", 0.2), ("add", 0.2)])
    keys: int = 3
    key_rotate: float = 5.0
    timeout: float = 2.0
    think: float = 0.02
    reads: str = "failover"  # or "node-local"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> WorkerSpec:
        data = json.loads(text)
        data["mix"] = [tuple(x) for x in data.get("mix", [])]
        return cls(**data)


def classify(err: BaseException) -> tuple[Status, str]:
    """``(status, output)`` of an operation that raised ``err`` (not NotFoundError, which
    is an answer)."""
    if isinstance(err, OutcomeUnknownError):
        return "unknown", err.code
    if isinstance(err, RetryableError | PermanentError):
        return "fail", err.code
    if isinstance(err, HakvError):
        return "unknown", err.code
    return "unknown", f"{type(err).__name__}: {err}"


class _ClientThread:
    def __init__(self, spec: WorkerSpec, index: int, rec: Recorder, stop: threading.Event
                 ) -> None:
        self.spec = spec
        self.index = index
        self.rec = rec
        self.stop = stop
        self.rng = random.Random(f"workload:{spec.seed}:{spec.group}:{index}")
        eps = spec.endpoints
        home = index % len(eps)
        order = eps[home:] + eps[:home]  # each client prefers its own home node
        cid = f"chaos-{spec.group}-c{index}-{uuid.uuid4().hex[:8]}"
        self.writer = Client(order, timeout=spec.timeout, client_id=cid)
        self.reader = (Client([eps[home]], timeout=spec.timeout, client_id=cid + "-r")
                       if spec.reads == "node-local" else self.writer)
        self.generation = 0
        self.n = 0
        self.adds = 0
        self.last_seen: dict[str, str | None] = {}
        kinds, weights = zip(*spec.mix, strict=True) if spec.mix else ((), ())
        self.kinds = list(kinds)
        self.weights = list(weights)

    @property
    def process(self) -> int:
        s = self.spec
        return s.group_index * PROCESS_STRIDE + self.index + self.generation * s.clients

    def _key(self) -> str:
        s = self.spec
        gen = int(max(0.0, time.monotonic() - s.start) // s.key_rotate)
        return f"r{gen}-{self.rng.randrange(s.keys)}"

    def run(self) -> None:
        try:
            while not self.stop.is_set() and time.monotonic() < self.spec.until:
                self.one()
                if self.spec.think > 0:
                    self.stop.wait(self.rng.uniform(0, 2 * self.spec.think))
        finally:
            self.writer.close()
            self.reader.close()

    def one(self) -> None:
        kind = self.rng.choices(self.kinds, self.weights)[0]
        key = self._key()
        if kind == "cas" and key not in self.last_seen:
            kind = "read"  # a cas expects a value this client saw
        g = self.spec.group
        self.n += 1
        pid = self.process
        if kind == "read":
            tok = self.rec.invoke(pid, "read", g, key, None)
            try:
                value: str | None = self.reader.get(g, key).value
            except NotFoundError:
                value = None
            except Exception as err:  # noqa: BLE001 - every failure is recorded
                self._done(tok, err)
                return
            self.rec.complete(tok, "ok", value)
            self.last_seen[key] = value
        elif kind == "write":
            value = f"p{pid}-{self.n}"
            tok = self.rec.invoke(pid, "write", g, key, value)
            try:
                self.writer.put(g, key, value)
            except Exception as err:  # noqa: BLE001
                self._done(tok, err)
                return
            self.rec.complete(tok, "ok", None)
            self.last_seen[key] = value
        elif kind == "cas":
            expected = self.last_seen[key]
            new = f"p{pid}-{self.n}"
            tok = self.rec.invoke(pid, "cas", g, key, (expected, new))
            try:
                res = self.writer.txn(g, compare=[Compare.value(key, "==", expected)],
                                      success=[Op.put(key, new)])
            except Exception as err:  # noqa: BLE001
                self._done(tok, err)
                return
            self.rec.complete(tok, "ok", res.succeeded)
            if res.succeeded:
                self.last_seen[key] = new
        else:  # add
            self.adds += 1
            element = f"c{self.index}/{self.adds}"
            tok = self.rec.invoke(pid, "add", g, SET_KEY, element)
            try:
                self.writer.put(g, SET_PREFIX + element, "1")
            except Exception as err:  # noqa: BLE001
                self._done(tok, err)
                return
            self.rec.complete(tok, "ok", None)

    def _done(self, tok: int, err: BaseException) -> None:
        status, output = classify(err)
        self.rec.complete(tok, status, output)
        if status == "unknown":
            self.generation += 1  # retire this process id


def _final(spec: WorkerSpec, rec: Recorder) -> None:
    """Read the whole set once (retrying until ``spec.until``)."""
    pid = spec.group_index * PROCESS_STRIDE + PROCESS_STRIDE - 1
    tok = rec.invoke(pid, "read_set", spec.group, SET_KEY, None)
    elements: list[str] = []
    last = "no attempt"
    with Client(spec.endpoints, timeout=spec.timeout) as client:
        for i in range(spec.clients):
            prefix = f"{SET_PREFIX}c{i}/"
            while True:
                try:
                    res = client.range(spec.group, prefix, limit=RANGE_LIMIT)
                except HakvError as err:
                    last = f"{err.code}: {err.message}"
                    if time.monotonic() >= spec.until:
                        rec.complete(tok, "fail", f"final read failed: {last}")
                        return
                    time.sleep(0.2)
                    continue
                if res.more:
                    rec.complete(tok, "fail", f"more than {RANGE_LIMIT} elements under "
                                              f"{prefix}: raise RANGE_LIMIT or paginate")
                    return
                elements.extend(kv.key[len(SET_PREFIX):] for kv in res.kvs)
                break
    rec.complete(tok, "ok", sorted(elements))


def run_worker(spec: WorkerSpec) -> History:
    rec = Recorder(time.monotonic)
    stop = threading.Event()
    if spec.mode == "final":
        _final(spec, rec)
    else:
        clients = [_ClientThread(spec, i, rec, stop) for i in range(spec.clients)]
        threads = [threading.Thread(target=c.run, name=f"client-{i}", daemon=True)
                   for i, c in enumerate(clients)]

        def on_term(_sig: int, _frame: Any) -> None:
            stop.set()

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, on_term)
            signal.signal(signal.SIGINT, on_term)
        for t in threads:
            t.start()
        grace = spec.until + 2 * spec.timeout + 5.0
        for t in threads:
            while t.is_alive() and not stop.is_set() and time.monotonic() < grace:
                t.join(0.2)
        stop.set()
        for t in threads:
            t.join(max(0.0, min(2 * spec.timeout, grace - time.monotonic())) + 0.1)
    history = rec.history()
    history.dump(spec.out)
    return history


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos.workload",
                                     description="chaos workload worker (see module doc)")
    parser.add_argument("--spec", required=True, help="WorkerSpec JSON file")
    args = parser.parse_args(argv)
    spec = WorkerSpec.from_json(Path(args.spec).read_text())
    history = run_worker(spec)
    counts: dict[str, int] = {}
    for op in history:
        counts[op.status] = counts.get(op.status, 0) + 1
    print(json.dumps({"group": spec.group, "mode": spec.mode, "ops": len(history),
                      **counts}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
