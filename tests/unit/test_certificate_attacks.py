"""The execution-certificate attacks found in review, each held off: validators of an ended
epoch (or a one-key bootstrap set) neither halt a node nor fool a light client about a later
epoch's heights; a whole-cluster crash loses no certificate for good; a lying node can keep
no client fetching epoch proofs forever, nor pass off another height's certificate; the
waiting room for unknown epochs is pruned; a failure before the nonce was spent is not final."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from consortia.client import AsyncClient, Client
from consortia.client.light import LightClient, VerificationError
from consortia.execution.builtin import BUILTIN_CONTRACTS
from consortia.execution.genesis import engine_from_genesis
from consortia.node.attestation import AHEAD, Attestations
from consortia.types.consensus import EpochConfig, Validator
from consortia.types.encoding import encode
from consortia.types.execution import (
    ExecutionHeader,
    TxReceipt,
    receipt_leaf,
    receipt_proof,
    receipts_root,
)
from consortia.types.network import CertificateRequest
from tests.consensus_helpers import CHAIN_ID, DOMAIN, SUITE, Key, make_keys
from tests.node_helpers import (
    Hub,
    make_driver,
    make_genesis,
    transfer,
    validator_keys,
    wait_for,
)
from tests.unit.test_execution_certificates import (
    CONFIG,
    KEYS,
    certificate,
    epoch_change,
    header,
    vote,
)

E1_KEYS = make_keys(5, "e1")  # epoch 1's validators, as `epoch_change` names them
E1 = EpochConfig(epoch=1, validators=[Validator(k.node_id, k.public_key, 1) for k in E1_KEYS])


def _votes(attestations: Attestations, head: ExecutionHeader, keys: list[Key]) -> list[Any]:
    formed: list[Any] = []
    for key in keys:
        formed.extend(attestations.add(vote(key, head), key.node_id))
    return formed


# ---------------------------------------------------------------------- the node


def test_an_ended_epochs_quorum_cannot_halt_a_node_at_a_later_epochs_height() -> None:
    """Epoch 0 ({KEYS}) ended; the node runs epoch 1 at height 10. Epoch 0's validators sign
    an epoch-0 header for height 10: dropped, not divergence, and epoch 1 still certifies."""
    ours = header(10, epoch=1)
    forged = header(10, epoch=0, root=99)
    # After this node executed the height: another epoch's header is not its block.
    late = Attestations(SUITE, DOMAIN, CHAIN_ID, [CONFIG, E1], height=9)
    late.executed(ours)
    assert _votes(late, forged, KEYS[:3]) == []
    assert late.counters.dropped["other_block"] == 3
    formed = _votes(late, ours, E1_KEYS[:4])
    assert [c.header for c in formed] == [ours]
    # Before: a vote of an epoch below the one this node runs is dropped at once...
    running = Attestations(SUITE, DOMAIN, CHAIN_ID, [CONFIG, E1], height=8)
    running.executed(header(9, epoch=1))
    assert _votes(running, forged, KEYS[:3]) == []
    assert running.counters.dropped["old_epoch"] == 3
    # ...and while this node still runs epoch 0, they wait and are dropped once it executed.
    early = Attestations(SUITE, DOMAIN, CHAIN_ID, [CONFIG, E1], height=8)
    early.executed(header(9, epoch=0))
    assert _votes(early, forged, KEYS[:3]) == []
    assert _votes(early, ours, E1_KEYS[:3]) == []
    formed = early.executed(ours)
    assert early.counters.dropped["other_block"] == 3
    assert formed == [] and early.check() is None
    assert [c.header for c in _votes(early, ours, E1_KEYS[3:4])] == [ours]


def test_a_quorum_for_another_block_of_the_same_epoch_is_not_divergence() -> None:
    ours = header(6)
    elsewhere = msgspec.structs.replace(header(6, root=42), block_id=bytes(32))
    attestations = Attestations(SUITE, DOMAIN, CHAIN_ID, [CONFIG], height=5)
    attestations.executed(ours)
    assert _votes(attestations, elsewhere, KEYS[:3]) == []
    assert attestations.counters.dropped["other_block"] == 3
    assert [c.header for c in _votes(attestations, ours, KEYS[1:])] == [ours]


def test_a_one_validator_bootstrap_key_cannot_halt_the_later_epochs() -> None:
    boot = make_keys(1, "boot")[0]
    e0 = EpochConfig(epoch=0, validators=[Validator(boot.node_id, boot.public_key, 1)])
    attestations = Attestations(SUITE, DOMAIN, CHAIN_ID, [e0, E1], height=49)
    attestations.executed(header(50, epoch=1))
    assert attestations.add(vote(boot, header(50, epoch=0, root=66)), boot.node_id) == []
    assert attestations.counters.dropped["other_block"] == 1


def test_votes_of_unknown_epochs_are_pruned_with_the_window_and_far_ones_dropped() -> None:
    attestations = Attestations(SUITE, DOMAIN, CHAIN_ID, [CONFIG], height=0)
    for height in range(1, AHEAD + 1):
        attestations.add(vote(KEYS[3], header(height, epoch=10**15)), KEYS[3].node_id)
    assert not attestations._unknown
    assert attestations.counters.dropped["unknown_epoch"] == AHEAD
    for height in range(1, AHEAD + 1):
        attestations.add(vote(KEYS[3], header(height, epoch=1)), KEYS[3].node_id)
    assert len(attestations._unknown) == AHEAD
    for height in range(1, 5 * AHEAD):
        attestations.executed(header(height))
    assert not attestations._unknown and attestations.check() is None


def test_a_whole_cluster_crash_loses_no_certificate_for_good(tmp_path: Path) -> None:
    """Every node is killed while some certificates exist only in memory everywhere; after
    the restart each node votes again for its uncertified heights, and every one of them is
    certified."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        hub = Hub(loop, random.Random(11))
        genesis = make_genesis(4)
        keys = validator_keys(4)
        drivers = [make_driver(hub, genesis, tmp_path, key) for key in keys]
        for driver in drivers:
            driver.start()
        for nonce in range(4):
            assert drivers[0].submit(transfer(genesis, "alice", "bob", 5, nonce)).ok

        def unsaved_everywhere() -> set[int]:
            common = set.intersection(*(set(d.certifier._unsaved) for d in drivers))
            return {
                h
                for h in common
                if all(d.chain.store.execution_certificate(h) is None for d in drivers)
            }

        await wait_for(lambda: drivers[0].chain.height >= 6 and bool(unsaved_everywhere()))
        lost = unsaved_everywhere()
        for driver in drivers:  # kill -9: nothing more runs, nothing unsaved is written
            driver.failed = "killed"
            if driver._timer is not None:
                driver._timer.cancel()
            driver._cancel_idle()
            hub.down.add(driver.replica.node_id)
        top = max(d.chain.height for d in drivers)
        assert lost and all(
            d.chain.store.execution_certificate(h) is None for d in drivers for h in lost
        )
        for driver in drivers:
            driver.chain.store.close()

        hub2 = Hub(loop, random.Random(12))
        again = [make_driver(hub2, genesis, tmp_path, key) for key in keys]
        for driver in again:
            driver.start()

        def certified(driver: Any) -> bool:
            return all(driver.certifier.certificate(h) is not None for h in range(1, top + 20))

        await wait_for(lambda: all(certified(d) for d in again), timeout_s=180)
        assert all(d.failed is None for d in again)
        await _peers_without_it_answer_with_their_votes(again)
        for driver in again:
            driver.close()

    asyncio.run(scenario())


