"""The ``hakv`` command line: parse, call the library, print a table or ``--json``.

Every :class:`~hakv.errors.HakvError` ends the command with its ``exit_code`` and one line
on stderr, ``hakv: error: <code>: <message>``; anything else with exit code 1 and one line
(the traceback only with ``HAKV_DEBUG=1``). Reference with examples: docs/cli.md.

Exit codes: 0 ok, 1 internal, 2 permanent error (bad request, too large, unknown group,
request expired; also click's usage errors), 3 retryable (no quorum, unavailable), 4 outcome
unknown, 5 not found, 6 conflict (and ``txn`` whose compares failed), 7 configuration.
"""

from __future__ import annotations

import json
import os
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import click

from hakv.client.client import (
    ENDPOINTS_ENV,
    Client,
    Compare,
    Op,
    endpoints_from_env,
    parse_endpoints,
)
from hakv.core.topology import Topology, load_topology
from hakv.errors import ConfigError, ConflictError, HakvError, UnavailableError

__all__ = ["cli", "main", "render_cluster_show", "render_inspect", "render_status",
           "render_table"]

TOPOLOGY_ENV = "HAKV_TOPOLOGY"
DEBUG_ENV = "HAKV_DEBUG"

F = TypeVar("F", bound=Callable[..., Any])


# --------------------------------------------------------------------------- output


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Plain aligned text: columns separated by two spaces, no trailing blanks."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], len(value))
    lines = []
    for row in [list(headers), *cells]:
        lines.append("  ".join(v.ljust(widths[i]) for i, v in enumerate(row)).rstrip())
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if value is True:
        return "yes"
    if value is False:
        return "no"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _short(text: Any, width: int = 40) -> str:
    s = str(text).replace("\n", "\\n")
    return s if len(s) <= width else s[: width - 3] + "..."


def _echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, ensure_ascii=False))


def render_status(st: Mapping[str, Any]) -> str:
    """``hakv status`` as text: a group table, then a node table."""
    groups = st.get("groups") or {}
    group_rows = [
        [
            gid,
            g.get("owners"),
            g.get("leader"),
            g.get("term"),
            g.get("commit_index"),
            g.get("revision"),
            g.get("quorum"),
        ]
        for gid, g in groups.items()
    ]
    node_rows = [
        [
            n.get("node"),
            n.get("endpoint"),
            n.get("reachable"),
            n.get("groups") or "",
            n.get("sphere_of_influence") or "",
            (n.get("status") or {}).get("state", "") if n.get("reachable") else "down",
            n.get("error") or "",
        ]
        for n in st.get("nodes") or []
    ]
    head = f"cluster {st['cluster']}\n\n" if st.get("cluster") else ""
    return (
        head
        + render_table(
            ["GROUP", "OWNERS", "LEADER", "TERM", "COMMIT", "REVISION", "QUORUM"], group_rows
        )
        + "\n\n"
        + render_table(
            ["NODE", "ENDPOINT", "REACHABLE", "GROUPS", "SPHERE OF INFLUENCE", "STATUS", "ERROR"],
            node_rows,
        )
    )


def render_inspect(dump: Mapping[str, Any], path: str = "") -> str:
    """``hakv inspect`` as text: a line per group, then each group's keys."""
    out = [f"node {dump['node']} of cluster {dump['cluster']}" + (f" ({path})" if path else "")]
    rows = []
    stores = dump.get("group_stores") or {}
    raft = dump.get("raft") or {}
    for gid in dump.get("groups") or []:
        s = stores.get(gid) or {}
        r = raft.get(gid) or {}
        rows.append(
            [
                gid,
                s.get("applied_index"),
                s.get("revision"),
                s.get("keys"),
                s.get("sessions"),
                r.get("journal_bytes"),
                r.get("snapshots") or None,
                s.get("error") or "",
            ]
        )
    out += [
        "",
        render_table(
            ["GROUP", "APPLIED", "REVISION", "KEYS", "CLIENTS", "JOURNAL_B", "SNAPSHOT", "ERROR"],
            rows,
        ),
    ]
    for gid in dump.get("groups") or []:
        kvs = (stores.get(gid) or {}).get("kvs") or []
        if not kvs:
            continue
        out += ["", f"group {gid}:"]
        table = render_table(
            ["KEY", "VALUE", "CREATE_REV", "MOD_REV", "VERSION"],
            [
                [
                    _short(kv.get("key")),
                    _short(kv.get("value")),
                    kv.get("create_revision"),
                    kv.get("mod_revision"),
                    kv.get("version"),
                ]
                for kv in kvs
            ],
        )
        out += ["  " + line for line in table.splitlines()]
        shown, total = len(kvs), (stores.get(gid) or {}).get("keys")
        if isinstance(total, int) and total > shown:
            out.append(f"  ... {total - shown} more keys (see --json of a smaller store)")
    return "\n".join(out)


