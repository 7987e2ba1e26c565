"""Support shared by the chaos test modules: the shipped examples, and for the tests that
need root the skip where namespaces cannot be made, throwaway networks that must leave
nothing behind, harness processes killed mid-run, and shipped scenarios run against a time
budget."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from chaos import netns
from chaos.history import CheckResult
from chaos.report import ScenarioResult
from chaos.scenario import find_scenario, load_scenario

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"  # what scenarios name their topologies relative to


def need_root() -> None:
    """Skip the test, with netns' reason, where network namespaces cannot be made."""
    try:
        netns.preflight()
    except netns.Skip as skip:
        pytest.skip(skip.reason)


@contextlib.contextmanager
def throwaway_network(nodes: Sequence[str]) -> Iterator[netns.Network]:
    """A created network of ``nodes``, destroyed afterwards; fails if any of its namespaces
    outlive it. Callers skip first (namespaces need root)."""
    net = netns.Network(list(nodes))
    net.create()
    try:
        yield net
    finally:
        net.destroy()
    assert not [ns for ns in netns.list_namespaces() if net.run_id in ns]


@contextlib.contextmanager
def killed_harness(script: str) -> Iterator[list[str]]:
    """The words of the first line ``script`` prints, after the process printing it was
    killed without a chance to clean up: what a crashed harness leaves is the test's to
    check. ``script`` runs as ``python -c`` with the repository importable."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env,
                            text=True)
    try:
        assert proc.stdout is not None
        words = proc.stdout.readline().split()
        proc.kill()
        proc.wait(5)
        yield words
    finally:
        if proc.poll() is None:
            proc.kill()


def process_gone(pid: int) -> bool:
    """Whether ``pid`` no longer runs: absent, or only a zombie or dead entry left."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] in "ZX"
    except OSError:
        return True


def run_shipped_scenario(name: str, tmp_path: Path, budget: float,
                         changes: Mapping[str, Any] | None = None,
                         count_heartbeats: bool = False) -> ScenarioResult:
    """Shipped scenario ``name`` (with ``changes`` to its fields) run for real, as root;
    it must leave no namespace behind and finish within ``budget`` seconds, the share of
    ``make test`` it is allowed."""
    from chaos.run import run_scenario

    need_root()
    sc = load_scenario(find_scenario(name))
    if changes:
        sc = replace(sc, **changes)
    before = set(netns.list_namespaces())
    t = time.monotonic()
    result = run_scenario(sc, tmp_path)
    took = time.monotonic() - t
    left = set(netns.list_namespaces()) - before
    assert not left, f"namespaces left behind: {sorted(left)}"
    heartbeats = f", {len(result.heartbeats)} heartbeats" if count_heartbeats else ""
    print(f"{name}: {took:.1f}s, {len(result.history)} operations{heartbeats}")
    assert took < budget, f"{name} took {took:.1f}s; make test wants <= {budget:g} s"
    return result


def caught_violation(result: ScenarioResult, checker: str) -> CheckResult:
    """The verdict of ``checker`` on a broken-build self-test run, which must be a real
    rejection (not a checker out of budget); the run itself passes exactly when it is."""
    assert not result.errors, result.errors
    check = next(c for c in result.checks if c.name == checker)
    assert not check.ok and not check.inconclusive, check.details
    assert result.ok
    return check