async def _peers_without_it_answer_with_their_votes(drivers: list[Any]) -> None:
    """A height below the vote window that nobody holds a certificate of: asked for it, the
    peers answer with their own votes, and the asker gathers them into the certificate."""
    asker, peers = drivers[0], drivers[1:]
    height = 3
    asker.certifier.missing[height] = 0
    for peer in peers:
        peer.certifier.certificate = lambda h: None  # as if it held none
        peer.certifier._answered.clear()
        peer.certifier.on_request(asker.replica.node_id, CertificateRequest(start=height, count=1))
    await wait_for(lambda: height not in asker.certifier.missing)
    for peer in peers:
        del peer.certifier.certificate
    own = asker.chain.store.execution_record(height).header
    gathered = asker.certifier.certificate(height)
    assert gathered is not None and gathered.header == own and len(gathered.signatures) >= 3
    assert height not in asker.certifier._recovering and asker.failed is None


# ---------------------------------------------------------------------- the light client


def _light() -> LightClient:
    light = LightClient(make_genesis(4))
    light.chain_id, light.domain = CHAIN_ID, DOMAIN  # the test cluster's chain
    light._sets = {0: CONFIG}
    return light


def _proof_answer(head: ExecutionHeader, receipt: TxReceipt, keys: list[Key]) -> dict[str, Any]:
    """A `GET /v1/tx/{hash}?proof=true` answer proving `receipt` (alone in its block)."""
    encoded = encode(receipt)
    leaves = [receipt_leaf(SUITE, encoded)]
    head = msgspec.structs.replace(head, receipts_root=receipts_root(SUITE, leaves))
    return {
        "proof": {
            "header": {"epoch": head.epoch},
            "certificate": encode(certificate(head, keys)).hex(),
            "receipt": encoded.hex(),
            "receipt_proof": encode(receipt_proof(SUITE, leaves, 0)).hex(),
        }
    }


def _receipt(height: int, *, ok: bool = True, code: str = "ok") -> TxReceipt:
    return TxReceipt(bytes(32), height, 0, ok, code, "", 1, [], None)


