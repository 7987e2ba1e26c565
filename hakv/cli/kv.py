"""Key-value commands: ``hakv put|get|del|range|txn`` (docs/cli.md), one library call each."""

from __future__ import annotations

import json
from typing import Any

import click

from hakv.cli._options import client, conn_options, json_option
from hakv.cli.render import cell, echo_json, render_table, short
from hakv.client import Compare, Op
from hakv.errors import BadRequestError, ConflictError

__all__ = ["delete", "get", "put", "range_", "txn"]


@click.command()
@click.argument("group")
@click.argument("key")
@click.argument("value")
@click.option(
    "--if-mod-revision",
    type=int,
    default=None,
    help="Only if the key's mod revision is N (0: only if the key does not exist).",
)
@click.option("--lease", type=int, default=None,
              help="Attach the key to lease ID (deleted with it; hakv lease grant).")
@json_option
@conn_options
@click.pass_context
def put(
    ctx: click.Context,
    group: str,
    key: str,
    value: str,
    if_mod_revision: int | None,
    lease: int | None,
    as_json: bool,
    **conn: Any,
) -> None:
    """Set KEY to VALUE in GROUP."""
    with client(ctx, **conn) as c:
        res = c.put(group, key, value, if_mod_revision=if_mod_revision, lease=lease)
    if as_json:
        echo_json(res.to_dict())
    else:
        click.echo(f"OK revision {res.revision}")


@click.command()
@click.argument("group")
@click.argument("key")
@click.option("--serializable", is_flag=True, help="Read the local copy (maybe stale).")
@json_option
@conn_options
@click.pass_context
def get(
    ctx: click.Context, group: str, key: str, serializable: bool, as_json: bool, **conn: Any
) -> None:
    """Print the value of KEY in GROUP (exit 5 if absent)."""
    with client(ctx, **conn) as c:
        kv = c.get(group, key, serializable=serializable)
    if as_json:
        echo_json(kv.to_dict())
    else:
        click.echo(kv.value)


@click.command(name="del")
@click.argument("group")
@click.argument("key")
@json_option
@conn_options
@click.pass_context
def delete(ctx: click.Context, group: str, key: str, as_json: bool, **conn: Any) -> None:
    """Delete KEY from GROUP (absent is not an error)."""
    with client(ctx, **conn) as c:
        res = c.delete(group, key)
    if as_json:
        echo_json(res.to_dict())
    else:
        click.echo(f"deleted {res.deleted} (revision {res.revision})")


@click.command(name="range")
@click.argument("group")
@click.argument("prefix", default="")
@click.option("--limit", type=int, default=1000, show_default=True, help="At most N keys.")
@click.option("--serializable", is_flag=True, help="Read the local copy (maybe stale).")
@json_option
@conn_options
@click.pass_context
def range_(
    ctx: click.Context,
    group: str,
    prefix: str,
    limit: int,
    serializable: bool,
    as_json: bool,
    **conn: Any,
) -> None:
    """List the keys of GROUP starting with PREFIX, sorted."""
    with client(ctx, **conn) as c:
        res = c.range(group, prefix, limit=limit, serializable=serializable)
    if as_json:
        echo_json(res.to_dict())
        return
    click.echo(
        render_table(
            ["KEY", "VALUE", "CREATE_REV", "MOD_REV", "VERSION"],
            [
                [kv.key, short(kv.value, 60), kv.create_revision, kv.mod_revision, kv.version]
                for kv in res.kvs
            ],
        )
    )
    more = "; more keys follow (raise --limit)" if res.more else ""
    click.echo(f"({len(res.kvs)} keys at revision {res.revision}{more})")


def _load_txn(text: str, source: str) -> tuple[list[Compare], list[Op], list[Op]]:
    try:
        spec = json.loads(text)
    except ValueError as err:
        raise BadRequestError(f"{source}: not JSON: {err}") from None
    if not isinstance(spec, dict):
        raise BadRequestError(f"{source}: expected a JSON object with compare/success/failure")
    unknown = set(spec) - {"group", "compare", "success", "failure"}
    if unknown:
        raise BadRequestError(f"{source}: unknown keys {', '.join(sorted(unknown))}")
    lists = {}
    for name in ("compare", "success", "failure"):
        value = spec.get(name, [])
        if not isinstance(value, list):
            raise BadRequestError(f"{source}: {name!r} must be a list")
        lists[name] = value
    return (
        [Compare.from_dict(c) for c in lists["compare"]],
        [Op.from_dict(o) for o in lists["success"]],
        [Op.from_dict(o) for o in lists["failure"]],
    )


@click.command()
@click.argument("group")
@click.option(
    "--file",
    "-f",
    "txn_file",
    required=True,
    type=click.File("r"),
    help='JSON {"compare": [...], "success": [...], "failure": [...]}; - for stdin.',
)
@json_option
@conn_options
@click.pass_context
def txn(ctx: click.Context, group: str, txn_file: Any, as_json: bool, **conn: Any) -> None:
    """Run a transaction (exit 6 when its compares failed)."""
    compare, success, failure = _load_txn(txn_file.read(), txn_file.name)
    with client(ctx, **conn) as c:
        res = c.txn(group, compare, success, failure)
    if as_json:
        echo_json(res.to_dict())
    else:
        branch = "success" if res.succeeded else "failure"
        click.echo(f"succeeded: {cell(res.succeeded)} (ran {branch}, revision {res.revision})")
        ops = success if res.succeeded else failure
        for op, r in zip(ops, res.results, strict=True):
            click.echo(f"  {op.op} {op.key}: {json.dumps(r.to_dict(), ensure_ascii=False)}")
    if not res.succeeded:
        ctx.exit(ConflictError.exit_code)
