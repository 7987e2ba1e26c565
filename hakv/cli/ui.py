"""``hakv ui``: the link to a node's web status page, with a fresh short-lived bearer
token (docs/operations.md, "Web status page")."""

from __future__ import annotations

import os
import webbrowser
from typing import Any

import click

from hakv.cli._options import conn_options, make_client, resolve_endpoints, settings, tls_of
from hakv.dev.local import LocalCluster
from hakv.errors import ConfigError, HakvError, PermissionDeniedError
from hakv.security import certs
from hakv.security.tls import CACERT_ENV, CERT_ENV, KEY_ENV

__all__ = ["ui"]

DEFAULT_TTL = 3600.0


def _cert_user(conn: Any) -> str | None:
    """The user of the client certificate the command would present (as ``tls_of``
    chooses it), or None (no certificate, or a node's)."""
    path: Any = None
    if conn.cacert or conn.cert or conn.key:
        path = conn.cert
    elif conn.run_dir and not any(os.environ.get(v) for v in (CACERT_ENV, CERT_ENV, KEY_ENV)):
        files = LocalCluster(conn.run_dir).client_files()
        path = files[1] if files else None
    else:
        path = os.environ.get(CERT_ENV) or None
    if not path or not os.path.isfile(path):
        return None
    try:
        kind, name = certs.identity_of(certs.load_cert(path))
    except (HakvError, ValueError, OSError):
        return None
    return name if kind == "user" else None


@click.command(name="ui")
@click.option("--node", "node_id", default=None,
              help="The node whose page to open (default: the first endpoint).")
@click.option("--user", "user_name", default=None,
              help="Make the token for this user (default: the user of your client "
              "certificate); it can only read, whatever the user's grants.")
@click.option("--ttl", type=float, default=DEFAULT_TTL, show_default=True,
              help="Seconds the token is valid.")
@click.option("--no-token", is_flag=True,
              help="Print the plain link (a browser with a client certificate, or to paste "
              "a token into the page).")
@click.option("--open", "open_browser", is_flag=True, help="Also open it in a web browser.")
@conn_options
@click.pass_context
def ui(ctx: click.Context, node_id: str | None, user_name: str | None, ttl: float,
       no_token: bool, open_browser: bool, **conn: Any) -> None:
    """Print the link to a node's web status page (/ui): the cluster drawn with its groups,
    leaders, apps, node health and recent events, refreshing itself. The link carries a new
    read-only bearer token (valid --ttl seconds; revoke it with `hakv token revoke ID`) in its
    fragment, which the browser never sends to the server. Making a token needs the
    admin verb on the cluster (root)."""
    given = settings(ctx, **conn)
    endpoints, names = resolve_endpoints(given.endpoints, given.topology, given.run_dir)
    if node_id is not None:
        by_id = {n: ep for ep, n in names.items()}
        if node_id not in by_id:
            raise ConfigError(f"--node {node_id}: not a node of the topology"
                              + (f" (nodes: {', '.join(by_id)})" if by_id else
                                 "; name the cluster with --topology or --dir"))
        endpoint = by_id[node_id]
    else:
        endpoint = endpoints[0]
    secure = tls_of(given) is not False
    url = f"{'https' if secure else 'http'}://{endpoint}/ui"
    if secure and not no_token:
        user_name = user_name or _cert_user(given)
        if user_name is None:
            raise ConfigError("whose token? give --user NAME (no client certificate of a user "
                              "is in use), or --no-token")
        with make_client(given, endpoints) as c:
            try:
                made = c.admin.create_token(user_name, ttl, ["read"])  # the page only reads
            except PermissionDeniedError as err:
                raise PermissionDeniedError(
                    f"{err.message}; making a token needs an administrator: ask one for "
                    "`hakv ui --user YOU`, or use --no-token and paste a token into the page",
                    user=user_name) from None
        url += f"#token={made['token']}"
        click.echo(f"(read-only token id {made['id']} for user {user_name}, valid {ttl:g} s; "
                   f"revoke it "
                   f"with `hakv token revoke {made['id']}`)", err=True)
    click.echo(url)
    if open_browser:
        webbrowser.open(url)
