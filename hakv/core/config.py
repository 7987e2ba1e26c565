"""TOML in and out for hakv's config files (the topology file and the app specs and [ha]
table in it). Pure.

Reading: :func:`type_name` and :func:`check_keys` name what is wrong in the words of the
file: ``integer 5``, ``a table``, and ``unknown key 'raft_prot'; did you mean
'raft_port'?``; :func:`as_float` reads a number of seconds of any size (tomllib reads
integers of any length, ``float()`` of a 400-digit one overflows). Writing:
:func:`toml_str` and :func:`toml_value`, the one TOML writer (``Topology.to_toml`` and
``AppSpec.to_toml_lines`` both use it), whose output ``tomllib`` reads back equal.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from typing import Any

from hakv.errors import TopologyError

__all__ = ["as_float", "check_keys", "toml_str", "toml_value", "type_name"]


def type_name(value: object) -> str:
    """How a TOML value reads in an error message."""
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        if abs(value) < 10**20:
            return f"integer {value}"
        # tomllib reads integers of any length: do not quote 400 digits back
        digits = int(value.bit_length() * math.log10(2)) + 1
        return f"{'negative ' if value < 0 else ''}integer of about {digits} digits"
    if isinstance(value, float):
        return f"float {value!r}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, Mapping):
        return "a table"
    return type(value).__name__


def as_float(value: int | float) -> float:
    """``float(value)`` of an int or a float, and +-inf for an integer beyond the float
    range (``float(10**400)`` raises OverflowError): the callers' "must be a finite
    number" checks then refuse it with their own message."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def check_keys(table: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    """TopologyError (rule ``unknown_key``) for a key of ``table`` not in ``allowed``."""
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1) if isinstance(key, str) else []
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise TopologyError(
                f"{where}: unknown key {key!r}{hint} (allowed keys: {', '.join(allowed)})",
                rule="unknown_key", key=key)


# --------------------------------------------------------------------------- TOML out

_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def toml_str(value: str) -> str:
    """``value`` as a TOML basic string: the short escapes where TOML has one (``\\n``),
    ``\\uXXXX`` for the other control characters, which TOML forbids raw."""
    out = []
    for ch in value:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_value(value: Any) -> str:
    """A bool, int, float, str, list or dict (of those) as a TOML value.

    Floats are written by ``repr``: the shortest form that reads back equal, and valid
    TOML (``0.4``, ``1e-05``, ``inf``, ``nan``). TypeError for anything else: a caller bug
    (hakv writes only values it parsed from TOML), never a user's.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return toml_str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{toml_str(str(k))} = {toml_value(v)}"
                                for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")
