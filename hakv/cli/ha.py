"""HA commands of the ``hakv`` CLI (docs/ha.md). Attached to the main group by the last
line of hakv/cli/root.py::

    hakv events [--group G] [--json]            placement and node-status events
    hakv group placement [G] [--json]            where each group's app runs, and why
    hakv group move G --to NODE                  move the app (stop here, start there)
    hakv group maintenance G on|off              stop managing the app (it keeps running)
    hakv group cleanup G                         forget where the app failed
    hakv explain placement G                     why it runs there, where it would go next

Reads are linearizable; when the group has no quorum they fall back to the answering
node's local copy and say so.
"""

from __future__ import annotations

import time
from typing import Any

import click

from hakv.cli import root as _cli
from hakv.client.client import Client
from hakv.core import ha
from hakv.errors import NoQuorumError

__all__ = ["attach"]

_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _client(ctx: click.Context, conn: dict[str, Any]) -> Client:
    return _cli._client(ctx, **conn)


def call(client: Client, op: str, body: dict[str, Any], *, write: bool = False) -> Any:
    """POST /v1/<op> through the client (endpoint failover and retries included)."""
    return client._call(f"/v1/{op}", body, write=write)


def read(client: Client, op: str, body: dict[str, Any]) -> tuple[Any, bool]:
    """A linearizable read; without quorum, the local copy of a node. (answer, local?)"""
    try:
        return call(client, op, body), False
    except NoQuorumError:
        return call(client, op, {**body, "serializable": True}), True


def _groups(client: Client) -> list[str]:
    st = client.cluster_status()
    return sorted(g for g in st.get("groups", {}) if not g.startswith("_"))


def _when(ts: float | None) -> str:
    if not ts:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) + f".{int(ts * 1000) % 1000:03d}"


# --------------------------------------------------------------------------- events


@click.command(name="events")
@click.option("--group", "group_id", default=None, help="Only this group (default: all).")
@click.option("--limit", type=int, default=1000, show_default=True, help="Per group.")
@_json_option
@_cli._conn_options
@click.pass_context
def events_cmd(ctx: click.Context, group_id: str | None, limit: int, as_json: bool,
               **conn: Any) -> None:
    """Placement changes and node status changes, with time and reason, oldest first."""
    with _client(ctx, conn) as c:
        groups = [group_id] if group_id else _groups(c)
        out: list[dict[str, Any]] = []
        for gid in groups:
            answer, local = read(c, "events", {"group": gid, "limit": limit})
            for event in answer.get("events", []):
                event.setdefault("group", gid)
                if local:
                    event["local_view_of"] = answer.get("node")
                out.append(event)
    out.sort(key=lambda e: (e.get("time", 0), e.get("group", ""), e.get("index", 0)))
    if as_json:
        _cli._echo_json(out)
        return
    rows = []
    for e in out:
        what = e.get("action") if e.get("kind") == "placement" else "node"
        rows.append([_when(e.get("time")), e.get("group"), what, e.get("node"), e.get("state"),
                     e.get("token") if e.get("kind") == "placement" else None,
                     e.get("reason", "")])
    click.echo(_cli.render_table(["TIME", "GROUP", "EVENT", "NODE", "STATE", "TOKEN", "REASON"],
                                 rows))


# --------------------------------------------------------------------------- group


@click.command(name="placement")
@click.argument("group_id", required=False)
@_json_option
@_cli._conn_options
@click.pass_context
def placement_cmd(ctx: click.Context, group_id: str | None, as_json: bool, **conn: Any) -> None:
    """Where each group's app runs (placement record), its state, token and reason."""
    with _client(ctx, conn) as c:
        groups = [group_id] if group_id else _groups(c)
        views = []
        for gid in groups:
            answer, local = read(c, "placement", {"group": gid})
            answer["local_view"] = local
            views.append(answer)
    if as_json:
        _cli._echo_json(views if group_id is None else views[0])
        return
    rows = []
    for v in views:
        p = v.get("placement") or {}
        app = "yes" if v.get("app") else "no"
        state = str(p.get("state")) + (" (maintenance)" if p.get("maintenance") else "")
        rows.append([v.get("group"), app, p.get("node"), state, p.get("token"),
                     _when(p.get("time")), p.get("reason", "")])
    click.echo(_cli.render_table(["GROUP", "APP", "NODE", "STATE", "TOKEN", "SINCE", "REASON"],
                                 rows))


def _action(ctx: click.Context, conn: dict[str, Any], group_id: str,
            body: dict[str, Any]) -> dict[str, Any]:
    with _client(ctx, conn) as c:
        result: dict[str, Any] = call(c, "ha", {"group": group_id, **body}, write=True)
    return result


@click.command(name="move")
@click.argument("group_id")
@click.option("--to", "target", required=True, help="The owner to move the app to.")
@_json_option
@_cli._conn_options
@click.pass_context
def move_cmd(ctx: click.Context, group_id: str, target: str, as_json: bool,
             **conn: Any) -> None:
    """Move GROUP's app to NODE: stopped where it runs, then started there (new token)."""
    result = _action(ctx, conn, group_id, {"action": "move", "target": target})
    if as_json:
        _cli._echo_json(result)
        return
    p = result.get("placement") or {}
    if p.get("target") is None and p.get("node") == target:
        click.echo(f"group {group_id}: the app already runs on {target}")
    else:
        click.echo(f"group {group_id}: move to {target} requested; the app stops on "
                   f"{p.get('node')} and starts on {target} (`hakv events --group {group_id}`)")


