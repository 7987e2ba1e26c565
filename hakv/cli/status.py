"""``hakv status``: every endpoint's view, merged (docs/cli.md)."""

from __future__ import annotations

from typing import Any

import click

from hakv.cli._options import conn_options, json_option, make_client, resolve_endpoints, settings
from hakv.cli.render import echo_json, render_status
from hakv.errors import UnavailableError

__all__ = ["status"]


@click.command()
@json_option
@conn_options
@click.pass_context
def status(ctx: click.Context, as_json: bool, **conn: Any) -> None:
    """Per group: owners, leader, term, commit index, revision, quorum; per node:
    reachable. Exit 3 when no node answers."""
    given = settings(ctx, **conn)
    endpoints, names = resolve_endpoints(given.endpoints, given.topology, given.run_dir)
    with make_client(given, endpoints) as c:
        st = c.cluster_status()
    for n in st["nodes"]:
        if n["node"] is None:
            n["node"] = names.get(n["endpoint"])
    if as_json:
        echo_json(st)
    else:
        click.echo(render_status(st))
    if not any(n["reachable"] for n in st["nodes"]):
        raise UnavailableError(f"no endpoint answered: {', '.join(endpoints)}")
