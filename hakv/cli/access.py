"""``hakv user ...`` and ``hakv role ...``: per-group access control (docs/security.md,
"Access control"), through ``client.admin``."""

from __future__ import annotations

from typing import Any

import click

from hakv.cli._options import client, conn_options, json_option
from hakv.cli.render import echo_json, render_table
from hakv.core.access import VERBS

__all__ = ["role", "token", "user"]


def _done(res: dict[str, Any], as_json: bool, line: str) -> None:
    if as_json:
        echo_json(res)
    else:
        click.echo(f"{line} (revision {res['revision']})")


@click.group(name="user")
def user() -> None:
    """Users: a client certificate's identity (hakv://user/NAME) and its roles."""


@user.command(name="add")
@click.argument("name")
@click.option("--role", "roles", multiple=True, help="A role to give (repeatable).")
@json_option
@conn_options
@click.pass_context
def user_add(ctx: click.Context, name: str, roles: tuple[str, ...], as_json: bool,
             **conn: Any) -> None:
    """Add user NAME (its certificate: `hakv certs client NAME`)."""
    with client(ctx, **conn) as c:
        _done(c.admin.add_user(name, roles), as_json, f"user {name} added")


@user.command(name="remove")
@click.argument("name")
@json_option
@conn_options
@click.pass_context
def user_remove(ctx: click.Context, name: str, as_json: bool, **conn: Any) -> None:
    """Remove user NAME: its certificate then grants nothing (root excepted)."""
    with client(ctx, **conn) as c:
        _done(c.admin.remove_user(name), as_json, f"user {name} removed")


@user.command(name="grant-role")
@click.argument("name")
@click.argument("role_name", metavar="ROLE")
@json_option
@conn_options
@click.pass_context
def user_grant_role(ctx: click.Context, name: str, role_name: str, as_json: bool,
                    **conn: Any) -> None:
    """Give user NAME the grants of ROLE."""
    with client(ctx, **conn) as c:
        _done(c.admin.grant_role(name, role_name), as_json,
              f"user {name} has role {role_name}")


@user.command(name="revoke-role")
@click.argument("name")
@click.argument("role_name", metavar="ROLE")
@json_option
@conn_options
@click.pass_context
def user_revoke_role(ctx: click.Context, name: str, role_name: str, as_json: bool,
                     **conn: Any) -> None:
    """Take ROLE from user NAME."""
    with client(ctx, **conn) as c:
        _done(c.admin.revoke_role(name, role_name), as_json,
              f"user {name} no longer has role {role_name}")


@user.command(name="list")
@json_option
@conn_options
@click.pass_context
def user_list(ctx: click.Context, as_json: bool, **conn: Any) -> None:
    """Every user and its roles."""
    with client(ctx, **conn) as c:
        users = c.admin.users()
    if as_json:
        echo_json(users)
    else:
        click.echo(render_table(["USER", "ROLES"],
                                [[u, ",".join(r) or "-"] for u, r in sorted(users.items())]))


@click.group(name="role")
def role() -> None:
    """Roles: verbs granted on groups (default deny)."""


@role.command(name="add")
@click.argument("name")
@json_option
@conn_options
@click.pass_context
def role_add(ctx: click.Context, name: str, as_json: bool, **conn: Any) -> None:
    """Add role NAME (no grants yet)."""
    with client(ctx, **conn) as c:
        _done(c.admin.add_role(name), as_json, f"role {name} added")


@role.command(name="remove")
@click.argument("name")
@json_option
@conn_options
@click.pass_context
def role_remove(ctx: click.Context, name: str, as_json: bool, **conn: Any) -> None:
    """Remove role NAME (users keep its name, which then grants nothing)."""
    with client(ctx, **conn) as c:
        _done(c.admin.remove_role(name), as_json, f"role {name} removed")


@role.command(name="grant")
@click.argument("name")
@click.option("--group", "group_id", required=True, help="A group id, or '*' for every group.")
@click.option("--verbs", required=True,
              help=f"Comma-separated, some of: {', '.join(VERBS)}.")
