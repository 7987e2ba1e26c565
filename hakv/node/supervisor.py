"""The application supervisor of a node: runs the apps placed on it, like an OCF resource
agent, and keeps each one inside its lease (invariant I3).

Per group that has an app (``[groups.app]``, hakv.core.ha.AppSpec) and is placed on this node
(the group's placement record names this node, in state starting, running or stopping):

1. **Lease first.** A runner thread asks for a lease renewal through the group's log
   every ``renew_interval`` (a ``placement`` command, action ``renew``, for the current
   fencing token). A renewal that commits extends the lease to *its request time* +
   ``lease`` on this node's monotonic clock (hakv.core.ha.runner_deadline). The app is started
   only while the lease is valid.
2. **Fence keeper.** The app does not run as a child of the node process but of a small
   keeper process (hakv/node/fence.py, run as a script) that knows the lease deadline and
   kills the app's process group (SIGTERM a little before, SIGKILL at the deadline) when
   the deadline passes without an extension, or when the node process goes away (its
   stdin pipe closes). So the app stops in time even when the node process is frozen
   (SIGSTOP, a long GC pause, swapped out) or killed: a node that cannot renew its lease
   stops its app, whatever the reason (no quorum, partition, pause).
3. **Start, check, restart.** ``start`` runs in the foreground with HAKV_GROUP, HAKV_NODE,
   HAKV_FENCING_TOKEN and HAKV_DATA (plus HAKV_ENDPOINTS, this node's client API) in its
   environment. ``check`` runs every ``check_interval``; the first pass within
   ``start_timeout`` reports the placement ``running``. An exit or a failed check is a
   failure: the app is restarted in place up to ``restart_limit`` times (each restart is
   reported, so it is an event), then reported ``failed`` and the group's manager fails
   over to the next owner by precedence.
4. **Stop.** When the record says ``stopping`` (a move or a fallback) the app is stopped
   (``stop`` command, else SIGTERM; SIGKILL after ``stop_timeout``) and ``stopped`` is
   reported, so the manager can place it elsewhere at once. When the record names another
   node or token, the app is stopped without a report.
5. **Suspension.** When the keeper fenced the app (lease expired: typically the group lost
   quorum), the runner gives that placement up and reports it ``suspended`` as soon as the
   group can take writes again; the manager then places the app anew (new token).
6. **Restart of the node.** A placement on this node that this process did not start is
   stale (the app died with the previous process, by the keeper): it is reported
   ``suspended`` ("node restarted") so the manager places it again at once.

The app's output goes to ``DATA/apps/<group>.log``; its scratch directory is
``DATA/apps/<group>/`` (HAKV_DATA).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import IO, Any

from hakv import errors
from hakv.core import codec, ha
from hakv.node import fence
from hakv.node.fence import EXIT_FENCED
from hakv.node.ports import Clock, GroupHost, Member, Store, TopologyView

log = logging.getLogger("hakv.node.supervisor")

POLL = 0.05  # seconds between two looks at a group's placement record
REPORT_TIMEOUT = 1.0  # seconds to wait for a report to commit before trying again
NO_CHECK_GRACE = 0.1  # without a check command: alive this long after start = running
FIRST_CHECK = 0.05  # the first check runs this long after the start, then...
STARTING_CHECK = 0.1  # ...every this long until it passes (or start_timeout)
# Chaos-harness self-test only (chaos/scenarios/ha-runner-selftest.toml): a broken build
# whose fence keepers ignore lease expiry, so a paused or cut-off runner keeps its app.


# =========================================================================== the supervisor


@dataclass
class LocalApp:
    """What this node's supervisor does for a group right now (shown by explain)."""

    state: str = "idle"  # idle, starting, running, stopping, fenced, failed
    token: int | None = None
    pid: int | None = None
    restarts: int = 0
    lease_left: float | None = None
    last_exit: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "token": self.token, "pid": self.pid,
                "restarts": self.restarts, "lease_left": self.lease_left,
                "last_exit": self.last_exit}


