"""hakv: coordination for very large HA clusters, one small Raft ensemble per resource group.

Layering (lower modules never import higher ones):
  errors, topology, codec          pure: data in, decisions out
  store                            LMDB (the only module importing lmdb)
  poller                           the raft thread's poll(2) loop (no dependency)
  raft                             pysyncobj, hardened (the only module importing pysyncobj)
  group, node, server              a node process: members, loop, client API
  client, cli, local               the users' side: library, operator CLI, local launcher
  sim                              a seeded simulation of 1,000-10,000 nodes over the pure
                                   modules (topology, placement, routing, ha, membership)
"""

from hakv.client import Client
from hakv.errors import HakvError

__all__ = ["Client", "HakvError"]
__version__ = "0.1.0"
