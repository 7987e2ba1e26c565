"""``hakv inspect DATA_DIR``: what a node stores, read offline from its data dir."""

from __future__ import annotations

import click

from hakv.cli._options import json_option
from hakv.cli.render import echo_json, render_inspect
from hakv.storage.inspect import inspect_data_dir

__all__ = ["inspect"]


@click.command()
@click.argument("data_dir", type=click.Path())
@json_option
def inspect(data_dir: str, as_json: bool) -> None:
    """Offline dump of what a node stores (works while the node is down)."""
    dump = inspect_data_dir(data_dir)
    if as_json:
        echo_json(dump)
    else:
        click.echo(render_inspect(dump, data_dir))
