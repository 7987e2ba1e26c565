"""Checkers for chaos-run histories: pure functions from recorded data to a ``CheckResult``.

Layering: ``chaos.history`` (operations, recorder, ``CheckResult``) <- these checkers <- the
harness that runs processes and nemeses. Nothing here touches processes, sockets or clocks.

- ``linearizable.check_history`` / ``check_register``: per-key register linearizability (WGL);
- ``lost_writes.check_sets`` / ``check_append_order``: no acknowledged add/append lost, no
  phantom, no double apply, real-time order of appends;
- ``single_runner.check_heartbeats``: one runner per group at a time, fencing tokens monotonic;
  ``single_runner.check_final_placement``: after the run, each app runs on exactly one node;
- ``isolation.check_untouched``: groups outside the faults see no error or stall;
- ``watch.check_watch``: every acknowledged write of a watched prefix delivered exactly once,
  in revision order, one whole revision per batch, across resumptions;
- ``lease.check_leases``: a lease's keys go never before the TTL, never later than the
  stated bound, all in one revision; the holder's ``safe_until`` never outlives the lease;
- ``fencing.check_fencing``: lock tokens grow, a token-guarded register never accepts a
  smaller token after a larger one.

The last three read flat record dataclasses (JSON lines, ``_records``), not ``Operation``s:
what they check (a watch stream, lease timings, fenced writes) is not a register history.
"""

from chaos.checkers.fencing import FencedWrite, Grant, check_fencing, load_fencing_history
from chaos.checkers.isolation import check_untouched
from chaos.checkers.lease import LeaseRecord, check_leases, load_lease_records
from chaos.checkers.linearizable import check_history, check_register
from chaos.checkers.lost_writes import check_append_order, check_sets, final_reads_from
from chaos.checkers.single_runner import (
    FinalPlacement,
    Heartbeat,
    check_final_placement,
    check_heartbeats,
    parse_heartbeat_file,
)
from chaos.checkers.watch import (
    Change,
    WatchEvent,
    WatchRecord,
    WatchWrite,
    check_watch,
    load_watch_history,
)
from chaos.history import CheckResult

__all__ = [
    "Change",
    "CheckResult",
    "FencedWrite",
    "FinalPlacement",
    "Grant",
    "Heartbeat",
    "LeaseRecord",
    "WatchEvent",
    "WatchRecord",
    "WatchWrite",
    "check_append_order",
    "check_fencing",
    "check_final_placement",
    "check_heartbeats",
    "check_history",
    "check_leases",
    "check_register",
    "check_sets",
    "check_untouched",
    "check_watch",
    "final_reads_from",
    "load_fencing_history",
    "load_lease_records",
    "load_watch_history",
    "parse_heartbeat_file",
]
