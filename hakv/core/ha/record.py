"""The placement record: where a group's app runs, and the commands that change it.

:class:`Placement` is the patent's ``current_computer_id`` plus a state, a fencing token
that grows with every placement, and the lease renewal count. It changes only through the
group's Raft log, by the commands :func:`apply_command` applies; they are deterministic
(the proposer supplies the time), so every replica computes the same record.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from hakv.errors import BadRequestError

__all__ = [
    "ACTIONS",
    "LIVE_STATES",
    "MAX_REASON",
    "PLACEMENT_OP",
    "REPORT_STATES",
    "STATES",
    "Applied",
    "Placement",
    "apply_command",
    "command",
    "validate_command",
]


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
    if (isinstance(when, bool) or not isinstance(when, int | float)
            or not math.isfinite(when if isinstance(when, float) else 0.0)
            or (isinstance(when, int) and abs(when) > 2 ** 53)):
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

