"""Access control: no operation takes effect, or answers, without a grant (docs/security.md).

The access workload (``chaos.workload_access``) sets ``POLICY`` up in the cluster, then
clients of three identities — a user who may read and write ``a/open/``, one who may only
read ``a/``, and one with a valid certificate but no user record — send a mix of allowed
and forbidden operations through every node (owners serve them, non-owners forward them),
under the scenario's faults. Each operation is one ``AccessOp`` record; at the end the
cluster's root identity reads the group's ``a/`` keys once more (``AccessFinal``).

The checker holds the records to its own reading of ``POLICY`` (``allowed``: verbs by
group and key prefix, default deny, a txn allowed only if each of its operations is),
independent of the code under test (``hakv.core.access``):

- **no grant, no answer**: a forbidden operation never ends ``ok``;
- **no grant, no effect**: no value a forbidden write carried (every put value is unique)
  is ever seen — by an ok read, or in the final read — whatever the write's outcome (a
  ``denied``, ``fail`` or ``unknown`` write that applied anyway is the hole this finds);
- **denials are typed**: ``denied`` means 401/403 (``permission_denied`` /
  ``unauthenticated``), nothing else.

An allowed operation that was denied is safe (default deny: a node that has not caught up
with the records refuses) and is only counted in the details.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from chaos.checkers._records import capped, load_records, opt_float
from chaos.history import CheckResult

__all__ = ["POLICY", "PREFIX", "USERS", "AccessFinal", "AccessOp", "allowed", "check_access",
           "load_access_records"]

PREFIX = "a/"
"""The workload's keys: ``a/open/...`` and ``a/closed/...``."""

#: role -> [(verbs, key prefix)] on the workload's group; user -> roles. A user absent from
#: USERS' roles (``nobody``) has a certificate of the cluster's CA and no user record.
POLICY: dict[str, list[tuple[tuple[str, ...], str]]] = {
    "chaos-rw": [(("read", "write"), "a/open/")],
    "chaos-ro": [(("read",), "a/")],
}
USERS: dict[str, tuple[str, ...]] = {
    "chaos-writer": ("chaos-rw",),
    "chaos-reader": ("chaos-ro",),
    "chaos-nobody": (),
}
_VERB = {"get": "read", "range": "read", "put": "write", "delete": "write",
         "lease_grant": "lease"}

AccessStatus = Literal["ok", "denied", "fail", "unknown"]
_STATUSES = ("ok", "denied", "fail", "unknown")


def allowed(user: str, op: str, keys: Sequence[str], ops: Sequence[str] = ()) -> bool:
    """May ``user`` do ``op`` on ``keys`` (a txn: ``ops[i]`` on ``keys[i]``, each checked)
    in the workload's group, by ``POLICY``? Unknown users and verbs: no."""
    if op == "txn":
        return len(ops) == len(keys) and all(allowed(user, o, [k]) for o, k in zip(ops, keys, strict=True))
    verb = _VERB.get(op)
    if verb is None:
        return False
    grants = [g for role in USERS.get(user, ()) for g in POLICY.get(role, ())]
    return all(any(verb in verbs and key.startswith(prefix) for verbs, prefix in grants)
               for key in keys) if keys else any(verb in v for v, _ in grants)


@dataclass(frozen=True)
class AccessOp:
    """One operation of the access workload. ``keys``/``ops``: what it touched (a txn: one
    op per key); ``values``: what it wrote (unique); ``read``: key -> value an ok read
    returned (absent keys left out)."""

    user: str
    op: str
    keys: tuple[str, ...]
    status: AccessStatus
    start: float
    end: float | None = None
    node: str = ""
    group: str = ""
    process: int = 0
    ops: tuple[str, ...] = ()
    values: tuple[str, ...] = ()
    read: dict[str, str] = field(default_factory=dict)
    error: str = ""
    kind: str = "access"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AccessOp:
        if d.get("kind") != "access":
            raise ValueError(f"not an access record: {d!r}")
        status = d.get("status")
        if status not in _STATUSES:
            raise ValueError(f"access record: status must be one of {_STATUSES}, got {status!r}")
        read = d.get("read") or {}
        if not isinstance(read, dict):
            raise ValueError("access record: read must be an object")
        return cls(user=str(d["user"]), op=str(d["op"]), keys=tuple(map(str, d.get("keys", ()))),
                   status=status, start=float(d["start"]), end=opt_float(d.get("end")),
                   node=str(d.get("node", "")), group=str(d.get("group", "")),
                   process=int(d.get("process", 0)), ops=tuple(map(str, d.get("ops", ()))),
                   values=tuple(map(str, d.get("values", ()))),
                   read={str(k): str(v) for k, v in read.items()}, error=str(d.get("error", "")))



