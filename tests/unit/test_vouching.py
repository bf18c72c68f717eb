"""f+1 signature checks of passed-on transactions (node/vouching.py): who checks a batch, who
holds it for acks, and what a faulty validator can and cannot make the others accept."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import msgspec

from consortia.consensus.validators import ValidatorSet
from consortia.node.driver import Driver
from consortia.node.vouching import Vouching, checkers
from consortia.types.consensus import EpochConfig, Validator
from consortia.types.encoding import decode, encode
from consortia.types.network import TxAck, TxBatch
from consortia.types.signing import SigningDomain
from consortia.types.transaction import Transaction
from tests.node_helpers import (
    SUITE,
    Hub,
    make_driver,
    make_genesis,
    started_drivers,
    transfer,
    validator_keys,
    wait_for,
)

RAWS = [b"tx-a", b"tx-b"]


def validator_set(powers: list[int]) -> ValidatorSet:
    validators = [
        Validator(node_id=bytes([i]) * 32, public_key=bytes([i]) * 32, voting_power=power)
        for i, power in enumerate(powers)
    ]
    config = EpochConfig(epoch=0, validators=validators)
    return ValidatorSet(config, SUITE, "test", domain=SigningDomain(b"\x00" * 32))


def node(index: int) -> bytes:
    return bytes([index]) * 32


def test_the_checkers_are_the_sender_and_those_after_it_past_the_faulty_power() -> None:
    assert checkers(validator_set([1, 1, 1, 1]), 3) == [3, 0]
    assert checkers(validator_set([1] * 7), 5) == [5, 6, 0]
    # Weighted: a heavy sender needs nobody else; light ones need enough weight after them.
    assert checkers(validator_set([3, 1, 1, 1, 1, 1, 1, 1, 1, 1]), 0) == [0, 1]
    assert checkers(validator_set([1, 1, 5, 1, 1, 1, 1, 1, 1, 1]), 1) == [1, 2]


def test_a_checker_checks_and_acks_and_the_others_wait_for_its_ack() -> None:
    validators = validator_set([1, 1, 1, 1])
    batch = {"sender": node(0), "digest": b"d" * 32, "raws": RAWS, "now_ms": 0}
    assert Vouching().on_batch(validators, own=node(1), **batch) == "check_and_ack"  # type: ignore[arg-type]
    waiting = Vouching(wait_ms=100)
    assert waiting.on_batch(validators, own=node(2), **batch) == "held"  # type: ignore[arg-type]
    # The sender's own ack adds nothing (it vouched by sending), nor does an outsider's.
    assert waiting.on_ack(validators, node(0), b"d" * 32) is None
    assert waiting.on_ack(validators, b"\x09" * 32, b"d" * 32) is None
    assert waiting.counters.refused == {"repeated": 1, "not_a_validator": 1}
    assert waiting.on_ack(validators, node(3), b"x" * 32) is None  # another batch's
    assert waiting.on_ack(validators, node(1), b"d" * 32) == RAWS
    assert len(waiting) == 0 and waiting.due(10**9) == []
    assert waiting.counters.admitted_checked == len(RAWS)


def test_an_ack_that_arrives_first_is_kept_and_a_batch_never_acked_is_checked_here() -> None:
    validators = validator_set([1, 1, 1, 1])
    vouching = Vouching(wait_ms=100)
    assert vouching.on_ack(validators, node(1), b"d" * 32) is None
    decision = vouching.on_batch(
        validators, own=node(3), sender=node(0), digest=b"d" * 32, raws=RAWS, now_ms=0
    )
    assert decision == "admit_checked"
    # A batch whose checker never acks waits its time, then is checked here.
    decision = vouching.on_batch(
        validators, own=node(3), sender=node(0), digest=b"e" * 32, raws=RAWS, now_ms=50
    )
    assert decision == "held" and vouching.next_deadline_ms() == 150
    assert vouching.due(149) == []
    assert vouching.due(150) == [RAWS]
    assert vouching.counters.waits_expired == 1
    # That sender's next batches are checked here for a while, then held again; or, as soon
    # as one of its checkers acks one of them, at once.
    recovering = Vouching(wait_ms=100)
    for now_ms in (0, 100):
        recovering.on_batch(
            validators, own=node(3), sender=node(0), digest=b"r" * 32, raws=RAWS, now_ms=now_ms
        )
    recovering.due(100)
    decision = recovering.on_batch(
        validators, own=node(3), sender=node(0), digest=b"s" * 32, raws=RAWS, now_ms=101
    )
    assert decision == "check"
    assert recovering.on_ack(validators, node(0), b"s" * 32) is None  # the sender: no news
    assert (
        recovering.on_batch(
            validators, own=node(3), sender=node(0), digest=b"t" * 32, raws=RAWS, now_ms=102
        )
        == "check"
    )
    assert recovering.on_ack(validators, node(1), b"s" * 32) is None  # its checker: back
    assert (
        recovering.on_batch(
            validators, own=node(3), sender=node(0), digest=b"u" * 32, raws=RAWS, now_ms=103
        )
        == "held"
    )
    for now_ms, expected in ((151, "check"), (10_149, "check"), (10_150, "held")):
        decision = vouching.on_batch(
            validators,
            own=node(3),
            sender=node(0),
            digest=bytes([now_ms % 251]) * 32,
            raws=RAWS,
            now_ms=now_ms,
        )
        assert decision == expected, now_ms


def test_held_batches_and_early_acks_are_bounded() -> None:
    validators = validator_set([1, 1, 1, 1])
    vouching = Vouching(held_max=2, early_max=3)
    decisions = [
        vouching.on_batch(
            validators, own=node(3), sender=node(0), digest=bytes([i]) * 32, raws=RAWS, now_ms=0
        )
        for i in range(3)
    ]
    assert decisions == ["held", "held", "check"]
    small = Vouching(held_bytes_max=len(b"".join(RAWS)) + 3)
    decisions = [
        small.on_batch(
            validators, own=node(3), sender=node(0), digest=bytes([i]) * 32, raws=RAWS, now_ms=0
        )
        for i in range(2)
    ]
    assert decisions == ["held", "check"] and len(small) == 1
    for acker in range(4):  # each validator keeps its share of the bound (one, here)
        for i in range(10, 20):
            vouching.on_ack(validators, node(acker), bytes([acker * 16 + i]) * 32)
    assert len(vouching._early) == 3
    # Not a validator, or sent to one that is not: checked where it arrives.
    assert (
        vouching.on_batch(
            validators, own=node(3), sender=b"\x09" * 32, digest=b"f" * 32, raws=RAWS, now_ms=0
        )
        == "check"
    )
    assert vouching.forget() == [RAWS, RAWS] and len(vouching) == 0


def bad_signature(raw: bytes) -> bytes:
    tx = decode(raw, Transaction)
    signature = bytes([tx.signature[0] ^ 1]) + tx.signature[1:]
    return encode(msgspec.structs.replace(tx, signature=signature))


def test_four_nodes_check_each_signature_twice_and_commit_everything(tmp_path: Path) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        hub = Hub(loop, random.Random(5))
        genesis = make_genesis(4)
        drivers = started_drivers(hub, genesis, tmp_path)
        for driver in drivers:  # a loaded machine's pause never outlasts a vouching wait here
            driver.vouching.wait_ms = 60_000
        raws = [transfer(genesis, "alice", "bob", 1, nonce) for nonce in range(40)]
        assert all(a.ok for a in drivers[0].submit_many(raws))
        await wait_for(lambda: all(d.counters.transactions_committed == 40 for d in drivers))
        checked = [d.vouching.counters.checked_here for d in drivers]
        vouched = [d.vouching.counters.admitted_checked for d in drivers]
        # Node 0 checked them on submission; node 1 (its checker) checked and acked; 2 and 3
        # admitted them on the vouching of 0 and 1, checking none.
        assert checked == [0, 40, 0, 0], checked
        assert vouched == [0, 0, 40, 40], vouched
        assert drivers[1].vouching.counters.acks_sent >= 1
        roots = {d.chain.engine.root for d in drivers}
        assert len(roots) == 1
        for driver in drivers:
            driver.close()

    asyncio.run(scenario())


def test_a_faulty_sender_cannot_get_a_bad_signature_vouched_for(tmp_path: Path) -> None:
    """Validator 0 is faulty: it passes on to everyone a batch holding a forged signature,
    acks its own batches, and sends validators 2 and 3 a different frame than its checker
    (validator 1) gets. Nobody admits a forged transaction; the honest ones are committed."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        hub = Hub(loop, random.Random(6))
        genesis = make_genesis(4)
        keys = validator_keys(4)
        drivers: list[Driver] = [make_driver(hub, genesis, tmp_path, key) for key in keys]
        for driver in drivers:
            driver.vouching.wait_ms = 50
            driver.start()
        faulty = keys[0][0]
        good = [transfer(genesis, "alice", "bob", 1, nonce) for nonce in range(2)]
        forged = [
            bad_signature(transfer(genesis, name, "alice", 500, 0)) for name in ("bob", "carol")
        ]
        same = encode(TxBatch(transactions=[good[0], forged[0]]))
        to_checker = encode(TxBatch(transactions=[good[1], forged[1]]))
        to_others = encode(TxBatch(transactions=[forged[1], good[1]]))
        for index, frame in ((1, to_checker), (2, to_others), (3, to_others)):
            for sent in (same, frame):
                hub.deliver(faulty, keys[index][0], sent)
                hub.deliver(faulty, keys[index][0], encode(TxAck(digest=SUITE.hash(sent))))
        await wait_for(lambda: all(d.counters.transactions_committed >= 2 for d in drivers))
        await asyncio.sleep(0.2)
        for driver in drivers[1:]:
            assert driver.vouching.counters.acks_sent == 0  # the checker refused to vouch
            assert all(driver.mempool.known(raw) is None for raw in forged)
        assert drivers[2].vouching.counters.waits_expired == 2
        assert all(d.counters.transactions_committed == 2 for d in drivers)
        assert all(d.chain.next_nonce(name) == 0 for d in drivers for name in ("bob", "carol"))
        for driver in drivers:
            driver.close()

    asyncio.run(scenario())
