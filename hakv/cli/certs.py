"""``hakv certs init-ca|node|client|list``: make and list the cluster's certificates
(docs/security.md "Certificates"). A thin layer over :mod:`hakv.security.certs`; the one
clock read of certificate handling is here."""

from __future__ import annotations

import datetime as dt

import click

from hakv.cli.render import echo_json, render_table
from hakv.security import certs as c

__all__ = ["certs"]

CERTS_DIR_ENV = "HAKV_CERTS_DIR"

_certs_dir = click.option(
    "--certs-dir", required=True, envvar=CERTS_DIR_ENV, type=click.Path(file_okay=False),
    help=f"Directory of ca.crt, node.<id>.crt, client.<name>.crt and keys (env {CERTS_DIR_ENV}).")
_overwrite = click.option("--overwrite", is_flag=True,
                          help="Replace an existing certificate and key.")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _wrote(issued: c.Issued) -> None:
    click.echo(f"wrote {issued.cert_path} and {issued.key_path} (key mode 0600)")
    click.echo(f"{issued.identity}  expires {issued.not_after:%Y-%m-%d}  {issued.fingerprint}")


@click.group()
def certs() -> None:
    """Make and list certificates: a cluster CA, node and client certificates."""


@certs.command("init-ca")
@_certs_dir
@click.option("--name", default="hakv CA", show_default=True, help="The CA's common name.")
@click.option("--days", type=int, default=c.DEFAULT_CA_DAYS, show_default=True,
              help="Validity in days.")
@_overwrite
def init_ca(certs_dir: str, name: str, days: int, overwrite: bool) -> None:
    """Make a self-signed CA: ca.crt and ca.key."""
    _wrote(c.init_ca(certs_dir, name=name, valid_days=days, now=_now(), overwrite=overwrite))


@certs.command("node")
@click.argument("node_id")
@click.option("--host", "hosts", multiple=True, required=True,
              help="DNS name or IP address the node is reached at (repeat for more).")
@_certs_dir
@click.option("--days", type=int, default=c.DEFAULT_CERT_DAYS, show_default=True,
              help="Validity in days (never beyond the CA's).")
@_overwrite
def node(node_id: str, hosts: tuple[str, ...], certs_dir: str, days: int,
         overwrite: bool) -> None:
    """Make node NODE_ID's certificate: node.<id>.crt and .key, signed by the CA."""
    _wrote(c.node_cert(certs_dir, node_id, list(hosts), valid_days=days, now=_now(),
                       overwrite=overwrite))


@certs.command("client")
@click.argument("name")
@_certs_dir
@click.option("--days", type=int, default=c.DEFAULT_CERT_DAYS, show_default=True,
              help="Validity in days (never beyond the CA's).")
@_overwrite
def client(name: str, certs_dir: str, days: int, overwrite: bool) -> None:
    """Make user NAME's certificate: client.<name>.crt and .key, signed by the CA."""
    _wrote(c.client_cert(certs_dir, name, valid_days=days, now=_now(), overwrite=overwrite))


@certs.command("list")
@_certs_dir
@click.option("--warn-days", type=int, default=c.DEFAULT_WARN_DAYS, show_default=True,
              help="Call a certificate 'expiring' this many days before it expires.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_(certs_dir: str, warn_days: int, as_json: bool) -> None:
    """List every certificate of the dir: kind, identity, expiry, status."""
    infos = c.list_certs(certs_dir, _now(), warn_days=warn_days)
    if as_json:
        echo_json([i.to_json() for i in infos])
        return
    click.echo(render_table(
        ["KIND", "IDENTITY", "FILE", "EXPIRES", "DAYS_LEFT", "STATUS"],
        [[i.kind, i.identity, i.path.name,
          f"{i.not_after:%Y-%m-%d %H:%M}" if i.not_after else None, i.days_left, i.status]
         for i in infos]))
