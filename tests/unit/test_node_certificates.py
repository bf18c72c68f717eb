"""Execution certificates in process: four validators over the in-memory hub certify every
committed height with the same header (their own), and a node whose execution differs from a
quorum's halts with `execution_diverged`."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from pathlib import Path
from typing import Any

import msgspec
import pytest

from consortia.node.attestation import BEHIND, ExecutionDivergedError
from consortia.node.chain import CommittedBlock
from consortia.node.driver import Driver
from consortia.node.metrics import _certificate_metrics
from consortia.types.execution import (
    ExecutionCertificate,
    ExecutionHeader,
    ExecutionSignature,
    certificate_problem,
)
from consortia.types.network import CertificateResponse
from consortia.types.signing import SigningDomain, sign
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


def _certified_through(driver: Driver, height: int) -> bool:
    certifier = driver.certifier
    return all(certifier.certificate(h) is not None for h in range(1, height + 1))


def test_every_committed_height_is_certified_alike_on_every_node(tmp_path: Path) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        hub = Hub(loop, random.Random(7))
        genesis = make_genesis(4)
        drivers = started_drivers(hub, genesis, tmp_path)
        for nonce in range(6):
            assert drivers[nonce % 4].submit(transfer(genesis, "alice", "bob", 5, nonce)).ok
        await wait_for(lambda: all(d.chain.height >= 8 for d in drivers))
        target = min(d.chain.height for d in drivers) - 1
        await wait_for(lambda: all(_certified_through(d, target) for d in drivers))
        first = drivers[0].chain.store
        config = first.tip().epoch_config  # type: ignore[union-attr]
        domain = SigningDomain(drivers[0].chain.genesis_hash)
        for height in range(1, target + 1):
            certificates = [d.certifier.certificate(h) for d in drivers for h in [height]]
            headers = {msgspec.msgpack.encode(c.header) for c in certificates if c is not None}
            assert len(headers) == 1, f"nodes certified different headers at {height}"
            certificate = certificates[0]
            assert certificate is not None
            record = first.execution_record(height)
            assert record is not None and record.header == certificate.header
            assert certificate.header.state_root == record.header.state_root
            problem = certificate_problem(
                SUITE, domain.signing_bytes(certificate.header), certificate, config
            )
            assert problem is None
        for driver in drivers:
            assert driver.failed is None
            assert driver.certifier.attestations.check() is None
            metrics = {m.name: m for m in _certificate_metrics(driver)}
            assert metrics["consortia_certified_height"].samples[0].value >= target
            driver.close()
        # Written with later commits, the rest at close: all of them are in the store.
        for driver in drivers:
            store = driver.chain.store
            assert all(store.execution_certificate(h) for h in range(1, target + 1))

    asyncio.run(scenario())


def test_a_node_whose_execution_diverges_from_a_quorum_halts(tmp_path: Path) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        hub = Hub(loop, random.Random(8))
        genesis = make_genesis(4)
        halts: list[str] = []
        keys = validator_keys(4)
        drivers = [make_driver(hub, genesis, tmp_path, key) for key in keys[:3]]
        odd = make_driver(hub, genesis, tmp_path, keys[3], on_halt=halts.append)
        apply = odd.chain.apply

        def diverging(*args: Any, **kwargs: Any) -> list[CommittedBlock]:
            """This node's engine reaches another state root from block 3 on."""
            recorded = apply(*args, **kwargs)
            return [
                dataclasses.replace(
                    entry,
                    execution=msgspec.structs.replace(entry.execution, state_root=bytes(32)),
                )
                if entry.execution is not None and entry.execution.height >= 3
                else entry
                for entry in recorded
            ]

        odd.chain.apply = diverging  # type: ignore[method-assign]
        for driver in [*drivers, odd]:
            driver.start()
        await wait_for(lambda: bool(halts))
        assert odd.failed is not None and "ExecutionDivergedError" in odd.failed
        assert "diverged" in halts[0]
        # The honest three certified what they executed and went on.
        await wait_for(lambda: all(_certified_through(d, 3) for d in drivers))
        assert all(d.failed is None for d in drivers)
        for driver in [*drivers, odd]:
            driver.close()

    asyncio.run(scenario())


