"""The run's report: ``DIR/report.md`` and one latency timeline PNG per scenario.

The plot is Jepsen's latency chart: every operation a point at (invocation time, latency),
coloured by kind, with failed (``x``) and unknown (triangles) outcomes marked, over shaded
fault windows. It needs matplotlib; without it the report says so and has no picture.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos.checkers.single_runner import FinalPlacement, Heartbeat, placements
from chaos.history import CheckResult, History, Operation
from chaos.nemesis import FaultWindow

__all__ = ["ScenarioResult", "op_counts", "plot_timeline", "write_report"]

_MAX_CEX = 20
KIND_COLORS = {"read": "tab:blue", "write": "tab:green", "cas": "tab:purple",
               "add": "tab:olive", "read_set": "tab:gray"}
# Fault bands of the timeline, by kind: cuts red, degraded links orange/yellow, process
# faults grey/blue.
FAULT_COLORS = {"isolate": "tab:red", "bridge": "tab:red", "partition": "tab:red",
                "one-way": "salmon", "ring": "tab:pink", "loss": "tab:orange",
                "delay": "gold", "kill": "dimgray", "pause": "tab:cyan"}


@dataclass
class ScenarioResult:
    name: str
    source: str
    seed: int
    description: str = ""
    topology: str = ""
    duration: float = 0.0
    t0: float = 0.0
    windows: list[FaultWindow] = field(default_factory=list)
    history: History = field(default_factory=History)
    checks: list[CheckResult] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    expect_violation: tuple[str, ...] = ()
    errors: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    workdir: str = ""
    plot: str | None = None
    plot_note: str = ""
    command: str = ""
    skip_reason: str | None = None
    t0_wall: float = 0.0  # time.time() at t0 (heartbeats are stamped with wall time)
    beats_path: str | None = None
    heartbeats: list[Heartbeat] = field(default_factory=list)
    finals: list[FinalPlacement] = field(default_factory=list)
    coord: dict[str, list[Any]] = field(default_factory=dict)  # kind -> records

    @property
    def skipped_faults(self) -> list[FaultWindow]:
        return [w for w in self.windows if w.skipped is not None]

    def verdict(self, check: CheckResult) -> str:
        expected = check.name in self.expect_violation
        if expected:
            if check.ok:
                return "FAIL (a violation was expected: broken build not caught)"
            if check.inconclusive:
                return "FAIL (inconclusive; a violation was expected)"
            return "ok (violation expected and found: broken build caught)"
        if check.ok:
            return "ok"
        return "INCONCLUSIVE" if check.inconclusive else "FAIL"

    @property
    def ok(self) -> bool:
        if self.skip_reason is not None:
            return True
        if self.errors:
            return False
        names = {c.name for c in self.checks}
        if any(e not in names for e in self.expect_violation):
            return False
        return all(self.verdict(c).startswith("ok") for c in self.checks)


def op_counts(history: History) -> dict[str, dict[str, int]]:
    """{kind: {"ok": n, "fail": n, "unknown": n}}"""
    out: dict[str, dict[str, int]] = {}
    for op in history:
        row = out.setdefault(op.kind, {"ok": 0, "fail": 0, "unknown": 0})
        row[op.status] += 1
    return out


def _rel(t: float | None, t0: float) -> str:
    return "—" if t is None else f"{t - t0:.2f}"


def _cex_lines(ops: Sequence[Operation], t0: float) -> list[str]:
    lines = []
    for op in ops[:_MAX_CEX]:
        end = "…" if op.complete is None else f"{op.complete - t0:.3f}"
        lines.append(f"p{op.process} {op.kind} {op.group}/{op.key} in={op.input!r} "
                     f"out={op.output!r} {op.status} [{op.invoke - t0:.3f}, {end}]")
    if len(ops) > _MAX_CEX:
        lines.append(f"... {len(ops) - _MAX_CEX} more")
    return lines


def _ops_section(r: ScenarioResult) -> list[str]:
    lines = ["### Operations", "", "| kind | ok | fail | unknown |", "|---|---|---|---|"]
    counts = op_counts(r.history)
    total = {"ok": 0, "fail": 0, "unknown": 0}
    for kind in sorted(counts):
        row = counts[kind]
        for s in total:
            total[s] += row[s]
        lines.append(f"| {kind} | {row['ok']} | {row['fail']} | {row['unknown']} |")
    return lines + [f"| **all** | {total['ok']} | {total['fail']} | {total['unknown']} |", ""]


def coord_counts(records: Sequence[Any]) -> dict[str, dict[str, int]]:
    """{record kind: {status: n}} of one coordination workload's records."""
    out: dict[str, dict[str, int]] = {}
    for rec in records:
        kind = str(getattr(rec, "kind", "?"))
        if hasattr(rec, "watcher"):
            kind = f"watcher {kind}"
        status = getattr(rec, "status", None)
        if not isinstance(status, str):
            status = "ok" if kind == "grant" else "seen"
        row = out.setdefault(kind, {})
        row[status] = row.get(status, 0) + 1
    return out


