"""Checkers for chaos-run histories: pure functions from recorded data to a ``CheckResult``.

Layering: ``chaos.history`` (operations, recorder, ``CheckResult``) <- these checkers <- the
harness that runs processes and nemeses. Nothing here touches processes, sockets or clocks.

- ``linearizable.check_history`` / ``check_register``: per-key register linearizability (WGL);
- ``lost_writes.check_sets`` / ``check_append_order``: no acknowledged add/append lost, no
  phantom, no double apply, real-time order of appends;
- ``single_runner.check_heartbeats``: one runner per group at a time, fencing tokens monotonic;
  ``single_runner.check_final_placement``: after the run, each app runs on exactly one node;
- ``isolation.check_untouched``: groups outside the faults see no error or stall.
"""

from chaos.checkers.isolation import check_untouched
from chaos.checkers.linearizable import check_history, check_register
from chaos.checkers.lost_writes import check_append_order, check_sets, final_reads_from
from chaos.checkers.single_runner import (
    FinalPlacement,
    Heartbeat,
    check_final_placement,
    check_heartbeats,
    parse_heartbeat_file,
)
from chaos.history import CheckResult

__all__ = [
    "CheckResult",
    "FinalPlacement",
    "Heartbeat",
    "check_final_placement",
    "check_append_order",
    "check_heartbeats",
    "check_history",
    "check_register",
    "check_sets",
    "check_untouched",
    "final_reads_from",
    "parse_heartbeat_file",
]
