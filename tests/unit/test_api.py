"""The HTTP API over in-process nodes: submissions in JSON and binary, transactions followed to
commit, blocks, status, accounts, state, signed reads, and a 4xx with a machine-readable body
for every client mistake."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec

from consortia.api import create_app
from consortia.api.app import BATCH_BODY_BYTES_MAX, BATCH_TRANSACTIONS_MAX
from consortia.api.openapi import openapi_document
from consortia.client import AsyncClient
from consortia.client.codec import transaction_to_json
from consortia.node.service import NodeService
from consortia.types.consensus import Block
from consortia.types.encoding import decode
from consortia.types.network import TxBatch, WireMessage
from consortia.types.signing import block_id
from tests.node_helpers import (
    BALANCE,
    SUITE,
    Hub,
    make_driver,
    make_genesis,
    started_drivers,
    transfer,
    validator_keys,
)


def as_json(raw: bytes) -> dict[str, Any]:
    return transaction_to_json(raw)


def run_with_api(tmp_path: Path, test: Callable[[httpx.AsyncClient, Any], Awaitable[None]]) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        hub = Hub(loop, random.Random(3))
        genesis = make_genesis(4)
        drivers = started_drivers(hub, genesis, tmp_path)
        service = NodeService(drivers[0], drivers[0].replica.node_id, lambda: set(hub.drivers))
        transport = httpx.ASGITransport(app=create_app(service))
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            await test(client, genesis)
        for driver in drivers:
            driver.close()

    asyncio.run(scenario())


def test_a_transfer_is_followed_from_submission_to_receipt(tmp_path: Path) -> None:
    async def test(client: httpx.AsyncClient, genesis: Any) -> None:
        answer = await client.post("/v1/tx", json=as_json(transfer(genesis, "alice", "bob", 25, 0)))
        assert answer.status_code == 202, answer.text
        tx_hash = answer.json()["tx_hash"]
        binary = transfer(genesis, "alice", "bob", 5, 1)
        answer = await client.post(
            "/v1/tx", content=binary, headers={"content-type": "application/msgpack"}
        )
        assert answer.status_code == 202, answer.text

        async def committed() -> bool:
            return (await client.get(f"/v1/tx/{tx_hash}")).json()["status"] == "committed"

        for _ in range(2000):
            if await committed():
                break
            await asyncio.sleep(0.01)
        record = (await client.get(f"/v1/tx/{tx_hash}")).json()
        assert record["receipt"]["ok"] and record["receipt"]["code"] == "ok"
        assert record["height"] >= 1
        block = (await client.get(f"/v1/blocks/{record['height']}")).json()
        assert {"height", "hash", "parent_hash", "transactions", "qc"} <= set(block)
        assert "encoded" not in block
        encoded = (await client.get(f"/v1/blocks/{record['height']}?encoded=true")).json()
        decoded = decode(bytes.fromhex(encoded["encoded"]), Block)
        assert block_id(SUITE, decoded.header).hex() == block["hash"] == encoded["hash"]
        assert [item.hex() for item in decoded.payload] == block["transactions"]
        latest = (await client.get("/v1/blocks/latest")).json()
        assert latest["height"] >= record["height"]
        bob = (await client.get("/v1/accounts/bob")).json()
        for _ in range(2000):
            if bob["balance"] == BALANCE + 30:
                break
            await asyncio.sleep(0.01)
            bob = (await client.get("/v1/accounts/bob")).json()
        assert bob["balance"] == BALANCE + 30 and bob["balances"]["CNY"] == BALANCE + 30
        status = (await client.get("/v1/status")).json()
        for field in (
            "chain_id",
            "node_id",
            "protocol_version",
            "epoch",
            "height",
            "block_hash",
            "state_root",
            "peers",
            "validators",
        ):
            assert field in status
        state = (await client.get("/v1/state/asset/balance/CNY/bob")).json()
        assert state["value"] == BALANCE + 30
        past = (await client.get("/v1/state/asset/balance/CNY/bob?height=0")).json()
        assert past["value"] == BALANCE

    run_with_api(tmp_path, test)


def test_every_client_mistake_is_a_4xx_with_a_code(tmp_path: Path) -> None:
    async def test(client: httpx.AsyncClient, genesis: Any) -> None:
        good = transfer(genesis, "alice", "bob", 1, 0)
        forged = as_json(good)
        forged["signature"] = "00" * 64
        wrong_chain = as_json(good)
        wrong_chain["body"]["chain_id"] = "other-chain"
        cases: list[tuple[str, dict[str, Any], int, str]] = [
            (
                "malformed JSON",
                {"content": b"{not json", "headers": {"content-type": "application/json"}},
                400,
                "malformed_transaction",
            ),
            (
                "missing field",
                {"json": {"body": {}, "signature": ""}},
                400,
                "malformed_transaction",
            ),
            ("bad signature", {"json": forged}, 400, "bad_signature"),
            ("wrong chain", {"json": wrong_chain}, 400, "wrong_chain"),
            (
                "unknown account",
                {"json": as_json(transfer(genesis, "eve", "bob", 1, 0))},
                400,
                "unknown_account",
            ),
            (
                "oversized",
                {"content": b"x" * 200_000, "headers": {"content-type": "application/json"}},
                413,
                "too_large",
            ),
            (
                "media type",
                {"content": b"x", "headers": {"content-type": "text/plain"}},
                415,
                "unsupported_media_type",
            ),
        ]
        for name, request, status, code in cases:
            answer = await client.post("/v1/tx", **request)
            assert answer.status_code == status, (name, answer.text)
            assert answer.json()["error"]["code"] == code, name
        first = await client.post("/v1/tx", json=as_json(good))
        assert first.status_code == 202
        again = await client.post("/v1/tx", json=as_json(good))
        assert (again.status_code, again.json()["error"]["code"]) == (409, "duplicate")
        for path, status, code in [
            ("/v1/tx/" + "ab" * 32, 404, "not_found"),
            ("/v1/tx/xyz", 400, "bad_argument"),
            ("/v1/blocks/abc", 400, "bad_argument"),
            ("/v1/blocks/1?encoded=yes", 400, "bad_argument"),
            ("/v1/blocks/999999", 404, "not_found"),
            ("/v1/accounts/nobody", 404, "not_found"),
            ("/v1/state/asset/x?height=-1", 400, "bad_argument"),
            # Digits str.isdigit takes but that are no ASCII decimal: "١٢" reads as 12 with
            # int(), "²" makes int() raise. A number in a path or a query is ASCII digits.
            ("/v1/state/asset/x?height=\u0661\u0662", 400, "bad_argument"),
            ("/v1/blocks/\u0661\u0662", 400, "bad_argument"),
            ("/v1/blocks/\u00b2", 400, "bad_argument"),
            ("/v1/blocks/\u0661/receipts", 400, "bad_argument"),
            ("/v1/blocks/\u0661/certificate", 400, "bad_argument"),
            ("/v1/epochs/\u0660/proof", 400, "bad_argument"),
            ("/v1/state/asset/x?height=999999", 404, "not_found"),
            ("/v1/nothing", 404, "not_found"),
            ("/metrics", 404, "not_found"),
        ]:
            answer = await client.get(path)
            assert answer.status_code == status, (path, answer.text)
            assert answer.json()["error"]["code"] == code, path

    run_with_api(tmp_path, test)


def test_the_openapi_document_names_every_route() -> None:
    document = openapi_document()
    assert document["openapi"].startswith("3.1")
    for path in [
        "/v1/tx",
        "/v1/txs",
        "/v1/tx/{tx_hash}",
        "/v1/views",
        "/v1/blocks/{height}",
        "/v1/blocks/{height}/receipts",
        "/v1/blocks/{height}/certificate",
        "/v1/epochs/{epoch}/proof",
        "/v1/status",
        "/v1/accounts/{account_id}",
        "/v1/state/{contract}/{key}",
        "/metrics",
        "/openapi.json",
    ]:
        assert path in document["paths"], path


def test_a_restarted_node_answers_past_heights_and_says_which_it_no_longer_keeps(
    tmp_path: Path,
) -> None:
    """A node restarted from its store answers reads at past heights from its stored state
    tree (regression: it once answered null for a balance that existed); a height older than
    the history it keeps is a 410 height_unavailable, never a wrong null."""
    history = 16

    async def scenario() -> None:
        hub = Hub(asyncio.get_running_loop(), random.Random(6))
        genesis = make_genesis(4)
        keys = validator_keys(4)
        drivers = [
            make_driver(hub, genesis, tmp_path, key, state_history_heights=history) for key in keys
        ]
        for driver in drivers:
            driver.start()
        while drivers[3].chain.height < history + 4:
            await asyncio.sleep(0.01)
        # Node 3 stays cut off: a restarted driver that is never started would still vote
        # and commit on the frames the others send, moving its oldest kept height mid-read.
        hub.down.add(keys[3][0])
        drivers[3].close()
        drivers[3].chain.store.close()
        restarted = make_driver(hub, genesis, tmp_path, keys[3], state_history_heights=history)
        restart_height = restarted.chain.height
        oldest = restart_height - history
        assert restarted.chain.engine.oldest_height == oldest
        service = NodeService(restarted, keys[3][0], lambda: set(hub.drivers))
        transport = httpx.ASGITransport(app=create_app(service))
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            for height in (restart_height, oldest, 1 + oldest):
                now = await client.get(f"/v1/state/asset/balance/CNY/bob?height={height}")
                assert now.status_code == 200 and now.json()["value"] == BALANCE
            for height in (1, oldest - 1):
                before = await client.get(f"/v1/state/asset/balance/CNY/bob?height={height}")
                assert before.status_code == 410
                assert before.json()["error"]["code"] == "height_unavailable"
        assert restarted.chain.height == restart_height
        for driver in drivers[:3]:
            driver.close()
        restarted.chain.store.close()

    asyncio.run(scenario())


# ---------------------------------------------------------------- batch submission


class _CountingLink:
    """The first node's transport, counting what it broadcasts."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.broadcasts: list[bytes] = []

    def send(self, node_id: bytes, frame: bytes) -> bool:
        return bool(self.inner.send(node_id, frame))

    def broadcast(self, frame: bytes) -> int:
        self.broadcasts.append(frame)
        return int(self.inner.broadcast(frame))


