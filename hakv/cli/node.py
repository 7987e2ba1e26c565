"""``hakv node``: run one node of a cluster until SIGTERM/SIGINT (docs/cli.md)."""

from __future__ import annotations

import click

from hakv.cli._options import TOPOLOGY_ENV

__all__ = ["node"]


@click.command()
@click.option(
    "--topology",
    required=True,
    envvar=TOPOLOGY_ENV,
    type=click.Path(dir_okay=False),
    help=f"Topology file (env {TOPOLOGY_ENV}).",
)
@click.option("--node", "node_id", required=True, help="This node's id in the topology.")
@click.option(
    "--data-dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Where this node keeps its journals and stores.",
)
@click.option(
    "--secret-file",
    envvar="HAKV_SECRET_FILE",
    type=click.Path(dir_okay=False),
    default=None,
    help="Cluster secret that authenticates and encrypts traffic between nodes "
    "(env HAKV_SECRET_FILE); every node of the cluster must use the same one.",
)
@click.pass_context
def node(ctx: click.Context, topology: str, node_id: str, data_dir: str,
         secret_file: str | None) -> None:
    """Run a node until SIGTERM/SIGINT."""
    # Imported here, for start-up time: the node process (pysyncobj, lmdb, the HA manager)
    # takes ~0.1 s to import, and no other command needs it.
    from hakv.node.process import run_node

    ctx.exit(run_node(topology, node_id, data_dir, secret_file))
