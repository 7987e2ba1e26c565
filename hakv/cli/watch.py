"""``hakv watch GROUP PREFIX``: stream the changes of a prefix, one line per event.

Text lines: ``REVISION put KEY VALUE`` or ``REVISION delete KEY`` (``--prev-kv`` adds the
previous value); with ``--snapshot`` the keys come first as ``REVISION snapshot KEY
VALUE``. ``--json``: one JSON object per event, with ``revision`` and (snapshot lines)
``"snapshot": true``. Runs until interrupted (Ctrl-C: exit 0) or ``--count`` events;
resumes across node failures on its own; a compacted start exits 8 (``compacted``).
"""

from __future__ import annotations

import json
from typing import Any

import click

from hakv.cli._options import client, conn_options, json_option
from hakv.client.watch import WatchBatch, WatchEvent

__all__ = ["watch"]


def event_line(batch: WatchBatch, event: WatchEvent, as_json: bool, prev_kv: bool) -> str:
    kind = "snapshot" if batch.snapshot else event.type
    if as_json:
        body: dict[str, Any] = {"revision": batch.revision, "type": event.type,
                                "key": event.key, "value": event.value,
                                "mod_revision": event.mod_revision}
        if batch.snapshot:
            body["snapshot"] = True
        if event.type == "put":
            body["create_revision"] = event.create_revision
            body["version"] = event.version
        if prev_kv:
            body["prev_kv"] = event.prev.to_dict() if event.prev is not None else None
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    parts = [str(batch.revision), kind, event.key]
    if event.value is not None:
        parts.append(event.value)
    if prev_kv and event.prev is not None:
        parts.append(f"(prev {event.prev.value})")
    return " ".join(parts)


@click.command()
@click.argument("group")
@click.argument("prefix", default="")
@click.option("--from-revision", "from_revision", type=int, default=None,
              help="Start at revision R (default: after the current one).")
@click.option("--snapshot", is_flag=True, help="Print the keys first, then their changes.")
@click.option("--prev-kv", is_flag=True, help="Show each event's previous value.")
@click.option("--count", type=int, default=None, help="Stop after N events.")
@json_option
@conn_options
@click.pass_context
def watch(ctx: click.Context, group: str, prefix: str, from_revision: int | None,
          snapshot: bool, prev_kv: bool, count: int | None, as_json: bool, **conn: Any) -> None:
    """Stream the changes of PREFIX in GROUP, one line per event."""
    if snapshot and from_revision is not None:
        raise click.UsageError("give --snapshot or --from-revision, not both")
    start: int | str | None = "snapshot" if snapshot else from_revision
    seen = 0
    with client(ctx, **conn) as c, c.watch(group, prefix, start, prev_kv=prev_kv) as w:
        try:
            for batch in w:
                for event in batch.events:
                    click.echo(event_line(batch, event, as_json, prev_kv))
                    seen += 1
                if count is not None and seen >= count:
                    return
        except KeyboardInterrupt:
            return
