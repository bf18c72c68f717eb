"""What the transport keeps per peer, and which of two links to one peer both sides keep.

A peer has at most one active link. When a second opens, `preferred` picks the same physical
link on both sides without any message: the one dialled by the lower node id; of two dialled by
the same node, the newer (the dialler gave up on the older, which may be dead on its side).

This module must never do I/O; it holds a peer's queue but never writes it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from consortia.errors import InvalidArgumentError
from consortia.net.connection import Connection
from consortia.net.frames import SendQueue
from consortia.net.limits import TransportLimits
from consortia.net.tls import NODE_ID_SIZE

Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class PeerStatus:
    """One peer as the transport sees it, for monitoring."""

    node_id: bytes
    address: Address | None  # None: known only from its inbound links
    connected: bool
    dialled_by_us: bool | None  # which side dialled the open link; None when not connected
    queued_frames: int
    queued_bytes: int


class Peer:
    """A known peer: its address, its bounded send queue and its active link."""

    __slots__ = ("address", "connection", "dialer", "idle", "node_id", "queue")

    def __init__(self, node_id: bytes, address: Address | None, limits: TransportLimits) -> None:
        self.node_id = node_id
        self.address = address
        self.queue = SendQueue(limits.queue_frames_max, limits.queue_bytes_max)
        self.connection: Connection | None = None  # the active link, OPEN
        self.idle = asyncio.Event()  # set while there is no active link
        self.idle.set()
        self.dialer: asyncio.Task[None] | None = None

    def status(self) -> PeerStatus:
        connection = self.connection
        return PeerStatus(
            node_id=self.node_id,
            address=self.address,
            connected=connection is not None,
            dialled_by_us=None if connection is None else connection.outbound,
            queued_frames=len(self.queue),
            queued_bytes=self.queue.size_bytes,
        )


def preferred(first: Connection, second: Connection) -> Connection:
    """Of two open links to one peer, the one both sides keep."""
    if first.dialer_id != second.dialer_id:
        return first if first.dialer_id < second.dialer_id else second
    return first if first.serial > second.serial else second


def check_node_id(node_id: bytes) -> None:
    if not isinstance(node_id, bytes) or len(node_id) != NODE_ID_SIZE:
        raise InvalidArgumentError(f"a node id is {NODE_ID_SIZE} bytes")
