"""The datadriven test-file format of etcd-io/raft, read and rewritten in one place.

Used by tests/test_routing.py and tests/test_raft_trackers.py. A case::

    # the case's name (first '#' line; more '#' lines are comments)
    command args...
    ----
    expected output (up to the next blank line)

Cases are separated by blank lines. ``rewrite`` replaces every expected output with what a
runner says now (HAKV_REWRITE_TESTDATA=1; then review the diff).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SEPARATOR = "----"


@dataclass
class Case:
    line: int  # 1-based line of the command
    name: str
    command: str
    expected: str


def parse(text: str, source: str = "") -> list[Case]:
    """Every case of ``text``, in order; ValueError (naming ``source``) on a command
    without its separator."""
    cases: list[Case] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        name = ""
        while i < len(lines) and lines[i].startswith("#"):
            name = name or lines[i].lstrip("#").strip()
            i += 1
        if i >= len(lines) or not lines[i].strip():
            continue  # a comment block with no case after it
        command, line = lines[i].strip(), i + 1
        i += 1
        if i >= len(lines) or lines[i].strip() != SEPARATOR:
            raise ValueError(f"{source}:{i + 1}: expected {SEPARATOR!r} after the command")
        i += 1
        out: list[str] = []
        while i < len(lines) and lines[i].strip():
            out.append(lines[i])
            i += 1
        cases.append(Case(line, name or command, command, "\n".join(out)))
    return cases


def rewrite(path: Path, run: Callable[[str], str]) -> None:
    """Replace every expected output in ``path`` with ``run(command)``, in file order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        out.append(lines[i])
        if lines[i].strip() == SEPARATOR:
            out += run(lines[i - 1].strip()).splitlines()
            i += 1
            while i < len(lines) and lines[i].strip():
                i += 1
            continue
        i += 1
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
