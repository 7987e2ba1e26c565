"""The ``hakv`` command line (docs/cli.md): parse, call the library, print a table or
``--json``. A thin layer over :mod:`hakv.client` (``Client`` and ``client.admin``) and the
local launcher :mod:`hakv.dev.local`.

Layout: this module holds the root group, ``main`` and the one error-to-exit-code
mapping; ``render`` everything printed; ``_options`` the connection options and the Client
built from them; one module per command family (``kv``, ``status``, ``explain``,
``cluster``, ``group``, ``events``, ``inspect``, ``local``, ``node``, ``watch``,
``lease``, ``lock`` (lock and elect), ``certs``, ``snapshot``, ``ui``), each importing only
``render``, ``_options`` and the library. ``demo`` is ``make demo``.

Every :class:`~hakv.errors.HakvError` ends the command with its ``exit_code`` and one line
on stderr, ``hakv: error: <code>: <message>``; anything else with exit code 1 and one line
(the traceback only with ``HAKV_DEBUG=1``).

Exit codes: 0 ok, 1 internal, 2 permanent error (bad request, too large, unknown group,
request expired; also click's usage errors), 3 retryable (no quorum, unavailable), 4 outcome
unknown, 5 not found, 6 conflict (and ``txn`` whose compares failed), 7 configuration,
8 compacted (a watch from a revision the history no longer holds), 9 lock lost (also a
lost leadership), 10 lock timeout (a lock or election not won in time); ``hakv lock``
otherwise exits with its command's status.
"""

from __future__ import annotations

import os
import traceback
from typing import Any

import click

from hakv.cli import _options, render
from hakv.cli.access import role, token, user
from hakv.cli.certs import certs
from hakv.cli.cluster import cluster
from hakv.cli.events import events
from hakv.cli.explain import explain
from hakv.cli.group import group
from hakv.cli.inspect import inspect
from hakv.cli.kv import delete, get, put, range_, txn
from hakv.cli.lease import lease
from hakv.cli.local import local
from hakv.cli.lock import elect, lock
from hakv.cli.node import node
from hakv.cli.snapshot import snapshot
from hakv.cli.status import status
from hakv.cli.ui import ui
from hakv.cli.watch import watch
from hakv.client import ENDPOINTS_ENV
from hakv.dev.local import NodesNotReadyError
from hakv.errors import HakvError

__all__ = ["DEBUG_ENV", "cli", "main"]

DEBUG_ENV = "HAKV_DEBUG"


class _HakvGroup(click.Group):
    """Maps errors to exit codes and one stderr line, for every (sub)command."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except HakvError as err:
            if isinstance(err, NodesNotReadyError) and err.tails:  # why, then the verdict
                click.echo(err.log_tails(), err=True)
            if os.environ.get(DEBUG_ENV) == "1":
                traceback.print_exc()
            click.echo(render.fail_line(err.code, err.message), err=True)
            ctx.exit(err.exit_code)
        except Exception as err:  # noqa: BLE001 - last resort: one line, exit 1
            if os.environ.get(DEBUG_ENV) == "1":
                traceback.print_exc()
            click.echo(
                render.fail_line(
                    "internal", f"{type(err).__name__}: {err} (HAKV_DEBUG=1 for a traceback)"
                ),
                err=True,
            )
            ctx.exit(1)


@click.group(cls=_HakvGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--endpoints", "-e", default=None, help=f"host:port,... (env {ENDPOINTS_ENV}).")
@click.option(
    "--topology",
    type=click.Path(dir_okay=False),
    default=None,
    help=f"Topology file; its nodes are the endpoints (env {_options.TOPOLOGY_ENV}).",
)
@click.option(
    "--dir",
    "run_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Run dir of a local cluster; its nodes are the endpoints.",
)
@click.option("--timeout", type=float, default=5.0, show_default=True, help="Seconds per call.")
@click.option("--cacert", type=click.Path(dir_okay=False), default=None,
              help="CA certificate of the cluster: talk HTTPS (env HAKV_CACERT).")
@click.option("--cert", type=click.Path(dir_okay=False), default=None,
              help="Client certificate, from `hakv certs client NAME` (env HAKV_CERT).")
@click.option("--key", type=click.Path(dir_okay=False), default=None,
              help="The client certificate's key (env HAKV_KEY).")
@click.option("--token", "bearer", default=None, envvar="HAKV_TOKEN",
              help="A bearer token (`hakv token create`) instead of a certificate "
              "(env HAKV_TOKEN).")
@click.version_option(package_name="hakv", prog_name="hakv")
@click.pass_context
def cli(
    ctx: click.Context,
    endpoints: str | None,
    topology: str | None,
    run_dir: str | None,
    timeout: float,
    cacert: str | None,
    cert: str | None,
    key: str | None,
    bearer: str | None,
) -> None:
    """hakv: coordination for very large HA clusters, one Raft ensemble per group."""
    _options.remember(ctx, endpoints, topology, run_dir, timeout, cacert, cert, key, bearer)


for _command in (put, get, delete, range_, txn, status, explain, cluster, group, events,
                 inspect, local, node):
    cli.add_command(_command)
cli.add_command(watch)
cli.add_command(lease)
cli.add_command(lock)
cli.add_command(elect)
cli.add_command(user)
cli.add_command(role)
cli.add_command(token)
cli.add_command(certs)
cli.add_command(ui)
cli.add_command(snapshot)


def main() -> None:
    """Console-script entry point."""
    cli.main(prog_name="hakv")
