"""The HA resource manager's pure core: plain data in, decisions out (DESIGN.md points 4-5,
patent Fig. 4, invariants I2 and I3). No sockets, LMDB, threads or clock reads: every time
is an argument, so every rule here is a row of a table in tests/test_ha_decisions.py.

What lives here, in the order a failover uses it:

- **Specs**: :class:`AppSpec` (a group's application, like a Pacemaker/OCF resource agent:
  start, stop, check, timeouts, restart limit, environment) and :class:`HaTuning` (the
  cluster's failure-detection and lease timing), parsed from the topology file with
  TopologyErrors that name the broken rule.
- **The placement record** (:class:`Placement`): the patent's ``current_computer_id`` plus
  a state, a fencing token that grows with every placement, and the lease renewal count.
  It changes only through the group's Raft log, by the commands :func:`apply_command`
  applies; they are deterministic (the proposer supplies the time).
- **Lease arithmetic**: the runner holds a lease renewed through the log and must have
  stopped its app by ``renewal request + lease`` on its own monotonic clock
  (:func:`runner_deadline`); the manager re-places only after
  ``renewal first seen + lease * (1 + clock_drift) + lease_margin`` on *its* monotonic
  clock (:func:`lease_expiry`), and only if no renewal slipped in meanwhile (the place
  command compares the renewal count: a compare-and-set, so a renewal that commits just
  before the new placement makes the placement fail instead of overlapping).
- **Decisions**: :func:`decide` (what the group's leader does next: place by precedence,
  wait for a lease, stop for a move or a fallback, nothing), :func:`node_marks` (which
  owners to mark down or up), the quorum rule and the fallback time window.
- **Explanation**: :func:`explain_placement` (why the app runs where it runs, where it
  would go next).
"""

from __future__ import annotations

import math
import re
import time as _time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from hakv.core.quorum import majority
from hakv.core.tomlcheck import check_keys, type_name
from hakv.errors import BadRequestError, TopologyError

__all__ = [
    "ACTIONS",
    "AppSpec",
    "Decision",
    "GroupView",
    "HaTuning",
    "LIVE_STATES",
    "PLACEMENT_OP",
    "Placement",
    "STATES",
    "apply_command",
    "decide",
    "explain_placement",
    "handover_target",
    "in_window",
    "lease_expiry",
    "node_marks",
    "parse_app",
    "parse_ha",
    "parse_window",
    "runner_deadline",
    "validate_command",
]

# =========================================================================== specs

Command = str | tuple[str, ...]
"""A command: a shell string (run with ``/bin/sh -c``) or an argv list (run directly)."""

FALLBACK_POLICIES = ("stay", "return")
_APP_KEYS = ("start", "stop", "check", "check_interval", "check_timeout", "start_timeout",
             "stop_timeout", "restart_limit", "env")
_HA_KEYS = ("failure_timeout", "lease", "renew_interval", "lease_margin", "clock_drift",
            "probe_interval")