def test_an_ended_epochs_certificate_is_refused_outside_its_heights() -> None:
    response, _ = epoch_change(KEYS[:3])  # epoch 0 ends at height 1
    light = _light()
    light.learn_epoch(encode(response))
    # Epoch 0's validators forge height 500 (epoch 1's) with a receipt: refused.
    forged = _proof_answer(header(500, epoch=0), _receipt(500), KEYS[:3])
    with pytest.raises(VerificationError, match="runs from height 1 to 1"):
        light.verify_receipt(forged, bytes(32).hex())
    # Epoch 1's validators cannot certify a height of epoch 0 either.
    with pytest.raises(VerificationError, match="runs from height 2"):
        light.verify_certificate(certificate(header(1, epoch=1), E1_KEYS[:4]))
    # Within the epochs' heights, the certificates check out.
    assert light.verify_certificate(certificate(header(1), KEYS[:3])).height == 1
    good = _proof_answer(header(500, epoch=1), _receipt(500), E1_KEYS[:4])
    receipt, head = light.verify_receipt(good, bytes(32).hex())
    assert head.height == 500 and head.epoch == 1 and receipt.ok
    assert light.epoch_heights(0) == (1, 1) and light.epoch_heights(1) == (2, None)


def test_a_replayed_epoch_proof_is_refused_and_following_is_bounded() -> None:
    response, _ = epoch_change(KEYS[:3])
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] > 50:
            raise RuntimeError("still fetching epoch proofs")
        return httpx.Response(200, json={"epoch": 0, "proof": encode(response).hex()})

    light = _light()
    client = Client("http://node", transport=httpx.MockTransport(handler), light=light)
    with pytest.raises(VerificationError, match="latest known is 1"):
        client.follow_epochs(7)  # epoch 0's proof again and again: learnt once, then refused
    assert calls["n"] == 2 and light.latest_epoch == 1
    with pytest.raises(VerificationError, match="out of reach"):
        client.follow_epochs(-1)
    with pytest.raises(VerificationError, match="out of reach"):
        client.follow_epochs(10**12)
    assert calls["n"] == 2

    async def asynchronous() -> None:
        async_light = _light()
        transport = httpx.MockTransport(handler)
        async with AsyncClient("http://node", transport=transport, light=async_light) as aclient:
            with pytest.raises(VerificationError, match="latest known is 1"):
                await aclient.follow_epochs(7)
            with pytest.raises(VerificationError, match="out of reach"):
                await aclient.follow_epochs(-5)
        assert async_light.latest_epoch == 1

    asyncio.run(asynchronous())
    assert calls["n"] == 4


def test_a_verified_certificate_is_of_the_height_asked() -> None:
    three = certificate(header(3), KEYS[:3])

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"encoded": encode(three).hex()})

    client = Client("http://node", transport=httpx.MockTransport(handler), light=_light())
    assert client.certificate(3, verify=True)["height"] == 3
    with pytest.raises(VerificationError, match="height 3, not 10"):
        client.certificate(10, verify=True)

    async def asynchronous() -> None:
        transport = httpx.MockTransport(handler)
        async with AsyncClient("http://node", transport=transport, light=_light()) as aclient:
            with pytest.raises(VerificationError, match="height 3, not 10"):
                await aclient.certificate(10, verify=True)

    asyncio.run(asynchronous())


def test_a_failure_before_the_nonce_was_spent_is_not_final() -> None:
    """A faulty leader commits nonce 1 before nonce 0: a certified `bad_nonce` receipt, and
    the same transaction succeeds later. The verified record says the first is not final."""
    genesis = make_genesis(4)
    engine = engine_from_genesis(genesis, BUILTIN_CONTRACTS)
    t0 = transfer(genesis, "alice", "bob", 5, 0)
    t1 = transfer(genesis, "alice", "bob", 5, 1)
    early = engine.execute_block(1, 1_000, [t1]).receipts[0]
    engine.commit()
    later = engine.execute_block(2, 2_000, [t0, t1]).receipts[1]
    assert early.tx_id == later.tx_id and early.code == "bad_nonce" and later.ok
    answers = {
        "early": _proof_answer(header(4), _receipt(4, ok=False, code=early.code), KEYS[:3]),
        "later": _proof_answer(header(5), _receipt(5), KEYS[:3]),
        "fault": _proof_answer(header(6), _receipt(6, ok=False, code="insufficient"), KEYS[:3]),
    }

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=answers[request.url.path.split("/")[1]])

    records = {}
    for name in answers:  # each answer served under its own base path
        with Client(
            f"http://node/{name}", transport=httpx.MockTransport(handler), light=_light()
        ) as client:
            records[name] = client.transaction(bytes(32).hex(), verify=True)
    assert records["early"]["final"] is False and records["early"]["status"] == "failed"
    assert records["later"]["final"] is True and records["fault"]["final"] is True
