"""Everything the ``hakv`` command prints, as text: tables, the one error line, JSON.

Pure functions of the library's results (no I/O but ``echo_json``); ``hakv.cli.demo``
prints with them too.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import click

from hakv.client.admin import PlacementView

__all__ = ["cell", "echo_json", "fail_line", "render_cluster_show", "render_events",
           "render_inspect", "render_placements", "render_status", "render_table", "short",
           "when"]


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Plain aligned text: columns separated by two spaces, no trailing blanks."""
    cells = [[cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], len(value))
    lines = []
    for row in [list(headers), *cells]:
        lines.append("  ".join(v.ljust(widths[i]) for i, v in enumerate(row)).rstrip())
    return "\n".join(lines)


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if value is True:
        return "yes"
    if value is False:
        return "no"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def short(text: Any, width: int = 40) -> str:
    s = str(text).replace("\n", "\\n")
    return s if len(s) <= width else s[: width - 3] + "..."


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, ensure_ascii=False))


def node_state(n: Mapping[str, Any]) -> str:
    """A node's STATUS cell, never blank: its reported state, ``down`` (no answer) or
    ``unknown (not reported yet)`` (it answers but has published no status record yet,
    e.g. just after start-up)."""
    if not n.get("reachable"):
        return "down"
    state = (n.get("status") or {}).get("state")
    return str(state) if state else "unknown (not reported yet)"


def app_cells(app: Any) -> list[Any]:
    """APP ON, APP STATE, TOKEN of a group (as crm_mon shows a resource): ``-`` without
    an app, ``none`` while it is not placed, ``(maintenance)`` appended when paused."""
    if not isinstance(app, Mapping):
        return ["-", "-", "-"]
    state = str(app.get("state") or "none")
    if app.get("maintenance"):
        state += " (maintenance)"
    return [app.get("node") or "none", state, app.get("token") or "-"]


def render_status(st: Mapping[str, Any]) -> str:
    """``hakv status`` as text: a group table, then a node table."""
    groups = st.get("groups") or {}
    group_rows = [
        [
            gid,
            g.get("owners"),
            g.get("leader"),
            g.get("term"),
            g.get("commit_index"),
            g.get("revision"),
            g.get("quorum"),
            *app_cells(g.get("app")),
        ]
        for gid, g in groups.items()
    ]
    node_rows = [
        [
            n.get("node"),
            n.get("endpoint"),
            n.get("reachable"),
            n.get("groups") or "",
            n.get("sphere_of_influence") or "",
            node_state(n),
            n.get("error") or "",
        ]
        for n in st.get("nodes") or []
    ]
    head = f"cluster {st['cluster']}\n\n" if st.get("cluster") else ""
    return (
        head
        + render_table(
            ["GROUP", "OWNERS", "LEADER", "TERM", "COMMIT", "REVISION", "QUORUM", "APP ON",
             "APP STATE", "TOKEN"], group_rows
        )
        + "\n\n"
        + render_table(
            ["NODE", "ENDPOINT", "REACHABLE", "GROUPS", "SPHERE OF INFLUENCE", "STATUS", "ERROR"],
            node_rows,
        )
    )


