"""The app supervisor (hakv.node.supervisor) driven through the twins of its ports
(tests/twins.py): ``Groups`` for the group host (the placement record is the real one, in
the group's state machine), ``ClusterView`` for the topology view, ``FakeClock`` for the
runner's clock. The app and its fence keeper (hakv/node/fence.py) are real processes: the
keeper is what invariant I3 rests on, so it is not twinned.

The keeper reads CLOCK_MONOTONIC itself, so the fake clock starts at the real monotonic
reading: the runner's deadlines are real instants for the keeper, while the runner's own
idea of time moves only by ``FakeClock.advance`` (a runner whose clock stands still is a
stalled runner, which is what the keeper guards against). Paths that need the keeper to
act take short real leases and condition waits, never fixed sleeps.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hakv.core import codec, ha
from hakv.core.topology import Topology, parse_topology
from hakv.node.fence import EXIT_FENCED
from hakv.node.ports import SystemClock
from hakv.node.supervisor import POLL, AppRunner, Supervisor
from hakv.node.view import ClusterView
from tests.support import holds, wait_for
from tests.twins import FakeClock, Groups, Member

API = "127.0.0.1:1"  # HAKV_ENDPOINTS handed to the app (nothing listens: not used)
#: The app: writes its HAKV_* environment and pid to HAKV_DATA/env.json, then sleeps.
REPORTER = ("import json, os, time\n"
            "env = {k: v for k, v in os.environ.items() if k.startswith('HAKV_')}\n"
            "env['pid'] = os.getpid()\n"
            "path = os.path.join(os.environ['HAKV_DATA'], 'env.json')\n"
            "with open(path + '.tmp', 'w') as f: json.dump(env, f)\n"
            "os.replace(path + '.tmp', path)\n"
            "time.sleep(120)\n")


def _topology(lease: float = 30.0, renew_interval: float = 0.25,
              script: str = REPORTER) -> Topology:
    start = json.dumps([sys.executable, "-c", script])
    lines = ["[cluster]", 'name = "t"', "[ha]", f"lease = {lease}",
             f"renew_interval = {renew_interval}"]
    for i, node in enumerate("abc"):
        lines += ["[[nodes]]", f'id = "{node}"', 'host = "127.0.0.1"',
                  f"raft_port = {7001 + i}", f"api_port = {8001 + i}"]
    lines += ["[[groups]]", 'id = "g"', 'owners = ["a", "b", "c"]',
              "[groups.app]", f"start = {start}", "stop_timeout = 3.0",
              "[[groups]]", 'id = "h"', 'owners = ["a", "b", "c"]']  # h: no app
    return parse_topology("\n".join(lines) + "\n")


@pytest.fixture
def groups(tmp_path: Path) -> Iterator[Groups]:
    host = Groups("a", str(tmp_path / "groups"))
    host.add("g")
    host.add("h")
    yield host
    host.close()


def _runner(groups: Groups, topology: Topology, clock: Any, data_dir: Path,
            no_fence: bool = False) -> AppRunner:
    sup = Supervisor("a", groups, ClusterView(topology), clock, str(data_dir), API,
                     no_fence=no_fence)
    return AppRunner(sup, "g")


def _propose(member: Member, action: str, **fields: Any) -> dict[str, Any]:
    """A placement command through the group's log, as the manager or an operator sends."""
    result = member.submit(codec.encode(ha.command(action, time.time(), **fields))).wait(1.0)
    assert isinstance(result, dict)
    return result


def _place(groups: Groups, node: str) -> ha.Placement:
    now = groups.store("g").placement()
    result = _propose(groups.members["g"], "place", node=node, expect_token=now.token,
                      expect_renewals=now.renewals)
    assert result["applied"], result
    return groups.store("g").placement()


def _app_env(data_dir: Path) -> dict[str, Any]:
    """What the app found in its environment (waits for it to have written it)."""
    path = data_dir / "apps" / "g" / "env.json"
    env: dict[str, Any] = wait_for(lambda: json.loads(path.read_text()), 5.0, interval=0.02,
                                   what="the app to write its environment")
    return env


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _started(runner: AppRunner, groups: Groups, clock: FakeClock) -> ha.Placement:
    """Place g on this node as a fresh placement, get the lease, start the app."""
    runner.step()  # first look: nothing placed here, so nothing stale
    rec = _place(groups, "a")
    runner.step()
    assert runner.keeper is None  # placed, but no lease yet: the app does not start
    assert runner.local.state == "waiting for lease"
    assert runner.renew_once() == pytest.approx(runner.view.tuning().renew_interval)
    assert groups.store("g").placement().renewals == 1
    runner.step()
    assert runner.keeper is not None and runner.keeper_token == rec.token
    return rec


# =========================================================================== start


