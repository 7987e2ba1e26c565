"""App specs and HA timing: what the topology file says about a group's app.

:class:`AppSpec` (a group's application, like a Pacemaker/OCF resource agent: start, stop,
check, timeouts, restart limit, environment), the fallback policy and window of a group,
and :class:`HaTuning` (the cluster's failure-detection and lease timing, the ``[ha]``
table), parsed with TopologyErrors that name the broken rule, and written back as TOML
(through hakv.core.config, the one TOML writer). hakv.core.topology imports this module
only: parsing a topology needs none of the HA decisions.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hakv.core.config import as_float, check_keys, toml_value, type_name
from hakv.errors import TopologyError

__all__ = [
    "FALLBACK_POLICIES",
    "RESERVED_ENV_PREFIX",
    "AppSpec",
    "Command",
    "HaTuning",
    "argv",
    "ha_toml_lines",
    "in_window",
    "parse_app",
    "parse_fallback",
    "parse_ha",
    "parse_window",
]

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
    if not math.isfinite(as_float(value)) or value <= 0:
        raise _fail("ha_positive", f"{where}: {key} must be a finite number of seconds > 0, "
                    f"got {type_name(value)}", key=key)
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
            lines.append(f"{key} = {toml_value(value)}")
        return lines


def _cmd_out(command: Command) -> str | list[str]:
    return command if isinstance(command, str) else list(command)


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
        if not isinstance(name, str) or not _ENV_RE.match(name):
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
    except TopologyError as exc:
        raise _fail("group_fallback_window", f"{where}: fallback_window {window!r}: "
                    f"{exc.message}", key="fallback_window") from None
    if policy != "return":
        raise _fail("group_fallback_window", f"{where}: fallback_window applies only to "
                    "fallback = \"return\"; set that, or remove the window",
                    key="fallback_window")
    return policy, window


def parse_window(text: str) -> tuple[int, int]:
    """``"HH:MM-HH:MM"`` -> (start, end) in minutes after midnight.

    The window may wrap midnight (``"22:00-06:00"``); start == end is refused (say what
    you mean: no window at all means "any time"). A bad window is a TopologyError (rule
    ``group_fallback_window``): it comes from a topology file or a group record, so the
    user fixes it; :func:`parse_fallback` adds which group and key."""
    m = _WINDOW_RE.match(text)
    if not m:
        raise _window_error('expected "HH:MM-HH:MM" (24-hour clock), e.g. "22:00-06:00"')
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    for h, mi in ((h1, m1), (h2, m2)):
        if h > 23 or mi > 59:
            raise _window_error(f"{h:02d}:{mi:02d} is not a time of day (00:00..23:59)")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start == end:
        raise _window_error("the window is empty (start == end); leave fallback_window out "
                            "for \"any time\"")
    return start, end


def _window_error(message: str) -> TopologyError:
    return _fail("group_fallback_window", message, key="fallback_window")


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
            if not math.isfinite(as_float(value)) or value < 0 or (
                    value == 0 and key != "clock_drift"):
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
            if not math.isfinite(as_float(value)):
                raise _fail("ha_positive", f"[ha] {key} must be a finite number > 0, got "
                            f"{type_name(value)}", key=key)
            values[key] = float(value)
    tuning = HaTuning(**values)
    tuning.validate()
    return tuning


def ha_toml_lines(tuning: HaTuning) -> list[str]:
    return ["[ha]"] + [f"{k} = {toml_value(float(v))}" for k, v in tuning.to_dict().items()]