def render_inspect(dump: Mapping[str, Any], path: str = "") -> str:
    """``hakv inspect`` as text: a line per group, then each group's keys."""
    out = [f"node {dump['node']} of cluster {dump['cluster']}" + (f" ({path})" if path else "")]
    rows = []
    stores = dump.get("group_stores") or {}
    raft = dump.get("raft") or {}
    for gid in dump.get("groups") or []:
        s = stores.get(gid) or {}
        r = raft.get(gid) or {}
        rows.append(
            [
                gid,
                s.get("applied_index"),
                s.get("revision"),
                s.get("keys"),
                s.get("sessions"),
                r.get("journal_bytes"),
                r.get("snapshots") or None,
                s.get("error") or "",
            ]
        )
    out += [
        "",
        render_table(
            ["GROUP", "APPLIED", "REVISION", "KEYS", "CLIENTS", "JOURNAL_B", "SNAPSHOT", "ERROR"],
            rows,
        ),
    ]
    for gid in dump.get("groups") or []:
        kvs = (stores.get(gid) or {}).get("kvs") or []
        if not kvs:
            continue
        out += ["", f"group {gid}:"]
        table = render_table(
            ["KEY", "VALUE", "CREATE_REV", "MOD_REV", "VERSION"],
            [
                [
                    short(kv.get("key")),
                    short(kv.get("value")),
                    kv.get("create_revision"),
                    kv.get("mod_revision"),
                    kv.get("version"),
                ]
                for kv in kvs
            ],
        )
        out += ["  " + line for line in table.splitlines()]
        shown, total = len(kvs), (stores.get(gid) or {}).get("keys")
        if isinstance(total, int) and total > shown:
            out.append(f"  ... {total - shown} more keys (see --json of a smaller store)")
    return "\n".join(out)


def render_cluster_show(shown: Mapping[str, Any]) -> str:
    """``hakv cluster show`` as text: a node table, then a group table."""
    nodes = render_table(
        ["NODE", "HOST", "RAFT_PORT", "API_PORT", "CAPACITY", "GROUPS"],
        [[n["id"], n["host"], n["raft_port"], n["api_port"], n["capacity"], n["groups"] or ""]
         for n in shown.get("nodes") or []],
    )
    groups = render_table(
        ["GROUP", "OWNERS", "LOAD", "RAFT_VOTERS", "STATE", "PENDING"],
        [[g["id"], g["owners"], g["load"], g["raft_voters"], g["state"],
          " ".join(g["pending"]) or ""]
         for g in shown.get("groups") or []],
    )
    head = f"cluster {shown.get('cluster')} (configuration epoch {shown.get('epoch')})"
    out = [head, "", nodes, "", groups]
    for problem in shown.get("problems") or []:
        out.append(f"warning: unreadable record {problem}")
    return "\n".join(out)


def when(ts: float | None) -> str:
    """A Unix time as local ``YYYY-MM-DD HH:MM:SS.mmm``; ``-`` for none."""
    if not ts:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) + f".{int(ts * 1000) % 1000:03d}"


def render_events(events: Sequence[Mapping[str, Any]]) -> str:
    """``hakv events`` as text: one line per event, oldest first."""
    rows = []
    for e in events:
        placement = e.get("kind") == "placement"
        rows.append([when(e.get("time")), e.get("group"), e.get("action") if placement else "node",
                     e.get("node"), e.get("state"), e.get("token") if placement else None,
                     e.get("reason", "")])
    return render_table(["TIME", "GROUP", "EVENT", "NODE", "STATE", "TOKEN", "REASON"], rows)


def render_placements(views: Sequence[PlacementView]) -> str:
    """``hakv group placement`` as text: a line per group."""
    rows = []
    for v in views:
        p = v.placement
        state = p.state + (" (maintenance)" if p.maintenance else "")
        rows.append([v.group, "yes" if v.has_app else "no", p.node, state, p.token,
                     when(p.time), p.reason])
    return render_table(["GROUP", "APP", "NODE", "STATE", "TOKEN", "SINCE", "REASON"], rows)


def _one_line(text: str) -> str:
    return "; ".join(part.strip() for part in str(text).splitlines() if part.strip())


def fail_line(code: str, message: str) -> str:
    """The one stderr line of a failed command: ``hakv: error: <code>: <message>``."""
    return f"hakv: error: {code}: {_one_line(message)}"


@contextlib.contextmanager
def start_progress(what: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr (rich) while nodes start: yields ``update(done, total)``
    for ``LocalCluster.up(progress=...)``. Drawn only on a terminal; gone when done."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        yield lambda done, total: None
        return
    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                  transient=True) as bar:
        task = bar.add_task(what, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