Scenario = Callable[[httpx.AsyncClient, Any, list[Any], _CountingLink], Awaitable[None]]


def run_with_nodes(tmp_path: Path, test: Scenario) -> None:
    """As run_with_api, and the test sees the drivers and node 0's broadcasts."""

    async def scenario() -> None:
        hub = Hub(asyncio.get_running_loop(), random.Random(11))
        genesis = make_genesis(4)
        drivers = [make_driver(hub, genesis, tmp_path, key) for key in validator_keys(4)]
        link = _CountingLink(drivers[0].transport)
        drivers[0].transport = link
        for driver in drivers:
            driver.start()
        service = NodeService(drivers[0], drivers[0].replica.node_id, lambda: set(hub.drivers))
        transport = httpx.ASGITransport(app=create_app(service))
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            client.service = service  # type: ignore[attr-defined]
            await test(client, genesis, drivers, link)
        for driver in drivers:
            driver.close()

    asyncio.run(scenario())


async def _settled(client: httpx.AsyncClient, tx_hash: str) -> dict[str, Any]:
    for _ in range(3000):
        record = await client.get(f"/v1/tx/{tx_hash}")
        if record.status_code == 200 and record.json()["status"] != "pending":
            return dict(record.json())
        await asyncio.sleep(0.01)
    raise AssertionError(f"{tx_hash} never committed")


