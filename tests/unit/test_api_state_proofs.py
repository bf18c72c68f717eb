"""Certified state reads: a value, a whole account, and an absence, each proven under the
state root of an execution header the validators certified, checked by the SDK's light
client from the genesis alone; every tampering with the answer (value, proof, certificate,
entry, height) or a wrong validator set is refused."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from consortia.api import create_app
from consortia.client import AsyncClient, ClientError, LightClient, VerificationError, state_reads
from consortia.execution.contracts import asset, identity_state
from consortia.node.service import NodeService
from tests.node_helpers import BALANCE, Hub, make_genesis, started_drivers, transfer
from tests.proof_helpers import Tampering


def _flip(body: dict[str, Any], field: str, entry: int | None = 0) -> dict[str, Any]:
    """One bit flipped in the middle of a hex field of the proof (or of an entry)."""
    proof = msgspec.json.decode(msgspec.json.encode(body["proof"]))
    holder = proof if entry is None else proof["entries"][entry]
    data = bytearray(bytes.fromhex(holder[field]))
    data[len(data) // 2] ^= 0x01
    holder[field] = data.hex()
    return {**body, "proof": proof}


def test_the_client_derives_account_keys_as_the_contracts_spell_them() -> None:
    assert state_reads.IDENTITY == identity_state.CONTRACT
    assert state_reads.ASSET == asset.CONTRACT
    assert state_reads.account_key("bank-0.treasury") == identity_state.account_key(
        "bank-0.treasury"
    )
    assert state_reads.balance_key("USD", "bob") == asset.balance_key("USD", "bob")


def test_state_and_accounts_are_returned_only_when_proven_under_a_certified_root(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        hub = Hub(loop, random.Random(7))
        genesis = make_genesis(4)
        drivers = started_drivers(hub, genesis, tmp_path)
        service = NodeService(drivers[0], drivers[0].replica.node_id, lambda: set(hub.drivers))
        transport = Tampering(httpx.ASGITransport(app=create_app(service)))
        async with AsyncClient(
            "http://node", transport=transport, light=LightClient(genesis)
        ) as client:
            tx_hash = await client.submit(transfer(genesis, "alice", "bob", 5, 0))
            for _ in range(3000):
                try:
                    await client.transaction(tx_hash, verify=True)
                    account = await client.account("bob", verify=True)
                    if account["balance"] == BALANCE + 5:
                        break
                except ClientError as error:
                    assert error.code in ("not_found", "not_committed", "not_certified"), error
                await asyncio.sleep(0.01)
            assert account["verified"] and account["balance"] == BALANCE + 5
            assert account["nonce"] == 0 and account["id"] == "bob"
            alice = await client.account("alice", verify=True)
            assert alice["balance"] == BALANCE - 5 and alice["nonce"] == 1
            key = asset.balance_key("CNY", "bob")
            assert await client.state(asset.CONTRACT, key, verify=True) == BALANCE + 5
            # Absence is proven too: no balance is stored for an account that never had one.
            nobody = asset.balance_key("CNY", "nobody")
            assert await client.state(asset.CONTRACT, nobody, verify=True) is None
            # Every tampering with a proven answer is refused, naming what failed.
            edits = {
                "value": lambda b: _flip(b, "value"),
                "state_proof": lambda b: _flip(b, "state_proof"),
                "certificate": lambda b: _flip(b, "certificate", None),
                "height": lambda b: {**b, "proof": {**b["proof"], "height": 1}},
                "no proof": lambda b: {**b, "proof": None},
                "other key": _other_key,
            }
            for name, edit in edits.items():
                transport.edit = edit
                with pytest.raises(VerificationError) as refused:
                    await client.account("bob", verify=True)
                assert refused.value.code == "verification_failed", name
                with pytest.raises(VerificationError):
                    await client.state(asset.CONTRACT, key, verify=True)
            # Another account's valid proof does not pass for this one.
            transport.edit = None
            alice_answer = await client._get("/v1/accounts/alice?proof=true")
            transport.edit = lambda _: alice_answer
            with pytest.raises(VerificationError, match="not among the proven entries"):
                await client.account("bob", verify=True)
            # A value claimed absent where a value is stored: its absence cannot be proven.
            transport.edit = _absent
            with pytest.raises(VerificationError, match="state_proof"):
                await client.state(asset.CONTRACT, key, verify=True)
            transport.edit = None
        # A client that trusts another chain's validators refuses the certificate.
        other = msgspec.structs.replace(genesis, chain_id="another-chain")
        async with AsyncClient(
            "http://node", transport=transport, light=LightClient(other)
        ) as client:
            with pytest.raises(VerificationError, match="certificate"):
                await client.account("bob", verify=True)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(service)), base_url="http://node"
        ) as raw:
            bad = await raw.get("/v1/accounts/bob?proof=maybe")
            assert (bad.status_code, bad.json()["error"]["code"]) == (400, "bad_argument")
            far = await raw.get(f"/v1/state/asset/{key}?proof=true&height=999999")
            assert (far.status_code, far.json()["error"]["code"]) == (409, "not_certified")
            missing = await raw.get("/v1/accounts/nobody?proof=true")
            assert missing.status_code == 404
        for driver in drivers:
            driver.close()

    asyncio.run(scenario())


def _other_key(body: dict[str, Any]) -> dict[str, Any]:
    """The first entry relabelled as another key (its proof is for the original one)."""
    proof = msgspec.json.decode(msgspec.json.encode(body["proof"]))
    proof["entries"][0]["key"] = proof["entries"][0]["key"] + "x"
    return {**body, "proof": proof}


def _absent(body: dict[str, Any]) -> dict[str, Any]:
    proof = msgspec.json.decode(msgspec.json.encode(body["proof"]))
    proof["entries"][0]["value"] = None
    return {**body, "value": None, "proof": proof}