_ENV_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_WINDOW_RE = re.compile(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*\Z")
RESERVED_ENV_PREFIX = "HAKV_"


def _fail(rule: str, message: str, **details: Any) -> TopologyError:
    return TopologyError(message, rule=rule, **details)


def _seconds(raw: Mapping[str, Any], key: str, where: str, default: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail("field_type", f"{where}: {key} must be a number of seconds, got "
                    f"{type_name(value)}", key=key)
    if not math.isfinite(value) or value <= 0:
        raise _fail("ha_positive", f"{where}: {key} must be a finite number of seconds > 0, "
                    f"got {value!r}", key=key)
    return float(value)


def _command(value: Any, where: str, key: str) -> Command:
    if isinstance(value, str):
        if not value.strip():
            raise _fail("app_command", f"{where}: {key} must not be empty", key=key)
        return value
    if (isinstance(value, list | tuple) and value
            and all(isinstance(v, str) for v in value) and value[0]):
        return tuple(value)
    raise _fail("app_command", f"{where}: {key} must be a shell command string or a non-empty "
                f"array of strings (argv), got {type_name(value)}", key=key)


def argv(command: Command) -> list[str]:
    """The argv that runs ``command``: a string through ``/bin/sh -c``, a list as is."""
    if isinstance(command, str):
        return ["/bin/sh", "-c", command]
    return list(command)


@dataclass(frozen=True)
class AppSpec:
    """A group's application, handled like an OCF resource agent.

    ``start`` runs the app in the foreground (like systemd's Type=simple): the app runs
    while that process lives, so hakv can always stop it, and fence it. ``stop`` (optional)
    asks it to stop; without it, or when it does not work within ``stop_timeout``, the
    app's process group gets SIGTERM, then SIGKILL. ``check`` (optional) is the monitor:
    exit 0 within ``check_timeout`` means healthy; without it, "the process runs" is the
    check. The first check must pass within ``start_timeout`` of the start. A failed check
    or an exit counts as a failure: the app is restarted in place up to ``restart_limit``
    times, then the group fails over to the next owner by precedence. Every command gets
    ``env`` plus HAKV_GROUP, HAKV_NODE, HAKV_FENCING_TOKEN and HAKV_DATA.
    """

    start: Command
    stop: Command | None = None
    check: Command | None = None
    check_interval: float = 1.0
    check_timeout: float = 2.0
    start_timeout: float = 10.0
    stop_timeout: float = 10.0
    restart_limit: int = 2
    env: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"start": _cmd_out(self.start)}
        if self.stop is not None:
            out["stop"] = _cmd_out(self.stop)
        if self.check is not None:
            out["check"] = _cmd_out(self.check)
        out.update(check_interval=self.check_interval, check_timeout=self.check_timeout,
                   start_timeout=self.start_timeout, stop_timeout=self.stop_timeout,
                   restart_limit=self.restart_limit)
        if self.env:
            out["env"] = dict(self.env)
        return out

    def to_toml_lines(self, table: str) -> list[str]:
        """``[table]`` lines that :func:`parse_app` reads back to an equal spec."""
        lines = [f"[{table}]"]
        for key, value in self.to_dict().items():
            lines.append(f"{key} = {_toml_value(value)}")
        return lines


def _cmd_out(command: Command) -> str | list[str]:
    return command if isinstance(command, str) else list(command)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return _toml_str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_str(k)} = {_toml_value(v)}"
                                for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def _toml_str(value: str) -> str:
    out = []
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def parse_app(raw: Any, where: str) -> AppSpec:
    """A ``[groups.app]`` table -> AppSpec; TopologyError naming the broken rule."""
    where = f"{where}: app"
    if not isinstance(raw, Mapping):
        raise _fail("shape", f"{where} must be a table ([groups.app]), got {type_name(raw)}",
                    key="app")
    check_keys(raw, _APP_KEYS, where)
    if "start" not in raw:
        raise _fail("missing_field", f"{where}: field 'start' is missing (the command that "
                    "runs the app in the foreground)", key="start")
    start = _command(raw["start"], where, "start")
    stop = _command(raw["stop"], where, "stop") if "stop" in raw else None
    check = _command(raw["check"], where, "check") if "check" in raw else None
    limit = raw.get("restart_limit", 2)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise _fail("app_restart_limit", f"{where}: restart_limit must be an integer >= 0 "
                    f"(restarts in place before failing over), got {type_name(limit)}",
                    key="restart_limit")
    env_raw = raw.get("env", {})
    if not isinstance(env_raw, Mapping):
        raise _fail("app_env", f"{where}: env must be a table of NAME = \"value\", got "
                    f"{type_name(env_raw)}", key="env")
    env = []
    for name, value in env_raw.items():
        if not _ENV_RE.match(name):
            raise _fail("app_env", f"{where}: env name {name!r} is not a valid variable name",
                        key="env")
        if name.startswith(RESERVED_ENV_PREFIX):
            raise _fail("app_env", f"{where}: env name {name!r} starts with "
                        f"{RESERVED_ENV_PREFIX!r}, which hakv reserves for HAKV_GROUP, "
                        "HAKV_NODE, HAKV_FENCING_TOKEN and HAKV_DATA", key="env")
        if not isinstance(value, str):
            raise _fail("app_env", f"{where}: env {name} must be a string, got "
                        f"{type_name(value)}", key="env")
        env.append((name, value))
    return AppSpec(
        start=start, stop=stop, check=check,
        check_interval=_seconds(raw, "check_interval", where, 1.0),
        check_timeout=_seconds(raw, "check_timeout", where, 2.0),
        start_timeout=_seconds(raw, "start_timeout", where, 10.0),
        stop_timeout=_seconds(raw, "stop_timeout", where, 10.0),
        restart_limit=int(limit), env=tuple(env))


