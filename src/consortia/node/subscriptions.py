"""Who follows the chain, and waking them when blocks commit.

Owns the node's subscriptions (the API's `/v1/subscribe/*` streams): how many there may be
(SUBSCRIBERS_MAX), each one's bounded queue of committed blocks, and the wake-up when a commit
is durable. The driver calls `SubscriptionHub.committed` through its `on_commit` listeners,
after `Chain.apply` has durably recorded the blocks, so a subscriber never hears of a block
that a crash could take back.

A subscription starts *behind*: it reads history from the store. Once it has read everything
the store holds it *attaches* and the hub hands it each new commit (references to what the
commit recorded, nothing is copied) in a queue of at most `queue_blocks_max` blocks. A
subscriber that lets its queue fill is *behind* again: the hub drops the queue, stops feeding
it and counts a lag; the subscriber goes back to the store for what it missed (the store
keeps every block). So the hub never holds more than `queue_blocks_max` blocks per
subscriber, and a commit costs an append per attached subscriber, never a wait.

Must never block or await in `committed` (it runs inside the driver's commit), never write
the store, and never hold more than its bounds.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Final

from consortia.node.chain import CommittedBlock

SUBSCRIBERS_MAX: Final = 64
QUEUE_BLOCKS_MAX: Final = 64
# State roots of recent commits, for block summaries (the store keeps the tip's root only).
ROOTS_KEPT: Final = 4096


class TooManySubscribersError(Exception):
    """The node already serves SUBSCRIBERS_MAX subscriptions."""


@dataclass(eq=False, slots=True)
class Subscription:
    """One subscriber's place: its queue of live commits and its wake-up."""

    hub: SubscriptionHub
    queue: deque[CommittedBlock] = field(default_factory=deque)
    behind: bool = True
    closed: bool = False
    lags: int = 0
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    def take(self, height: int) -> CommittedBlock | None:
        """The queued commit of `height`, if the queue holds it; commits below it are
        dropped (the subscriber already has them), a gap leaves the queue to the store."""
        queue = self.queue
        while queue and queue[0].block.header.height < height:
            queue.popleft()
        if queue and queue[0].block.header.height == height:
            return queue.popleft()
        return None

    def attach(self) -> None:
        """Caught up with the store: be handed every commit from now on. The caller has just
        read the store's height on this loop step, so no commit falls between."""
        self.behind = False

    async def wait(self, timeout_s: float) -> bool:
        """Until a commit arrives (or the hub closes): True; False after `timeout_s`."""
        if self.queue or self.closed:
            return True
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        """Give the place back (idempotent)."""
        if not self.closed:
            self.closed = True
            self.queue.clear()
            self.hub._subscriptions.discard(self)
        self._wake.set()

    def _push(self, committed: list[CommittedBlock], limit: int) -> None:
        if self.behind:
            self._wake.set()  # a subscriber waiting at the tip reads the new blocks from the store
            return
        if len(self.queue) + len(committed) > limit:
            self.queue.clear()
            self.behind = True
            self.lags += 1
            self.hub.lags += 1
        else:
            self.queue.extend(committed)
        self._wake.set()


class SubscriptionHub:
    def __init__(
        self,
        *,
        subscribers_max: int = SUBSCRIBERS_MAX,
        queue_blocks_max: int = QUEUE_BLOCKS_MAX,
    ) -> None:
        self.subscribers_max = subscribers_max
        self.queue_blocks_max = queue_blocks_max
        self._subscriptions: set[Subscription] = set()
        self._roots: OrderedDict[int, bytes] = OrderedDict()
        self.lags = 0  # times a subscriber's queue filled and it went back to the store
        self.closed = False

    def __len__(self) -> int:
        return len(self._subscriptions)

    def open(self) -> Subscription:
        if self.closed or len(self._subscriptions) >= self.subscribers_max:
            raise TooManySubscribersError(
                "the node is stopping"
                if self.closed
                else f"the node serves at most {self.subscribers_max} subscriptions"
            )
        subscription = Subscription(self)
        self._subscriptions.add(subscription)
        return subscription

    def committed(self, committed: list[CommittedBlock]) -> None:
        """Blocks are durably recorded (a `Driver.on_commit` listener): hand them to every
        attached subscriber, wake the others. Never waits."""
        if not committed:
            return
        for entry in committed:
            self._roots[entry.block.header.height] = entry.state_root
        while len(self._roots) > ROOTS_KEPT:
            self._roots.popitem(last=False)
        for subscription in list(self._subscriptions):
            subscription._push(committed, self.queue_blocks_max)

    def state_root(self, height: int) -> bytes | None:
        """The state root after the block at `height`, if the node committed it recently."""
        return self._roots.get(height)

    def close(self) -> None:
        """The node is stopping: end every subscription (their streams end) and open none."""
        self.closed = True
        for subscription in list(self._subscriptions):
            subscription.close()
