"""Checks shared by hakv's TOML readers (the topology file and the app specs in it). Pure.

Both name what is wrong in the words of the file: ``integer 5``, ``a table``, and
``unknown key 'raft_prot'; did you mean 'raft_port'?``.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from hakv.errors import TopologyError


def type_name(value: object) -> str:
    """How a TOML value reads in an error message."""
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"float {value!r}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, Mapping):
        return "a table"
    return type(value).__name__


def check_keys(table: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    """TopologyError (rule ``unknown_key``) for a key of ``table`` not in ``allowed``."""
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise TopologyError(
                f"{where}: unknown key {key!r}{hint} (allowed keys: {', '.join(allowed)})",
                rule="unknown_key", key=key)