def parse_fallback(raw: Mapping[str, Any], where: str) -> tuple[str, str | None]:
    """``fallback`` and ``fallback_window`` of a group table, checked."""
    policy = raw.get("fallback", "stay")
    if policy not in FALLBACK_POLICIES:
        raise _fail("group_fallback", f"{where}: fallback must be \"stay\" (keep running where "
                    "it runs) or \"return\" (move back to the highest-precedence owner when it "
                    f"returns), got {type_name(policy)}", key="fallback")
    window = raw.get("fallback_window")
    if window is None:
        return policy, None
    if not isinstance(window, str):
        raise _fail("group_fallback_window", f"{where}: fallback_window must be a string "
                    f"\"HH:MM-HH:MM\", got {type_name(window)}", key="fallback_window")
    try:
        parse_window(window)
    except ValueError as exc:
        raise _fail("group_fallback_window", f"{where}: fallback_window {window!r}: {exc}",
                    key="fallback_window") from None
    if policy != "return":
        raise _fail("group_fallback_window", f"{where}: fallback_window applies only to "
                    "fallback = \"return\"; set that, or remove the window",
                    key="fallback_window")
    return policy, window


def parse_window(text: str) -> tuple[int, int]:
    """``"HH:MM-HH:MM"`` -> (start, end) in minutes after midnight; ValueError if bad.

    The window may wrap midnight (``"22:00-06:00"``); start == end is refused (say what
    you mean: no window at all means "any time")."""
    m = _WINDOW_RE.match(text)
    if not m:
        raise ValueError('expected "HH:MM-HH:MM" (24-hour clock), e.g. "22:00-06:00"')
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    for h, mi in ((h1, m1), (h2, m2)):
        if h > 23 or mi > 59:
            raise ValueError(f"{h:02d}:{mi:02d} is not a time of day (00:00..23:59)")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start == end:
        raise ValueError("the window is empty (start == end); leave fallback_window out "
                         "for \"any time\"")
    return start, end


def in_window(window: str | None, minute_of_day: int) -> bool:
    """Whether ``minute_of_day`` (0..1439, the deciding node's local time) is in the window;
    no window means always. Start inclusive, end exclusive; wraps midnight."""
    if window is None:
        return True
    start, end = parse_window(window)
    if start < end:
        return start <= minute_of_day < end
    return minute_of_day >= start or minute_of_day < end


@dataclass(frozen=True)
class HaTuning:
    """Failure detection and lease timing, in seconds (the ``[ha]`` table).

    ``failure_timeout``: an owner that does not answer the group leader's probes (every
    ``probe_interval``) for this long is marked down. ``lease``: how long a runner may run
    its app after it asked for a renewal; renewals go every ``renew_interval``. The
    manager re-places an app only ``lease * (1 + clock_drift) + lease_margin`` after it
    last saw a renewal (clock_drift bounds the rate difference of two nodes' clocks).
    """

    failure_timeout: float = 1.0
    lease: float = 1.0
    renew_interval: float = 0.25
    lease_margin: float = 0.1
    clock_drift: float = 0.01
    probe_interval: float = 0.2

    def validate(self) -> None:
        for key in _HA_KEYS:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _fail("field_type", f"[ha] {key} must be a number, got "
                            f"{type_name(value)}", key=key)
            if not math.isfinite(value) or value < 0 or (value == 0 and key != "clock_drift"):
                raise _fail("ha_positive", f"[ha] {key} must be a finite number > 0, got "
                            f"{value!r}", key=key)
        if self.clock_drift >= 0.5:
            raise _fail("ha_clock_drift", f"[ha] clock_drift is a rate (0.01 = 1%), must be "
                        f"below 0.5, got {self.clock_drift!r}", key="clock_drift")
        if self.renew_interval * 2 > self.lease:
            raise _fail("ha_renew_interval", f"[ha] renew_interval ({self.renew_interval!r}) "
                        f"must be at most half the lease ({self.lease!r}), or one late renewal "
                        "would stop the app", key="renew_interval")
        if self.probe_interval >= self.failure_timeout:
            raise _fail("ha_probe_interval", f"[ha] probe_interval ({self.probe_interval!r}) "
                        f"must be less than failure_timeout ({self.failure_timeout!r})",
                        key="probe_interval")

    def to_dict(self) -> dict[str, float]:
        return {key: getattr(self, key) for key in _HA_KEYS}

    @property
    def takeover_wait(self) -> float:
        """Seconds from the last renewal seen to a safe new placement."""
        return self.lease * (1 + self.clock_drift) + self.lease_margin


def parse_ha(raw: Any) -> HaTuning:
    """The ``[ha]`` table -> HaTuning (validated)."""
    if not isinstance(raw, Mapping):
        raise _fail("shape", f"ha must be a table ([ha]), got {type_name(raw)}", key="ha")
    check_keys(raw, _HA_KEYS, "[ha]")
    values: dict[str, float] = {}
    for key in _HA_KEYS:
        if key in raw:
            value = raw[key]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _fail("field_type", f"[ha] {key} must be a number of seconds, got "
                            f"{type_name(value)}", key=key)
            values[key] = float(value)
    tuning = HaTuning(**values)
    tuning.validate()
    return tuning


