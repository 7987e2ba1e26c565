"""The local cluster a benchmark runs, and the few raw API calls the benchmarks make to it.

Nodes serve their client API over HTTPS with client certificates by default; a benchmark
talks to its cluster as that run's client identity (``LocalCluster.client_tls()``), never
as whatever ``HAKV_CACERT`` the environment holds. ``--insecure`` (``add_insecure_option``)
runs the nodes on plain TCP instead: to measure what TLS costs, or to benchmark a build
that predates TLS.

``bench.ab`` runs the nodes of another source tree (``--nodes-from TREE``), maybe of a
build that predates some of TLS (``tls_support``): one whose ``hakv node --help`` has no
``--certs-dir`` knows no TLS at all (nor ``--insecure``: it is started without that flag,
and runs plain anyway); one whose ``hakv --help`` has no ``--cacert`` has TLS on the raft
port only and serves its API over plain HTTP. Either can only be benchmarked
``--insecure`` (``local_cluster``). The nodes of another tree are started with ``python
-P`` so that they import that tree's hakv even when the benchmark runs from this one.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Literal

from hakv.client.client import probe
from hakv.dev.local import LocalCluster
from hakv.errors import HakvError

__all__ = ["add_insecure_option", "leader_of", "local_cluster", "post", "tls_support"]

#: What a build's nodes can do: "none" (no TLS), "raft" (TLS between nodes, plain HTTP
#: API), "api" (TLS on both ports: HTTPS with client certificates).
TlsSupport = Literal["none", "raft", "api"]


def add_insecure_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--insecure", action="store_true",
                        help="run the nodes without TLS (plain HTTP API, plain raft): the "
                             "pre-TLS setup, or one side of a TLS-cost comparison")


def _help(tree: str, *command: str) -> str:
    """``python -m hakv COMMAND --help`` of source tree ``tree``: its output."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(tree).absolute()),
                                                    env.get("PYTHONPATH", "")) if p)
    argv = [sys.executable, "-m", "hakv", *command, "--help"]
    proc = subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"`python -m hakv {' '.join((*command, '--help'))}` of {tree} "
                           f"failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return proc.stdout


@functools.cache
def tls_support(tree: str | None) -> TlsSupport:
    """What TLS the nodes of source tree ``tree`` (None: this one) have: "api" when its
    ``hakv --help`` names ``--cacert`` (the client API is HTTPS), else "raft" when its
    ``hakv node --help`` names ``--certs-dir``, else "none". RuntimeError when that tree
    does not even show its help."""
    if tree is None:
        return "api"
    if "--cacert" in _help(tree):
        return "api"
    return "raft" if "--certs-dir" in _help(tree, "node") else "none"


class _TreeCluster(LocalCluster):
    """A local cluster whose nodes run the hakv of another source tree (``node_root``).

    ``LocalCluster`` puts that tree first on the nodes' PYTHONPATH, but ``python -m`` puts
    the working directory before it: started from this repository (as bench.ab runs every
    benchmark), the nodes would import this tree's hakv and A/B would compare a build with
    itself. ``-P`` (Python 3.11+) leaves the working directory out. A build older than
    TLS (``pre_tls``) runs insecure and is started without the ``--insecure`` flag it does
    not know (it runs plain anyway)."""

    def __init__(self, directory: str | os.PathLike[str], node_root: str, insecure: bool,
                 pre_tls: bool) -> None:
        super().__init__(directory, node_root=node_root, insecure=insecure)
        self.pre_tls = pre_tls

    def _command(self, node_id: str) -> list[str]:
        python, *rest = super()._command(node_id)
        if self.pre_tls:
            rest = [arg for arg in rest if arg != "--insecure"]
        return [python, "-P", *rest]


def local_cluster(directory: str | os.PathLike[str], nodes_from: str | None = None,
                  insecure: bool = False) -> LocalCluster:
    """The benchmark's cluster in ``directory``: TLS unless ``insecure``; the nodes of
    source tree ``nodes_from`` if given. SystemExit when that build does not serve its
    API over HTTPS and ``insecure`` was not asked for."""
    support = tls_support(nodes_from)
    if support != "api" and not insecure:
        raise SystemExit(f"the nodes of {nodes_from} do not serve their API over HTTPS "
                         f"(TLS support: {support}): benchmark them with --insecure")
    if nodes_from is None:
        return LocalCluster(directory, insecure=insecure)
    return _TreeCluster(directory, nodes_from, insecure=insecure, pre_tls=support == "none")


def leader_of(endpoints: list[str], group: str, tls: ssl.SSLContext | None) -> str | None:
    """The node that a member of ``group`` reports as its leader with quorum (asked
    over ``tls``, None: plain HTTP), or None."""
    for ep in endpoints:
        try:
            st = probe(ep, "/v1/status", 2.0, tls)
        except HakvError:
            continue
        g = (st.get("groups") or {}).get(group)
        if g and g.get("role") == "leader" and g.get("quorum"):
            return str(st["node"])
    return None


def post(endpoint: str, op: str, body: dict[str, Any], tls: ssl.SSLContext | None,
         timeout: float = 10.0) -> tuple[int, dict[str, Any]]:
    """POST /v1/<op> (HTTPS when ``tls``): (status, answer). OSError when nobody answers."""
    url = f"{'https' if tls is not None else 'http'}://{endpoint}/v1/{op}"
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=tls) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
