"""Recipes: coordination primitives over the client API, one module per primitive, each
with a docstring that shows its use and says what happens on failure (docs/recipes.md).

=======================  ======================================  ================================
primitive                module                                  from a Client
=======================  ======================================  ================================
watch                    :mod:`hakv.client.watch`                ``client.watch(...)``
lease                    :mod:`hakv.client.lease`                ``client.lease(...)``
lock (fair, fenced)      :mod:`hakv.client.recipe.lock`          ``client.lock(...)``
leader election          :mod:`hakv.client.recipe.election`      ``client.election(...)``
counter                  :mod:`hakv.client.recipe.counter`       ``client.counter(...)``
semaphore (fair)         :mod:`hakv.client.recipe.semaphore`     ``client.semaphore(...)``
barrier                  :mod:`hakv.client.recipe.barrier`       ``client.barrier(...)``
double barrier           :mod:`hakv.client.recipe.barrier`       ``client.double_barrier(...)``
priority queue           :mod:`hakv.client.recipe.queue`         ``client.queue(...)``
=======================  ======================================  ================================

Layering: the recipes use only the public Client calls (txn, range, watch, leases) and
``hakv.client.recipe._contention`` (the FIFO queue behind locks, elections and
semaphores, and the watch-until helper every blocking recipe waits with); the Client's
recipe methods import them lazily.
"""

from hakv.client.lease import Lease, LeaseTtl
from hakv.client.recipe.barrier import Barrier, DoubleBarrier
from hakv.client.recipe.counter import Counter
from hakv.client.recipe.election import Election, Leader, Observation
from hakv.client.recipe.lock import Lock
from hakv.client.recipe.queue import Queue
from hakv.client.recipe.semaphore import Semaphore
from hakv.client.watch import Watch, WatchBatch, WatchEvent

__all__ = ["Barrier", "Counter", "DoubleBarrier", "Election", "Leader", "Lease", "LeaseTtl",
           "Lock", "Observation", "Queue", "Semaphore", "Watch", "WatchBatch", "WatchEvent"]