def ha_toml_lines(tuning: HaTuning) -> list[str]:
    return ["[ha]"] + [f"{k} = {v!r}" for k, v in tuning.to_dict().items()]


# =========================================================================== quorum, leases


def runner_deadline(requested_at: float, tuning: HaTuning) -> float:
    """When a runner must have stopped its app: the *request* time of its last renewal
    that committed, plus the lease, on the runner's own monotonic clock."""
    return requested_at + tuning.lease


def lease_expiry(seen_at: float, tuning: HaTuning) -> float:
    """When the group's leader may place the app elsewhere: ``seen_at`` is when (on the
    leader's monotonic clock) it first saw the current renewal count. The runner asked for
    that renewal before it committed, so before ``seen_at``: its deadline is at most
    ``seen_at + lease`` on its clock, and the drift factor and margin cover a runner
    clock that runs slower than the leader's."""
    return seen_at + tuning.takeover_wait


@dataclass(frozen=True)
class LeaseWatch:
    """What a node last saw of a group's lease: (token, renewals) and since when."""

    token: int
    renewals: int
    seen_at: float


def observe(previous: LeaseWatch | None, placement: Placement, now: float) -> LeaseWatch:
    """Update the watch: a new (token, renewals) pair restarts the clock at ``now``.

    A node that has seen nothing yet (just started, or just took over) starts the clock at
    ``now`` too: it cannot know when the last renewal happened, so it assumes just now.
    """
    if (previous is not None and previous.token == placement.token
            and previous.renewals == placement.renewals):
        return previous
    return LeaseWatch(placement.token, placement.renewals, now)


# =========================================================================== placement record

STATES = ("none", "starting", "running", "stopping", "stopped", "failed", "suspended")
LIVE_STATES = ("starting", "running", "stopping")
"""States in which the placed node may hold a lease (and run the app)."""
PLACEMENT_OP = "placement"
ACTIONS = ("place", "unplace", "report", "renew", "stop", "move", "maintenance", "cleanup")
REPORT_STATES = ("starting", "running", "stopped", "failed", "suspended")
"""What a runner reports about its placement (``starting`` and ``running`` again with a
higher restart count record a restart in place)."""
MAX_REASON = 400


@dataclass(frozen=True)
class Placement:
    """A group's placement record, replicated on its owners only.

    ``node`` is the patent's ``current_computer_id``; ``token`` grows by one with every
    placement (the fencing token handed to the app); ``renewals`` counts the lease renewals
    of the current placement; ``target`` is a requested move; ``failed_on`` lists the
    nodes where the app failed beyond its restart limit (skipped until ``hakv group
    cleanup``)."""

    node: str | None = None
    state: str = "none"
    token: int = 0
    renewals: int = 0
    reason: str = ""
    time: float = 0.0
    index: int = 0
    renewed_at: float = 0.0
    restarts: int = 0
    maintenance: bool = False
    target: str | None = None
    failed_on: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "state": self.state, "token": self.token,
                "renewals": self.renewals, "reason": self.reason, "time": self.time,
                "index": self.index, "renewed_at": self.renewed_at, "restarts": self.restarts,
                "maintenance": self.maintenance, "target": self.target,
                "failed_on": list(self.failed_on)}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> Placement:
        if not raw:
            return cls()
        return cls(node=raw.get("node"), state=str(raw.get("state", "none")),
                   token=int(raw.get("token", 0)), renewals=int(raw.get("renewals", 0)),
                   reason=str(raw.get("reason", "")), time=float(raw.get("time", 0.0)),
                   index=int(raw.get("index", 0)),
                   renewed_at=float(raw.get("renewed_at", 0.0)),
                   restarts=int(raw.get("restarts", 0)),
                   maintenance=bool(raw.get("maintenance", False)),
                   target=raw.get("target"), failed_on=tuple(raw.get("failed_on", ())))

    @property
    def holds_lease(self) -> bool:
        return self.node is not None and self.state in LIVE_STATES


def _req_str(cmd: Mapping[str, Any], key: str, *, maxlen: int = 64) -> str:
    value = cmd.get(key)
    if not isinstance(value, str) or not 1 <= len(value) <= maxlen:
        raise BadRequestError(f"placement.{key}: expected a string of 1..{maxlen} characters, "
                              f"got {value!r}")
    return value


def _req_int(cmd: Mapping[str, Any], key: str) -> int:
    value = cmd.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadRequestError(f"placement.{key}: expected an integer >= 0, got {value!r}")
    return value