def _coord_section(r: ScenarioResult) -> list[str]:
    if not r.coord:
        return []
    lines = ["### Coordination workloads", "",
             "| workload | record | counts |", "|---|---|---|"]
    for kind in sorted(r.coord):
        for rk, row in sorted(coord_counts(r.coord[kind]).items()):
            counts = ", ".join(f"{s} {n}" for s, n in sorted(row.items()))
            lines.append(f"| {kind} | {rk} | {counts} |")
    lines += ["", "Records: `<workload>.jsonl` in the scenario's directory "
              "(formats: docs/chaos-checkers.md).", ""]
    return lines


def _section(r: ScenarioResult, out: Path) -> list[str]:
    lines = [f"## {r.name} — {'PASS' if r.ok else 'FAIL'}", ""]
    if r.description:
        lines += [r.description, ""]
    if r.skip_reason is not None:
        return lines + [f"Skipped: {r.skip_reason}", ""]
    lines += [
        f"- scenario: `{r.source}`",
        f"- topology: {r.topology}",
        f"- seed: **{r.seed}**",
        f"- duration: {r.duration:g} s of workload; times below are seconds since the "
        "workload started",
        f"- reproduce: `{r.command}`",
        f"- artifacts: `{r.workdir}` (history.jsonl, faults.json, logs/, work/)",
    ]
    if r.timings:
        lines.append("- phases: " + ", ".join(f"{k} {v:.1f}s" for k, v in r.timings.items()))
    if r.expect_violation:
        lines.append(f"- **self-test**: this scenario runs a deliberately broken build; "
                     f"{', '.join(r.expect_violation)} must reject its history")
    for w in r.skipped_faults:
        lines.append(f"- **fault {w.fault.index} skipped** ({w.fault.kind}): {w.skipped}")
    lines.append("")
    if r.errors:
        lines += ["### Harness errors", ""] + [f"- {e}" for e in r.errors] + [""]

    lines += ["### Faults", ""]
    if not r.windows:
        lines += ["No faults.", ""]
    else:
        lines += ["| # | start | end | fault | groups hit | notes |", "|---|---|---|---|---|---|"]
        for w in r.windows:
            lines.append(f"| {w.fault.index} | {_rel(w.start, r.t0)} | {_rel(w.end, r.t0)} | "
                         f"{w.description} | {', '.join(w.affected_groups) or '—'} | "
                         f"{'; '.join(w.notes)} |")
        lines.append("")

    if len(r.history) or not r.coord:
        lines += _ops_section(r)
    lines += _coord_section(r)
    lines += _ha_section(r)

    lines += ["### Checks", "", "| checker | verdict |", "|---|---|"]
    for c in r.checks:
        lines.append(f"| {c.name} | {r.verdict(c)} |")
    for name, why in r.skipped:
        lines.append(f"| {name} | skipped: {why} |")
    lines.append("")
    for c in r.checks:
        lines += [f"#### {c.name}", "", "```", c.details.strip()[:6000], "```", ""]
        if c.counterexample:
            lines += ["Counterexample (times in s since start):", "", "```"]
            lines += _cex_lines(c.counterexample, r.t0)
            lines += ["```", ""]

    lines += ["### Timeline", ""]
    if r.plot:
        rel = Path(r.plot).relative_to(out) if Path(r.plot).is_relative_to(out) else r.plot
        lines += [f"![latency timeline of {r.name}]({rel})", "",
                  "Each point is one operation: x = when it was invoked, y = how long it "
                  "took (log scale). Colours are kinds; `x` = failed, triangle = unknown "
                  "(timed out, drawn at the time the client gave up). Shaded bands are "
                  "fault windows, numbered as in the fault table.", ""]
    else:
        lines += [f"No plot: {r.plot_note}", ""]
    return lines


def _ha_section(r: ScenarioResult) -> list[str]:
    """Where each app ran (from its heartbeats) and where it runs at the end."""
    if r.beats_path is None:
        return []
    lines = ["### HA apps", "",
             f"Heartbeats: `{r.beats_path}`. Each placement is one (node, fencing token) "
             "seen in the beats, from its first to its last beat (s since start).", "",
             "| group | node | token | first beat | last beat | beats |",
             "|---|---|---|---|---|---|"]
    for group, runs in placements(r.heartbeats).items():
        for node, token, first, last, beats in runs:
            lines.append(f"| {group} | {node} | {token} | {first - r.t0_wall:.2f} | "
                         f"{last - r.t0_wall:.2f} | {beats} |")
    if not r.heartbeats:
        lines.append("| — | — | — | — | — | 0 |")
    lines.append("")
    for f in r.finals:
        rec = f.record or {}
        holders = sorted(n for n, v in f.local.items() if v and v.get("pid") is not None)
        lines.append(f"- after the run, group {f.group}: record {rec.get('state', '?')} on "
                     f"{rec.get('node', '?')} (token {rec.get('token', '?')}); owners with an "
                     f"app process: {', '.join(holders) or 'none'}"
                     + (f"; {f.note}" if f.note else ""))
    return lines + [""]


