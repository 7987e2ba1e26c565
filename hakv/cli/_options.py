"""Which cluster a command talks to: the connection options every client command accepts
(before or after the command name), how they resolve to endpoints, and the Client built
from them (docs/cli.md, "Choosing the cluster")."""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable
from typing import Any, TypeVar

import click

from hakv.client import ENDPOINTS_ENV, Client, endpoints_from_env, parse_endpoints
from hakv.core.topology import Topology, load_topology
from hakv.dev.local import LocalCluster
from hakv.errors import ConfigError
from hakv.security.tls import CACERT_ENV, CERT_ENV, KEY_ENV, client_context_from

__all__ = ["TOPOLOGY_ENV", "Conn", "client", "conn_options", "json_option", "make_client",
           "remember", "resolve_endpoints", "settings", "tls_of", "topology_of"]

TOPOLOGY_ENV = "HAKV_TOPOLOGY"

F = TypeVar("F", bound=Callable[..., Any])

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


class Conn:
    """Connection settings gathered from the root group and the command."""

    def __init__(self) -> None:
        self.endpoints: str | None = None
        self.topology: str | None = None
        self.run_dir: str | None = None
        self.timeout: float = 5.0
        self.cacert: str | None = None
        self.cert: str | None = None
        self.key: str | None = None
        self.token: str | None = None


def remember(ctx: click.Context, endpoints: str | None, topology: str | None,
             run_dir: str | None, timeout: float, cacert: str | None = None,
             cert: str | None = None, key: str | None = None,
             token: str | None = None) -> None:
    """Keep the root group's options for the command (which may override them)."""
    conn = ctx.ensure_object(Conn)
    conn.endpoints, conn.topology, conn.run_dir, conn.timeout = (
        endpoints, topology, run_dir, timeout)
    conn.cacert, conn.cert, conn.key = cacert, cert, key
    conn.token = token


def conn_options(f: F) -> F:
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


def settings(ctx: click.Context, **given: Any) -> Conn:
    """The command's connection options, falling back on the root group's."""
    root = ctx.find_object(Conn) or Conn()
    conn = Conn()
    conn.endpoints = given.get("endpoints") or root.endpoints
    conn.topology = given.get("topology") or root.topology
    conn.run_dir = given.get("run_dir") or root.run_dir
    timeout = given.get("timeout")
    conn.timeout = timeout if timeout is not None else root.timeout
    conn.cacert, conn.cert, conn.key = root.cacert, root.cert, root.key
    conn.token = root.token
    return conn


def tls_of(conn: Conn) -> ssl.SSLContext | bool:
    """HTTPS settings: --cacert/--cert/--key, else a local cluster's own (--dir), else
    HAKV_CACERT/HAKV_CERT/HAKV_KEY; False: plain HTTP (an --insecure cluster)."""
    if conn.cacert or conn.cert or conn.key:
        return client_context_from(conn.cacert, conn.cert, conn.key) or False
    if conn.run_dir and not any(os.environ.get(v) for v in (CACERT_ENV, CERT_ENV, KEY_ENV)):
        return LocalCluster(conn.run_dir).client_tls() or False
    return client_context_from() or False


def make_client(conn: Conn, endpoints: list[str]) -> Client:
    return Client(endpoints, timeout=conn.timeout, tls=tls_of(conn), token=conn.token)


def client(ctx: click.Context, **given: Any) -> Client:
    """A Client over the endpoints the options (or the environment) name."""
    conn = settings(ctx, **given)
    endpoints, _ = resolve_endpoints(conn.endpoints, conn.topology, conn.run_dir)
    return make_client(conn, endpoints)


def topology_of(ctx: click.Context, **given: Any) -> Topology:
    """The topology the options name (--dir or --topology; ``explain`` needs it)."""
    conn = settings(ctx, **given)
    if conn.run_dir:
        return LocalCluster(conn.run_dir).topology
    path = conn.topology or os.environ.get(TOPOLOGY_ENV)
    if not path:
        raise ConfigError(
            "explain needs the topology: give --topology FILE or --dir RUN_DIR "
            f"(or set {TOPOLOGY_ENV})")
    return load_topology(path)
