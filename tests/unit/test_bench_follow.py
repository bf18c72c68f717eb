"""How the bench process follows the chain (cluster/bench.py `Bench._follow`): node 0's block
stream says when blocks are committed, and the bench reads every height's receipts in order,
none skipped when one announcement covers several heights or a dropped stream is opened again,
and it asks for no receipts while nothing is announced (no polling)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from consortia.client import ClientError
from consortia.cluster.bench import Bench
from consortia.cluster.bench_report import Tally

# A scripted stream: the heights it announces, in order, or an error it raises there.
Script = Sequence[int | ClientError]


class Follower:
    """Node 0 as the bench sees it: one script per stream opened (then a stream that announces
    nothing, for ever), and every height's receipts on request."""

    def __init__(self, *scripts: Script) -> None:
        self.scripts = list(scripts)
        self.opened_from: list[int] = []
        self.closed = 0
        self.closed_when_opened: list[int] = []
        self.unreachable_once: set[int] = set()  # heights whose first receipts read fails
        self.read: list[int] = []

    def subscribe_blocks(self, from_height: int, *, retry: object = None) -> AsyncIterator[Any]:
        self.opened_from.append(from_height)
        self.closed_when_opened.append(self.closed)
        script = self.scripts.pop(0) if self.scripts else None
        return self._stream(script)

    async def _stream(self, script: Script | None) -> AsyncIterator[dict[str, int]]:
        try:
            if script is None:
                await asyncio.Event().wait()
            for item in script or ():
                if isinstance(item, ClientError):
                    raise item
                yield {"height": item}
        finally:
            self.closed += 1

    async def block_receipts(self, height: int) -> dict[str, Any]:
        if height in self.unreachable_once:
            self.unreachable_once.discard(height)
            raise ClientError("unreachable", "connection reset")
        self.read.append(height)
        receipt = {"tx_hash": f"{height:064x}", "ok": True, "code": "ok"}
        return {"height": height, "receipts": [receipt]}


def bench_following() -> Bench:
    bench = Bench.__new__(Bench)  # only what following touches: the tally
    bench._tally = Tally()
    bench._settled = 0
    return bench


async def follow_until(bench: Bench, follower: Follower, heights: int, *, opened: int = 0) -> None:
    """Follow until `heights` heights were read and `opened` streams opened, then stop
    following."""
    task = asyncio.get_running_loop().create_task(bench._follow(follower))  # type: ignore[arg-type]
    try:
        async with asyncio.timeout(60):
            while (
                len(follower.read) < heights or len(follower.opened_from) < opened
            ) and not task.done():
                await asyncio.sleep(0.001)
        if task.done():
            task.result()
        await asyncio.sleep(0.05)  # anything read beyond `heights` would show now
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_every_height_is_read_in_order_when_an_announcement_covers_several() -> None:
    bench, follower = bench_following(), Follower([2, 5])
    bench._tally.pending[f"{3:064x}"] = (0.0, "transfer", 0)  # one of ours, in block 3
    asyncio.run(follow_until(bench, follower, 5, opened=2))
    assert follower.read == [1, 2, 3, 4, 5]
    assert follower.opened_from == [1, 6]  # then an idle stream, from the next height
    assert bench._tally.height == 5
    assert bench._settled == 1 and bench._tally.committed == 1


def test_a_dropped_stream_is_opened_again_from_the_first_height_not_read() -> None:
    lost = ClientError("subscription_lost", "gave up after 3 reconnections")
    unreachable = ClientError("unreachable", "connection refused")
    follower = Follower([1, 2, lost], [unreachable], [3, 4])
    bench = bench_following()
    asyncio.run(follow_until(bench, follower, 4, opened=4))
    assert follower.read == [1, 2, 3, 4]
    assert follower.opened_from == [1, 3, 3, 5]
    # Every stream is closed before the next opens, not left to the garbage collector, and the
    # idle one when following stops.
    assert follower.closed_when_opened == [0, 1, 2, 3]
    assert follower.closed == 4


def test_a_failed_read_closes_the_stream_and_follows_again_from_that_height() -> None:
    follower = Follower([1, 2, 3, 4, 5], [4, 5])
    follower.unreachable_once = {3}
    bench = bench_following()
    asyncio.run(follow_until(bench, follower, 5, opened=3))
    assert follower.read == [1, 2, 3, 4, 5]
    assert follower.opened_from == [1, 3, 6]
    # The stream left in the middle is closed at once (it holds a connection to node 0).
    assert follower.closed_when_opened == [0, 1, 2]


def test_nothing_is_read_while_nothing_is_announced() -> None:
    follower = Follower([])  # a stream that ends at once, then one that announces nothing
    bench = bench_following()
    asyncio.run(follow_until(bench, follower, 0, opened=2))
    assert follower.read == []
    assert follower.opened_from == [1, 1]


def test_a_refusal_other_than_a_lost_stream_stops_the_bench() -> None:
    follower = Follower([ClientError("bad_argument", "from must be a height")])
    with pytest.raises(ClientError, match="bad_argument"):
        asyncio.run(follow_until(bench_following(), follower, 1))