# --------------------------------------------------------------------------- errors


def _one_line(text: str) -> str:
    return "; ".join(part.strip() for part in str(text).splitlines() if part.strip())


def fail_line(code: str, message: str) -> str:
    return f"hakv: error: {code}: {_one_line(message)}"


class _HakvGroup(click.Group):
    """Maps errors to exit codes and one stderr line, for every (sub)command."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except HakvError as err:
            tails = getattr(err, "tails", None)
            if isinstance(tails, dict):  # NodesNotReadyError: show why before the verdict
                for node, tail in tails.items():
                    click.echo(f"--- last lines of node {node}'s log ---", err=True)
                    click.echo(tail, err=True)
            if os.environ.get(DEBUG_ENV) == "1":
                traceback.print_exc()
            click.echo(fail_line(err.code, err.message), err=True)
            ctx.exit(err.exit_code)
        except Exception as err:  # noqa: BLE001 - last resort: one line, exit 1
            if os.environ.get(DEBUG_ENV) == "1":
                traceback.print_exc()
            click.echo(
                fail_line(
                    "internal", f"{type(err).__name__}: {err} (HAKV_DEBUG=1 for a traceback)"
                ),
                err=True,
            )
            ctx.exit(1)


# --------------------------------------------------------------------------- connection


class _Conn:
    """Connection settings gathered from the root group and the command."""

    def __init__(self) -> None:
        self.endpoints: str | None = None
        self.topology: str | None = None
        self.run_dir: str | None = None
        self.timeout: float = 5.0


def _conn_options(f: F) -> F:
    """--endpoints/--topology/--dir/--timeout, accepted before or after the command."""
    f = click.option(
        "--timeout",
        type=float,
        default=None,
        help="Seconds for the whole request, retries included (default 5).",
    )(f)
    f = click.option(
        "--dir",
        "run_dir",
        type=click.Path(file_okay=False),
        default=None,
        help="Run dir of a local cluster: use its nodes as endpoints.",
    )(f)
    f = click.option(
        "--topology",
        type=click.Path(dir_okay=False),
        default=None,
        help=f"Topology file: use its nodes as endpoints (env {TOPOLOGY_ENV}).",
    )(f)
    f = click.option(
        "--endpoints",
        "-e",
        default=None,
        help=f"host:port[,host:port...] of hakv nodes (env {ENDPOINTS_ENV}).",
    )(f)
    return f


def _topology_endpoints(path: str) -> tuple[list[str], dict[str, str]]:
    from hakv.core.topology import load_topology

    topology = load_topology(path)
    return [n.api_address for n in topology.nodes], {n.api_address: n.id for n in topology.nodes}


def resolve_endpoints(
    endpoints: str | None, topology: str | None, run_dir: str | None
) -> tuple[list[str], dict[str, str]]:
    """The endpoints to use, and node ids by endpoint where a topology tells them.

    Explicit options first (--endpoints, --dir, --topology), then the environment
    (HAKV_ENDPOINTS, HAKV_TOPOLOGY).
    """
    if endpoints:
        return parse_endpoints(endpoints), {}
    if run_dir:
        from hakv.dev.local import LocalCluster

        nodes = LocalCluster(run_dir).topology.nodes  # ConfigError if DIR holds no cluster
        return [n.api_address for n in nodes], {n.api_address: n.id for n in nodes}
    if topology:
        return _topology_endpoints(topology)
    env = endpoints_from_env()
    if env:
        return env, {}
    if os.environ.get(TOPOLOGY_ENV):
        return _topology_endpoints(os.environ[TOPOLOGY_ENV])
    raise ConfigError(
        f"no endpoints: give --endpoints host:port,..., --topology FILE or --dir RUN_DIR, "
        f"or set {ENDPOINTS_ENV} (`eval $(hakv local env --dir DIR)`)"
    )


def _settings(ctx: click.Context, **given: Any) -> _Conn:
    root = ctx.find_object(_Conn) or _Conn()
    conn = _Conn()
    conn.endpoints = given.get("endpoints") or root.endpoints
    conn.topology = given.get("topology") or root.topology
    conn.run_dir = given.get("run_dir") or root.run_dir
    timeout = given.get("timeout")
    conn.timeout = timeout if timeout is not None else root.timeout
    return conn


def _client(ctx: click.Context, **given: Any) -> Client:
    conn = _settings(ctx, **given)
    endpoints, _ = resolve_endpoints(conn.endpoints, conn.topology, conn.run_dir)
    return Client(endpoints, timeout=conn.timeout)


_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


# --------------------------------------------------------------------------- root


@click.group(cls=_HakvGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--endpoints", "-e", default=None, help=f"host:port,... (env {ENDPOINTS_ENV}).")
@click.option(
    "--topology",
    type=click.Path(dir_okay=False),
    default=None,
    help=f"Topology file; its nodes are the endpoints (env {TOPOLOGY_ENV}).",
)
@click.option(
    "--dir",
    "run_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Run dir of a local cluster; its nodes are the endpoints.",
)
@click.option("--timeout", type=float, default=5.0, show_default=True, help="Seconds per call.")
@click.version_option(package_name="hakv", prog_name="hakv")
@click.pass_context
def cli(
    ctx: click.Context,
    endpoints: str | None,
    topology: str | None,
    run_dir: str | None,
    timeout: float,
) -> None:
    """hakv: coordination for very large HA clusters, one Raft ensemble per group."""
    conn = ctx.ensure_object(_Conn)
    conn.endpoints, conn.topology, conn.run_dir, conn.timeout = (
        endpoints,
        topology,
        run_dir,
        timeout,
    )


# --------------------------------------------------------------------------- node


@cli.command()
@click.option(
    "--topology",
    required=True,
    envvar=TOPOLOGY_ENV,
    type=click.Path(dir_okay=False),
    help=f"Topology file (env {TOPOLOGY_ENV}).",
)
@click.option("--node", "node_id", required=True, help="This node's id in the topology.")
@click.option(
    "--data-dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Where this node keeps its journals and stores.",
)
@click.option(
    "--secret-file",
    envvar="HAKV_SECRET_FILE",
    type=click.Path(dir_okay=False),
    default=None,
    help="Cluster secret that authenticates and encrypts traffic between nodes "
    "(env HAKV_SECRET_FILE); every node of the cluster must use the same one.",
)
@click.pass_context
def node(ctx: click.Context, topology: str, node_id: str, data_dir: str,
         secret_file: str | None) -> None:
    """Run a node until SIGTERM/SIGINT."""
    from hakv.node.process import run_node

    ctx.exit(run_node(topology, node_id, data_dir, secret_file))


# --------------------------------------------------------------------------- key-value


@cli.command()
@click.argument("group")
@click.argument("key")
@click.argument("value")
@click.option(
    "--if-mod-revision",
    type=int,
    default=None,
    help="Only if the key's mod revision is N (0: only if the key does not exist).",
)
@_json_option
@_conn_options
@click.pass_context
def put(
    ctx: click.Context,
    group: str,
    key: str,
    value: str,
    if_mod_revision: int | None,
    as_json: bool,
    **conn: Any,
) -> None:
    """Set KEY to VALUE in GROUP."""
    with _client(ctx, **conn) as c:
        res = c.put(group, key, value, if_mod_revision=if_mod_revision)
    if as_json:
        _echo_json(res.to_dict())
    else:
        click.echo(f"OK revision {res.revision}")


@cli.command()
@click.argument("group")
@click.argument("key")
@click.option("--serializable", is_flag=True, help="Read the local copy (maybe stale).")
@_json_option
@_conn_options
@click.pass_context
def get(
    ctx: click.Context, group: str, key: str, serializable: bool, as_json: bool, **conn: Any
) -> None:
    """Print the value of KEY in GROUP (exit 5 if absent)."""
    with _client(ctx, **conn) as c:
        kv = c.get(group, key, serializable=serializable)
    if as_json:
        _echo_json(kv.to_dict())
    else:
        click.echo(kv.value)


@cli.command(name="del")
@click.argument("group")
@click.argument("key")
@_json_option
@_conn_options
@click.pass_context
def delete(ctx: click.Context, group: str, key: str, as_json: bool, **conn: Any) -> None:
    """Delete KEY from GROUP (absent is not an error)."""
    with _client(ctx, **conn) as c:
        res = c.delete(group, key)
    if as_json:
        _echo_json(res.to_dict())
    else:
        click.echo(f"deleted {res.deleted} (revision {res.revision})")


@cli.command(name="range")
@click.argument("group")
@click.argument("prefix", default="")
@click.option("--limit", type=int, default=1000, show_default=True, help="At most N keys.")
@click.option("--serializable", is_flag=True, help="Read the local copy (maybe stale).")
@_json_option
@_conn_options
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
    with _client(ctx, **conn) as c:
        res = c.range(group, prefix, limit=limit, serializable=serializable)
    if as_json:
        _echo_json(res.to_dict())
        return
    click.echo(
        render_table(
            ["KEY", "VALUE", "CREATE_REV", "MOD_REV", "VERSION"],
            [
                [kv.key, _short(kv.value, 60), kv.create_revision, kv.mod_revision, kv.version]
                for kv in res.kvs
            ],
        )
    )
    more = "; more keys follow (raise --limit)" if res.more else ""
    click.echo(f"({len(res.kvs)} keys at revision {res.revision}{more})")


def _load_txn(text: str, source: str) -> tuple[list[Compare], list[Op], list[Op]]:
    from hakv.errors import BadRequestError

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


@cli.command()
@click.argument("group")
@click.option(
    "--file",
    "-f",
    "txn_file",
    required=True,
    type=click.File("r"),
    help='JSON {"compare": [...], "success": [...], "failure": [...]}; - for stdin.',
)
@_json_option
@_conn_options
@click.pass_context
def txn(ctx: click.Context, group: str, txn_file: Any, as_json: bool, **conn: Any) -> None:
    """Run a transaction (exit 6 when its compares failed)."""
    compare, success, failure = _load_txn(txn_file.read(), txn_file.name)
    with _client(ctx, **conn) as c:
        res = c.txn(group, compare, success, failure)
    if as_json:
        _echo_json(res.to_dict())
    else:
        branch = "success" if res.succeeded else "failure"
        click.echo(f"succeeded: {_cell(res.succeeded)} (ran {branch}, revision {res.revision})")
        ops = success if res.succeeded else failure
        for op, r in zip(ops, res.results, strict=True):
            click.echo(f"  {op.op} {op.key}: {json.dumps(r.to_dict(), ensure_ascii=False)}")
    if not res.succeeded:
        ctx.exit(ConflictError.exit_code)


# --------------------------------------------------------------------------- status


@cli.command()
@_json_option
@_conn_options
@click.pass_context
def status(ctx: click.Context, as_json: bool, **conn: Any) -> None:
    """Per group: owners, leader, term, commit index, revision, quorum; per node:
    reachable. Exit 3 when no node answers."""
    settings = _settings(ctx, **conn)
    endpoints, names = resolve_endpoints(settings.endpoints, settings.topology, settings.run_dir)
    with Client(endpoints, timeout=settings.timeout) as c:
        st = c.cluster_status()
    for n in st["nodes"]:
        if n["node"] is None:
            n["node"] = names.get(n["endpoint"])
    if as_json:
        _echo_json(st)
    else:
        click.echo(render_status(st))
    if not any(n["reachable"] for n in st["nodes"]):
        raise UnavailableError(f"no endpoint answered: {', '.join(endpoints)}")


# --------------------------------------------------------------------------- explain


def _topology_of(ctx: click.Context, **conn: Any) -> Topology:
    settings = _settings(ctx, **conn)
    if settings.run_dir:
        from hakv.dev.local import LocalCluster

        return LocalCluster(settings.run_dir).topology
    path = settings.topology or os.environ.get(TOPOLOGY_ENV)
    if not path:
        raise ConfigError(
            "explain needs the topology: give --topology FILE or --dir RUN_DIR "
            f"(or set {TOPOLOGY_ENV})")
    return load_topology(path)


@cli.group()
def explain() -> None:
    """Say in plain words where records are replicated, and why."""


@explain.command(name="node")
@click.argument("node_id")
@_conn_options
@click.pass_context
def explain_node_cmd(ctx: click.Context, node_id: str, **conn: Any) -> None:
    """Where NODE's status lives, what its disk holds, what its failure affects."""
    from hakv.core.explain import explain_node

    click.echo(explain_node(_topology_of(ctx, **conn), node_id))


