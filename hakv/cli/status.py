"""``hakv status``: every endpoint's view, merged (docs/cli.md)."""

from __future__ import annotations

import time
from typing import Any

import click

from hakv.cli._options import conn_options, json_option, make_client, resolve_endpoints, settings
from hakv.cli.render import echo_json, render_status
from hakv.errors import UnavailableError

__all__ = ["status"]


@click.command()
@json_option
@click.option("--watch", "every", type=float, default=None, metavar="SECONDS",
              help="Redraw every SECONDS (e.g. 2) in place until Ctrl-C, as crm_mon does.")
@conn_options
@click.pass_context
def status(ctx: click.Context, as_json: bool, every: float | None, **conn: Any) -> None:
    """Per group: owners in precedence order, leader, term, commit index, revision, quorum,
    and where its app runs (node, state, fencing token); per node: reachable, status.
    Exit 3 when no node answers."""
    given = settings(ctx, **conn)
    endpoints, names = resolve_endpoints(given.endpoints, given.topology, given.run_dir)
    if every is not None and not every > 0:
        raise click.BadParameter("must be > 0 seconds", param_hint="--watch")
    with make_client(given, endpoints) as c:
        while True:
            st = c.cluster_status()
            for n in st["nodes"]:
                if n["node"] is None:
                    n["node"] = names.get(n["endpoint"])
            reachable = any(n["reachable"] for n in st["nodes"])
            if every is None:
                break
            shown = render_status(st) if not as_json else None
            click.clear()
            click.echo(f"hakv status every {every:g} s ({time.strftime('%H:%M:%S')}; "
                       "Ctrl-C stops)\n")
            if shown is None:
                echo_json(st)
            else:
                click.echo(shown)
            try:
                time.sleep(every)
            except KeyboardInterrupt:  # (during a query too: click turns it into Abort)
                return
    if as_json:
        echo_json(st)
    else:
        click.echo(render_status(st))
    if not reachable:
        raise UnavailableError(f"no endpoint answered: {', '.join(endpoints)}")
