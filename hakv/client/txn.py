"""Transaction builders (docs/api.md "Transactions"): ``Compare`` and ``Op``, validated when
built, so a bad compare fails here with BadRequestError instead of on the server."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from hakv.errors import BadRequestError

__all__ = ["Compare", "CompareOp", "CompareTarget", "Op"]

CompareTarget = Literal["value", "version", "mod_revision", "create_revision"]
CompareOp = Literal["==", "!=", "<", ">"]
_TARGETS = ("value", "version", "mod_revision", "create_revision")
_COMPARE_OPS = ("==", "!=", "<", ">")
_OPS = ("put", "delete", "get")


@dataclass(frozen=True)
class Compare:
    """One compare of a transaction: ``key``'s ``target`` ``op`` ``operand``.

    Build with the helpers: ``Compare.value("k", "==", "v")``,
    ``Compare.version("k", "==", 0)`` (0: the key does not exist),
    ``Compare.mod_revision("k", "<", 9)``, ``Compare.create_revision("k", "==", 5)``.
    """

    key: str
    target: str
    op: str
    operand: str | int | None

    def __post_init__(self) -> None:
        if not isinstance(self.key, str):
            raise BadRequestError(f"compare key must be a string, got {self.key!r}")
        if self.target not in _TARGETS:
            raise BadRequestError(
                f"compare target {self.target!r} is not one of {', '.join(_TARGETS)}"
            )
        if self.op not in _COMPARE_OPS:
            raise BadRequestError(f"compare op {self.op!r} is not one of {' '.join(_COMPARE_OPS)}")
        if self.target == "value":
            if self.operand is not None and not isinstance(self.operand, str):
                raise BadRequestError(
                    f"compare on value needs a string (or None), got {self.operand!r}"
                )
        elif isinstance(self.operand, bool) or not isinstance(self.operand, int):
            raise BadRequestError(
                f"compare on {self.target} needs an integer, got {self.operand!r}"
            )

    @classmethod
    def value(cls, key: str, op: CompareOp, value: str | None) -> Compare:
        return cls(key, "value", op, value)

    @classmethod
    def version(cls, key: str, op: CompareOp, version: int) -> Compare:
        return cls(key, "version", op, version)

    @classmethod
    def mod_revision(cls, key: str, op: CompareOp, revision: int) -> Compare:
        return cls(key, "mod_revision", op, revision)

    @classmethod
    def create_revision(cls, key: str, op: CompareOp, revision: int) -> Compare:
        return cls(key, "create_revision", op, revision)

    @classmethod
    def from_dict(cls, body: Any) -> Compare:
        """From the wire/file shape ``{"key", "target", "op", "value"}``."""
        if not isinstance(body, Mapping):
            raise BadRequestError(f"a compare must be an object, got {body!r}")
        try:
            return cls(body["key"], body["target"], body["op"], body.get("value"))
        except KeyError as err:
            raise BadRequestError(f"compare {dict(body)!r} lacks {err.args[0]!r}") from None

    def to_wire(self) -> dict[str, Any]:
        return {"key": self.key, "target": self.target, "op": self.op, "value": self.operand}


@dataclass(frozen=True)
class Op:
    """One operation of a transaction branch: ``Op.put(k, v)``, ``Op.put(k, v, lease=ID)``
    (the key is attached to that lease, deleted with it; without ``lease`` a put detaches
    the key from any lease), ``Op.delete(k)``, ``Op.get(k)``."""

    op: str
    key: str
    value: str | None = None
    lease: int | None = None

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise BadRequestError(f"txn op {self.op!r} is not one of {', '.join(_OPS)}")
        if not isinstance(self.key, str):
            raise BadRequestError(f"txn {self.op} key must be a string, got {self.key!r}")
        if self.op == "put" and not isinstance(self.value, str):
            raise BadRequestError(f"txn put of {self.key!r} needs a string value")
        if self.lease is not None:
            if self.op != "put":
                raise BadRequestError(f"txn {self.op} of {self.key!r} cannot carry a lease")
            if isinstance(self.lease, bool) or not isinstance(self.lease, int) \
                    or self.lease < 1:
                raise BadRequestError(
                    f"txn put of {self.key!r}: lease must be an integer id >= 1, "
                    f"got {self.lease!r}")

    @classmethod
    def put(cls, key: str, value: str, lease: int | None = None) -> Op:
        return cls("put", key, value, lease)

    @classmethod
    def delete(cls, key: str) -> Op:
        return cls("delete", key)

    @classmethod
    def get(cls, key: str) -> Op:
        return cls("get", key)

    @classmethod
    def from_dict(cls, body: Any) -> Op:
        """From the wire/file shape ``{"op", "key", "value"?, "lease"?}``."""
        if not isinstance(body, Mapping):
            raise BadRequestError(f"a txn operation must be an object, got {body!r}")
        try:
            return cls(body["op"], body["key"], body.get("value"), body.get("lease") or None)
        except KeyError as err:
            raise BadRequestError(f"txn operation {dict(body)!r} lacks {err.args[0]!r}") from None

    def to_wire(self) -> dict[str, Any]:
        body: dict[str, Any] = {"op": self.op, "key": self.key}
        if self.op == "put":
            body["value"] = self.value
            if self.lease is not None:
                body["lease"] = self.lease
        return body