def _tx_batches(frames: list[bytes]) -> list[TxBatch]:
    messages = [decode(frame, WireMessage) for frame in frames]
    return [message for message in messages if isinstance(message, TxBatch)]


def test_a_json_batch_answers_each_transaction_and_changes_nothing_for_the_bad_ones(
    tmp_path: Path,
) -> None:
    async def test(
        client: httpx.AsyncClient, genesis: Any, drivers: list[Any], link: _CountingLink
    ) -> None:
        good_alice = transfer(genesis, "alice", "bob", 7, 0)
        good_carol = transfer(genesis, "carol", "dave", 11, 0)
        forged = as_json(transfer(genesis, "alice", "bob", 1_000, 1))
        forged["signature"] = "00" * 64
        wrong_chain = as_json(transfer(genesis, "dave", "bob", 1, 0))
        wrong_chain["body"]["chain_id"] = "other-chain"
        batch = [
            as_json(good_alice),
            forged,
            {"body": {}, "signature": ""},
            as_json(transfer(genesis, "eve", "bob", 1, 0)),
            wrong_chain,
            as_json(good_carol),
            as_json(good_alice),  # the same transaction again
            as_json(transfer(genesis, "bob", "alice", 1, 5_000)),  # nonce far ahead
        ]
        link.broadcasts.clear()
        answer = await client.post("/v1/txs", json=batch)
        assert answer.status_code == 200, answer.text
        results = answer.json()["results"]
        assert len(results) == len(batch)
        assert results[0]["status"] == "pending" and results[5]["status"] == "pending"
        codes = [result.get("error", {}).get("code") for result in results]
        assert codes == [
            None,
            "bad_signature",
            "malformed_transaction",
            "unknown_account",
            "wrong_chain",
            None,
            "duplicate",
            "nonce_too_far",
        ]
        assert all(result["error"]["message"] for result in results if "error" in result)
        for result in (results[0], results[5]):
            record = await _settled(client, result["tx_hash"])
            assert record["status"] == "committed"
        # One gossip frame for the whole batch, carrying exactly the admitted transactions.
        sent = _tx_batches(link.broadcasts)
        assert len(sent) == 1
        assert list(sent[0].transactions) == [good_alice, good_carol]
        assert (await client.get(f"/v1/tx/{results[1]['tx_hash']}")).status_code == 404
        bob = (await client.get("/v1/accounts/bob")).json()
        alice = (await client.get("/v1/accounts/alice")).json()
        dave = (await client.get("/v1/accounts/dave")).json()
        assert (bob["balance"], bob["nonce"]) == (BALANCE + 7, 0)
        assert (alice["balance"], alice["nonce"]) == (BALANCE - 7, 1)
        assert (dave["balance"], dave["nonce"]) == (BALANCE + 11, 0)
        assert len(drivers[0].mempool) == 0

    run_with_nodes(tmp_path, test)