def _reason(cmd: Mapping[str, Any]) -> str:
    value = cmd.get("reason", "")
    if not isinstance(value, str):
        raise BadRequestError("placement.reason: expected a string")
    return value[:MAX_REASON]


def validate_command(cmd: Any) -> dict[str, Any]:
    """Check a decoded ``placement`` command; returns it normalized (BadRequestError)."""
    if not isinstance(cmd, Mapping):
        raise BadRequestError("placement: expected an object")
    action = cmd.get("action")
    if action not in ACTIONS:
        raise BadRequestError(f"placement.action: expected one of {', '.join(ACTIONS)}, "
                              f"got {action!r}")
    when = cmd.get("time")
    if isinstance(when, bool) or not isinstance(when, int | float) or not math.isfinite(when):
        raise BadRequestError("placement.time: expected a number (seconds since the epoch)")
    out: dict[str, Any] = {"op": PLACEMENT_OP, "action": action, "time": float(when),
                           "reason": _reason(cmd)}
    if action in ("place", "unplace"):
        out["expect_token"] = _req_int(cmd, "expect_token")
        out["expect_renewals"] = _req_int(cmd, "expect_renewals")
        if action == "place":
            out["node"] = _req_str(cmd, "node")
        else:
            state = cmd.get("state")
            if state not in ("failed", "suspended"):
                raise BadRequestError("placement.state: unplace takes failed or suspended")
            out["state"] = state
    elif action in ("report", "renew"):
        out["node"] = _req_str(cmd, "node")
        out["token"] = _req_int(cmd, "token")
        if action == "report":
            state = cmd.get("state")
            if state not in REPORT_STATES:
                raise BadRequestError(f"placement.state: a report takes one of "
                                      f"{', '.join(REPORT_STATES)}, got {state!r}")
            out["state"] = state
            out["restarts"] = _req_int(cmd, "restarts") if "restarts" in cmd else 0
    elif action == "stop":
        out["expect_token"] = _req_int(cmd, "expect_token")
    elif action == "move":
        out["target"] = _req_str(cmd, "target")
    elif action == "maintenance":
        on = cmd.get("on")
        if not isinstance(on, bool):
            raise BadRequestError("placement.on: expected true or false")
        out["on"] = on
    return out


def command(action: str, when: float, **fields: Any) -> dict[str, Any]:
    """Build (and validate) a placement command; ``when`` is the proposer's wall clock."""
    return validate_command({"op": PLACEMENT_OP, "action": action, "time": when, **fields})


def _event(action: str, new: Placement, cmd: Mapping[str, Any], index: int,
           previous: Placement) -> dict[str, Any]:
    return {"kind": "placement", "action": action, "time": cmd["time"], "index": index,
            "node": new.node, "previous_node": previous.node, "state": new.state,
            "token": new.token, "reason": cmd.get("reason", "")}


Applied = tuple[Placement | None, dict[str, Any], dict[str, Any] | None]