@click.command(name="maintenance")
@click.argument("group_id")
@click.argument("mode", type=click.Choice(["on", "off"]))
@_json_option
@_cli._conn_options
@click.pass_context
def maintenance_cmd(ctx: click.Context, group_id: str, mode: str, as_json: bool,
                    **conn: Any) -> None:
    """Stop (on) or resume (off) managing GROUP's app; on leaves the app running."""
    result = _action(ctx, conn, group_id, {"action": "maintenance", "on": mode == "on"})
    if as_json:
        _cli._echo_json(result)
        return
    if not result.get("applied"):
        click.echo(f"group {group_id}: maintenance already {mode}")
    elif mode == "on":
        click.echo(f"group {group_id}: maintenance on; hakv neither checks, restarts, moves "
                   "nor fails over its app until `maintenance off`")
    else:
        click.echo(f"group {group_id}: maintenance off; the app is managed again")


@click.command(name="cleanup")
@click.argument("group_id")
@_json_option
@_cli._conn_options
@click.pass_context
def cleanup_cmd(ctx: click.Context, group_id: str, as_json: bool, **conn: Any) -> None:
    """Forget the nodes where GROUP's app failed beyond its restart limit."""
    result = _action(ctx, conn, group_id, {"action": "cleanup"})
    if as_json:
        _cli._echo_json(result)
    else:
        click.echo(f"group {group_id}: failures forgotten; every live owner may run it again")


# --------------------------------------------------------------------------- explain


def facts_from(answer: dict[str, Any]) -> ha.PlacementFacts:
    """PlacementFacts from a /v1/placement answer."""
    app = ha.parse_app(answer["app"], f"group {answer.get('group')}") if answer.get("app") else None
    tuning = ha.HaTuning(**answer.get("ha", {}))
    return ha.PlacementFacts(
        group=str(answer.get("group")), owners=tuple(answer.get("owners") or ()),
        placement=ha.Placement.from_dict(answer.get("placement")),
        statuses=answer.get("node_status") or {}, quorum=answer.get("quorum"),
        leader=answer.get("leader"), app=app, fallback=answer.get("fallback", "stay"),
        fallback_window=answer.get("fallback_window"), tuning=tuning)


@click.command(name="placement")
@click.argument("group_id")
@_cli._conn_options
@click.pass_context
def explain_placement_cmd(ctx: click.Context, group_id: str, **conn: Any) -> None:
    """Why GROUP's app runs where it runs, and where it would go next."""
    with _client(ctx, conn) as c:
        answer, local = read(c, "placement", {"group": group_id})
    text = ha.explain_placement(facts_from(answer))
    if local:
        text += (f"\n(The group has no quorum: this is node {answer.get('node')}'s local copy "
                 "of its records.)")
    click.echo(text)


@click.command(name="set-app")
@click.argument("group_id")
@click.option("--file", "path", required=True, type=click.Path(dir_okay=False),
              help="The app spec: a TOML file with the keys of a [groups.app] table "
              "(start, stop, check, check_interval, ...), or a JSON object; - for stdin.")
@click.option("--fallback", type=click.Choice(["stay", "return"]), default=None,
              help="Fallback policy (default: unchanged).")
@click.option("--fallback-window", default=None, help="HH:MM-HH:MM, with --fallback return.")
@_json_option
@_cli._conn_options
@click.pass_context
def set_app_cmd(ctx: click.Context, group_id: str, path: str, fallback: str | None,
                fallback_window: str | None, as_json: bool, **conn: Any) -> None:
    """Set GROUP's app at runtime; its owners pick it up within a second (docs/ha.md)."""
    import json
    import sys
    import tomllib

    from hakv.client import admin as membership
    from hakv.errors import BadRequestError

    text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    try:
        spec = json.loads(text) if text.lstrip().startswith("{") else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise BadRequestError(f"{path}: not a TOML table or a JSON object: {exc}") from None
    spec = spec.get("app", spec) if isinstance(spec, dict) else spec
    with _client(ctx, conn) as c:
        result = membership.set_app(c, group_id, spec, fallback, fallback_window)
    if as_json:
        _cli._echo_json(result)
    else:
        click.echo(f"group {group_id}: app set (start: {result['app'].get('start')}); "
                   f"fallback {result['fallback']}")


def attach(root: click.Group) -> None:
    """Add the HA commands to the ``hakv`` group (and its ``group`` and ``explain``)."""
    root.add_command(events_cmd)
    group = root.commands.get("group")
    if not isinstance(group, click.Group):
        group = click.Group(name="group", help="Resource groups.")
        root.add_command(group)
    for command in (placement_cmd, move_cmd, maintenance_cmd, cleanup_cmd, set_app_cmd):
        group.add_command(command)
    explain = root.commands.get("explain")
    if isinstance(explain, click.Group):
        explain.add_command(explain_placement_cmd)


attach(_cli.cli)  # type: ignore[has-type]  # (hakv.cli.root imports this module at its end)
