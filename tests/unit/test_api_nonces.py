"""POST /v1/nonces: the next nonce of many accounts at once (what a bench client or a relay
needs before it signs), bounded, with a machine-readable refusal for every malformed query."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from consortia.api.app import NONCES_ACCOUNT_ID_MAX, NONCES_ACCOUNTS_MAX
from consortia.client import AsyncClient
from tests.node_helpers import transfer
from tests.unit.test_api import as_json, run_with_api


def test_nonces_follow_commits_and_unknown_accounts_are_null(tmp_path: Path) -> None:
    async def test(client: httpx.AsyncClient, genesis: Any) -> None:
        before = (await client.post("/v1/nonces", json={"accounts": ["alice", "nobody"]})).json()
        assert before["nonces"] == {"alice": 0, "nobody": None}
        for nonce in range(2):
            raw = transfer(genesis, "alice", "bob", 1, nonce)
            answer = await client.post("/v1/tx", json=as_json(raw))
            assert answer.status_code == 202, answer.text
        for _ in range(2000):
            answer = await client.post("/v1/nonces", json={"accounts": ["alice", "bob"]})
            if answer.json()["nonces"]["alice"] == 2:
                break
            await asyncio.sleep(0.01)
        after = answer.json()
        assert after["nonces"] == {"alice": 2, "bob": 0}
        assert after["height"] > before["height"]
        # The SDK asks in chunks the node accepts, and answers every account asked about.
        sdk = AsyncClient("http://node", transport=client._transport)
        names = ["alice", "bob"] + [f"ghost-{i}" for i in range(2 * NONCES_ACCOUNTS_MAX)]
        nonces = await sdk.nonces(names)
        assert len(nonces) == len(names)
        assert (nonces["alice"], nonces["bob"], nonces["ghost-7"]) == (2, 0, None)
        await sdk.close()

    run_with_api(tmp_path, test)


def test_malformed_nonce_queries_are_refused(tmp_path: Path) -> None:
    async def test(client: httpx.AsyncClient, genesis: Any) -> None:
        cases: list[dict[str, Any]] = [
            {"json": {"accounts": []}},
            {"json": {"accounts": ["a"] * (NONCES_ACCOUNTS_MAX + 1)}},
            {"json": {"accounts": ["a" * (NONCES_ACCOUNT_ID_MAX + 1)]}},
            {"json": {"accounts": [""]}},
            {"json": {"accounts": "alice"}},
            {"json": {"accounts": [1]}},
            {"json": {"accounts": ["alice"], "extra": 1}},
            {"json": ["alice"]},
            {"content": b"not json", "headers": {"content-type": "application/json"}},
        ]
        for case in cases:
            answer = await client.post("/v1/nonces", **case)
            assert answer.status_code == 400, (case, answer.text)
            assert answer.json()["error"]["code"] == "bad_argument", case
        answer = await client.get("/v1/nonces")
        assert answer.status_code == 405

    run_with_api(tmp_path, test)
