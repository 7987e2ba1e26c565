"""Recipes: coordination primitives over the client API, one module per primitive, each
with a docstring that shows its use and says what happens on failure (docs/recipes.md).

====================  =======================================  ===========================
primitive             module                                   from a Client
====================  =======================================  ===========================
watch                 :mod:`hakv.client.watch`                 ``client.watch(...)``
lease                 :mod:`hakv.client.lease`                 ``client.lease(...)``
lock (fair, fenced)   :mod:`hakv.client.recipe.lock`           ``client.lock(...)``
leader election       :mod:`hakv.client.recipe.election`       ``client.election(...)``
counter               :mod:`hakv.client.recipe.counter`        ``client.counter(...)``
====================  =======================================  ===========================

Layering: the recipes use only the public Client calls (txn, range, watch, leases) and
``hakv.client.recipe._contention`` (the FIFO queue behind locks and elections); the
Client's ``lock``/``election``/``counter`` methods import them lazily.
"""

from hakv.client.lease import Lease, LeaseTtl
from hakv.client.recipe.counter import Counter
from hakv.client.recipe.election import Election, Leader, Observation
from hakv.client.recipe.lock import Lock
from hakv.client.watch import Watch, WatchBatch, WatchEvent

__all__ = ["Counter", "Election", "Leader", "Lease", "LeaseTtl", "Lock", "Observation",
           "Watch", "WatchBatch", "WatchEvent"]
