"""The HA workload of a chaos run: groups that run the heartbeat app, and what the harness
reads of their placement at the end.

A scenario's ``[ha] apps = ["g1"]`` gives each listed group an app spec (hakv's
``[groups.app]``) running ``tests/apps/heartbeat.py``: while it runs, the app appends
``time node group token`` to ``DIR/<scenario>/heartbeats.log`` every ``interval`` seconds
(one ``O_APPEND`` write per line, so the nodes -- each in its own network namespace but on
the same filesystem -- share the file without tearing lines). Its health check is the same
script (``check``: a beat of this node and token younger than HEARTBEAT_CHECK_AGE).

After the run (faults healed, final reads done) ``final_placements`` waits until each
group's app settled and records, for the ``ha-placement`` checker, the placement record,
every owner's supervisor view and a wall-clock window in which only the runner may beat.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chaos.checkers.single_runner import FinalPlacement
from hakv.core.ha import AppSpec
from hakv.core.topology import Topology

if TYPE_CHECKING:
    from chaos.cluster import ChaosCluster

__all__ = ["HEARTBEAT_APP", "final_placements", "heartbeat_spec", "wait_apps_running",
           "with_apps"]

REPO = Path(__file__).resolve().parent.parent
HEARTBEAT_APP = REPO / "tests" / "apps" / "heartbeat.py"


def heartbeat_spec(beats: Path, interval: float = 0.05, check_interval: float = 0.5
                   ) -> AppSpec:
    """The heartbeat app writing to ``beats``, checked every ``check_interval``."""
    app = (sys.executable, str(HEARTBEAT_APP))
    return AppSpec(
        start=(*app, "run"), check=(*app, "check"), check_interval=check_interval,
        check_timeout=3.0, start_timeout=8.0, stop_timeout=3.0, restart_limit=2,
        env=(("HEARTBEAT_FILE", str(beats)), ("HEARTBEAT_INTERVAL", f"{interval:g}"),
             # a check is one Python start; on two loaded cores allow a stall
             ("HEARTBEAT_CHECK_AGE", f"{max(2.0, 20 * interval):g}")))


def with_apps(topo: Topology, groups: Sequence[str], spec: AppSpec) -> Topology:
    """``topo`` with ``spec`` as the app of every group in ``groups``."""
    out = replace(topo, groups=tuple(replace(g, app=spec) if g.id in groups else g
                                     for g in topo.groups))
    out.validate()
    return out


def _view(cluster: ChaosCluster, group: str) -> dict[str, Any]:
    view = cluster.placement(group)
    return ((view or {}).get("placement") or {}) if view else {}


def wait_apps_running(cluster: ChaosCluster, groups: Sequence[str], timeout: float = 30.0
                      ) -> dict[str, str]:
    """Wait until each group's placement record says ``running``; {group: node}."""
    from chaos.cluster import wait_each_group

    def running_on(group: str) -> str | None:
        rec = _view(cluster, group)
        return str(rec["node"]) if rec.get("state") == "running" and rec.get("node") else None

    return wait_each_group(
        groups, running_on, timeout,
        lambda missing: f"the app of group(s) {', '.join(missing)} was not running within "
                        f"{timeout:g}s (see logs/ and data/*/apps/*.log)")


def _settled(cluster: ChaosCluster, group: str) -> bool:
    rec = _view(cluster, group)
    if rec.get("state") != "running" or not rec.get("node"):
        return False
    local = cluster.local_apps(group)
    holders = [n for n, v in local.items() if v and v.get("pid") is not None]
    mine = local.get(str(rec["node"])) or {}
    return holders == [rec["node"]] and mine.get("token") == rec.get("token") \
        and mine.get("state") == "running"


def final_placements(cluster: ChaosCluster, groups: Sequence[str], settle: float = 25.0,
                     window: float = 1.5) -> list[FinalPlacement]:
    """Wait (up to ``settle`` s) until every group's app settled on one node, then watch a
    ``window`` of ``window`` seconds and record what the ha-placement checker needs.
    Whatever did not settle is recorded as it is: the checker reports it."""
    deadline = time.monotonic() + settle
    notes: dict[str, str] = {}
    for g in groups:
        while not _settled(cluster, g):
            if time.monotonic() >= deadline:
                notes[g] = f"did not settle within {settle:g}s after healing"
                break
            time.sleep(0.2)
    start = time.time()
    time.sleep(window)
    out = []
    for g in groups:
        view = cluster.placement(g)
        rec = (view or {}).get("placement") if view else None
        local = cluster.local_apps(g)
        out.append(FinalPlacement(g, rec, local, (start, time.time()), notes.get(g, "")))
    return out
