"""The state tree's two tables in the node's store: `tree_nodes` (node key bytes -> node
bytes) and `tree_stale` (a height -> the keys of the nodes that went stale at it, each
prefixed by its length).

Owns what one commit does to them (store the new nodes and the stale list, then delete a
bounded batch of nodes stale at or before the oldest height kept) and the reads a node makes
of them. Runs inside the caller's transaction; must never open one, commit, or decide what
to keep: the engine's retention decides, and `NodeStore` makes it durable with its block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import lmdb

# Stale tree nodes deleted by one commit: at least this many, and at least twice as many as
# the commit made stale, so a backlog (a lowered retention) always shrinks.
PRUNE_NODES_MIN: Final = 4096


@dataclass(frozen=True, slots=True)
class TreeWrite:
    """What one version of the state tree brings to the store: its new nodes and the nodes
    it made stale (keys as the tree encodes them), and the oldest height still kept."""

    version: int
    nodes: dict[bytes, bytes]
    stale: list[bytes]
    oldest: int


def write_tree(
    txn: lmdb.Transaction,
    nodes: lmdb._Database,
    stale_table: lmdb._Database,
    tree: TreeWrite,
    version_key: bytes,
) -> None:
    """Store `tree`'s nodes and stale list (under `version_key`, its version as the store
    keys heights) and prune: delete nodes stale at or before `tree.oldest`, no kept height
    reaching them, at most PRUNE_NODES_MIN or twice the new stale count, whichever is more."""
    with txn.cursor(db=nodes) as cursor:
        cursor.putmulti(tree.nodes.items())
    if tree.stale:
        txn.put(version_key, pack_keys(tree.stale), db=stale_table)
    budget = max(PRUNE_NODES_MIN, 2 * len(tree.stale))
    with txn.cursor(db=stale_table) as cursor:
        while budget > 0 and cursor.first():
            since = cursor.key()
            if int.from_bytes(since, "big") > tree.oldest:
                break
            keys = unpack_keys(bytes(cursor.value()))
            for key in keys[:budget]:
                txn.delete(key, db=nodes)
            if len(keys) > budget:
                cursor.put(since, pack_keys(keys[budget:]))
                budget = 0
            else:
                cursor.delete()
                budget -= len(keys)


def read_nodes(
    txn: lmdb.Transaction, nodes: lmdb._Database, keys: list[bytes]
) -> list[bytes | None]:
    """Nodes by their key bytes, in the order asked (None where missing)."""
    get = txn.get
    # `bytes` of a bytes object (what a transaction without buffers returns) is that object.
    return [None if (data := get(key, db=nodes)) is None else bytes(data) for key in keys]


def stale_count(txn: lmdb.Transaction, stale_table: lmdb._Database) -> int:
    """Stale nodes not yet pruned (reads every stale list)."""
    with txn.cursor(db=stale_table) as cursor:
        return sum(len(unpack_keys(bytes(value))) for _, value in cursor)


def pack_keys(keys: list[bytes]) -> bytes:
    """A list of state tree node keys (each under 256 bytes) as one value."""
    return b"".join(bytes((len(key),)) + key for key in keys)


def unpack_keys(data: bytes) -> list[bytes]:
    keys, at = [], 0
    while at < len(data):
        end = at + 1 + data[at]
        keys.append(bytes(data[at + 1 : end]))
        at = end
    return keys