@dataclass(frozen=True)
class AccessFinal:
    """The root identity's read of the group's ``a/`` keys after the run (status ok), or
    the reason it failed."""

    group: str
    values: dict[str, str]
    status: str = "ok"
    error: str = ""
    kind: str = "access-final"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AccessFinal:
        if d.get("kind") != "access-final":
            raise ValueError(f"not an access-final record: {d!r}")
        values = d.get("values") or {}
        if not isinstance(values, dict):
            raise ValueError("access-final record: values must be an object")
        return cls(group=str(d["group"]), values={str(k): str(v) for k, v in values.items()},
                   status=str(d.get("status", "ok")), error=str(d.get("error", "")))



def parse_access(d: dict[str, Any]) -> AccessOp | AccessFinal:
    return AccessFinal.from_dict(d) if d.get("kind") == "access-final" else AccessOp.from_dict(d)


def load_access_records(path: str) -> list[AccessOp | AccessFinal]:
    return load_records(path, parse_access)


def check_access(ops: Iterable[AccessOp], finals: Iterable[AccessFinal]) -> CheckResult:
    """The three rules of the module doc over every group's records."""
    ops, finals = list(ops), list(finals)
    if not ops:
        return CheckResult("access", False, "vacuous: no access operation was recorded")
    problems: list[str] = []
    forbidden_values: dict[str, AccessOp] = {}
    counts = {"allowed": 0, "forbidden": 0, "ok": 0, "denied": 0, "allowed but denied": 0}
    for op in ops:
        ok_by_policy = allowed(op.user, op.op, op.keys, op.ops)
        counts["allowed" if ok_by_policy else "forbidden"] += 1
        counts["ok"] += op.status == "ok"
        counts["denied"] += op.status == "denied"
        if ok_by_policy and op.status == "denied":
            counts["allowed but denied"] += 1
        if not ok_by_policy:
            if op.status == "ok":
                problems.append(f"{op.user} was answered ok for a forbidden {op.op} of "
                                f"{list(op.keys)} in {op.group} through node {op.node} "
                                f"at {op.start:.3f}")
            for v in op.values:
                forbidden_values[v] = op
        if op.status == "denied" and op.error not in ("permission_denied", "unauthenticated"):
            problems.append(f"{op.user}'s {op.op} is recorded denied with {op.error!r}")
    seen: list[tuple[str, str, str]] = []  # (where, key, value)
    for op in ops:
        if op.status == "ok":
            seen += [(f"{op.user}'s read through {op.node}", k, v) for k, v in op.read.items()]
    for final in finals:
        if final.status != "ok":
            problems.append(f"the final read of {final.group} failed: {final.error}")
            continue
        seen += [(f"the final read of {final.group}", k, v) for k, v in final.values.items()]
    for where, key, value in seen:
        culprit = forbidden_values.get(value)
        if culprit is not None:
            problems.append(f"{where} saw {key}={value!r}, written by a forbidden "
                            f"{culprit.op} of {culprit.user} through node {culprit.node} "
                            f"(recorded {culprit.status})")
    if not finals:
        problems.append("no final read: the workload did not finish")
    details = ", ".join(f"{n} {what}" for what, n in counts.items())
    if counts["forbidden"] == 0 or counts["allowed"] == 0:
        problems.append("the workload sent no forbidden or no allowed operation: "
                        "the check would be vacuous")
    text = f"{capped(problems)}\n{details}" if problems else details
    return CheckResult("access", not problems, text)
