"""The client library: ``hakv.Client`` for applications, ``client.admin``
(:class:`~hakv.client.admin.Admin`) for operators (membership and HA changes).

Layering inside the package (imports point down): ``recipe`` (lock, election, counter:
hakv.client.recipe, over the public calls) > ``client`` (Client: endpoints, retry
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
from hakv.client.recipe import Counter, Election, Leader, Lock
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
    "Client",
    "Compare",
    "Counter",
    "DeleteResult",
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
    "RangeResult",
    "TxnResult",
    "Watch",
    "WatchBatch",
    "WatchEvent",
    "endpoints_from_env",
    "merge_status",
    "parse_endpoints",
    "probe",
]
