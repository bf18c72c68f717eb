"""Reads that need not trust the node: a committed transaction's receipt with its proof
against the block's certified execution header, checked by the SDK's light client from the
genesis; the certificate and epoch-proof routes; and a tampered answer refused."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import httpx
import pytest

from consortia.api import create_app
from consortia.client import AsyncClient, Client, ClientError, LightClient, VerificationError
from consortia.node.service import NodeService
from tests.node_helpers import Hub, make_genesis, started_drivers, transfer
from tests.proof_helpers import Tampering


def test_a_receipt_is_returned_only_when_proven_against_a_certified_header(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        hub = Hub(loop, random.Random(4))
        genesis = make_genesis(4)
        drivers = started_drivers(hub, genesis, tmp_path)
        service = NodeService(drivers[0], drivers[0].replica.node_id, lambda: set(hub.drivers))
        transport = Tampering(httpx.ASGITransport(app=create_app(service)))
        light = LightClient(genesis)
        async with AsyncClient("http://node", transport=transport, light=light) as client:
            hashes = [
                await client.submit(transfer(genesis, "alice", "bob", 3, nonce))
                for nonce in range(3)
            ]
            record: dict[str, Any] = {}
            for _ in range(2000):
                try:
                    record = await client.transaction(hashes[2], verify=True)
                    break
                except ClientError as error:
                    assert error.code in ("not_found", "not_committed", "not_certified"), error
                    await asyncio.sleep(0.01)
            assert record["verified"] and record["tx_hash"] == hashes[2]
            assert record["receipt"]["ok"] and record["receipt"]["code"] == "ok"
            height = record["height"]
            assert record["header"]["height"] == height
            plain = await client.transaction(hashes[2])
            assert plain["receipt"]["gas_used"] == record["receipt"]["gas_used"]
            # The certificate route, plain and checked.
            certified = await client.certificate(height, verify=True)
            assert certified == record["header"]
            answer = await client.certificate(height)
            assert len(answer["signers"]) >= 3
            assert service.certificate(height) is not None
            # Every tampering with the answer is refused, naming what failed.
            edits = {
                "receipt": lambda b: _hex_edit(b, "receipt"),
                "receipt_proof": lambda b: _hex_edit(b, "receipt_proof"),
                "certificate": lambda b: _hex_edit(b, "certificate"),
                "missing": lambda b: {**b, "proof": None},
            }
            for name, edit in edits.items():
                transport.edit = edit
                with pytest.raises(VerificationError) as refused:
                    await client.transaction(hashes[2], verify=True)
                assert refused.value.code == "verification_failed", name
            transport.edit = None
            # The synchronous client checks the same answers alike.
            proof_answer = await client._get(f"/v1/tx/{hashes[2]}?proof=true")
            _sync_client_checks(genesis, hashes[2], proof_answer, record)
            # Another transaction's valid proof does not pass for this one.
            other = await client._get(f"/v1/tx/{hashes[1]}?proof=true")
            transport.edit = lambda _: other
            with pytest.raises(VerificationError, match="another transaction"):
                await client.transaction(hashes[2], verify=True)
            transport.edit = None
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(service)), base_url="http://node"
        ) as raw:
            far = await raw.get("/v1/blocks/999999/certificate")
            assert (far.status_code, far.json()["error"]["code"]) == (404, "not_found")
            none = await raw.get("/v1/epochs/0/proof")
            assert (none.status_code, none.json()["error"]["code"]) == (404, "not_found")
            bad = await raw.get(f"/v1/tx/{hashes[0]}?proof=maybe")
            assert (bad.status_code, bad.json()["error"]["code"]) == (400, "bad_argument")
            unknown = await raw.get(f"/v1/tx/{'ab' * 32}?proof=true")
            assert unknown.status_code == 404
        for driver in drivers:
            driver.close()

    asyncio.run(scenario())


def _sync_client_checks(
    genesis: Any, tx_hash: str, answer: dict[str, Any], expected: dict[str, Any]
) -> None:
    """`Client` (sync) over recorded answers: the proven receipt, or VerificationError."""
    served = {"answer": answer}

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == f"/v1/tx/{tx_hash}"
        return httpx.Response(200, json=served["answer"])

    light = LightClient(genesis)
    with Client("http://node", transport=httpx.MockTransport(handler), light=light) as client:
        assert client.transaction(tx_hash, verify=True) == expected
        served["answer"] = _hex_edit(answer, "receipt_proof")
        with pytest.raises(VerificationError):
            client.transaction(tx_hash, verify=True)
    with (
        Client("http://node", transport=httpx.MockTransport(handler)) as unconfigured,
        pytest.raises(VerificationError, match="LightClient"),
    ):
        unconfigured.transaction(tx_hash, verify=True)


def _hex_edit(body: dict[str, Any], field: str) -> dict[str, Any]:
    """Flip one bit in the middle of a hex field of the proof."""
    proof = dict(body["proof"])
    data = bytearray(bytes.fromhex(proof[field]))
    data[len(data) // 2] ^= 0x01
    proof[field] = data.hex()
    return {**body, "proof": proof}
