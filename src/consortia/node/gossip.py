"""Passing a node's client transactions on to its peers, in batches.

Owns the transactions admitted from clients and not yet sent, and the timer that sends them:
whatever arrived within GOSSIP_INTERVAL_S goes in one `TxBatch` frame to every peer, at once
when TX_BATCH_MAX are waiting (a larger backlog leaves in frames of at most TX_BATCH_MAX
transactions and FRAME_BYTES_MAX bytes, one a pass of the loop: a larger frame is one the
transport refuses to send and no peer decodes). Peers check or vouch for what arrives
(node/vouching.py).

Must never admit or check anything (the driver admits before it hands transactions here), and
never pass on a peer's transactions (each node passes on its own clients').
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

from consortia.types.encoding import MESSAGE_SIZE_MAX, encode
from consortia.types.network import TX_BATCH_MAX, TxBatch

# Client transactions are passed on to peers in batches, at most this often.
GOSSIP_INTERVAL_S: Final = 0.005
# A frame's transactions, counted with their encoding's overhead (at most 5 bytes each), and
# a margin for the frame's own: within MESSAGE_SIZE_MAX, the transport's frame limit.
FRAME_BYTES_MAX: Final = MESSAGE_SIZE_MAX - 64 * 1024
_ITEM_OVERHEAD: Final = 8


class Gossip:
    def __init__(self, loop: asyncio.AbstractEventLoop, broadcast: Callable[[bytes], int]) -> None:
        self._loop = loop
        self._broadcast = broadcast
        self._waiting: list[bytes] = []
        self._handle: asyncio.Handle | None = None

    def add(self, raws: list[bytes]) -> None:
        """Pass `raws` on with what arrives within the interval (at once past the batch)."""
        self._waiting.extend(raws)
        if len(self._waiting) >= TX_BATCH_MAX:
            if self._handle is not None:
                self._handle.cancel()
            self._flush()
        elif self._handle is None:
            self._handle = self._loop.call_later(GOSSIP_INTERVAL_S, self._flush)

    def _flush(self) -> None:
        self._handle = None
        count, size = 0, 0
        for raw in self._waiting[:TX_BATCH_MAX]:
            size += len(raw) + _ITEM_OVERHEAD
            if count and size > FRAME_BYTES_MAX:
                break
            count += 1
        batch, self._waiting = self._waiting[:count], self._waiting[count:]
        if batch:
            self._broadcast(encode(TxBatch(transactions=batch)))
        if self._waiting:
            self._handle = self._loop.call_soon(self._flush)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
