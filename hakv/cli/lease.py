"""Lease commands: ``hakv lease grant|keepalive|revoke|ttl`` (docs/cli.md), one library
call each (hakv.client.lease); ``hakv put ... --lease ID`` attaches a key."""

from __future__ import annotations

import time
from typing import Any

import click

from hakv.cli._options import client, conn_options, json_option
from hakv.cli.render import echo_json

__all__ = ["lease"]


@click.group()
def lease() -> None:
    """Leases: keys deleted when their lease expires or is revoked."""


@lease.command()
@click.argument("group")
@click.argument("ttl", type=float)
@click.option("--id", "lease_id", type=int, default=None, help="Choose the lease id.")
@json_option
@conn_options
@click.pass_context
def grant(ctx: click.Context, group: str, ttl: float, lease_id: int | None, as_json: bool,
          **conn: Any) -> None:
    """Grant a lease of TTL seconds in GROUP; prints its id."""
    with client(ctx, **conn) as c:
        granted = c.lease_grant(group, ttl, lease_id)
    if as_json:
        echo_json({"id": granted.id, "ttl": granted.ttl})
    else:
        click.echo(f"lease {granted.id} granted, ttl {granted.ttl:g}s")


@lease.command()
@click.argument("group")
@click.argument("lease_id", metavar="ID", type=int)
@click.option("--once", is_flag=True, help="One keepalive, then exit.")
@json_option
@conn_options
@click.pass_context
def keepalive(ctx: click.Context, group: str, lease_id: int, once: bool, as_json: bool,
              **conn: Any) -> None:
    """Keep lease ID alive (every ttl/3 until interrupted, or --once). Exits 5 when the
    lease is gone."""
    with client(ctx, **conn) as c:
        while True:
            ttl = c.lease_keepalive(group, lease_id)
            if as_json:
                echo_json({"id": lease_id, "ttl": ttl})
            else:
                click.echo(f"lease {lease_id} kept alive, ttl {ttl:g}s")
            if once:
                return
            time.sleep(ttl / 3)


@lease.command()
@click.argument("group")
@click.argument("lease_id", metavar="ID", type=int)
@json_option
@conn_options
@click.pass_context
def revoke(ctx: click.Context, group: str, lease_id: int, as_json: bool, **conn: Any) -> None:
    """Revoke lease ID: its keys are deleted in one revision."""
    with client(ctx, **conn) as c:
        deleted = c.lease_revoke(group, lease_id)
    if as_json:
        echo_json({"id": lease_id, "deleted": deleted})
    else:
        click.echo(f"lease {lease_id} revoked, {deleted} keys deleted")


@lease.command()
@click.argument("group")
@click.argument("lease_id", metavar="ID", type=int)
@click.option("--keys", is_flag=True, help="List the attached keys too.")
@json_option
@conn_options
@click.pass_context
def ttl(ctx: click.Context, group: str, lease_id: int, keys: bool, as_json: bool,
        **conn: Any) -> None:
    """Seconds left of lease ID, its granted TTL, and (--keys) its keys."""
    with client(ctx, **conn) as c:
        info = c.lease_ttl(group, lease_id, keys=keys)
    if as_json:
        echo_json(info.to_dict())
        return
    click.echo(f"lease {info.id}: {info.ttl:g}s left of {info.granted_ttl:g}s"
               f"{'' if info.exact else ' (as of its last checkpoint)'}")
    for key in info.keys:
        click.echo(f"  {key}")
