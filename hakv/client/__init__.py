"""The client library: ``hakv.Client`` for applications, ``hakv.client.admin`` for
operators (membership and HA changes)."""

from hakv.client.client import (
    ENDPOINTS_ENV,
    Client,
    Compare,
    DeleteResult,
    GetResult,
    KeyValue,
    Op,
    PutResult,
    RangeResult,
    TxnResult,
    endpoints_from_env,
    merge_status,
    parse_endpoints,
    probe,
)

__all__ = [
    "ENDPOINTS_ENV",
    "Client",
    "Compare",
    "DeleteResult",
    "GetResult",
    "KeyValue",
    "Op",
    "PutResult",
    "RangeResult",
    "TxnResult",
    "endpoints_from_env",
    "merge_status",
    "parse_endpoints",
    "probe",
]
