"""``python -m hakv`` is the ``hakv`` command (docs/cli.md)."""

from hakv.cli import main

if __name__ == "__main__":
    main()
