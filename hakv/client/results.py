"""What the key-value calls of :class:`hakv.Client` return: frozen records with ``to_dict``
giving the JSON shape of docs/api.md, built from a node's answer by ``from_wire`` (a missing
or mistyped field raises KeyError/TypeError, which the client turns into InternalError)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from hakv.errors import InternalError

__all__ = ["DeleteResult", "GetResult", "KeyValue", "PutResult", "RangeResult", "TxnResult",
           "parse", "want"]

T = TypeVar("T")


def parse(path: str, build: Callable[[], T]) -> T:
    """``build()``, a result built from the answer to ``path``; a missing or mistyped field
    (KeyError, TypeError, ValueError) becomes InternalError naming the call."""
    try:
        return build()
    except (KeyError, TypeError, ValueError) as err:
        raise InternalError(
            f"malformed answer to {path}: {err.__class__.__name__}: {err}"
        ) from None


def want(body: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    """``body[key]`` checked against ``kind``; a missing or mistyped field is a protocol
    error (KeyError/TypeError), turned into InternalError by the caller."""
    value = body[key]
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"field {key!r} should be an integer, got {value!r}")
    elif not isinstance(value, kind):
        raise TypeError(f"field {key!r} has the wrong type: {value!r}")
    return value


@dataclass(frozen=True)
class KeyValue:
    """One key with its value and revisions (docs/api.md "Records")."""

    key: str
    value: str
    create_revision: int
    mod_revision: int
    version: int

    @classmethod
    def from_wire(cls, body: Any) -> KeyValue:
        if not isinstance(body, Mapping):
            raise TypeError(f"a kv record should be an object, got {body!r}")
        return cls(
            key=want(body, "key", str),
            value=want(body, "value", str),
            create_revision=want(body, "create_revision", int),
            mod_revision=want(body, "mod_revision", int),
            version=want(body, "version", int),
        )

    @classmethod
    def from_wire_or_none(cls, body: Any) -> KeyValue | None:
        return None if body is None else cls.from_wire(body)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "value": self.value,
            "create_revision": self.create_revision,
            "mod_revision": self.mod_revision,
            "version": self.version,
        }


def _kv_dict(kv: KeyValue | None) -> dict[str, Any] | None:
    return None if kv is None else kv.to_dict()


@dataclass(frozen=True)
class PutResult:
    """``revision``: the group revision of this write; ``prev``: the record it replaced."""

    revision: int
    prev: KeyValue | None

    def to_dict(self) -> dict[str, Any]:
        return {"revision": self.revision, "prev": _kv_dict(self.prev)}


@dataclass(frozen=True)
class DeleteResult:
    """``deleted``: 1 if the key existed, else 0 (and ``revision`` did not move)."""

    revision: int
    deleted: int
    prev: KeyValue | None

    def to_dict(self) -> dict[str, Any]:
        return {"revision": self.revision, "deleted": self.deleted, "prev": _kv_dict(self.prev)}


@dataclass(frozen=True)
class GetResult:
    """The answer of a ``get`` operation inside a transaction (``kv`` is None if absent)."""

    kv: KeyValue | None

    def to_dict(self) -> dict[str, Any]:
        return {"kv": _kv_dict(self.kv)}


@dataclass(frozen=True)
class RangeResult:
    """Keys sorted by key; ``more``: the limit cut the answer short."""

    kvs: list[KeyValue]
    more: bool
    revision: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "kvs": [kv.to_dict() for kv in self.kvs],
            "more": self.more,
            "revision": self.revision,
        }


@dataclass(frozen=True)
class TxnResult:
    """``results``: one per operation of the branch that ran, typed by operation."""

    succeeded: bool
    revision: int
    results: list[PutResult | DeleteResult | GetResult]

    def to_dict(self) -> dict[str, Any]:
        return {
            "succeeded": self.succeeded,
            "revision": self.revision,
            "results": [r.to_dict() for r in self.results],
        }
