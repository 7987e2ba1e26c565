"""``hakv snapshot save|status|restore`` (docs/cli.md): online backup and restore of a
group, one library call each (hakv.client.snapshot)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import click

from hakv.cli._options import client, conn_options, json_option
from hakv.cli.render import echo_json
from hakv.client import snapshot as lib
from hakv.errors import BackupError

__all__ = ["snapshot"]


@click.group()
def snapshot() -> None:
    """Online backup and restore of a group (docs/operations.md)."""


def _when(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _describe(m: dict[str, Any]) -> str:
    return (f"group {m['group']} at revision {m['revision']}: {m['keys']} keys "
            f"({m['dropped_ephemeral']} lease-bound keys left out), read on {m['source']} "
            f"at {_when(m['created_at'])}; owners {', '.join(m['owners'])}; "
            f"sha256 {m['sha256'][:16]}...")


@snapshot.command()
@click.argument("group")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--serializable", is_flag=True,
              help="Read the answering owner's copy without a read barrier (no quorum "
              "needed; may miss the latest writes).")
@json_option
@conn_options
@click.pass_context
def save(ctx: click.Context, group: str, file: str, serializable: bool, as_json: bool,
         **conn: Any) -> None:
    """Snapshot the live GROUP into FILE (every key, at one revision)."""
    with client(ctx, **conn) as c:
        manifest = lib.save(c, group, file, serializable=serializable)
    if as_json:
        echo_json({"file": file, **manifest})
    else:
        click.echo(f"saved {file}: {_describe(manifest)}")


@snapshot.command()
@click.argument("file", type=click.Path(dir_okay=False))
@json_option
def status(file: str, as_json: bool) -> None:
    """Check FILE and print its manifest; exits 2 if it is not a sound backup."""
    try:
        manifest = lib.status(file)
    except BackupError as err:
        if not as_json:
            raise  # one line on stderr, exit code 2
        echo_json({"file": file, "ok": False, "error": err.to_wire()["error"]})
        raise SystemExit(err.exit_code) from None
    if as_json:
        echo_json({"file": file, "ok": True, **manifest})
    else:
        click.echo(f"{file}: {_describe(manifest)}")
        click.echo("ok")


@snapshot.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--group", "group", default=None,
              help="The group to rebuild (default: the one the backup was taken of).")
@click.option("--force", is_flag=True,
              help="Replace the keys the group holds (refused otherwise).")
@json_option
@conn_options
@click.pass_context
def restore(ctx: click.Context, file: str, group: str | None, force: bool, as_json: bool,
            **conn: Any) -> None:
    """Rebuild a group from FILE: its owners must hold no keys (fresh or wiped), unless
    --force. Revisions go on above the backup's; older watches get `compacted`."""
    with client(ctx, **conn) as c:  # (a bad file: BackupError, exit 2, before anything is sent)
        result = lib.restore(c, file, group, force=force)
    target = result["group"]
    if as_json:
        echo_json({"file": file, **result})
    else:
        click.echo(f"restored group {target} from {file}: {result['keys']} keys "
                   f"in {result['chunks']} chunks, revision {result['revision']} "
                   f"(backup at {result['backup_revision']}; {result['replaced']} keys "
                   f"replaced) in {result['seconds']}s")