class AppRunner:
    """Supervises one group's app on this node (one thread, plus one for its lease)."""

    def __init__(self, supervisor: Supervisor, group: str) -> None:
        self.sup = supervisor
        self.groups = supervisor.groups
        self.view = supervisor.view
        self.clock = supervisor.clock
        self.group = group
        self.me = supervisor.me
        self._lock = threading.Lock()
        self.keeper: subprocess.Popen[bytes] | None = None
        self.keeper_token: int | None = None
        self.lease_token: int | None = None  # the placement we hold (or want) a lease for
        self.deadline = 0.0  # lease deadline, monotonic
        self.fenced_token: int | None = None
        self.started_at = 0.0
        self.healthy = False
        self.next_check = 0.0
        self.restarts = 0
        self.local = LocalApp()
        self.stale_token: int | None = None  # a placement from before this process
        # For /metrics (Supervisor.counters): since this process started.
        self.renewals_failed = 0  # renewals asked for that did not commit as renewed
        self.fence_events = 0  # the keeper killed the app because the lease ran out
        self._first_look = True
        self._log: IO[bytes] | None = None

    # ------------------------------------------------------------------ helpers

    @property
    def member(self) -> Member:
        return self.groups.member_of(self.group)

    @property
    def store(self) -> Store:
        return self.groups.store(self.group)

    def placement(self) -> ha.Placement:
        return self.store.placement()

    def _propose(self, action: str, timeout: float = REPORT_TIMEOUT, **fields: Any) -> Any:
        payload = codec.encode(ha.command(action, self.clock.wall(), **fields))
        return self.member.submit(payload).wait(timeout)

    def report(self, token: int, state: str, reason: str) -> bool:
        """Record ``state`` for our placement ``token``; True once applied or refused."""
        try:
            result = self._propose("report", node=self.me, token=token, state=state,
                                   reason=reason, restarts=self.restarts)
        except errors.HakvError as exc:
            log.info("group %s: report %s not recorded yet: %s", self.group, state,
                     exc.message)
            return False
        if isinstance(result, dict) and result.get("applied"):
            log.info("group %s: reported %s (token %d): %s", self.group, state, token, reason)
        elif isinstance(result, dict) and "error" in result:
            log.error("group %s: report %s refused: %s", self.group, state, result["error"])
        return True

    def _env(self, spec: ha.AppSpec, token: int) -> dict[str, str]:
        data = os.path.join(self.sup.data_dir, "apps", self.group)
        os.makedirs(data, exist_ok=True)
        env = dict(os.environ)
        env.update(spec.env)
        env.update(HAKV_GROUP=self.group, HAKV_NODE=self.me, HAKV_FENCING_TOKEN=str(token),
                   HAKV_DATA=data, HAKV_ENDPOINTS=self.sup.api_address)
        if self.sup.ca_file and "HAKV_CACERT" not in spec.env:
            # The API is HTTPS: the app can trust it; its own identity (HAKV_CERT/HAKV_KEY,
            # a user with grants on its group) comes from the app spec's env.
            env["HAKV_CACERT"] = self.sup.ca_file
        return env

    def _logfile(self) -> IO[bytes]:
        if self._log is None:
            path = os.path.join(self.sup.data_dir, "apps", f"{self.group}.log")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            self._log = open(path, "ab", buffering=0)  # noqa: SIM115 - kept open
        return self._log

    def _note(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        try:
            self._logfile().write(f"--- hakv {stamp} {self.me}: {text}\n".encode())
        except OSError:
            pass

    def _send(self, line: str) -> None:
        with self._lock:
            keeper = self.keeper
            if keeper is None or keeper.stdin is None:
                return
            try:
                keeper.stdin.write(line.encode() + b"\n")
                keeper.stdin.flush()
            except (OSError, ValueError):
                pass

    # ------------------------------------------------------------------ lease

    def renew_loop(self, stopping: threading.Event) -> None:
        while not stopping.is_set():
            stopping.wait(self.renew_once())

    def renew_once(self) -> float:
        """Ask once for a renewal of the lease we hold (or want), and on success extend
        the deadline, the keeper's too; the seconds to wait before the next one."""
        tuning = self.view.tuning()
        token = self.lease_token
        if token is None or token == self.fenced_token:
            return POLL
        asked = self.clock.monotonic()
        try:
            result = self._propose("renew", timeout=min(tuning.lease, 3.0), node=self.me,
                                   token=token)
        except errors.HakvError:
            result = None
        renewed = isinstance(result, dict) and result.get("renewed")
        if not renewed:
            self.renewals_failed += 1
        if renewed and self.lease_token == token:
            deadline = ha.runner_deadline(asked, tuning)
            if deadline > self.deadline and deadline > self.clock.monotonic():
                self.deadline = deadline
                self._send(f"deadline {deadline:.6f}")
        return max(0.0, asked + tuning.renew_interval - self.clock.monotonic())

    def lease_left(self) -> float:
        return self.deadline - self.clock.monotonic()

    # ------------------------------------------------------------------ app process

    def start_app(self, spec: ha.AppSpec, token: int) -> None:
        env = self._env(spec, token)
        deadline = self.deadline
        keeper_deadline = deadline
        if self.sup.no_fence:  # failpoint, chaos self-test only: the keeper never fences
            keeper_deadline = deadline + 1e6
        cmd = [sys.executable, "-I", "-S", fence.__file__, f"{keeper_deadline:.6f}", "--",
               *ha.argv(spec.start)]
        self._note(f"starting the app of group {self.group} with fencing token {token}")
        logf = self._logfile()
        with self._lock:
            self.keeper = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=logf,
                                           stderr=subprocess.STDOUT, env=env,
                                           start_new_session=True, close_fds=True)
            self.keeper_token = token
        if self.deadline > deadline:
            self._send(f"deadline {self.deadline:.6f}")
        self.started_at = self.clock.monotonic()
        self.healthy = False
        self.next_check = self.started_at + FIRST_CHECK
        self.local.state, self.local.token = "starting", token
        self.local.pid = self.keeper.pid
        log.info("group %s: app started (token %d, keeper pid %d)", self.group, token,
                 self.keeper.pid)

    def app_exit(self) -> int | None:
        keeper = self.keeper
        if keeper is None:
            return None
        return keeper.poll()

    def _forget_keeper(self) -> None:
        with self._lock:
            keeper, self.keeper = self.keeper, None
            self.keeper_token = None
        if keeper is not None and keeper.stdin is not None:
            try:
                keeper.stdin.close()
            except OSError:
                pass
        self.local.pid = None

    def stop_app(self, spec: ha.AppSpec | None, why: str) -> None:
        """Stop the app gracefully (stop command or SIGTERM), SIGKILL after stop_timeout."""
        keeper = self.keeper
        if keeper is None:
            return
        self.local.state = "stopping"
        self._note(f"stopping the app: {why}")
        timeout = spec.stop_timeout if spec is not None else 10.0
        end = time.monotonic() + timeout
        if keeper.poll() is None:
            if spec is not None and spec.stop is not None and self.keeper_token is not None:
                try:
                    subprocess.run(ha.argv(spec.stop), env=self._env(spec, self.keeper_token),
                                   stdin=subprocess.DEVNULL, stdout=self._logfile(),
                                   stderr=subprocess.STDOUT, timeout=timeout,
                                   start_new_session=True, check=False)
                except (subprocess.TimeoutExpired, OSError) as exc:
                    self._note(f"stop command: {exc}")
                self._send(f"stop {max(0.0, end - time.monotonic()):.3f}")
            else:
                self._send(f"stop {timeout:.3f}")
            try:
                keeper.wait(max(0.0, end - time.monotonic()) + 1.0)
            except subprocess.TimeoutExpired:
                self._send("kill")
                try:
                    keeper.wait(5.0)
                except subprocess.TimeoutExpired:
                    log.error("group %s: fence keeper %d does not stop", self.group, keeper.pid)
        self._forget_keeper()
        self.local.state = "idle"
        log.info("group %s: app stopped (%s)", self.group, why)

    def run_check(self, spec: ha.AppSpec, token: int) -> tuple[bool, str]:
        if spec.check is None:
            alive = self.app_exit() is None
            return alive, "" if alive else "the app exited"
        try:
            done = subprocess.run(ha.argv(spec.check), env=self._env(spec, token),
                                  stdin=subprocess.DEVNULL, stdout=self._logfile(),
                                  stderr=subprocess.STDOUT, timeout=spec.check_timeout,
                                  start_new_session=True, check=False)
        except subprocess.TimeoutExpired:
            return False, f"check did not answer within {spec.check_timeout:g}s"
        except OSError as exc:
            return False, f"check could not run: {exc}"
        if done.returncode != 0:
            return False, f"check exited with {done.returncode}"
        return True, ""

    # ------------------------------------------------------------------ the loop

    def run(self, stopping: threading.Event) -> None:
        renewer = threading.Thread(target=self.renew_loop, args=(stopping,),
                                   name=f"lease-{self.group}", daemon=True)
        renewer.start()
        while not stopping.is_set():
            try:
                self.step()
            except errors.HakvError as exc:
                log.debug("group %s: supervisor step: %s", self.group, exc.message)
            except Exception:
                log.exception("group %s: supervisor step failed", self.group)
            stopping.wait(POLL)

    def step(self) -> None:
        if self.groups.member(self.group) is None:
            self.stop_app(None, "this node no longer owns the group")
            self.lease_token = None
            return
        gspec = self.view.group_spec(self.group)
        spec = gspec.app if gspec is not None else None
        rec = self.placement()
        self.local.lease_left = round(self.lease_left(), 3) if self.keeper else None
        mine = rec.node == self.me and rec.state in ha.LIVE_STATES
        if self._first_look:
            self._first_look = False
            if mine and self.sup.predates_this_process(self.group, rec):
                self.stale_token = rec.token  # placed here before this process started
        # An app that is no longer ours (or of an older token) stops, without a report.
        if self.keeper is not None and (not mine or rec.token != self.keeper_token):
            self.stop_app(spec, f"placement is now {rec.state} on {rec.node} "
                                f"(token {rec.token})")
        if not mine or spec is None:
            self.lease_token = None
            if self.keeper is None and self.local.state not in ("failed",):
                self.local.state = "idle"
            return
        token = rec.token
        if token == self.stale_token:
            if self.report(token, "suspended", f"node {self.me} restarted; the app was not "
                           "running"):
                self.stale_token = None
            return
        if token == self.fenced_token:
            if self.report(token, "suspended", "the lease expired (could not renew it "
                           "through the group's log: no quorum?); the app was stopped"):
                self.fenced_token = None
            return
        if self.lease_token != token:  # a new placement on this node
            self.lease_token = token
            self.deadline = 0.0
            self.restarts = rec.restarts
            self.local = LocalApp(state="waiting for lease", token=token)
        if rec.state == "stopping":
            self.stop_app(spec, f"asked to stop: {rec.reason}")
            self.report(token, "stopped", f"stopped for: {rec.reason}")
            return
        if self.keeper is not None:
            self.watch_app(spec, rec)
        elif not rec.maintenance and self.lease_left() > min(0.2, self.view.tuning().lease / 4):
            self.start_app(spec, token)

    def watch_app(self, spec: ha.AppSpec, rec: ha.Placement) -> None:
        token = rec.token
        code = self.app_exit()
        if code is not None:
            self._forget_keeper()
            if code == EXIT_FENCED:
                self.fence_events += 1
                self.local.state, self.local.last_exit = "fenced", "lease expired"
                self._note("the lease expired: the app was killed (self-fencing)")
                log.warning("group %s: lease expired, app fenced (token %d)", self.group, token)
                self.fenced_token = token
                self.lease_token = None
                return
            if rec.maintenance:  # not managed: no restart
                self.local.state, self.local.last_exit = "exited", f"code {code}"
                return
            self.failure(spec, rec, f"the app exited with code {code}")
            return
        if rec.maintenance:
            return  # not managed: no checks, no restarts
        now = self.clock.monotonic()
        if now < self.next_check:
            return
        if spec.check is None and now - self.started_at < NO_CHECK_GRACE:
            return
        ok, why = self.run_check(spec, token)
        self.next_check = self.clock.monotonic() + spec.check_interval
        if ok:
            if not self.healthy:
                self.healthy = True
                self.local.state = "running"
                if rec.state == "starting":
                    self.report(token, "running", "started; check passed")
            return
        if not self.healthy and self.clock.monotonic() - self.started_at < spec.start_timeout:
            self.next_check = self.clock.monotonic() + min(spec.check_interval, STARTING_CHECK)
            return  # still starting
        if not self.healthy:
            why = f"not healthy within start_timeout {spec.start_timeout:g}s: {why}"
        self.failure(spec, rec, why)

    def failure(self, spec: ha.AppSpec, rec: ha.Placement, why: str) -> None:
        self.stop_app(spec, why)
        self.restarts += 1
        self.local.restarts = self.restarts
        self.local.last_exit = why
        if self.restarts > spec.restart_limit:
            self.local.state = "failed"
            reason = (f"{why}; restart limit {spec.restart_limit} reached on {self.me}")
            while not self.report(rec.token, "failed", reason):
                if self.sup.stopping.wait(POLL):
                    return
            self.lease_token = None
            return
        self._note(f"{why}: restart {self.restarts} of {spec.restart_limit}")
        self.report(rec.token, rec.state, f"{why}: restarting in place ({self.restarts} of "
                    f"{spec.restart_limit})")

    def shutdown(self) -> None:
        """The node stops: stop the app and say so, so the manager moves it at once."""
        rec = None
        try:
            rec = self.placement()
        except Exception:  # the store may be closing
            pass
        gspec = self.view.group_spec(self.group)
        token = self.keeper_token
        self.stop_app(gspec.app if gspec else None, "the node is shutting down")
        if rec is not None and token is not None and rec.token == token:
            self.report(token, "stopped", f"node {self.me} shut down")
        if self._log is not None:
            self._log.close()
            self._log = None


