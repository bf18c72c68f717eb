"""Attacks on the f+1 signature checks (node/vouching.py) found in review, each pinned by a
test: the wait timer multiplying, a faulty validator replaying an honest batch to undo the
saving, and a validator that is no checker of a sender ending that sender's distrust."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import msgspec

from consortia.node.vouching import DISTRUST_MS, Vouching
from consortia.types.encoding import encode
from consortia.types.network import TX_BATCH_MAX, TxAck, TxBatch
from tests.node_helpers import (
    Hub,
    make_driver,
    make_genesis,
    transfer,
    validator_keys,
    wait_for,
)
from tests.unit.test_vouching import RAWS, node, validator_set


class _CountingLoop:
    """The driver's loop, recording the vouching timers it schedules."""

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Any) -> None:
        self.loop, self.callback = loop, callback
        self.handles: list[asyncio.TimerHandle] = []

    def call_later(self, delay: float, callback: Any, *args: Any) -> asyncio.TimerHandle:
        handle = self.loop.call_later(delay, callback, *args)
        if callback == self.callback:
            self.handles.append(handle)
        return handle

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loop, name)


def test_held_batches_share_one_wait_timer(tmp_path: Path) -> None:
    """Every held batch used to start a timer of its own without cancelling the one running,
    and each timer re-arms itself while anything is held: under steady load the callbacks
    grew without bound (and those left running outlived `close`)."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        hub = Hub(loop, random.Random(1))
        genesis = make_genesis(4)
        keys = validator_keys(4)
        driver = make_driver(hub, genesis, tmp_path, keys[2])  # no checker of node 0
        counting = _CountingLoop(loop, driver._watch_vouching)
        driver._loop = counting  # type: ignore[assignment]
        for nonce in range(5):
            frame = encode(TxBatch(transactions=[transfer(genesis, "alice", "bob", 1, nonce)]))
            driver.on_frame(keys[0][0], frame)
        assert len(driver.vouching) == 5
        live = [handle for handle in counting.handles if not handle.cancelled()]
        assert len(live) == 1, len(live)
        driver.close()
        assert all(handle.cancelled() for handle in counting.handles)

    asyncio.run(scenario())


def test_a_replayed_batch_is_vouched_for_by_its_second_sender_too() -> None:
    """A faulty validator (3) that passes on an honest validator's (0) frame first used to
    make every other validator check that batch itself (the honest copy found it held):
    the saving undone at will. Both sent those bytes, so both vouch for them."""
    validators = validator_set([1, 1, 1, 1])
    vouching = Vouching()
    first = vouching.on_batch(
        validators, own=node(2), sender=node(3), digest=b"d" * 32, raws=RAWS, now_ms=0
    )
    assert first == "held"
    second = vouching.on_batch(
        validators, own=node(2), sender=node(0), digest=b"d" * 32, raws=RAWS, now_ms=1
    )
    assert second == "admit_checked" and len(vouching) == 0
    assert vouching.counters.checked_here == 0
    # The same sender twice adds nothing: still held, not admitted twice, not checked here.
    again = Vouching()
    for now_ms in (0, 1):
        decision = again.on_batch(
            validators, own=node(2), sender=node(3), digest=b"d" * 32, raws=RAWS, now_ms=now_ms
        )
        assert decision == "held"
    assert len(again) == 1 and again.counters.checked_here == 0


def test_only_a_checker_of_a_distrusted_sender_ends_its_distrust() -> None:
    """A distrusted sender's batches are checked here until one of *its checkers* acks one
    (it is back). Any validator's ack used to do: a faulty one could end, batch after batch,
    the distrust of an honest sender whose checker is down, and so have each of its next
    batches wait in vain."""
    validators = validator_set([1, 1, 1, 1])
    vouching = Vouching(wait_ms=100)
    vouching.on_batch(
        validators, own=node(2), sender=node(0), digest=b"a" * 32, raws=RAWS, now_ms=0
    )
    assert vouching.due(100) == [RAWS]  # node 0's checker (node 1) never acked
    checked = vouching.on_batch(
        validators, own=node(2), sender=node(0), digest=b"b" * 32, raws=RAWS, now_ms=101
    )
    assert checked == "check"
    assert vouching.on_ack(validators, node(3), b"b" * 32) is None  # no checker of node 0
    still = vouching.on_batch(
        validators, own=node(2), sender=node(0), digest=b"c" * 32, raws=RAWS, now_ms=102
    )
    assert still == "check"
    assert vouching.on_ack(validators, node(1), b"c" * 32) is None  # its checker: back
    held = vouching.on_batch(
        validators, own=node(2), sender=node(0), digest=b"e" * 32, raws=RAWS, now_ms=103
    )
    assert held == "held"


def test_a_faulty_checker_cannot_end_the_distrust_it_caused_again_and_again() -> None:
    """A faulty checker (1) of an honest sender (0) that withholds its ack for the batches
    held for it, then acks one batch checked here to end the sender's distrust, used to have
    every batch of that sender wait `wait_ms` in vain, one distrust after another. A second
    wait in vain soon after the first makes the distrust firm: it lasts its full time."""
    validators = validator_set([1, 1, 1, 1])
    vouching = Vouching(wait_ms=100)

    def batch(name: bytes, now_ms: int) -> str:
        return vouching.on_batch(
            validators, own=node(2), sender=node(0), digest=name * 32, raws=RAWS, now_ms=now_ms
        )

    assert batch(b"a", 0) == "held" and batch(b"A", 1) == "held"
    assert vouching.due(101) == [RAWS, RAWS]  # withheld (one pause: two waits in vain)
    assert batch(b"b", 101) == "check"
    assert vouching.on_ack(validators, node(1), b"b" * 32) is None  # the distrust ends
    assert batch(b"c", 102) == "held"
    assert vouching.due(202) == [RAWS]  # withheld again
    assert batch(b"d", 203) == "check"
    assert vouching.on_ack(validators, node(1), b"d" * 32) is None  # this time it stays
    assert batch(b"e", 204) == "check"
    assert batch(b"f", 202 + DISTRUST_MS - 1) == "check"
    assert batch(b"g", 202 + DISTRUST_MS) == "held"
    # A checker that paused once, long after its last pause, still ends the distrust at once.
    later = 202 + 3 * DISTRUST_MS
    assert vouching.due(later) == [RAWS]
    assert batch(b"h", later + 1) == "check"
    assert vouching.on_ack(validators, node(1), b"h" * 32) is None
    assert batch(b"i", later + 2) == "held"


def test_one_validator_cannot_flush_the_others_early_acks() -> None:
    """Acks kept for batches not held (yet) were bounded all together, oldest out: one
    faulty validator's flood of acks for batches that never come pushed out the honest
    checkers' acks that came before their batch, so those batches waited in vain and their
    honest senders were distrusted. Each validator now keeps its share of the bound, its
    own oldest out (so its acks never matched here, as for this node's own batches, age out
    without blocking its next ones)."""
    validators = validator_set([1, 1, 1, 1])
    vouching = Vouching(early_max=8)
    for i in range(100):  # node 1's acks of batches never held here
        assert vouching.on_ack(validators, node(1), (1000 + i).to_bytes(32, "big")) is None
    assert vouching.on_ack(validators, node(1), b"d" * 32) is None  # before its batch
    for i in range(100):
        assert vouching.on_ack(validators, node(3), i.to_bytes(32, "big")) is None
    assert len(vouching._early) <= 8
    decision = vouching.on_batch(
        validators, own=node(2), sender=node(0), digest=b"d" * 32, raws=RAWS, now_ms=0
    )
    assert decision == "admit_checked"
    assert sum(map(len, vouching._early.values())) == sum(map(len, vouching._early_by.values()))


def test_one_faulty_validator_never_gets_a_batch_admitted_unchecked_by_any_schedule() -> None:
    """Random schedules of batches, acks, waits and epoch changes: validator 3 is faulty and
    sends and acks anything, an outsider (9) too; honest validators send and ack only good
    batches. No bad batch is ever admitted as checked, and the bounds always hold."""
    validators = validator_set([1, 1, 1, 1])
    rng = random.Random(7)
    good = [bytes([1, i]) * 16 for i in range(40)]
    bad = [bytes([2, i]) * 16 for i in range(40)]
    for _ in range(30):
        vouching = Vouching(wait_ms=rng.choice([0, 5, 50]), held_max=8, early_max=12)
        now_ms = 0
        for _ in range(400):
            now_ms += rng.choice([0, 1, 7, 60])
            party = rng.choice([0, 1, 3, 3, 9])
            digest = rng.choice(good + bad if party in (3, 9) else good)
            step = rng.random()
            if step < 0.45:
                decision = vouching.on_batch(
                    validators,
                    own=node(2),
                    sender=node(party),
                    digest=digest,
                    raws=[digest],
                    now_ms=now_ms,
                )
                assert not (decision == "admit_checked" and digest in bad)
            elif step < 0.9:
                raws = vouching.on_ack(validators, node(party), digest)
                assert raws is None or raws[0] in good
            elif step < 0.98:
                vouching.due(now_ms)
            else:
                vouching.forget()
            assert len(vouching) <= 8 and len(vouching._early) <= 12
            kept = sum(map(len, vouching._early.values()))
            assert kept == sum(map(len, vouching._early_by.values()))
            assert all(len(mine) <= 3 for mine in vouching._early_by.values())


def test_garbage_oversized_and_replayed_passing_on_frames_change_nothing(tmp_path: Path) -> None:
    """From an authenticated peer: a frame that is no message, an ack whose digest is not a
    hash, a batch over TX_BATCH_MAX, the same ack sent again: each refused or ignored, nothing
    admitted, no node stops, and the network still commits."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        hub = Hub(loop, random.Random(11))
        genesis = make_genesis(4)
        keys = validator_keys(4)
        drivers = [make_driver(hub, genesis, tmp_path, key) for key in keys]
        for driver in drivers:
            driver.start()
        peer, target = keys[1][0], drivers[2]
        one = transfer(genesis, "alice", "bob", 1, 0)
        frames = [
            b"\xff\x00garbage",
            msgspec.msgpack.encode(["msg_tx_ack", b"x" * 31]),
            msgspec.msgpack.encode(["msg_txs", [one] * (TX_BATCH_MAX + 1)]),
        ]
        for frame in frames:
            target.on_frame(peer, frame)
        assert target.counters.frames_refused == len(frames)
        assert target.mempool.known(one) is None and len(target.mempool) == 0
        ack = encode(TxAck(digest=b"d" * 32))
        target.on_frame(peer, ack)
        target.on_frame(peer, ack)  # replayed: kept once, matches nothing
        assert target.failed is None and len(target.vouching) == 0
        assert all(a.ok for a in drivers[0].submit_many([one]))
        await wait_for(lambda: all(d.counters.transactions_committed == 1 for d in drivers))
        for driver in drivers:
            driver.close()

    asyncio.run(scenario())
