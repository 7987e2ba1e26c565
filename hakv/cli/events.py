"""``hakv events``: placement and node status changes, with time and reason (docs/ha.md)."""

from __future__ import annotations

from typing import Any

import click

from hakv.cli._options import client, conn_options, json_option
from hakv.cli.render import echo_json, render_events

__all__ = ["events"]


@click.command(name="events")
@click.option("--group", "group_id", default=None, help="Only this group (default: all).")
@click.option("--limit", type=int, default=1000, show_default=True, help="Per group.")
@json_option
@conn_options
@click.pass_context
def events(ctx: click.Context, group_id: str | None, limit: int, as_json: bool,
           **conn: Any) -> None:
    """Placement changes and node status changes, with time and reason, oldest first."""
    with client(ctx, **conn) as c:
        found = c.admin.events(group_id, limit=limit)
    if as_json:
        echo_json(found)
    else:
        click.echo(render_events(found))
