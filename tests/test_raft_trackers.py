"""The Raft trackers (hakv.raft.readindex, prevote, quiesce, handover) driven step by step
by tests/testdata/raft/*.txt on the deterministic harness (tests/raft_harness.py): a fake
network and clock, no socket, no sleep.

The data files follow etcd-io/raft's datadriven style (as tests/testdata/routing). A case::

    # the case's name (first '#' line; more '#' lines are comments)
    tick 0.5
    ----
    0.41 n1 leads in term 1

Each file is one script: its cases run in order on one harness. Commands
(tests/raft_harness.py, ``Harness.do_*``):

- ``cluster n1 n2 n3``: the members (fixed election timeouts 0.4, 0.5, 0.6 s...);
- ``campaign N``: N's election deadline passes now, and it ticks: what it sends;
- ``deliver``: deliver every queued message (not the answers); ``stabilize``: until none;
- ``tick S``: S seconds in 10 ms steps, every message delivered at once: what changed;
- ``propose N NAME``, ``read N NAME``, ``handover N TARGET within=S``;
- ``partition A B``, ``heal``, ``crash N``; ``state``: each member's role, term, log.

Set HAKV_REWRITE_TESTDATA=1 to rewrite the expected outputs from the code (then review
the diff).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.raft_harness import Harness

TESTDATA = Path(__file__).resolve().parent / "testdata" / "raft"
SEPARATOR = "----"


@dataclass
class Case:
    line: int  # 1-based line of the command
    name: str
    command: str
    expected: str


def parse(text: str) -> list[Case]:
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
            continue
        command, line = lines[i].strip(), i + 1
        i += 1
        if i >= len(lines) or lines[i].strip() != SEPARATOR:
            raise ValueError(f"line {i + 1}: expected {SEPARATOR!r} after the command")
        i += 1
        out: list[str] = []
        while i < len(lines) and lines[i].strip():
            out.append(lines[i])
            i += 1
        cases.append(Case(line, name or command, command, "\n".join(out)))
    return cases


def rewrite(path: Path) -> None:
    """Replace every expected output in ``path`` with what the code says now."""
    harness = Harness()
    lines = path.read_text(encoding="utf-8").splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        out.append(lines[i])
        if lines[i].strip() == SEPARATOR:
            out += harness.run(lines[i - 1].strip()).splitlines()
            i += 1
            while i < len(lines) and lines[i].strip():
                i += 1
            continue
        i += 1
    path.write_text("\n".join(out) + "\n", encoding="utf-8")


FILES = sorted(TESTDATA.glob("*.txt"))


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_raft_script(path: Path) -> None:
    cases = parse(path.read_text(encoding="utf-8"))
    assert cases, f"{path.name} has no cases"
    harness = Harness()
    for case in cases:
        got = harness.run(case.command)
        if got != case.expected and os.environ.get("HAKV_REWRITE_TESTDATA") == "1":
            rewrite(path)
            pytest.skip(f"rewrote {path.name}")
        assert got == case.expected, (
            f"{path.name}:{case.line} {case.name}\n  {case.command}\n"
            f"--- expected\n{case.expected}\n--- got\n{got}")


def test_every_feature_has_a_script() -> None:
    assert {p.stem for p in FILES} >= {"prevote", "readindex", "quiescence", "handover"}


def test_the_runner_reads_the_documented_case_format() -> None:
    cases = parse("# one\n# why\nstate\n----\na\nb\n\n# two\nheal\n----\nc\n")
    assert [(c.name, c.command, c.expected) for c in cases] == [
        ("one", "state", "a\nb"), ("two", "heal", "c")]


def test_a_run_is_deterministic() -> None:
    script = ["cluster n1 n2 n3", "tick 1", "read n1 r", "tick 0.2", "partition n1 n2",
              "tick 2", "state"]
    first, second = Harness(), Harness()
    assert [first.run(c) for c in script] == [second.run(c) for c in script]