def test_a_binary_batch_through_the_sdk_and_its_block_receipts(tmp_path: Path) -> None:
    async def test(
        client: httpx.AsyncClient, genesis: Any, drivers: list[Any], link: _CountingLink
    ) -> None:
        raws = [transfer(genesis, "alice", "bob", 1, nonce) for nonce in range(40)]
        raws.insert(3, b"\x01not a transaction")
        sdk = AsyncClient("http://node", transport=client._transport)
        link.broadcasts.clear()
        results = await sdk.submit_many(raws)
        assert len(results) == 41
        assert results[3]["error"]["code"] == "malformed_transaction"
        pending = [result for index, result in enumerate(results) if index != 3]
        assert all(result["status"] == "pending" for result in pending)
        last = await _settled(client, pending[-1]["tx_hash"])
        sent = _tx_batches(link.broadcasts)
        assert len(sent) == 1
        assert list(sent[0].transactions) == [raw for index, raw in enumerate(raws) if index != 3]
        seen: dict[str, dict[str, Any]] = {}
        for height in range(1, last["height"] + 1):
            block = await sdk.block_receipts(height)
            assert block["height"] == height and block["timestamp_ms"] > 0
            for receipt in block["receipts"]:
                seen[receipt["tx_hash"]] = receipt
        for result in pending:
            assert seen[result["tx_hash"]]["ok"] and seen[result["tx_hash"]]["code"] == "ok"
        # Older blocks come from the store, and read the same as from memory.
        from_memory = await sdk.block_receipts(last["height"])
        client.service._recent.clear()  # type: ignore[attr-defined]
        assert await sdk.block_receipts(last["height"]) == from_memory
        missing = await client.get("/v1/blocks/999999/receipts")
        assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")
        await sdk.close()

    run_with_nodes(tmp_path, test)


def test_batches_over_the_limits_are_refused_whole(tmp_path: Path) -> None:
    async def test(
        client: httpx.AsyncClient, genesis: Any, drivers: list[Any], link: _CountingLink
    ) -> None:
        one = transfer(genesis, "alice", "bob", 1, 0)
        cases: list[tuple[str, dict[str, Any], int, str]] = [
            (
                "too many (binary)",
                {
                    "content": msgspec.msgpack.encode([one] * (BATCH_TRANSACTIONS_MAX + 1)),
                    "headers": {"content-type": "application/msgpack"},
                },
                413,
                "too_many_transactions",
            ),
            (
                "too many (JSON)",
                {"json": [as_json(one)] * (BATCH_TRANSACTIONS_MAX + 1)},
                413,
                "too_many_transactions",
            ),
            (
                "too large",
                {
                    "content": b"[" + b" " * BATCH_BODY_BYTES_MAX + b"]",
                    "headers": {"content-type": "application/json"},
                },
                413,
                "too_large",
            ),
            ("not an array", {"json": {"body": {}}}, 400, "malformed_batch"),
            (
                "binary items that are not bytes",
                {
                    "content": msgspec.msgpack.encode([1, 2]),
                    "headers": {"content-type": "application/msgpack"},
                },
                400,
                "malformed_batch",
            ),
            (
                "media type",
                {"content": b"[]", "headers": {"content-type": "text/plain"}},
                415,
                "unsupported_media_type",
            ),
        ]
        for name, request, status, code in cases:
            answer = await client.post("/v1/txs", **request)
            assert answer.status_code == status, (name, answer.text)
            assert answer.json()["error"]["code"] == code, name
        assert len(drivers[0].mempool) == 0
        empty = await client.post("/v1/txs", json=[])
        assert (empty.status_code, empty.json()) == (200, {"results": []})

    run_with_nodes(tmp_path, test)
