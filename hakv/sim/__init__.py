"""A deterministic, seeded simulation of the patent's claims that runs hakv's own code.

FoundationDB's simulation is the model: the decisions are the real ones, only the world
around them is simulated. Nodes, links, CPU and time are simulated (hakv.sim.model);
which node stores what (hakv.core.replication), where a change goes (hakv.core.routing), how a group
fails over (hakv.core.ha), how the cluster records are seeded (hakv.core.seed) and how owners
are replaced (hakv.core.membership) are hakv's pure core, called as a node calls them; where a
node's status goes is hakv.node.process.status_home, which group leader records a failure in the
cluster ensemble when is hakv.node.manager.mark_rank and MARK_STAGGER, the size of a seed
transaction is hakv.core.codec's encoding of it, and the Raft constants (node heartbeats,
quiescence, the read-only followers' lag, pysyncobj's message size) are hakv.raft.host's own,
imported (importing them starts nothing). Nothing here opens a socket, starts a thread,
touches LMDB or reads a clock: time and randomness are arguments, so a seed fixes every
number.

Layering (lower modules never import higher ones):
  model       simulated time, links, CPU and Raft ensembles; every message counted
  cluster     the chain topology of the benchmarks; a scheme's ensembles over it
  scenarios   start-up, a write, a node failure, partitions, the steady state
  report      the grid of configurations, the table, the plot

``python -m hakv.sim`` prints the table of docs/scale.md.
"""

from hakv.sim.cluster import SCHEMES, SimCluster, chain_topology
from hakv.sim.model import Ensemble, Network, Sim, SimParams
from hakv.sim.report import Config, Result, format_table, run_all, run_config
from hakv.sim.scenarios import node_failure, serving, startup, steady_load, write_costs

__all__ = [
    "SCHEMES",
    "Config",
    "Ensemble",
    "Network",
    "Result",
    "Sim",
    "SimCluster",
    "SimParams",
    "chain_topology",
    "format_table",
    "node_failure",
    "run_all",
    "run_config",
    "serving",
    "startup",
    "steady_load",
    "write_costs",
]