@explain.command(name="group")
@click.argument("group_id")
@_conn_options
@click.pass_context
def explain_group_cmd(ctx: click.Context, group_id: str, **conn: Any) -> None:
    """Where GROUP's records live, its quorum, its bridges, its failover order."""
    from hakv.core.explain import explain_group

    click.echo(explain_group(_topology_of(ctx, **conn), group_id))


# --------------------------------------------------------------------------- membership


def _owner_list(text: str) -> list[str]:
    return [o.strip() for o in text.split(",") if o.strip()]


def _echo_records_call(ctx: click.Context, conn: Mapping[str, Any], as_json: bool,
                       call: Callable[[Client], dict[str, Any]],
                       as_text: Callable[[dict[str, Any]], str]) -> None:
    """The shared body of the ``cluster`` and ``group`` commands: each is one
    :mod:`hakv.core.membership` call against the cluster records, printed whole with ``--json``
    and as one summary otherwise."""
    with _client(ctx, **conn) as c:
        res = call(c)
    if as_json:
        _echo_json(res)
    else:
        click.echo(as_text(res))


def render_cluster_show(shown: Mapping[str, Any]) -> str:
    """``hakv cluster show`` as text: a node table, then a group table."""
    nodes = render_table(
        ["NODE", "HOST", "RAFT_PORT", "API_PORT", "CAPACITY", "GROUPS"],
        [[n["id"], n["host"], n["raft_port"], n["api_port"], n["capacity"], n["groups"] or ""]
         for n in shown.get("nodes") or []],
    )
    groups = render_table(
        ["GROUP", "OWNERS", "LOAD", "RAFT_VOTERS", "STATE", "PENDING"],
        [[g["id"], g["owners"], g["load"], g["raft_voters"], g["state"],
          " ".join(g["pending"]) or ""]
         for g in shown.get("groups") or []],
    )
    head = f"cluster {shown.get('cluster')} (configuration epoch {shown.get('epoch')})"
    out = [head, "", nodes, "", groups]
    for problem in shown.get("problems") or []:
        out.append(f"warning: unreadable record {problem}")
    return "\n".join(out)