def test_a_placement_here_with_a_lease_starts_the_app_with_its_fencing_token(
        groups: Groups, tmp_path: Path) -> None:
    clock = FakeClock(monotonic=time.monotonic())
    runner = _runner(groups, _topology(), clock, tmp_path)
    try:
        rec = _started(runner, groups, clock)
        assert runner.deadline == pytest.approx(clock.monotonic() + 30.0)

        env = _app_env(tmp_path)
        assert env["HAKV_FENCING_TOKEN"] == str(rec.token) == "1"
        assert (env["HAKV_GROUP"], env["HAKV_NODE"], env["HAKV_ENDPOINTS"]) == ("g", "a", API)
        assert env["HAKV_DATA"] == str(tmp_path / "apps" / "g")
        assert runner.local.to_dict()["state"] == "starting"

        # No check command: alive NO_CHECK_GRACE after the start is running; reported.
        clock.advance(0.2)
        runner.step()
        assert runner.local.state == "running"
        placement = groups.store("g").placement()
        assert (placement.node, placement.state, placement.token) == ("a", "running", 1)
        assert _gone(env["pid"]) is False
    finally:
        runner.shutdown()
    assert groups.store("g").placement().state == "stopped"  # said so when shutting down
    wait_for(lambda: _gone(env["pid"]), 3.0, interval=0.02, what="the app to be gone")


def test_a_placement_found_at_start_is_stale_and_reported_suspended(
        groups: Groups, tmp_path: Path) -> None:
    """Placed here before this process started: the app died with the previous one."""
    clock = FakeClock(monotonic=time.monotonic())
    _place(groups, "a")
    runner = _runner(groups, _topology(), clock, tmp_path)  # this process starts now
    runner.step()
    assert runner.keeper is None
    placement = groups.store("g").placement()
    assert (placement.node, placement.state, placement.token) == ("a", "suspended", 1)
    assert "restarted" in placement.reason
    assert runner.renew_once() == POLL  # no lease wanted: nothing asked
    assert groups.members["g"].ops("placement")[-1]["action"] == "report"


def test_a_new_apps_first_placement_is_not_taken_for_a_restart(
        groups: Groups, tmp_path: Path) -> None:
    """Issue 16: `hakv group set-app` on a running group; the manager places the app before
    its runner's first look. That placement is this process's: the app starts under token
    1, no "node restarted" event, no token burnt."""
    clock = FakeClock(monotonic=time.monotonic())
    runner = _runner(groups, _topology(), clock, tmp_path)  # the node has been up a while
    placed = _place(groups, "a")  # the first placement of the new app
    assert runner.sup.predates_this_process("g", placed) is False
    try:
        runner.step()
        placement = groups.store("g").placement()
        assert (placement.state, placement.token) == ("starting", 1), placement
        assert "restarted" not in placement.reason
        assert runner.lease_token == 1
    finally:
        runner.shutdown()


# =========================================================================== lease


def test_a_renewal_extends_the_keeper_s_deadline_and_without_one_it_fences_the_app(
        groups: Groups, tmp_path: Path) -> None:
    clock = FakeClock(monotonic=time.monotonic())
    runner = _runner(groups, _topology(lease=1.0), clock, tmp_path)
    try:
        rec = _started(runner, groups, clock)
        first_deadline = runner.deadline  # the first renewal's request time + 1 s
        pid = _app_env(tmp_path)["pid"]
        keeper = runner.keeper
        assert keeper is not None

        # The runner's clock says one second later: its renewal asks the keeper for a
        # deadline one lease after that. The keeper, on the real clock, keeps the app
        # past the first deadline...
        clock.advance(1.0)
        runner.renew_once()
        assert runner.deadline == pytest.approx(first_deadline + 1.0)
        holds(lambda: keeper.poll() is None,
              max(0.0, first_deadline + 0.2 - time.monotonic()), interval=0.02,
              what="the app runs past the first deadline")

        # ...and, with no renewal after that, kills it at the second, on its own: the
        # runner (stalled, as far as the keeper knows) takes no part in it.
        wait_for(lambda: keeper.poll() == EXIT_FENCED, 3.0, interval=0.02,
                 what="the keeper to fence the app")
        assert time.monotonic() >= runner.deadline - 0.3  # not before its time
        assert _gone(pid)

        runner.step()  # the runner sees the fencing...
        assert runner.local.state == "fenced" and runner.keeper is None
        assert runner.lease_token is None and runner.fenced_token == rec.token
        renewals = groups.store("g").placement().renewals
        runner.renew_once()  # ...asks no renewal for a fenced placement...
        assert groups.store("g").placement().renewals == renewals
        runner.step()  # ...and gives the placement up, so the manager places it anew
        placement = groups.store("g").placement()
        assert (placement.state, placement.token) == ("suspended", rec.token)
        assert "lease expired" in placement.reason
        runner.step()
        assert runner.keeper is None  # not started again for that placement
    finally:
        runner.shutdown()