def test_a_node_that_missed_the_votes_fetches_the_certificates_from_its_peers(
    tmp_path: Path,
) -> None:
    """Setup: node 3 is down while the others commit and certify 100 heights (beyond its vote
    window). Test: back, it catches up, notes the heights it could not certify itself, asks
    its peers, checks what they answer, and ends with every certificate they have."""

    async def scenario() -> None:
        hub = Hub(asyncio.get_running_loop(), random.Random(5))
        genesis = make_genesis(4)
        keys = validator_keys(4)
        drivers = [make_driver(hub, genesis, tmp_path, key) for key in keys[:3]]
        late = make_driver(hub, genesis, tmp_path, keys[3])
        hub.down.add(keys[3][0])
        for driver in [*drivers, late]:
            driver.start()
        await wait_for(lambda: drivers[0].chain.height >= 100, timeout_s=180)
        target = drivers[0].chain.height - 2
        await wait_for(lambda: all(_certified_through(d, target) for d in drivers))
        hub.down.discard(keys[3][0])
        await wait_for(lambda: late.chain.height >= target + 10, timeout_s=180)
        await wait_for(lambda: _certified_through(late, target), timeout_s=180)
        for height in range(1, target + 1):
            ours = late.certifier.certificate(height)
            assert (
                ours is not None and ours.header == drivers[0].certifier.certificate(height).header
            )  # type: ignore[union-attr]
        # A height above `target` may have just left the vote window uncertified (late had
        # not its votes yet) and be asked for now: wait until nothing is missing, then every
        # height that left the window holds its certificate (none was given up).
        await wait_for(lambda: not late.certifier.missing, timeout_s=180)
        assert _certified_through(late, late.chain.height - BEHIND - 1)
        assert late.failed is None
        _forged_answers_are_refused(late, keys)
        for driver in [*drivers, late]:
            driver.close()

    asyncio.run(scenario())


def _forged_answers_are_refused(driver: Driver, keys: list[tuple[bytes, bytes, bytes]]) -> None:
    """A peer's answer is checked, not trusted: a certificate short of a quorum or signed for
    another header is not taken; a quorum's valid certificate of another header than this
    node's is divergence."""
    certifier = driver.certifier
    height = 5
    real = certifier.certificate(height)
    assert real is not None
    certifier.missing[height] = 0
    domain = SigningDomain(driver.chain.genesis_hash)
    other = msgspec.structs.replace(real.header, state_root=bytes(32))

    def signed(header: ExecutionHeader, signers: list[tuple[bytes, bytes, bytes]]) -> Any:
        return ExecutionCertificate(
            header,
            [
                ExecutionSignature(node_id, sign(SUITE, private, header, domain))
                for node_id, _, private in sorted(signers)
            ],
        )

    peer = keys[0][0]

    def answer(response: CertificateResponse, sender: bytes = peer) -> None:
        certifier._outstanding = (peer, height, 1)  # as if this node had asked `peer`
        certifier.on_response(sender, response)

    short = signed(real.header, keys[:2])
    mismatched = ExecutionCertificate(other, real.signatures)
    answer(CertificateResponse([short, mismatched]))
    assert height in certifier.missing
    # A quorum's valid certificate naming another block (or epoch) for the height is not
    # this node's block: dropped, not divergence.
    elsewhere = msgspec.structs.replace(real.header, block_id=bytes(32))
    answer(CertificateResponse([signed(elsewhere, keys[:3])]))
    assert height in certifier.missing and driver.failed is None
    # An answer from a peer that was not asked is not read.
    unrequested = certifier.unrequested
    answer(CertificateResponse([real]), sender=keys[1][0])
    assert height in certifier.missing and certifier.unrequested == unrequested + 1
    with pytest.raises(ExecutionDivergedError):
        answer(CertificateResponse([signed(other, keys[:3])]))
    answer(CertificateResponse([real]))
    assert height not in certifier.missing


def test_a_refused_execution_signature_stops_the_node_naming_the_rule(tmp_path: Path) -> None:
    """Setup: a validator whose safety rules already signed one execution header for height
    2. Test: asked for its vote on another header of height 2, or on a header of another
    chain, the certifier stops the node (`ExecutionDivergedError`) naming the rule that
    refused, and the replica counts each refusal by that rule."""

    async def scenario() -> None:
        hub = Hub(asyncio.get_running_loop(), random.Random(3))
        genesis = make_genesis(4)
        driver = make_driver(hub, genesis, tmp_path, validator_keys(4)[0])
        signed = ExecutionHeader(
            chain_id=genesis.chain_id,
            epoch=0,
            height=2,
            block_id=bytes([2]) * 32,
            state_root=bytes([1]) * 32,
            receipts_root=bytes([7]) * 32,
        )
        vote = driver.certifier._own_vote(signed)
        assert vote is not None and vote.header == signed
        other = msgspec.structs.replace(signed, state_root=bytes([9]) * 32)
        with pytest.raises(ExecutionDivergedError, match="execution_already_signed"):
            driver.certifier._own_vote(other)
        elsewhere = msgspec.structs.replace(signed, chain_id="elsewhere", height=3)
        with pytest.raises(ExecutionDivergedError, match="execution_other_chain"):
            driver.certifier._own_vote(elsewhere)
        assert driver.replica.counters.refused == {
            "execution_already_signed": 1,
            "execution_other_chain": 1,
        }
        driver.close()

    asyncio.run(scenario())