@cli.group(name="cluster", cls=_HakvGroup)
def cluster_cmd() -> None:
    """Cluster-level records: nodes (docs/membership.md)."""


@cluster_cmd.command(name="show")
@_json_option
@_conn_options
@click.pass_context
def cluster_show(ctx: click.Context, as_json: bool, **conn: Any) -> None:
    """Nodes and groups as the cluster ensemble records them (desired owners, current
    Raft voters, pending steps)."""
    from hakv.client import admin as membership

    _echo_records_call(ctx, conn, as_json, membership.show, render_cluster_show)


@cluster_cmd.command(name="add-node")
@click.argument("node_id", metavar="ID")
@click.option("--host", required=True, help="Address the node listens on and peers dial.")
@click.option("--raft-port", required=True, type=int, help="The node's Raft port.")
@click.option("--api-port", required=True, type=int, help="The node's client API port.")
@click.option("--capacity", type=int, default=None, help="Load units it can carry (default 10).")
@_json_option
@_conn_options
@click.pass_context
def cluster_add_node(ctx: click.Context, node_id: str, host: str, raft_port: int,
                     api_port: int, capacity: int | None, as_json: bool, **conn: Any) -> None:
    """Add node ID to the cluster records; then start it (`hakv node --node ID ...`)."""
    from hakv.client import admin as membership
    from hakv.core.topology import DEFAULT_CAPACITY, NodeSpec

    spec = NodeSpec(id=node_id, host=host, raft_port=raft_port, api_port=api_port,
                    capacity=DEFAULT_CAPACITY if capacity is None else capacity)
    _echo_records_call(
        ctx, conn, as_json, lambda c: membership.add_node(c, spec),
        lambda res: f"node {node_id} added (epoch {res['epoch']}). Start it with:\n"
                    f"  hakv node --topology FILE --node {node_id} --data-dir DIR\n"
                    f"(FILE: the cluster's topology file; the node reads its own address "
                    f"from the cluster records), or `hakv local start {node_id} --dir "
                    f"RUN_DIR`.")