def apply_command(current: Placement, cmd: Mapping[str, Any], index: int) -> Applied:
    """Apply a validated placement command at log ``index``: (new record or None if
    unchanged, the result for the proposer, an event to record or None). Deterministic."""
    action = cmd["action"]
    when = cmd["time"]
    if action == "renew":
        if (cmd["node"] == current.node and cmd["token"] == current.token
                and current.state in LIVE_STATES):
            new = replace(current, renewals=current.renewals + 1, renewed_at=when)
            return new, {"renewed": True, "renewals": new.renewals, "token": new.token}, None
        return None, {"renewed": False, "token": current.token, "node": current.node,
                      "state": current.state}, None

    def refused(why: str) -> Applied:
        return None, {"applied": False, "why": why, "placement": current.to_dict()}, None

    def done(new: Placement) -> Applied:
        return (new, {"applied": True, "placement": new.to_dict()},
                _event(action, new, cmd, index, current))

    if action in ("place", "unplace"):
        if (cmd["expect_token"], cmd["expect_renewals"]) != (current.token, current.renewals):
            return refused(f"the record changed (token {current.token}, renewals "
                           f"{current.renewals}), expected token {cmd['expect_token']}, "
                           f"renewals {cmd['expect_renewals']}")
        if current.maintenance:
            return refused("the group is in maintenance")
        if action == "place":
            return done(replace(current, node=cmd["node"], state="starting",
                                token=current.token + 1, renewals=0, reason=cmd["reason"],
                                time=when, index=index, restarts=0, target=None))
        return done(replace(current, node=None, state=cmd["state"], reason=cmd["reason"],
                            time=when, index=index))
    if action == "report":
        if cmd["node"] != current.node or cmd["token"] != current.token:
            return refused(f"not the current placement (node {current.node}, token "
                           f"{current.token})")
        if current.state not in LIVE_STATES:
            return refused(f"the placement is {current.state}")
        state = cmd["state"]
        if state == "running" and current.state == "stopping":
            return refused("the placement is stopping")
        if state == "starting" and current.state != "starting":
            return refused(f"the placement is {current.state}, not starting")
        if state == current.state and cmd["restarts"] == current.restarts:
            return refused(f"already {state}")
        failed_on = current.failed_on
        if state == "failed" and cmd["node"] not in failed_on:
            failed_on = (*failed_on, cmd["node"])
        # "running" (and a restart in place) keeps the reason of the placement: why the
        # app runs *there*; the report's own reason is in its event.
        reason = current.reason if state in ("starting", "running") else cmd["reason"]
        return done(replace(current, state=state, reason=reason, time=when, index=index,
                            restarts=cmd["restarts"], failed_on=failed_on))
    if action == "stop":
        if cmd["expect_token"] != current.token:
            return refused(f"the token is {current.token}, not {cmd['expect_token']}")
        if current.state not in ("starting", "running"):
            return refused(f"the placement is {current.state}")
        return done(replace(current, state="stopping", reason=cmd["reason"], time=when,
                            index=index))
    if action == "move":
        if current.maintenance:
            return None, {"error": {"code": "conflict", "retryable": False, "message":
                          "the group is in maintenance: turn it off first (hakv group "
                          "maintenance G off)"}}, None
        if cmd["target"] == current.node and current.state in ("starting", "running"):
            return done(replace(current, target=None))
        return done(replace(current, target=cmd["target"],
                            failed_on=tuple(n for n in current.failed_on
                                            if n != cmd["target"])))
    if action == "maintenance":
        if current.maintenance == cmd["on"]:
            return refused(f"maintenance is already {'on' if cmd['on'] else 'off'}")
        return done(replace(current, maintenance=cmd["on"]))
    # cleanup
    return done(replace(current, failed_on=(), target=None))


# =========================================================================== decisions


@dataclass(frozen=True)
class GroupView:
    """What the group's leader knows when it decides (all times on its monotonic clock).

    ``live``: owners that answered its probes within the failure timeout (itself
    included); ``unknown``: owners it has not heard from yet and not given up on (it took
    over less than a failure timeout ago); ``stable``: live owners that have been live for
    at least a failure timeout (fallback waits for those). ``lease_seen_at``: when it first
    saw the record's current (token, renewals). ``in_window``: the fallback window allows
    moving now."""

    owners: tuple[str, ...]
    placement: Placement
    live: frozenset[str]
    lease_seen_at: float
    unknown: frozenset[str] = frozenset()
    stable: frozenset[str] | None = None
    fallback: str = "stay"
    in_window: bool = True
    has_app: bool = True


@dataclass(frozen=True)
class Decision:
    """``none``: nothing to do; ``wait``: nothing until ``until`` (or news); ``place``: try
    ``candidates`` in order (the first that gets its capacity wins); ``unplace``: record
    that no owner can run it (``state``); ``stop``: ask the runner to stop (a move)."""

    action: str
    reason: str = ""
    candidates: tuple[str, ...] = ()
    until: float | None = None
    state: str | None = None


def candidates(view: GroupView) -> tuple[str, ...]:
    """Owners that may run the app now, best first: a requested move target, then the
    live owners by precedence, without those where it failed beyond its restart limit."""
    p = view.placement
    ok = [o for o in view.owners if o in view.live and o not in p.failed_on]
    if p.target in ok:
        ok.remove(p.target)
        ok.insert(0, p.target)
    return tuple(ok)


def _waiting_for_unknown(view: GroupView, chosen: str) -> list[str]:
    """Owners of higher precedence than ``chosen`` the leader has not heard from yet."""
    if view.placement.target == chosen:
        return []
    before = view.owners[: view.owners.index(chosen)]
    return [o for o in before if o in view.unknown and o not in view.placement.failed_on]


