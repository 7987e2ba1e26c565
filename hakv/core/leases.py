"""Leases: TTLs, the replicated lease commands, and the expiry bound (pure: no I/O, no
clock; time is an argument). The state lives in each group's store
(hakv.storage.leases), the timer on the group's leader (hakv.node.lessor); docs/api.md,
"Leases", states the contract.

Why the remaining time is replicated: etcd and ZooKeeper keep it only in the leader's
memory, so a new leader restarts every lease's countdown at the full TTL and each
failover extends each lease (etcd#9395, #13294, #17132). Here the remaining time is in
the log: a keepalive sets it to the TTL, and the leader *checkpoints* it (one command for
all its leases) at least every ``CHECKPOINT_INTERVAL``. A new leader counts down from the
last recorded value, so a failover extends a lease by at most the time since that
checkpoint plus the time to elect the new leader (:func:`expiry_bound`).

Commands (JSON, hakv.core.codec encodes them):

- client writes, deduplicated by client id and seq like any write:
  ``lease_grant {ttl_ms, id?}``, ``lease_keepalive {id}``, ``lease_revoke {id}``;
- leader commands, no client: ``lease_takeover {term}`` (the first thing a new leader's
  lessor proposes), ``lease_checkpoint {term, leases: [[id, refresh, remaining_ms]...]}``,
  ``lease_expire {term, leases: [[id, refresh]...]}``. Checkpoints and expiries are
  applied only when ``term`` is the term of the last applied takeover, so a deposed
  leader's countdown can never revoke (etcd#12528); and per lease only when ``refresh``
  (the log index of its last grant or keepalive) still matches, so a keepalive that
  committed meanwhile always wins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from hakv.errors import BadRequestError, LeaseTtlError, RequestTooLargeError

MIN_TTL = 1.0
"""Seconds: the shortest lease."""
MAX_TTL = 86400.0
"""Seconds: the longest lease (one day)."""
MAX_LEASE_ID = (1 << 63) - 1
MAX_LEASES = 10000
"""Live leases per group: a grant beyond is refused (too_large)."""
MAX_KEYS_PER_LEASE = 10000
"""Keys attached to one lease: a put beyond is refused (too_large); its revocation is one
revision of at most this many deletions."""

CHECKPOINT_INTERVAL = 1.0
"""Seconds: the most a live lease's recorded remaining time may age on its leader before
the leader checkpoints it (the lessor starts a checkpoint at 60-80 % of this)."""
LESSOR_ROUND = 0.1
"""Seconds between two rounds of a lessor that leads a group with leases (jittered)."""
MARGIN = 0.5
"""Seconds of slack in the bound: the lessor's rounds (noticing a keepalive, noticing the
deadline), the commits of the takeover and of the expiry, scheduling delays."""
CHECKPOINT_BATCH = 1000
"""Leases per checkpoint command (keeps it far below the 48 KiB command limit)."""
EXPIRE_BATCH = 100
"""Leases per expiry command."""

TAKEOVER_OP = "lease_takeover"
CHECKPOINT_OP = "lease_checkpoint"
EXPIRE_OP = "lease_expire"
LESSOR_OPS = frozenset({TAKEOVER_OP, CHECKPOINT_OP, EXPIRE_OP})
"""Commands only a group's leader proposes (no client, no seq)."""
WRITE_OPS = frozenset({"lease_grant", "lease_keepalive", "lease_revoke"})
"""Client writes on leases (deduplicated by client and seq)."""
READ_OPS = frozenset({"lease_ttl"})


# --------------------------------------------------------------------------- the bound


def expiry_bound(ttl: float, election_timeout: float,
                 checkpoint_interval: float = CHECKPOINT_INTERVAL, margin: float = MARGIN,
                 leader_changes: int = 1) -> float:
    """Seconds after the acknowledgement of a lease's last keepalive (or its grant) by
    which its keys are deleted, if the group has a leader with quorum again within one
    ``election_timeout`` of each leader failure:

        ttl + leader_changes * (checkpoint_interval + election_timeout) + margin

    With no leader change: ``ttl + margin``. Each leader change adds at most the age of
    the last checkpoint (< checkpoint_interval) plus the time the group had no lessor
    (the old leader's death to the new leader's takeover: election_timeout when the first
    election succeeds). A new leader starts from the checkpointed remaining time, never
    from the TTL, so this does not grow with the TTL (etcd's failover adds a whole TTL).
    """
    if leader_changes < 0:
        raise ValueError("leader_changes must be >= 0")
    return ttl + leader_changes * (checkpoint_interval + election_timeout) + margin


