"""The one check of a pickle pysyncobj wrote, before anything loads it.

pysyncobj keeps pickles on disk (a raft snapshot's v1 tuple, the journal's commands and
its term-and-vote file): whoever can write a data dir could otherwise run code in the
node. ``pickle_problem`` walks the opcodes without executing any: every one must be in
the caller's allow-list, a ``GLOBAL`` may name only the caller's globals, and nothing may
follow the ``STOP`` (loading stops there too, so trailing bytes would be unchecked).
"""

from __future__ import annotations

import pickletools
import struct

__all__ = ["pickle_problem"]


def pickle_problem(data: bytes, opcodes: frozenset[str],
                   globals_: frozenset[str] = frozenset()) -> str | None:
    """Why ``data`` is not a pickle of only ``opcodes`` whose ``GLOBAL``s name only
    ``globals_`` (``"module name"``), ending at its STOP; None when it is one."""
    try:
        stop = -1
        for opcode, arg, pos in pickletools.genops(data):
            if opcode.name not in opcodes:
                return f"pickle opcode {opcode.name}"
            if opcode.name == "GLOBAL" and arg not in globals_:
                return f"the Python global {str(arg)[:80]}"
            stop = -1 if pos is None else pos
    except (ValueError, EOFError, struct.error, IndexError, UnicodeDecodeError) as exc:
        return f"a broken pickle ({exc})"
    if stop != len(data) - 1:
        return f"data after the pickle's end ({len(data) - 1 - stop} bytes)"
    return None
