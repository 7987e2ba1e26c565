"""Shared pieces of the property-based fuzz tests (tests/test_fuzz_*.py): one hypothesis
profile and the strategies for what arrives from outside (JSON values, TOML values,
mutations of valid documents).

Reproducible by default: every fuzz test runs a fixed, derandomized set of examples with
no example database, so CI sees the same inputs on every run and a failure reproduces
with plain ``pytest``. To search deeper locally, set ``HAKV_FUZZ_EXAMPLES`` (e.g. 20000):
the examples are then random, and as many as that per test.
"""

from __future__ import annotations

import datetime
import math
import os
from collections.abc import Callable, Iterator
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from hakv.core.config import toml_value

_EXPLORE = int(os.environ.get("HAKV_FUZZ_EXAMPLES", "0") or 0)


def fuzz(max_examples: int = 200) -> settings:
    """The settings of one fuzz test: ``max_examples`` fixed examples (CI), or
    ``HAKV_FUZZ_EXAMPLES`` random ones (exploration)."""
    return settings(
        max_examples=_EXPLORE or max_examples,
        deadline=None,
        derandomize=not _EXPLORE,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                               HealthCheck.filter_too_much],
    )


# --------------------------------------------------------------------------- JSON values

#: Integers where limits are: 0, +-1, the u64/i64 edges, far beyond them.
EDGE_INTS = st.sampled_from([0, 1, -1, 2, 63, 64, 1024, 1025, 65535, 65536, 86400, 86401,
                             2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63), 10**30,
                             -(10**30), 10**400])
INTS = st.integers() | EDGE_INTS
FLOATS = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [0.0, -0.0, 0.5, 1.0, 1e-9, 1e308, 86400.5, math.inf, -math.inf, math.nan])
#: Strings where limits and traps are: empty, NUL, a lone surrogate (valid in a JSON
#: string, not in UTF-8), long ones, non-ASCII, ones that look like other values.
EDGE_TEXT = st.sampled_from(["", " ", "\x00", "a\x00b", "\ud800", "x\udfffy", "x" * 65,
                             "x" * 1025, "é" * 600, "\u202e", "0", "-1", "true", "null",
                             "snapshot", "barrier", "put", "==", "value", "../x", "a/b",
                             "_cluster", "22:00-06:00", "{}", "[]"])
TEXT = st.text(max_size=40) | EDGE_TEXT
JSON_SCALARS = st.none() | st.booleans() | INTS | FLOATS | TEXT


def json_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Any value ``json.loads`` can return (NaN and Infinity included: it accepts them)."""
    return st.recursive(
        JSON_SCALARS,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
        max_leaves=max_leaves)


def json_objects(keys: list[str], max_leaves: int = 12) -> st.SearchStrategy[dict[str, Any]]:
    """Objects whose keys are mostly the ``keys`` a parser reads, some not, with any values."""
    key = st.sampled_from(keys) | TEXT if keys else TEXT
    return st.dictionaries(key, json_values(max_leaves), max_size=len(keys) + 2)


# --------------------------------------------------------------------------- TOML values

_TOML_SCALARS = (st.booleans() | INTS | FLOATS | st.text(max_size=30) | EDGE_TEXT.filter(
    lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s))
    | st.datetimes(timezones=st.none() | st.just(datetime.UTC)) | st.dates()
    | st.times())


def toml_values(max_leaves: int = 10) -> st.SearchStrategy[Any]:
    """Any value ``tomllib`` can return: the JSON ones (bar null) plus dates and times,
    and integers beyond 64 bits (tomllib reads them)."""
    return st.recursive(
        _TOML_SCALARS,
        lambda inner: st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=12), inner, max_size=4),
        max_leaves=max_leaves)


def toml_inline(value: Any) -> str:
    """``value`` as a TOML inline value; dates and times as RFC 3339."""
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_inline(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{toml_value(str(k))} = {toml_inline(v)}"
                                for k, v in value.items()) + " }"
    return toml_value(value)


def toml_document(doc: dict[str, Any]) -> str:
    """A TOML document that ``tomllib`` reads back as ``doc``: one ``key = value`` line per
    top-level key (tables inline; an array of tables is an array of inline tables)."""
    return "".join(f"{toml_value(str(k))} = {toml_inline(v)}\n" for k, v in doc.items())


# --------------------------------------------------------------------------- mutations


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path (keys and indexes) into ``value``'s containers, the root included."""
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def mutate(data: st.DataObject, doc: Any, values: st.SearchStrategy[Any],
           rounds: int = 3) -> Any:
    """A copy of ``doc`` with 1..``rounds`` structural mutations, each at a drawn path:
    replace the value there with one of ``values``, delete it, add an unknown key, or
    duplicate a list entry (duplicate ids)."""
    doc = _copy(doc)
    for _ in range(data.draw(st.integers(1, rounds), label="mutations")):
        paths = _paths(doc)
        path = data.draw(st.sampled_from(paths), label="path")
        action = data.draw(st.sampled_from(["replace", "replace", "delete", "extra",
                                            "duplicate"]), label="action")
        if not path:
            if action == "replace":
                doc = data.draw(values, label="root")
            continue
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        if action == "replace":
            parent[last] = data.draw(values, label="value")
        elif action == "delete":
            del parent[last]
        elif action == "extra" and isinstance(parent, dict):
            parent[data.draw(TEXT, label="extra key")] = data.draw(values, label="extra")
        elif action == "duplicate" and isinstance(parent, list):
            parent.append(_copy(parent[last]))
    return doc