@cluster_cmd.command(name="remove-node")
@click.argument("node_id", metavar="ID")
@_json_option
@_conn_options
@click.pass_context
def cluster_remove_node(ctx: click.Context, node_id: str, as_json: bool, **conn: Any) -> None:
    """Remove node ID (refused while a group lists it); then stop its process."""
    from hakv.client import admin as membership

    _echo_records_call(
        ctx, conn, as_json, lambda c: membership.remove_node(c, node_id),
        lambda res: f"node {node_id} removed (epoch {res['epoch']}); its process can be "
                    "stopped now")


@cli.group(name="group", cls=_HakvGroup)
def group_cmd() -> None:
    """Resource groups: create, delete, change owners (docs/membership.md)."""


@group_cmd.command(name="create")
@click.argument("group_id", metavar="ID")
@click.option("--owners", required=True, help="Owner node ids, comma-separated, in "
              "precedence order (at least 2).")
@click.option("--load", type=int, default=None, help="Load units of the group's app (default 1).")
@_json_option
@_conn_options
@click.pass_context
def group_create(ctx: click.Context, group_id: str, owners: str, load: int | None,
                 as_json: bool, **conn: Any) -> None:
    """Create group ID on OWNERS; each owner starts its member within a second."""
    from hakv.client import admin as membership
    from hakv.core.topology import DEFAULT_LOAD

    _echo_records_call(
        ctx, conn, as_json,
        lambda c: membership.create_group(c, group_id, _owner_list(owners),
                                          DEFAULT_LOAD if load is None else load),
        lambda res: f"group {group_id} created on {', '.join(res['group']['owners'])} "
                    f"(epoch {res['epoch']})")


