"""``hakv cluster show|add-node|remove-node``: the cluster's node records
(docs/membership.md), through ``client.admin``."""

from __future__ import annotations

from typing import Any

import click

from hakv.cli._options import client, conn_options, json_option
from hakv.cli.render import echo_json, render_cluster_show
from hakv.core.topology import DEFAULT_CAPACITY, NodeSpec

__all__ = ["cluster"]


@click.group(name="cluster")
def cluster() -> None:
    """Cluster-level records: nodes (docs/membership.md)."""


@cluster.command(name="show")
@json_option
@conn_options
@click.pass_context
def cluster_show(ctx: click.Context, as_json: bool, **conn: Any) -> None:
    """Nodes and groups as the cluster ensemble records them (desired owners, current
    Raft voters, pending steps)."""
    with client(ctx, **conn) as c:
        shown = c.admin.show()
    if as_json:
        echo_json(shown)
    else:
        click.echo(render_cluster_show(shown))


@cluster.command(name="add-node")
@click.argument("node_id", metavar="ID")
@click.option("--host", required=True, help="Address the node listens on and peers dial.")
@click.option("--raft-port", required=True, type=int, help="The node's Raft port.")
@click.option("--api-port", required=True, type=int, help="The node's client API port.")
@click.option("--capacity", type=int, default=None, help="Load units it can carry (default 10).")
@json_option
@conn_options
@click.pass_context
def cluster_add_node(ctx: click.Context, node_id: str, host: str, raft_port: int,
                     api_port: int, capacity: int | None, as_json: bool, **conn: Any) -> None:
    """Add node ID to the cluster records; then start it (`hakv node --node ID ...`)."""
    spec = NodeSpec(id=node_id, host=host, raft_port=raft_port, api_port=api_port,
                    capacity=DEFAULT_CAPACITY if capacity is None else capacity)
    with client(ctx, **conn) as c:
        res = c.admin.add_node(spec)
    if as_json:
        echo_json(res)
    else:
        click.echo(f"node {node_id} added (epoch {res['epoch']}). Start it with:\n"
                   f"  hakv node --topology FILE --node {node_id} --data-dir DIR\n"
                   f"(FILE: the cluster's topology file; the node reads its own address "
                   f"from the cluster records), or `hakv local start {node_id} --dir "
                   f"RUN_DIR`.")


@cluster.command(name="remove-node")
@click.argument("node_id", metavar="ID")
@json_option
@conn_options
@click.pass_context
def cluster_remove_node(ctx: click.Context, node_id: str, as_json: bool, **conn: Any) -> None:
    """Remove node ID (refused while a group lists it); then stop its process."""
    with client(ctx, **conn) as c:
        res = c.admin.remove_node(node_id)
    if as_json:
        echo_json(res)
    else:
        click.echo(f"node {node_id} removed (epoch {res['epoch']}); its process can be "
                   "stopped now")
