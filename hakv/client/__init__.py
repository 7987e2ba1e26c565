"""The client library: ``hakv.Client`` for applications, ``client.admin``
(:class:`~hakv.client.admin.Admin`) for operators (membership and HA changes).

Layering inside the package (imports point down): ``recipe`` (lock, election, counter,
semaphore, barriers, queue: hakv.client.recipe, over the public calls) > ``client`` (Client: endpoints, retry
policy, failover; its recipe methods import ``recipe`` lazily) > ``admin`` (operator operations over a Client) > ``txn`` (Compare, Op)
and ``results`` (typed answers) > ``connection`` (one HTTP/1.1 connection; also used by
nodes talking to each other).
"""

from hakv.client.admin import Admin, HaActionResult, PlacementView
from hakv.client.client import (
    ENDPOINTS_ENV,
    Client,
    endpoints_from_env,
    merge_status,
    parse_endpoints,
    probe,
)
from hakv.client.lease import Lease, LeaseTtl
from hakv.client.recipe import (
    Barrier,
    Counter,
    DoubleBarrier,
    Election,
    Leader,
    Lock,
    Queue,
    Semaphore,
)
from hakv.client.results import (
    DeleteResult,
    GetResult,
    KeyValue,
    PutResult,
    RangeResult,
    TxnResult,
)
from hakv.client.txn import Compare, Op
from hakv.client.watch import Watch, WatchBatch, WatchEvent

__all__ = [
    "ENDPOINTS_ENV",
    "Admin",
    "Barrier",
    "Client",
    "Compare",
    "Counter",
    "DeleteResult",
    "DoubleBarrier",
    "Election",
    "GetResult",
    "HaActionResult",
    "KeyValue",
    "Leader",
    "Lease",
    "LeaseTtl",
    "Lock",
    "Op",
    "PlacementView",
    "PutResult",
    "Queue",
    "RangeResult",
    "Semaphore",
    "TxnResult",
    "Watch",
    "WatchBatch",
    "WatchEvent",
    "endpoints_from_env",
    "merge_status",
    "parse_endpoints",
    "probe",
]
