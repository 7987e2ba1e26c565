"""``hakv explain node|group|placement``: plain words on where records live and where an
app runs, and why (docs/cli.md, docs/ha.md)."""

from __future__ import annotations

from typing import Any

import click

from hakv.cli._options import client, conn_options, topology_of
from hakv.core.explain import explain_group, explain_node

__all__ = ["explain"]


@click.group()
def explain() -> None:
    """Say in plain words where records are replicated, and why."""


@explain.command(name="node")
@click.argument("node_id")
@conn_options
@click.pass_context
def explain_node_cmd(ctx: click.Context, node_id: str, **conn: Any) -> None:
    """Where NODE's status lives, what its disk holds, what its failure affects."""
    click.echo(explain_node(topology_of(ctx, **conn), node_id))


@explain.command(name="group")
@click.argument("group_id")
@conn_options
@click.pass_context
def explain_group_cmd(ctx: click.Context, group_id: str, **conn: Any) -> None:
    """Where GROUP's records live, its quorum, its bridges, its failover order."""
    click.echo(explain_group(topology_of(ctx, **conn), group_id))


@explain.command(name="placement")
@click.argument("group_id")
@conn_options
@click.pass_context
def explain_placement_cmd(ctx: click.Context, group_id: str, **conn: Any) -> None:
    """Why GROUP's app runs where it runs, and where it would go next."""
    with client(ctx, **conn) as c:
        text = c.admin.explain_placement(group_id)
    click.echo(text)
