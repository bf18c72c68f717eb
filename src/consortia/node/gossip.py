"""Passing a node's client transactions on to its peers, in batches.

Owns the transactions admitted from clients and not yet sent, and the timer that sends them:
whatever arrived within GOSSIP_INTERVAL_S goes in one `TxBatch` frame to every peer, at once
when TX_BATCH_MAX are waiting (a larger backlog leaves in frames of TX_BATCH_MAX, one a pass of
the loop). Peers check or vouch for what arrives (node/vouching.py).

Must never admit or check anything (the driver admits before it hands transactions here), and
never pass on a peer's transactions (each node passes on its own clients').
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

from consortia.types.encoding import encode
from consortia.types.network import TX_BATCH_MAX, TxBatch

# Client transactions are passed on to peers in batches, at most this often.
GOSSIP_INTERVAL_S: Final = 0.005


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
        batch, self._waiting = self._waiting[:TX_BATCH_MAX], self._waiting[TX_BATCH_MAX:]
        if batch:
            self._broadcast(encode(TxBatch(transactions=batch)))
        if self._waiting:
            self._handle = self._loop.call_soon(self._flush)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
