"""Coordination workload workers: watches, leases, locks, access control (one process per
group and kind).

Run by the harness inside the client namespace, like ``chaos.workload``::

    ip netns exec hakv-RUN-client python -m chaos.workload_coord --spec SPEC.json

``SPEC.json`` is a ``CoordSpec``: ``kind`` picks the workload (``chaos.workload_watch``,
``chaos.workload_lease``, ``chaos.workload_lock``, ``chaos.workload_access``), ``options``
are that workload's
scenario keys (``[workload.watch]`` ...). The worker issues operations until
``spec.until``, then (watch, lease) goes on observing without writing until
``spec.drain_until`` — the harness heals every fault at ``until`` — so watchers drain to
the final revision and expiring leases are seen gone. It writes its records as JSON lines
to ``spec.out`` (the formats of docs/chaos-checkers.md, each line validated by the
checker's own ``from_dict``) when it ends, also on SIGTERM: an operation still in flight
is then recorded as ``unknown`` (it may have applied).

Times are ``time.monotonic()``, one clock for the whole machine (see chaos.workload), and
the clients speak HTTPS with the cluster's client files from the environment, as there.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chaos.checkers._records import dump_records
from chaos.checkers.access import parse_access
from chaos.checkers.fencing import FencedWrite, Grant
from chaos.checkers.lease import LeaseRecord
from chaos.checkers.watch import WatchRecord, WatchWrite
from chaos.workload import PROCESS_STRIDE

__all__ = ["COORD_KINDS", "CoordSpec", "Journal", "parse_record", "run_coord"]

COORD_KINDS = ("watch", "lease", "lock", "access")
COORD_PROCESS_BASE = 50_000  # process ids of group i's coordination clients: i * STRIDE + ...


@dataclass
class CoordSpec:
    kind: str  # watch | lease | lock | access
    out: str
    group: str
    group_index: int
    endpoints: list[str]
    start: float = 0.0
    until: float = 0.0  # stop issuing writes / grants / acquires
    drain_until: float = 0.0  # stop observing (watchers drain, expiring leases watched)
    seed: int = 1
    timeout: float = 2.0
    options: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> CoordSpec:
        return cls(**json.loads(text))

    def process_base(self) -> int:
        return self.group_index * PROCESS_STRIDE + COORD_PROCESS_BASE

    def rng(self, what: str) -> random.Random:
        return random.Random(f"coord:{self.seed}:{self.group}:{self.kind}:{what}")


def parse_record(d: dict[str, Any]) -> object:
    """A recorded line back as the checkers' record (raises on a bad one)."""
    if d.get("kind") in ("access", "access-final"):
        return parse_access(d)
    if "watcher" in d:
        return WatchRecord.from_dict(d)
    if "changes" in d:
        return WatchWrite.from_dict(d)
    if "lease" in d:
        return LeaseRecord.from_dict(d)
    if d.get("kind") == "grant":
        return Grant.from_dict(d)
    return FencedWrite.from_dict(d)


class Journal:
    """Thread-safe list of records (plain dicts in the checkers' formats). An operation
    is ``begin``-ed before it is sent with its pending outcome already filled in as
    ``unknown`` (so one still in flight at the end stays unknown), and ``finish``-ed with
    its answer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[dict[str, Any]] = []

    def add(self, record: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._records.append(record)
        return record

    begin = add

    def finish(self, record: dict[str, Any], **fields: Any) -> None:
        with self._lock:
            record.update(fields)

    def drop(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._records.remove(record)

    def records(self) -> list[object]:
        with self._lock:
            rows = [dict(r) for r in self._records]
        return [parse_record(r) for r in rows]


def run_coord(spec: CoordSpec, stop: threading.Event | None = None) -> list[object]:
    """Run the workload of ``spec.kind`` until its deadlines (or ``stop``); dump and
    return its records."""
    from chaos import workload_access, workload_lease, workload_lock, workload_watch

    runners: dict[str, Callable[[CoordSpec, Journal, threading.Event], None]] = {
        "watch": workload_watch.run, "lease": workload_lease.run, "lock": workload_lock.run,
        "access": workload_access.run}
    if spec.kind not in runners:
        raise ValueError(f"unknown coordination workload {spec.kind!r} "
                         f"(one of {', '.join(COORD_KINDS)})")
    journal = Journal()
    stop = stop or threading.Event()
    runner = threading.Thread(target=runners[spec.kind], args=(spec, journal, stop),
                              name=f"{spec.kind}-main", daemon=True)
    runner.start()
    grace = max(spec.until, spec.drain_until) + 2 * spec.timeout + 3.0
    while runner.is_alive() and not stop.is_set() and time.monotonic() < grace:
        runner.join(0.2)
    stop.set()
    runner.join(max(0.0, min(2 * spec.timeout, grace + 2 * spec.timeout - time.monotonic()))
                + 0.1)
    records = journal.records()
    dump_records(spec.out, records)
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos.workload_coord",
                                     description="chaos coordination workload (module doc)")
    parser.add_argument("--spec", required=True, help="CoordSpec JSON file")
    args = parser.parse_args(argv)
    spec = CoordSpec.from_json(Path(args.spec).read_text())
    stop = threading.Event()

    def on_term(_sig: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    records = run_coord(spec, stop)
    counts: dict[str, int] = {}
    for rec in records:
        name = f"{type(rec).__name__}.{getattr(rec, 'kind', '')}"
        status = getattr(rec, "status", None)
        key = f"{name}:{status}" if isinstance(status, str) else name
        counts[key] = counts.get(key, 0) + 1
    print(json.dumps({"group": spec.group, "kind": spec.kind, "records": len(records),
                      **counts}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