@group_cmd.command(name="delete")
@click.argument("group_id", metavar="ID")
@_json_option
@_conn_options
@click.pass_context
def group_delete(ctx: click.Context, group_id: str, as_json: bool, **conn: Any) -> None:
    """Delete group ID: its owners stop its member and delete its data."""
    from hakv.client import admin as membership

    _echo_records_call(
        ctx, conn, as_json, lambda c: membership.delete_group(c, group_id),
        lambda res: f"group {group_id} deleted (epoch {res['epoch']}); "
                    f"{', '.join(res['owners'])} drop its data")


@group_cmd.command(name="set-owners")
@click.argument("group_id", metavar="ID")
@click.option("--owners", required=True, help="The new owners, comma-separated, in "
              "precedence order (at least 2).")
@_json_option
@_conn_options
@click.pass_context
def group_set_owners(ctx: click.Context, group_id: str, owners: str, as_json: bool,
                     **conn: Any) -> None:
    """Change the owners of group ID; its leader changes the Raft voters one at a time."""
    from hakv.client import admin as membership

    def as_text(res: dict[str, Any]) -> str:
        plan = " ".join(res["plan"]) or "nothing to change"
        return (f"group {group_id}: owners {', '.join(res['previous_owners'])} -> "
                f"{', '.join(res['owners'])} (epoch {res['epoch']}); Raft steps: {plan} "
                "(follow with hakv cluster show)")

    _echo_records_call(
        ctx, conn, as_json, lambda c: membership.set_owners(c, group_id, _owner_list(owners)),
        as_text)


# --------------------------------------------------------------------------- inspect


@cli.command()
@click.argument("data_dir", type=click.Path())
@_json_option
def inspect(data_dir: str, as_json: bool) -> None:
    """Offline dump of what a node stores (works while the node is down)."""
    from hakv.storage.inspect import inspect_data_dir

    dump = inspect_data_dir(data_dir)
    if as_json:
        _echo_json(dump)
    else:
        click.echo(render_inspect(dump, data_dir))


# --------------------------------------------------------------------------- local


_dir_option = click.option(
    "--dir",
    "run_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Run directory of the local cluster (pids, logs, data inside).",
)


@cli.group(cls=_HakvGroup)
def local() -> None:
    """Run a whole topology as local processes under a run directory."""


def _node_table(lc: Any, pids: Mapping[str, int]) -> str:
    return render_table(
        ["NODE", "PID", "ENDPOINT", "LOG"],
        [[n, pid, lc.endpoint(n), lc.log_path(n)] for n, pid in pids.items()],
    )