def test_the_no_fence_failpoint_changes_only_the_keeper_s_deadline(
        groups: Groups, tmp_path: Path) -> None:
    topology = _topology(script="import time; time.sleep(120)")
    clock = FakeClock(monotonic=time.monotonic())
    fenced = _runner(groups, topology, clock, tmp_path / "fenced")
    unfenced = _runner(groups, topology, clock, tmp_path / "unfenced", no_fence=True)
    spec = topology.group("g").app
    assert spec is not None
    deadline = time.monotonic() + 0.5
    try:
        for runner in (fenced, unfenced):
            runner.deadline = deadline
            runner.start_app(spec, 7)
        assert fenced.keeper is not None and unfenced.keeper is not None
        args = [str(a) for a in fenced.keeper.args]  # type: ignore[union-attr]
        no_fence_args = [str(a) for a in unfenced.keeper.args]  # type: ignore[union-attr]
        assert float(args[4]) == pytest.approx(deadline, abs=1e-6)
        assert float(no_fence_args[4]) == pytest.approx(deadline + 1e6, abs=1e-6)
        assert args[:4] + args[5:] == no_fence_args[:4] + no_fence_args[5:]
        assert fenced.deadline == unfenced.deadline == deadline  # the runner's own: same

        wait_for(lambda: fenced.keeper is not None and fenced.keeper.poll() == EXIT_FENCED,
                 3.0, interval=0.02, what="the normal keeper to fence its app")
        holds(lambda: unfenced.keeper is not None and unfenced.keeper.poll() is None, 0.3,
              interval=0.02, what="the no_fence keeper keeps its app past the deadline")
    finally:
        fenced.shutdown()
        unfenced.shutdown()
    assert unfenced.keeper is None  # stop still works


# =========================================================================== stop


def test_a_placement_on_another_node_stops_the_local_app_without_a_report(
        groups: Groups, tmp_path: Path) -> None:
    clock = FakeClock(monotonic=time.monotonic())
    runner = _runner(groups, _topology(), clock, tmp_path)
    try:
        _started(runner, groups, clock)
        pid = _app_env(tmp_path)["pid"]
        member = groups.members["g"]
        _place(groups, "b")  # moved on (a failover decided elsewhere): token 2 on b
        commands = len(member.commands)

        runner.step()

        assert runner.keeper is None and _gone(pid)
        assert runner.local.state == "idle" and runner.lease_token is None
        assert len(member.commands) == commands  # no report: the record is b's now
        runner.renew_once()
        assert len(member.commands) == commands  # and no renewal
        placement = groups.store("g").placement()
        assert (placement.node, placement.state, placement.token) == ("b", "starting", 2)
    finally:
        runner.shutdown()


def test_a_stopping_placement_stops_the_app_and_reports_it_stopped(
        groups: Groups, tmp_path: Path) -> None:
    clock = FakeClock(monotonic=time.monotonic())
    runner = _runner(groups, _topology(), clock, tmp_path)
    try:
        rec = _started(runner, groups, clock)
        pid = _app_env(tmp_path)["pid"]
        assert _propose(groups.members["g"], "stop", expect_token=rec.token,
                        reason="moving to b")["applied"]

        runner.step()

        assert runner.keeper is None and _gone(pid)
        placement = groups.store("g").placement()
        assert (placement.node, placement.state, placement.token) == ("a", "stopped", 1)
    finally:
        runner.shutdown()


# =========================================================================== threads


def test_the_supervisor_runs_the_app_of_each_hosted_group_that_has_one_and_renews_it(
        groups: Groups, tmp_path: Path) -> None:
    """The supervisor's threads on the system clock: a runner for g (not for h, which has
    no app); the app starts once placed, reports running, stays up while the lease is
    renewed well past one lease, and is stopped (and reported) at shutdown."""
    topology = _topology(lease=1.0)
    sup = Supervisor("a", groups, ClusterView(topology), SystemClock(), str(tmp_path), API)
    sup.start()
    try:
        runner = wait_for(lambda: sup.runners.get("g"), 3.0, interval=0.02,
                          what="a runner for g")
        wait_for(lambda: not runner._first_look, 3.0, interval=0.02,
                 what="the runner's first look")
        assert "h" not in sup.runners and sup.local_status("h") is None
        _place(groups, "a")
        wait_for(lambda: groups.store("g").placement().state == "running", 5.0,
                 interval=0.02, what="the app reported running")
        env = _app_env(tmp_path)
        assert env["HAKV_FENCING_TOKEN"] == "1"
        status = sup.local_status("g")
        assert status is not None and (status["state"], status["token"]) == ("running", 1)
        # Renewals every 0.25 s: six of them span one and a half leases; the app lives on.
        keeper = runner.keeper
        assert keeper is not None
        wait_for(lambda: groups.store("g").placement().renewals >= 6, 5.0, interval=0.05,
                 what="six renewals")
        assert keeper.poll() is None and not _gone(env["pid"])
    finally:
        sup.shutdown()
    assert groups.store("g").placement().state == "stopped"
    wait_for(lambda: _gone(env["pid"]), 3.0, interval=0.02, what="the app to be gone")
