"""Durable storage at the edge: the node's blocks, certificates, receipts, safety state and
committed state, in an embedded transactional store. Never imported by the pure cores."""

from consortia.storage.store import (
    CommitRecord,
    ExecutionRecord,
    NodeStore,
    StoredEvent,
    StoredReceipt,
    Tip,
)
from consortia.storage.tree_table import TreeWrite

__all__ = [
    "CommitRecord",
    "ExecutionRecord",
    "NodeStore",
    "StoredEvent",
    "StoredReceipt",
    "Tip",
    "TreeWrite",
]
