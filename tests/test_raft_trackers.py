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
from pathlib import Path

import pytest

from tests import datadriven
from tests.datadriven import Case
from tests.raft_harness import Harness

TESTDATA = Path(__file__).resolve().parent / "testdata" / "raft"


def parse(text: str) -> list[Case]:
    return datadriven.parse(text, "raft script")


def rewrite(path: Path) -> None:
    """Replace every expected output in ``path`` with what the code says now."""
    datadriven.rewrite(path, Harness().run)


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
