"""The ``hakv`` command (docs/cli.md): a thin layer over the client library."""

from hakv.cli.root import cli, main

__all__ = ["cli", "main"]