def _place_or_unplace(view: GroupView, reason: str, now: float,
                      avoid: str | None = None, urgent: bool = False,
                      last: str | None = None) -> Decision:
    """Place by precedence. Owners the leader has not heard from yet are waited for (for
    at most a failure timeout after it took over) so that an app starts on the owner it
    prefers; not when ``urgent`` (a failover: the app is down now). ``avoid`` is left out
    unless it is the only candidate; ``last`` is tried after every other candidate."""
    if urgent:
        view = replace(view, unknown=frozenset())
    order = candidates(view)
    p = view.placement
    if avoid is not None and avoid in order and len(order) > 1 and p.target != avoid:
        order = tuple(o for o in order if o != avoid)  # it just gave the app up
    if last is not None and last in order:
        order = tuple(o for o in order if o != last) + (last,)
    if not order:
        if view.unknown:
            return Decision("wait", f"{reason}; waiting to hear from "
                            f"{', '.join(sorted(view.unknown))}", until=None)
        down = [o for o in view.owners if o not in view.live]
        why = f"{reason}; no owner can run it (down: {', '.join(down) or 'none'}"
        why += f"; failed on: {', '.join(p.failed_on)})" if p.failed_on else ")"
        if p.node is None and p.state == "failed":
            return Decision("none", why)
        return Decision("unplace", why, state="failed")
    pending = _waiting_for_unknown(view, order[0])
    if pending:
        return Decision("wait", f"{reason}; waiting to hear from {', '.join(pending)} "
                        f"(higher precedence than {order[0]})")
    return Decision("place", reason, candidates=order)


def decide(view: GroupView, now: float, tuning: HaTuning) -> Decision:
    """What the group's leader does now (patent Fig. 4, per group). See docs/ha.md."""
    p = view.placement
    if not view.has_app:
        return Decision("none", "the group has no app")
    if p.maintenance:
        return Decision("none", "maintenance: the group's app is not managed")
    if p.state == "none":
        return _place_or_unplace(view, "initial placement on the highest-precedence live "
                                 "owner", now)
    if not p.holds_lease:
        # The runner reported its app stopped (or nobody runs it): no lease to wait for.
        if p.state == "stopped":
            if p.target is not None:
                why = f"move to {p.target} requested"
            else:
                why = f"{p.node} stopped the app ({p.reason})" if p.reason else "stopped"
        elif p.state == "failed" and p.node is not None:
            return _place_or_unplace(view, f"the app failed on {p.node} ({p.reason}); failing "
                                     "over to the next live owner by precedence", now,
                                     urgent=True)
        elif p.state == "suspended":
            why = "resuming after the group's suspension"
        else:
            why = "placing again"
        return _place_or_unplace(view, why, now,
                                 avoid=p.node if p.state == "stopped" else None)
    expiry = lease_expiry(view.lease_seen_at, tuning)
    runner = p.node
    assert runner is not None  # holds_lease
    if now >= expiry:
        silent = now - view.lease_seen_at
        cause = "unreachable" if runner not in view.live else "not renewing"
        # A runner that still looks live but let its lease lapse goes last: most often it
        # just died and its failure is not detected yet (the lease can run out first).
        return _place_or_unplace(view, f"lease of {runner} expired: no renewal for "
                                 f"{silent:.1f}s ({runner} {cause})", now, urgent=True,
                                 last=runner)
    if p.state == "stopping":
        return Decision("wait", f"waiting for {runner} to stop the app", until=expiry)
    order = candidates(view)
    if p.target is not None and p.target != runner and p.target in order:
        return Decision("stop", f"move to {p.target} requested")
    if view.fallback == "return" and p.state == "running":
        stable = view.stable if view.stable is not None else view.live
        best = next((o for o in view.owners if o in stable and o not in p.failed_on), None)
        if (best is not None and best != runner
                and view.owners.index(best) < view.owners.index(runner)):
            if view.in_window:
                return Decision("stop", f"fallback: {best} (higher precedence than {runner}) "
                                "is back")
            return Decision("wait", f"fallback to {best} waits for the fallback window",
                            until=expiry)
    return Decision("wait", f"{runner} holds the lease", until=expiry)


def handover_target(me: str, placement: Placement, live: Iterable[str]) -> str | None:
    """Where the group's Raft leadership should go, or None to keep it: to the node that
    runs the app. Renewals are commits, and nothing commits during an election: with the
    runner leading, losing any other owner costs no election, so no renewal is late and
    the app never stops for it; losing the runner costs an election, which runs while its
    lease runs out anyway."""
    runner = placement.node
    if (runner is None or runner == me or placement.state != "running"
            or placement.maintenance or runner not in set(live)):
        return None
    return runner


