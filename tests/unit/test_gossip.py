"""Passing client transactions on to peers (node/gossip.py).

Setup: a `Gossip` on a real loop whose broadcasts are recorded. Test: what arrives within the
interval leaves in one frame; a backlog leaves in frames every peer can decode (at most
TX_BATCH_MAX transactions and at most MESSAGE_SIZE_MAX bytes each), all of it, in order; a
closed gossip sends nothing more.
"""

from __future__ import annotations

import asyncio

from consortia.node.gossip import GOSSIP_INTERVAL_S, Gossip
from consortia.types.encoding import MESSAGE_SIZE_MAX, decode
from consortia.types.network import TX_BATCH_MAX, TX_BYTES_MAX, TxBatch, WireMessage


def _sent(frames: list[bytes]) -> list[list[bytes]]:
    batches = [decode(frame, WireMessage) for frame in frames]
    assert all(isinstance(batch, TxBatch) for batch in batches)
    return [list(batch.transactions) for batch in batches]  # type: ignore[union-attr]


def test_what_arrives_within_the_interval_leaves_in_one_frame() -> None:
    frames: list[bytes] = []

    async def scenario() -> None:
        gossip = Gossip(asyncio.get_running_loop(), lambda frame: frames.append(frame) or 1)
        gossip.add([b"a"])
        gossip.add([b"b", b"c"])
        assert frames == []
        await asyncio.sleep(GOSSIP_INTERVAL_S * 4)
        assert _sent(frames) == [[b"a", b"b", b"c"]]
        gossip.add([b"d"])
        gossip.close()
        await asyncio.sleep(GOSSIP_INTERVAL_S * 4)
        assert len(frames) == 1

    asyncio.run(scenario())


def test_a_backlog_of_large_transactions_leaves_in_frames_peers_can_decode() -> None:
    """A thousand transactions of 20 KiB (under TX_BATCH_MAX, 20 MiB together). Regression:
    they went in one frame over MESSAGE_SIZE_MAX, which the transport refuses to send
    (`frame_too_large`): none of them reached a peer."""
    frames: list[bytes] = []
    raws = [index.to_bytes(4, "big") * (5 * 1024) for index in range(1000)]
    assert len(raws) < TX_BATCH_MAX and all(len(raw) <= TX_BYTES_MAX for raw in raws)

    async def scenario() -> None:
        gossip = Gossip(asyncio.get_running_loop(), lambda frame: frames.append(frame) or 1)
        gossip.add(raws[:500])
        gossip.add(raws[500:])
        await asyncio.sleep(GOSSIP_INTERVAL_S * 4)
        gossip.close()

    asyncio.run(scenario())
    assert frames and all(len(frame) <= MESSAGE_SIZE_MAX for frame in frames)
    assert [raw for batch in _sent(frames) for raw in batch] == raws


def test_a_backlog_past_the_batch_leaves_in_full_frames_at_once() -> None:
    frames: list[bytes] = []
    raws = [b"tx-%d" % index for index in range(TX_BATCH_MAX * 2 + 5)]

    async def scenario() -> None:
        gossip = Gossip(asyncio.get_running_loop(), lambda frame: frames.append(frame) or 1)
        gossip.add(raws)
        assert len(frames) == 1  # a full batch goes without waiting for the interval
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        gossip.close()

    asyncio.run(scenario())
    sent = _sent(frames)
    assert [len(batch) for batch in sent] == [TX_BATCH_MAX, TX_BATCH_MAX, 5]
    assert [raw for batch in sent for raw in batch] == raws