def write_report(results: Sequence[ScenarioResult], out: Path, argv: Sequence[str]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    lines = ["# hakv chaos report", "",
             f"Command: `{' '.join(shlex.quote(a) for a in argv)}`", "",
             "| scenario | seed | ops (+ coordination records) | faults | result |",
             "|---|---|---|---|---|"]
    for r in results:
        verdict = 'skipped' if r.skip_reason else ('PASS' if r.ok else 'FAIL')
        if r.skipped_faults:
            verdict += f" ({len(r.skipped_faults)} fault(s) skipped: see below)"
        ops = len(r.history) + sum(len(v) for v in r.coord.values())
        lines.append(f"| {r.name} | {r.seed} | {ops} | {len(r.windows)} | {verdict} |")
    lines += ["", "How to read this: docs/chaos.md. Every scenario can be re-run from its "
              "seed with the command shown in its section.", ""]
    for r in results:
        lines += _section(r, out)
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def plot_timeline(r: ScenarioResult, path: Path) -> tuple[str | None, str]:
    """Draw the latency chart; (path, "") or (None, why not)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None, ("matplotlib is not installed (pip install matplotlib; the lead "
                      "decides whether it becomes a dev dependency)")
    from matplotlib.patches import Patch

    ops = [op for op in r.history if op.kind != "read_set"]
    runs = placements(r.heartbeats)
    if runs:
        n_rows = len(_runner_rows(runs))
        fig, (ax, rax) = plt.subplots(
            2, 1, figsize=(13, 6.0 + 0.3 * n_rows), sharex=True,
            gridspec_kw={"height_ratios": [5.5, 0.5 + 0.3 * n_rows]})
    else:
        fig, ax = plt.subplots(figsize=(13, 5.5))
        rax = None
    fault_handles: dict[str, Patch] = {}
    for w in r.windows:
        if w.start is None:
            continue
        end = w.end if w.end is not None else r.t0 + r.duration
        color = FAULT_COLORS.get(w.fault.kind, "tab:red")
        for a in (ax, rax):
            if a is not None:
                a.axvspan(w.start - r.t0, end - r.t0, color=color, alpha=0.15, lw=0)
        fault_handles.setdefault(w.fault.kind, Patch(color=color, alpha=0.3,
                                                     label=f"fault: {w.fault.kind}"))
        ax.text(w.start - r.t0, 1.0, f" {w.fault.index}: {w.description}", rotation=90,
                va="top", ha="left", fontsize=7, transform=ax.get_xaxis_transform(),
                color="darkred")
    if rax is not None:
        _plot_runners(rax, runs, r.t0_wall)
    for kind in sorted({op.kind for op in ops}):
        color = KIND_COLORS.get(kind, "black")
        for status, marker, size in (("ok", ".", 9), ("fail", "x", 22), ("unknown", "^", 22)):
            pts = [(op.invoke - r.t0, max(op.latency, 1e-4) * 1000) for op in ops
                   if op.kind == kind and op.status == status and not math.isinf(op.latency)]
            if not pts:
                continue
            xs, ys = zip(*pts, strict=True)
            ax.scatter(xs, ys, s=size, marker=marker, color=color, alpha=0.7, lw=0.8,
                       label=f"{kind} {status}")
    ax.set_yscale("log")
    (rax if rax is not None else ax).set_xlabel("seconds since workload start")
    ax.set_ylabel("latency (ms)")
    ax.set_title(f"{r.name} (seed {r.seed}): operation latency and fault windows")
    ax.grid(True, which="both", alpha=0.2)
    ax.set_xlim(left=0)
    if ops or fault_handles:
        handles, _ = ax.get_legend_handles_labels()
        ax.legend(handles=[*handles, *fault_handles.values()], loc="upper left",
                  bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path), ""


def _runner_rows(runs: dict[str, list[tuple[str, int, float, float, int]]]
                 ) -> list[tuple[str, str]]:
    return sorted({(g, node) for g, rs in runs.items() for node, *_ in rs})


def _plot_runners(ax: Any, runs: dict[str, list[tuple[str, int, float, float, int]]],
                  t0_wall: float) -> None:
    """One row per (HA group, node): a bar per placement (labelled with its fencing token)
    from its first to its last heartbeat. Two bars of one group at the same time are what
    single-runner rejects."""
    import matplotlib.pyplot as plt

    rows = _runner_rows(runs)
    cmap = plt.get_cmap("tab10")
    groups = sorted(runs)
    for row, (group, node) in enumerate(rows):
        color = cmap(groups.index(group) % 10)
        for n, token, first, last, _beats in runs[group]:
            if n != node:
                continue
            x0, x1 = first - t0_wall, max(last - t0_wall, first - t0_wall + 0.05)
            ax.broken_barh([(x0, x1 - x0)], (row - 0.35, 0.7), facecolors=color, alpha=0.8)
            ax.text(max(x0, 0.0), row, f" token {token}", va="center", ha="left",
                    fontsize=7, color="black", clip_on=True)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{g} on {n}" for g, n in rows], fontsize=8)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_title("where each app ran (from its heartbeats; bars of one group must not "
                 "overlap in time)", fontsize=8)