class Supervisor:
    """Every app runner of node ``me``; one runner per hosted group with an app (created
    as groups appear). Apps get ``data_dir``/apps/<group>/ and this node's client API
    (``api_address``). ``clock`` must be the system's when apps run: the fence keeper
    reads the same monotonic clock (CLOCK_MONOTONIC) for the lease deadline.

    ``no_fence`` is a failpoint (hakv.failpoints, chaos self-test only; logged by
    run_node): the keepers ignore lease expiry."""

    def __init__(self, me: str, groups: GroupHost, view: TopologyView, clock: Clock,
                 data_dir: str, api_address: str, no_fence: bool = False,
                 ca_file: str | None = None) -> None:
        self.me = me
        self.ca_file = ca_file  # the cluster's CA bundle, for the apps (HAKV_CACERT)
        self.groups = groups
        self.view = view
        self.clock = clock
        self.data_dir = data_dir
        self.api_address = api_address
        self.stopping = threading.Event()
        self.runners: dict[str, AppRunner] = {}
        self.no_fence = no_fence
        # What "before this process" means for a placement (``predates_this_process``).
        self.started_wall = clock.wall()
        self._initial_index: dict[str, int] = {}
        for gid in groups.hosted():
            try:
                self._initial_index[gid] = groups.store(gid).applied_index()
            except errors.HakvError:
                continue
        self._threads: list[threading.Thread] = []
        self._thread: threading.Thread | None = None

    def predates_this_process(self, group: str, rec: ha.Placement) -> bool:
        """Whether a placement on this node was made before this process started: its app
        then died with the previous process (its keeper fenced it), and it is reported
        ``suspended`` so that it is placed anew under a new token. Either sign suffices:
        it was applied to the store before the start, or its leader's clock put it before
        the start (a placement still in the journal at a crash). A placement made after
        the start (a new app's first, found when the app's runner starts up to a second
        later) is not: it runs under its token, none is burnt (issue 16)."""
        return rec.index <= self._initial_index.get(group, 0) or rec.time < self.started_wall

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="supervisor", daemon=True)
        self._thread.start()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                for gid in self.groups.hosted():
                    if gid in self.runners:
                        continue
                    gspec = self.view.group_spec(gid)
                    if gspec is None or gspec.app is None:
                        continue
                    runner = AppRunner(self, gid)
                    self.runners[gid] = runner
                    thread = threading.Thread(target=runner.run, args=(self.stopping,),
                                              name=f"app-{gid}", daemon=True)
                    thread.start()
                    self._threads.append(thread)
            except Exception:
                log.exception("supervisor round failed")
            self.stopping.wait(1.0)

    def local_status(self, group: str) -> dict[str, Any] | None:
        runner = self.runners.get(group)
        return runner.local.to_dict() if runner is not None else None

    def counters(self, group: str) -> dict[str, int]:
        """lease_renewals_failed, fence_events of the group's app on this node since this
        process started (empty: no runner here). For /metrics."""
        runner = self.runners.get(group)
        if runner is None:
            return {}
        return {"lease_renewals_failed": runner.renewals_failed,
                "fence_events": runner.fence_events}

    def shutdown(self) -> None:
        self.stopping.set()
        end = time.monotonic() + 2.0
        for thread in self._threads:
            thread.join(timeout=max(0.0, end - time.monotonic()))
        threads = []
        for runner in list(self.runners.values()):
            t = threading.Thread(target=runner.shutdown, daemon=True)
            t.start()
            threads.append(t)
        for t in threads:
            t.join(timeout=4.0)


__all__ = ["AppRunner", "LocalApp", "Supervisor"]
