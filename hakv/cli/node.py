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
    help="With --insecure: a cluster secret that authenticates raft traffic between nodes "
    "(env HAKV_SECRET_FILE); every node of the cluster must use the same one.",
)
@click.option(
    "--certs-dir",
    envvar="HAKV_CERTS_DIR",
    type=click.Path(file_okay=False),
    default=None,
    help="Directory with ca.crt and node.<id>.crt/.key (made by `hakv certs`): mutual TLS "
    "on the raft and API ports (env HAKV_CERTS_DIR).",
)
@click.option(
    "--insecure",
    is_flag=True,
    envvar="HAKV_INSECURE",
    help="Run without TLS: plain TCP on both ports, logged loudly. Without --certs-dir a "
    "node refuses to start unless given this.",
)
@click.pass_context
def node(ctx: click.Context, topology: str, node_id: str, data_dir: str,
         secret_file: str | None, certs_dir: str | None, insecure: bool) -> None:
    """Run a node until SIGTERM/SIGINT."""
    # Imported here, for start-up time: the node process (pysyncobj, lmdb, the HA manager)
    # takes ~0.1 s to import, and no other command needs it.
    from hakv.node.process import run_node

    ctx.exit(run_node(topology, node_id, data_dir, secret_file, certs_dir=certs_dir,
                      insecure=insecure))
