"""``hakv group ...``: a resource group's records (create, delete, set-owners, set-app;
docs/membership.md) and its app's placement (placement, move, maintenance, cleanup;
docs/ha.md), through ``client.admin``."""

from __future__ import annotations

import json
import sys
import tomllib
from typing import Any

import click

from hakv.cli._options import client, conn_options, json_option
from hakv.cli.render import echo_json, render_placements
from hakv.core.topology import DEFAULT_LOAD
from hakv.errors import BadRequestError

__all__ = ["group"]


@click.group(name="group")
def group() -> None:
    """Resource groups: create, delete, change owners (docs/membership.md)."""


def _owner_list(text: str) -> list[str]:
    return [o.strip() for o in text.split(",") if o.strip()]


# --------------------------------------------------------------------------- records


@group.command(name="create")
@click.argument("group_id", metavar="ID")
@click.option("--owners", required=True, help="Owner node ids, comma-separated, in "
              "precedence order (at least 2).")
@click.option("--load", type=int, default=None, help="Load units of the group's app (default 1).")
@json_option
@conn_options
@click.pass_context
def group_create(ctx: click.Context, group_id: str, owners: str, load: int | None,
                 as_json: bool, **conn: Any) -> None:
    """Create group ID on OWNERS; each owner starts its member within a second."""
    with client(ctx, **conn) as c:
        res = c.admin.create_group(group_id, _owner_list(owners),
                                   DEFAULT_LOAD if load is None else load)
    if as_json:
        echo_json(res)
    else:
        click.echo(f"group {group_id} created on {', '.join(res['group']['owners'])} "
                   f"(epoch {res['epoch']})")


@group.command(name="delete")
@click.argument("group_id", metavar="ID")
@json_option
@conn_options
@click.pass_context
def group_delete(ctx: click.Context, group_id: str, as_json: bool, **conn: Any) -> None:
    """Delete group ID: its owners stop its member and delete its data."""
    with client(ctx, **conn) as c:
        res = c.admin.delete_group(group_id)
    if as_json:
        echo_json(res)
    else:
        click.echo(f"group {group_id} deleted (epoch {res['epoch']}); "
                   f"{', '.join(res['owners'])} drop its data")


@group.command(name="set-owners")
@click.argument("group_id", metavar="ID")
@click.option("--owners", required=True, help="The new owners, comma-separated, in "
              "precedence order (at least 2).")
@json_option
@conn_options
@click.pass_context
def group_set_owners(ctx: click.Context, group_id: str, owners: str, as_json: bool,
                     **conn: Any) -> None:
    """Change the owners of group ID; its leader changes the Raft voters one at a time."""
    with client(ctx, **conn) as c:
        res = c.admin.set_owners(group_id, _owner_list(owners))
    if as_json:
        echo_json(res)
        return
    plan = " ".join(res["plan"]) or "nothing to change"
    click.echo(f"group {group_id}: owners {', '.join(res['previous_owners'])} -> "
               f"{', '.join(res['owners'])} (epoch {res['epoch']}); Raft steps: {plan} "
               "(follow with hakv cluster show)")


def _read_app(path: str) -> Any:
    """The app spec in ``path`` (``-``: stdin): TOML keys of a ``[groups.app]`` table (or an
    ``[app]`` table holding them), or a JSON object."""
    text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    try:
        spec = json.loads(text) if text.lstrip().startswith("{") else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise BadRequestError(f"{path}: not a TOML table or a JSON object: {exc}") from None
    return spec.get("app", spec) if isinstance(spec, dict) else spec


@group.command(name="set-app")
@click.argument("group_id")
@click.option("--file", "path", required=True, type=click.Path(dir_okay=False),
              help="The app spec: a TOML file with the keys of a [groups.app] table "
              "(start, stop, check, check_interval, ...), or a JSON object; - for stdin.")
@click.option("--fallback", type=click.Choice(["stay", "return"]), default=None,
              help="Fallback policy (default: unchanged).")
@click.option("--fallback-window", default=None, help="HH:MM-HH:MM, with --fallback return.")
@json_option
@conn_options
@click.pass_context
def group_set_app(ctx: click.Context, group_id: str, path: str, fallback: str | None,
                  fallback_window: str | None, as_json: bool, **conn: Any) -> None:
    """Set GROUP's app at runtime; its owners pick it up within a second (docs/ha.md)."""
    spec = _read_app(path)
    with client(ctx, **conn) as c:
        res = c.admin.set_app(group_id, spec, fallback, fallback_window)
    if as_json:
        echo_json(res)
    else:
        click.echo(f"group {group_id}: app set (start: {res['app'].get('start')}); "
                   f"fallback {res['fallback']}")


# --------------------------------------------------------------------------- HA


@group.command(name="placement")
@click.argument("group_id", required=False)
@json_option
@conn_options
@click.pass_context
def group_placement(ctx: click.Context, group_id: str | None, as_json: bool,
                    **conn: Any) -> None:
    """Where each group's app runs (placement record), its state, token and reason."""
    with client(ctx, **conn) as c:
        groups = [group_id] if group_id else c.admin.groups()
        views = [c.admin.placement(gid) for gid in groups]
    if as_json:
        echo_json([v.to_dict() for v in views] if group_id is None else views[0].to_dict())
    else:
        click.echo(render_placements(views))


@group.command(name="move")
@click.argument("group_id")
@click.option("--to", "target", required=True, help="The owner to move the app to.")
@json_option
@conn_options
@click.pass_context
def group_move(ctx: click.Context, group_id: str, target: str, as_json: bool,
               **conn: Any) -> None:
    """Move GROUP's app to NODE: stopped where it runs, then started there (new token)."""
    with client(ctx, **conn) as c:
        res = c.admin.move(group_id, target)
    if as_json:
        echo_json(res.to_dict())
    elif res.placement.target is None and res.placement.node == target:
        click.echo(f"group {group_id}: the app already runs on {target}")
    else:
        click.echo(f"group {group_id}: move to {target} requested; the app stops on "
                   f"{res.placement.node} and starts on {target} "
                   f"(`hakv events --group {group_id}`)")


@group.command(name="maintenance")
@click.argument("group_id")
@click.argument("mode", type=click.Choice(["on", "off"]))
@json_option
@conn_options
@click.pass_context
def group_maintenance(ctx: click.Context, group_id: str, mode: str, as_json: bool,
                      **conn: Any) -> None:
    """Stop (on) or resume (off) managing GROUP's app; on leaves the app running."""
    with client(ctx, **conn) as c:
        res = c.admin.maintenance(group_id, mode == "on")
    if as_json:
        echo_json(res.to_dict())
    elif not res.applied:
        click.echo(f"group {group_id}: maintenance already {mode}")
    elif mode == "on":
        click.echo(f"group {group_id}: maintenance on; hakv neither checks, restarts, moves "
                   "nor fails over its app until `maintenance off`")
    else:
        click.echo(f"group {group_id}: maintenance off; the app is managed again")


@group.command(name="cleanup")
@click.argument("group_id")
@json_option
@conn_options
@click.pass_context
def group_cleanup(ctx: click.Context, group_id: str, as_json: bool, **conn: Any) -> None:
    """Forget the nodes where GROUP's app failed beyond its restart limit."""
    with client(ctx, **conn) as c:
        res = c.admin.cleanup(group_id)
    if as_json:
        echo_json(res.to_dict())
    else:
        click.echo(f"group {group_id}: failures forgotten; every live owner may run it again")
