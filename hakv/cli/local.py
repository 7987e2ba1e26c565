"""``hakv local ...``: a whole topology as local processes under a run directory, through
:class:`hakv.dev.local.LocalCluster` (docs/cli.md)."""

from __future__ import annotations

from collections.abc import Mapping

import click

from hakv.cli._options import TOPOLOGY_ENV, json_option
from hakv.cli.render import echo_json, render_table, start_progress
from hakv.dev.local import LocalCluster

__all__ = ["local"]

_dir_option = click.option(
    "--dir",
    "run_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Run directory of the local cluster (pids, logs, data inside).",
)


@click.group()
def local() -> None:
    """Run a whole topology as local processes under a run directory."""


def _node_table(lc: LocalCluster, pids: Mapping[str, int]) -> str:
    return render_table(
        ["NODE", "PID", "ENDPOINT", "LOG"],
        [[n, pid, lc.endpoint(n), lc.log_path(n)] for n, pid in pids.items()],
    )


@local.command(name="up")
@click.option(
    "--topology",
    required=True,
    envvar=TOPOLOGY_ENV,
    type=click.Path(dir_okay=False),
    help=f"Topology file (env {TOPOLOGY_ENV}).",
)
@_dir_option
@click.option(
    "--wait",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds to wait for every node's health (0: don't wait).",
)
@click.option(
    "--insecure",
    is_flag=True,
    help="Run the nodes without TLS (plain TCP and a generated cluster secret). By default "
    "a CA and a certificate per node are made in DIR/certs and the nodes use mutual TLS.",
)
def local_up(topology: str, run_dir: str, wait: float, insecure: bool) -> None:
    """Start every node of TOPOLOGY under --dir."""
    lc = LocalCluster(run_dir, insecure=True if insecure else None)
    with start_progress("nodes answering /v1/health") as progress:
        pids = lc.up(topology, wait=wait, progress=progress)
    click.echo(_node_table(lc, pids))
    if lc.insecure:
        click.echo("\nINSECURE: the nodes run without TLS (--insecure).", err=True)
    else:
        click.echo(f"\nRaft traffic: mutual TLS, certificates in {lc.certs_dir}")
    state = "healthy" if wait > 0 else "started"
    click.echo(f"\n{len(pids)} nodes {state}. For the other commands:\n  {lc.env_line()}")


@local.command(name="down")
@_dir_option
def local_down(run_dir: str) -> None:
    """Stop every node (SIGTERM; SIGKILL after 5 s)."""
    result = LocalCluster(run_dir).down()
    if not result:
        click.echo(f"nothing to stop in {run_dir}")
        return
    click.echo(render_table(["NODE", "RESULT"], sorted(result.items())))


@local.command(name="status")
@_dir_option
@json_option
def local_status(run_dir: str, as_json: bool) -> None:
    """Per node: pid, alive, health."""
    states = LocalCluster(run_dir).status()
    if as_json:
        echo_json([s.to_dict() for s in states])
        return
    click.echo(
        render_table(
            ["NODE", "PID", "ALIVE", "ENDPOINT", "HEALTH"],
            [[s.node, s.pid, s.alive, s.endpoint, s.health] for s in states],
        )
    )


@local.command(name="kill")
@click.argument("node_id", metavar="NODE")
@_dir_option
def local_kill(node_id: str, run_dir: str) -> None:
    """SIGKILL (kill -9) one node."""
    LocalCluster(run_dir).kill(node_id)
    click.echo(f"killed {node_id}")


@local.command(name="stop")
@click.argument("node_id", metavar="NODE")
@_dir_option
def local_stop(node_id: str, run_dir: str) -> None:
    """SIGTERM one node (SIGKILL after 5 s)."""
    click.echo(f"{node_id}: {LocalCluster(run_dir).stop(node_id)}")


@local.command(name="start")
@click.argument("node_id", metavar="NODE")
@_dir_option
@click.option("--wait", type=float, default=30.0, show_default=True, help="Health wait (s).")
def local_start(node_id: str, run_dir: str, wait: float) -> None:
    """Start (restart) one node on its data dir."""
    lc = LocalCluster(run_dir)
    pid = lc.start(node_id, wait=wait)
    click.echo(f"started {node_id} (pid {pid}, {lc.endpoint(node_id)})")


@local.command(name="pause")
@click.argument("node_id", metavar="NODE")
@_dir_option
def local_pause(node_id: str, run_dir: str) -> None:
    """SIGSTOP one node (it freezes)."""
    LocalCluster(run_dir).pause(node_id)
    click.echo(f"paused {node_id}")


@local.command(name="resume")
@click.argument("node_id", metavar="NODE")
@_dir_option
def local_resume(node_id: str, run_dir: str) -> None:
    """SIGCONT a paused node."""
    LocalCluster(run_dir).resume(node_id)
    click.echo(f"resumed {node_id}")


@local.command(name="env")
@_dir_option
def local_env(run_dir: str) -> None:
    """Print `export HAKV_ENDPOINTS=...` (use: eval "$(hakv local env --dir DIR)")."""
    click.echo(LocalCluster(run_dir).env_line())