def node_marks(owners: Sequence[str], me: str, live: Iterable[str], unknown: Iterable[str],
               statuses: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(node, "down"|"up") for each owner whose recorded status disagrees with what the
    leader sees: unreachable for the failure timeout -> down; reachable again -> up
    (reintegration). ``statuses`` are the group's node-status records."""
    live_set, unknown_set = set(live), set(unknown)
    out = []
    for owner in owners:
        if owner == me or owner in unknown_set:
            continue
        record = statuses.get(owner) or {}
        state = (record.get("status") or {}).get("state")
        if owner not in live_set and state != "down":
            out.append((owner, "down"))
        elif owner in live_set and state == "down":
            out.append((owner, "up"))
    return out


# =========================================================================== explanation


def _clock(ts: float) -> str:
    if not ts:
        return "-"
    return _time.strftime("%H:%M:%S", _time.localtime(ts)) + f".{int(ts * 1000) % 1000:03d}"


@dataclass(frozen=True)
class PlacementFacts:
    """Everything :func:`explain_placement` says, gathered by the caller."""

    group: str
    owners: tuple[str, ...]
    placement: Placement
    statuses: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    quorum: bool | None = None
    leader: str | None = None
    app: AppSpec | None = None
    fallback: str = "stay"
    fallback_window: str | None = None
    tuning: HaTuning = HaTuning()


def _state_of(facts: PlacementFacts, node: str) -> str:
    record = facts.statuses.get(node) or {}
    status = record.get("status") or {}
    return str(status.get("state") or "unknown")


def explain_placement(facts: PlacementFacts) -> str:
    """Why the app runs where it runs, and where it would go next, in plain words."""
    p = facts.placement
    g = facts.group
    lines: list[str] = []
    if facts.app is None:
        lines.append(f"Group {g} has no app: nothing to place.")
    elif p.state == "none":
        lines.append(f"Group {g}'s app has not been placed yet.")
    elif p.node is None:
        lines.append(f"Group {g}'s app runs nowhere: {p.state} since {_clock(p.time)}.")
    else:
        verb = {"running": "runs on", "starting": "is starting on", "stopping": "is stopping on",
                "stopped": "was stopped on", "failed": "failed on",
                "suspended": "was suspended on"}.get(p.state, "is on")
        lines.append(f"Group {g}'s app {verb} {p.node} (state {p.state}, fencing token "
                     f"{p.token}) since {_clock(p.time)}.")
    if p.reason:
        lines.append(f"Why: {p.reason}.")
    owner_words = []
    for o in facts.owners:
        state = _state_of(facts, o)
        extra = ""
        if o == p.node and p.holds_lease:
            extra = ", runs the app"
        if o in p.failed_on:
            extra += ", app failed here (skipped until `hakv group cleanup`)"
        owner_words.append(f"{o} ({state}{extra})")
    lines.append(f"Owners by precedence: {', '.join(owner_words)}.")
    up = [o for o in facts.owners if _state_of(facts, o) != "down"]
    need = majority(len(facts.owners))
    if facts.quorum is False:
        lines.append(f"Quorum: NO ({need} of {len(facts.owners)} owners needed): the group "
                     "refuses writes and its app is stopped by lease expiry; it resumes on "
                     "its own when enough owners return (patent Fig. 4, step 412).")
    else:
        lines.append(f"Quorum: {len(up)} of {len(facts.owners)} owners up as recorded, "
                     f"{need} needed"
                     + (f"; leader {facts.leader}." if facts.leader else "."))
    if facts.app is not None:
        if p.maintenance:
            lines.append("Maintenance: ON. hakv neither starts, stops, checks nor moves the "
                         "app (leases and self-fencing still apply); `hakv group maintenance "
                         f"{g} off` resumes management.")
        live = frozenset(o for o in facts.owners if _state_of(facts, o) != "down")
        if p.node is not None and p.holds_lease:
            nxt = [o for o in facts.owners
                   if o in live and o != p.node and o not in p.failed_on]
            if nxt:
                lines.append(f"Next: if {p.node} fails, the app restarts on {nxt[0]} (the "
                             "next live owner by precedence) once the lease of "
                             f"{p.node} has surely expired "
                             f"({facts.tuning.takeover_wait:.2f}s after its last renewal).")
            else:
                lines.append(f"Next: if {p.node} fails, no other live owner can take the "
                             "app.")
        if p.target:
            lines.append(f"A move to {p.target} is requested.")
        if facts.fallback == "return":
            when = (f" (only between {facts.fallback_window.replace('-', ' and ')})"
                    if facts.fallback_window else "")
            lines.append(f"Fallback: return. When {facts.owners[0]} (highest precedence) is "
                         f"up again, the app moves back to it{when}.")
        else:
            lines.append("Fallback: stay. The app stays where it runs when a higher-precedence "
                         "owner returns; `hakv group move` moves it.")
        if p.failed_on:
            lines.append(f"Failed on: {', '.join(p.failed_on)}.")
    return "\n".join(lines)