@click.option("--prefix", default="", help="Only keys under this prefix.")
@json_option
@conn_options
@click.pass_context
def role_grant(ctx: click.Context, name: str, group_id: str, verbs: str, prefix: str,
               as_json: bool, **conn: Any) -> None:
    """Let role NAME do VERBS on a group (replaces its grant on that group and prefix)."""
    wanted = [v.strip() for v in verbs.split(",") if v.strip()]
    with client(ctx, **conn) as c:
        _done(c.admin.grant(name, group_id, wanted, prefix), as_json,
              f"role {name} may {','.join(sorted(set(wanted)))} on group {group_id}"
              + (f" under {prefix!r}" if prefix else ""))


@role.command(name="revoke")
@click.argument("name")
@click.option("--group", "group_id", required=True, help="The group of the grant.")
@click.option("--prefix", default=None, help="Only the grant on this prefix.")
@json_option
@conn_options
@click.pass_context
def role_revoke(ctx: click.Context, name: str, group_id: str, prefix: str | None,
                as_json: bool, **conn: Any) -> None:
    """Drop role NAME's grants on a group."""
    with client(ctx, **conn) as c:
        _done(c.admin.revoke(name, group_id, prefix), as_json,
              f"role {name} grants nothing more on group {group_id}")


@role.command(name="list")
@json_option
@conn_options
@click.pass_context
def role_list(ctx: click.Context, as_json: bool, **conn: Any) -> None:
    """Every role and its grants."""
    with client(ctx, **conn) as c:
        roles = c.admin.roles()
    if as_json:
        echo_json(roles)
        return
    rows = [[name, g["group"], g["prefix"] or "-", ",".join(g["verbs"])]
            for name, grants in sorted(roles.items()) for g in grants or
            [{"group": "-", "prefix": "", "verbs": []}]]
    click.echo(render_table(["ROLE", "GROUP", "PREFIX", "VERBS"], rows))


@click.group(name="token")
def token() -> None:
    """Bearer tokens: a user's identity for scripts and people without a certificate."""


@token.command(name="create")
@click.argument("user_name", metavar="USER")
@click.option("--ttl", type=float, default=None, help="Seconds it is valid (default: until revoked).")
@click.option("--verbs", default=None,
              help="Only these verbs, comma-separated (read,write,watch,lease,admin,snapshot), "
              "within USER's grants (default: all of USER's).")
@json_option
@conn_options
@click.pass_context
def token_create(ctx: click.Context, user_name: str, ttl: float | None, verbs: str | None,
                 as_json: bool, **conn: Any) -> None:
    """Make a token for USER; it is printed this once (use it with --token / HAKV_TOKEN)."""
    scope = None if verbs is None else [v.strip() for v in verbs.split(",") if v.strip()]
    with client(ctx, **conn) as c:
        res = c.admin.create_token(user_name, ttl, scope)
    if as_json:
        echo_json(res)
    else:
        click.echo(res["token"])
        only = f"only {','.join(res['verbs'])}, " if res.get("verbs") else ""
        click.echo(f"(id {res['id']}, user {user_name}, {only}"
                   f"{'expires at ' + str(res['expires']) if res['expires'] else 'no expiry'}; "
                   f"revoke with `hakv token revoke {res['id']}`)", err=True)


@token.command(name="list")
@json_option
@conn_options
@click.pass_context
def token_list(ctx: click.Context, as_json: bool, **conn: Any) -> None:
    """Every token's id, user and expiry (never the token itself)."""
    with client(ctx, **conn) as c:
        tokens = c.admin.tokens()
    if as_json:
        echo_json(tokens)
    else:
        click.echo(render_table(["ID", "USER", "EXPIRES", "VERBS"],
                                [[i, t["user"], t["expires"] or "-",
                                  ",".join(t.get("verbs") or ["(all of the user's)"])]
                                 for i, t in sorted(tokens.items())]))


@token.command(name="revoke")
@click.argument("token_id", metavar="ID")
@json_option
@conn_options
@click.pass_context
def token_revoke(ctx: click.Context, token_id: str, as_json: bool, **conn: Any) -> None:
    """Revoke token ID."""
    with client(ctx, **conn) as c:
        _done(c.admin.revoke_token(token_id), as_json, f"token {token_id} revoked")
