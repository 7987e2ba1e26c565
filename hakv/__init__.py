"""hakv: coordination for very large HA clusters, one small Raft ensemble per resource group.

Layering (lower modules never import higher ones):
  errors, topology, codec          pure: data in, decisions out
  store                            LMDB (the only module importing lmdb)
  raft                             pysyncobj, hardened (the only module importing pysyncobj)
  group, node, server              a node process: members, loop, client API
  client, cli, local               the users' side: library, operator CLI, local launcher
"""

from hakv.client import Client
from hakv.errors import HakvError

__all__ = ["Client", "HakvError"]
__version__ = "0.1.0"