@local.command(name="up")
@click.option(
    "--topology",
    required=True,
    envvar=TOPOLOGY_ENV,
    type=click.Path(dir_okay=False),
    help=f"Topology file (env {TOPOLOGY_ENV}).",
)
@_dir_option
@click.option(
    "--wait",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds to wait for every node's health (0: don't wait).",
)
def local_up(topology: str, run_dir: str, wait: float) -> None:
    """Start every node of TOPOLOGY under --dir."""
    from hakv.dev.local import LocalCluster

    lc = LocalCluster(run_dir)
    pids = lc.up(topology, wait=wait)
    click.echo(_node_table(lc, pids))
    state = "healthy" if wait > 0 else "started"
    click.echo(f"\n{len(pids)} nodes {state}. For the other commands:\n  {lc.env_line()}")


@local.command(name="down")
@_dir_option
def local_down(run_dir: str) -> None:
    """Stop every node (SIGTERM; SIGKILL after 5 s)."""
    from hakv.dev.local import LocalCluster

    result = LocalCluster(run_dir).down()
    if not result:
        click.echo(f"nothing to stop in {run_dir}")
        return
    click.echo(render_table(["NODE", "RESULT"], sorted(result.items())))


@local.command(name="status")
@_dir_option
@_json_option
def local_status(run_dir: str, as_json: bool) -> None:
    """Per node: pid, alive, health."""
    from hakv.dev.local import LocalCluster

    states = LocalCluster(run_dir).status()
    if as_json:
        _echo_json([s.to_dict() for s in states])
        return
    click.echo(
        render_table(
            ["NODE", "PID", "ALIVE", "ENDPOINT", "HEALTH"],
            [[s.node, s.pid, s.alive, s.endpoint, s.health] for s in states],
        )
    )


@local.command(name="kill")
@click.argument("node_id", metavar="NODE")
@_dir_option
def local_kill(node_id: str, run_dir: str) -> None:
    """SIGKILL (kill -9) one node."""
    from hakv.dev.local import LocalCluster

    LocalCluster(run_dir).kill(node_id)
    click.echo(f"killed {node_id}")


@local.command(name="stop")
@click.argument("node_id", metavar="NODE")
@_dir_option
def local_stop(node_id: str, run_dir: str) -> None:
    """SIGTERM one node (SIGKILL after 5 s)."""
    from hakv.dev.local import LocalCluster

    click.echo(f"{node_id}: {LocalCluster(run_dir).stop(node_id)}")


@local.command(name="start")
@click.argument("node_id", metavar="NODE")
@_dir_option
@click.option("--wait", type=float, default=30.0, show_default=True, help="Health wait (s).")
def local_start(node_id: str, run_dir: str, wait: float) -> None:
    """Start (restart) one node on its data dir."""
    from hakv.dev.local import LocalCluster

    lc = LocalCluster(run_dir)
    pid = lc.start(node_id, wait=wait)
    click.echo(f"started {node_id} (pid {pid}, {lc.endpoint(node_id)})")


@local.command(name="pause")
@click.argument("node_id", metavar="NODE")
@_dir_option
def local_pause(node_id: str, run_dir: str) -> None:
    """SIGSTOP one node (it freezes)."""
    from hakv.dev.local import LocalCluster

    LocalCluster(run_dir).pause(node_id)
    click.echo(f"paused {node_id}")


@local.command(name="resume")
@click.argument("node_id", metavar="NODE")
@_dir_option
def local_resume(node_id: str, run_dir: str) -> None:
    """SIGCONT a paused node."""
    from hakv.dev.local import LocalCluster

    LocalCluster(run_dir).resume(node_id)
    click.echo(f"resumed {node_id}")


@local.command(name="env")
@_dir_option
def local_env(run_dir: str) -> None:
    """Print `export HAKV_ENDPOINTS=...` (use: eval "$(hakv local env --dir DIR)")."""
    from hakv.dev.local import LocalCluster

    click.echo(LocalCluster(run_dir).env_line())


def main() -> None:
    """Console-script entry point."""
    cli.main(prog_name="hakv")


if __name__ == "__main__":
    main()
import hakv.cli.ha  # noqa: E402,F401  (HA commands: events, group move|maintenance|..., explain placement)