def safe_until(sent_at: float, ttl: float, margin: float | None = None) -> float:
    """The holder's local deadline after a keepalive *sent* at ``sent_at`` (its monotonic
    clock) was acknowledged: the server counts the TTL from no earlier than its apply,
    which follows the send, so the lease cannot expire before ``sent_at + ttl``;
    ``margin`` (default: :func:`client_margin`) covers clock rate differences."""
    return sent_at + ttl - (client_margin(ttl) if margin is None else margin)


def client_margin(ttl: float) -> float:
    """Seconds a holder keeps between its safe-until deadline and the earliest expiry:
    2 % of the TTL (clock rates), at least 100 ms."""
    return max(0.1, 0.02 * ttl)


def remaining_ms(deadline: float, now: float) -> int:
    """Milliseconds left until ``deadline`` (rounded up, so a checkpoint never shortens a
    lease by the rounding), never negative."""
    return max(0, math.ceil((deadline - now) * 1000.0))


# --------------------------------------------------------------------------- validation


def _int(value: Any, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequestError(f"{field}: expected an integer in {low}..{high}, got {value!r}")
    if not low <= value <= high:
        raise BadRequestError(f"{field}: expected an integer in {low}..{high}, got {value}")
    return value


def lease_id(value: Any, field: str = "id") -> int:
    """A lease id: an integer 1..2^63-1."""
    if value is None:
        raise BadRequestError(f"{field}: missing (a lease id, an integer >= 1, is expected)")
    return _int(value, field, 1, MAX_LEASE_ID)


def ttl_ms(value: Any, field: str = "ttl") -> int:
    """A TTL in seconds (a number, millisecond resolution) -> milliseconds; LeaseTtlError
    outside MIN_TTL..MAX_TTL."""
    # An int is compared as an int: a JSON integer of 400 digits is valid JSON, and
    # math.isfinite or a float format of it would raise OverflowError (a 500).
    if isinstance(value, bool) or not isinstance(value, int | float) or (
            isinstance(value, float) and not math.isfinite(value)):
        raise LeaseTtlError(
            f"{field}: expected a number of seconds in {MIN_TTL:g}..{MAX_TTL:g}, got {value!r}")
    if not MIN_TTL <= value <= MAX_TTL:
        shown = (f"{value:g}s" if isinstance(value, float) or abs(value) < 10**20
                 else f"{'-' if value < 0 else ''}an integer beyond 1e20")
        raise LeaseTtlError(
            f"{field}: {shown} is out of range: a lease lives {MIN_TTL:g}..{MAX_TTL:g}"
            " seconds; keep a longer-lived lease alive with keepalives")
    return int(round(value * 1000))


def write_fields(op: str, body: dict[str, Any]) -> dict[str, Any]:
    """The fields of a lease write (``lease_grant`` / ``lease_keepalive`` /
    ``lease_revoke``), validated. A log command carries ``ttl_ms``; a request ``ttl``."""
    if op == "lease_grant":
        out: dict[str, Any] = {}
        if "ttl_ms" in body:  # a decoded log command
            ms = _int(body["ttl_ms"], "ttl_ms", int(MIN_TTL * 1000), int(MAX_TTL * 1000))
        else:
            if "ttl" not in body:
                raise LeaseTtlError("ttl: missing (the lease's time to live in seconds)")
            ms = ttl_ms(body["ttl"])
        out["ttl_ms"] = ms
        if body.get("id") is not None:
            out["id"] = lease_id(body["id"])
        return out
    if op in ("lease_keepalive", "lease_revoke"):
        return {"id": lease_id(body.get("id"))}
    raise BadRequestError(f"op: expected one of {', '.join(sorted(WRITE_OPS))}, got {op!r}")


def optional_lease(body: dict[str, Any], field: str = "lease") -> int:
    """The ``lease`` of a put (0: none, the key is detached from any lease)."""
    value = body.get("lease")
    if value is None or value == 0 and not isinstance(value, bool):
        return 0
    return lease_id(value, field)


def ttl_request(body: dict[str, Any]) -> dict[str, Any]:
    """A ``lease_ttl`` read: id, keys (bool), serializable (bool)."""
    keys = body.get("keys", False)
    serializable = body.get("serializable", False)
    for name, value in (("keys", keys), ("serializable", serializable)):
        if not isinstance(value, bool):
            raise BadRequestError(f"{name}: expected true or false, got {value!r}")
    return {"id": lease_id(body.get("id")), "keys": keys, "serializable": serializable}


# --------------------------------------------------------------------------- leader commands


def takeover_command(term: int) -> dict[str, Any]:
    return {"op": TAKEOVER_OP, "term": term}


def checkpoint_command(term: int, leases: list[tuple[int, int, int]]) -> dict[str, Any]:
    """``leases``: (id, refresh index, remaining ms)."""
    return {"op": CHECKPOINT_OP, "term": term, "leases": [list(x) for x in leases]}


def expire_command(term: int, leases: list[tuple[int, int]]) -> dict[str, Any]:
    """``leases``: (id, refresh index) whose deadline passed on the proposing leader."""
    return {"op": EXPIRE_OP, "term": term, "leases": [list(x) for x in leases]}


def validate_lessor_command(cmd: Any) -> dict[str, Any]:
    """Re-validate a decoded leader command; BadRequestError if malformed."""
    if not isinstance(cmd, dict):
        raise BadRequestError("lease command: expected an object")
    op = cmd.get("op")
    term = _int(cmd.get("term"), f"{op}.term", 0, MAX_LEASE_ID)
    if op == TAKEOVER_OP:
        return takeover_command(term)
    width = 3 if op == CHECKPOINT_OP else 2
    if op not in (CHECKPOINT_OP, EXPIRE_OP):
        raise BadRequestError(f"lease command op: unknown {op!r}")
    raw = cmd.get("leases")
    limit = CHECKPOINT_BATCH if op == CHECKPOINT_OP else EXPIRE_BATCH
    if not isinstance(raw, list):
        raise BadRequestError(f"{op}.leases: expected a list")
    if len(raw) > limit:
        raise RequestTooLargeError(f"{op}.leases: {len(raw)} entries exceeds {limit}")
    items: list[list[int]] = []
    for i, item in enumerate(raw):
        if not isinstance(item, list) or len(item) != width:
            raise BadRequestError(f"{op}.leases[{i}]: expected a list of {width} integers")
        items.append([lease_id(item[0], f"{op}.leases[{i}][0]"),
                      *(_int(v, f"{op}.leases[{i}]", 0, MAX_LEASE_ID) for v in item[1:])])
    return {"op": op, "term": term, "leases": items}


@dataclass(frozen=True)
class LeaseRecord:
    """A lease as the store keeps it (hakv.storage.leases)."""

    id: int
    ttl_ms: int
    remaining_ms: int
    """As of its last grant, keepalive or checkpoint."""
    refresh: int
    """Log index of its last grant or keepalive."""
    keys: int

    @property
    def ttl(self) -> float:
        return self.ttl_ms / 1000.0


__all__ = ["CHECKPOINT_BATCH", "CHECKPOINT_INTERVAL", "CHECKPOINT_OP", "EXPIRE_BATCH",
           "EXPIRE_OP", "LESSOR_OPS", "LESSOR_ROUND", "MARGIN", "MAX_KEYS_PER_LEASE",
           "MAX_LEASES", "MAX_TTL", "MIN_TTL", "READ_OPS", "TAKEOVER_OP", "WRITE_OPS",
           "LeaseRecord", "checkpoint_command", "client_margin", "expire_command",
           "expiry_bound", "lease_id", "optional_lease", "remaining_ms", "safe_until",
           "takeover_command", "ttl_ms", "ttl_request", "validate_lessor_command",
           "write_fields"]