#: One of every kind of trouble, for the exhaustive sweeps (:func:`sweep`): each JSON and
#: TOML type, the integer and float edges, strings that break limits or look like
#: other values, empty and non-empty containers.
EDGE_VALUES: list[Any] = [
    None, True, False, 0, 1, -1, 2**63 - 1, 2**63, -(2**63) - 1, 10**400, -(10**400),
    0.0, -0.0, 0.5, 1e-300, 1e308, math.inf, -math.inf, math.nan,
    "", " ", "x" * 65, "x" * 1025, "\x00", "\ud800", "\u202e", "1", "true", "snapshot",
    [], [None], [[]], ["a", "a"], {}, {"": None}, {"op": []},
    datetime.datetime(1979, 5, 27, 7, 32), datetime.date(2000, 2, 29), datetime.time(23, 59),
]


def sweep(doc: Any, values: list[Any], *, json_only: bool = False) -> Iterator[Any]:
    """Every copy of ``doc`` with one value (leaf or container, at any path but the root)
    replaced by one of ``values``, or deleted: an exhaustive one-field fuzz that finds
    what a random search may take thousands of examples to hit."""
    kinds = [v for v in values if not (json_only and isinstance(
        v, datetime.date | datetime.time))]
    for path in _paths(doc)[1:]:
        for value in [*kinds, _DELETE]:
            changed = _copy(doc)
            parent = changed
            for step in path[:-1]:
                parent = parent[step]
            if value is _DELETE:
                del parent[path[-1]]
            else:
                parent[path[-1]] = value
            yield changed


_DELETE = object()


def mutate_bytes(data: st.DataObject, raw: bytes, rounds: int = 4) -> bytes:
    """``raw`` with 1..``rounds`` byte-level mutations: flip, insert, delete, truncate,
    repeat a slice."""
    buf = bytearray(raw)
    for _ in range(data.draw(st.integers(1, rounds), label="byte mutations")):
        action = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate",
                                            "repeat"]), label="byte action")
        at = data.draw(st.integers(0, len(buf)), label="at")
        if action == "flip" and at < len(buf):
            buf[at] ^= data.draw(st.integers(1, 255), label="bits")
        elif action == "insert":
            buf[at:at] = data.draw(st.binary(min_size=1, max_size=8)
                                   | st.sampled_from([b'"', b"{", b"}", b"[", b"]", b",",
                                                      b":", b"\\", b"\\u", b"\xff", b"\n",
                                                      b"\r\n\r\n", b"=", b"[[", b"#"]),
                                   label="inserted")
        elif action == "delete":
            end = data.draw(st.integers(at, min(len(buf), at + 8)), label="end")
            del buf[at:end]
        elif action == "truncate":
            del buf[at:]
        elif action == "repeat":
            end = data.draw(st.integers(at, min(len(buf), at + 32)), label="end")
            buf[at:at] = buf[at:end]
    return bytes(buf)


def only_typed(fn: Callable[[], Any], allowed: type[BaseException] | tuple[
        type[BaseException], ...]) -> Any:
    """Run ``fn``; return its result, or None if it raised one of ``allowed`` with a
    message. Any other exception propagates: that is the bug the fuzzers look for."""
    try:
        return fn()
    except allowed as exc:
        assert str(exc).strip(), f"{type(exc).__name__} without a message"
        return None
