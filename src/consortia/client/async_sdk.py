"""The SDK's asynchronous client (`AsyncClient`: the same API as `sdk.Client`, awaited) and
the chain's streams it follows (`subscribe_blocks`, `subscribe_events`), resumed after a
dropped connection from the last message seen (`Reconnect` says how).

Owns the asynchronous HTTP conversation with a node (httpx). Must never send a private key or
a passphrase anywhere, nor log one.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import httpx
import msgspec

from consortia.client.codec import transaction_to_json
from consortia.client.light import (
    LightClient,
    claimed_epoch,
    decode_certificate,
    header_record,
    receipt_record,
)
from consortia.client.sdk import (
    EXPIRY_AHEAD_DEFAULT,
    MSGPACK,
    NONCES_PER_REQUEST,
    WAIT_S_DEFAULT,
    ChainInfo,
    ClientError,
    Signer,
    TimeoutWaitingError,
    batch_results,
    batches_of,
    need_light,
    poll_pauses,
    raise_for,
    state_path,
    unreachable_error,
)
from consortia.client.sse import StreamFormatError, server_events
from consortia.client.state_reads import verified_account, verified_state


class AsyncClient:
    """A node's API, asynchronously (the same methods, awaited)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        light: LightClient | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout_s, transport=transport)
        self._chain: ChainInfo | None = None
        self.light = light

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _get(self, path: str) -> dict[str, Any]:
        try:
            return raise_for(await self._http.get(path))
        except httpx.HTTPError as error:
            raise unreachable_error(error) from None

    async def status(self) -> dict[str, Any]:
        return await self._get("/v1/status")

    async def chain(self) -> ChainInfo:
        if self._chain is None:
            self._chain = ChainInfo.from_status(await self.status())
        return self._chain

    async def account(self, account_id: str, *, verify: bool = False) -> dict[str, Any]:
        """As `Client.account`."""
        if not verify:
            return await self._get(f"/v1/accounts/{account_id}")
        answer = await self._get(f"/v1/accounts/{account_id}?proof=true")
        await self.follow_epochs(claimed_epoch(answer))
        return verified_account(need_light(self.light), answer, account_id)

    async def nonces(self, account_ids: Sequence[str]) -> dict[str, int | None]:
        """As `Client.nonces`."""
        nonces: dict[str, int | None] = {}
        for chunk in batches_of(account_ids, NONCES_PER_REQUEST):
            try:
                response = await self._http.post("/v1/nonces", json={"accounts": list(chunk)})
            except httpx.HTTPError as error:
                raise unreachable_error(error) from None
            nonces.update(raise_for(response)["nonces"])
        return nonces

    async def state(
        self, contract: str, key: str, height: int | None = None, *, verify: bool = False
    ) -> Any:
        """As `Client.state`."""
        answer = await self._get(state_path(contract, key, height, verify))
        if not verify:
            return answer["value"]
        await self.follow_epochs(claimed_epoch(answer))
        return verified_state(need_light(self.light), answer, contract, key)["value"]

    async def block(self, height: int | None = None) -> dict[str, Any]:
        return await self._get(f"/v1/blocks/{'latest' if height is None else height}")

    async def transaction(self, tx_hash: str, *, verify: bool = False) -> dict[str, Any]:
        """As `Client.transaction`."""
        if not verify:
            return await self._get(f"/v1/tx/{tx_hash}")
        light = need_light(self.light)
        answer = await self._get(f"/v1/tx/{tx_hash}?proof=true")
        await self.follow_epochs(claimed_epoch(answer))
        return receipt_record(*light.verify_receipt(answer, tx_hash))

    async def certificate(self, height: int, *, verify: bool = False) -> dict[str, Any]:
        """As `Client.certificate`."""
        answer = await self._get(f"/v1/blocks/{height}/certificate")
        if not verify:
            return answer
        certificate = decode_certificate(answer.get("encoded"))
        await self.follow_epochs(certificate.header.epoch)
        return header_record(need_light(self.light).verify_certificate(certificate, height))

    async def epoch_proof(self, epoch: int) -> bytes:
        try:
            return bytes.fromhex(str((await self._get(f"/v1/epochs/{epoch}/proof"))["proof"]))
        except (KeyError, ValueError):
            raise ClientError("bad_response", "no epoch proof in the answer") from None

    async def follow_epochs(self, epoch: int) -> None:
        """As `Client.follow_epochs`."""
        light = need_light(self.light)
        for _ in range(light.follow_limit(epoch)):
            ending = light.needs(epoch)
            if ending is None:
                return
            light.learn_epoch(await self.epoch_proof(ending))

    async def submit(self, raw: bytes) -> str:
        try:
            response = await self._http.post("/v1/tx", json=transaction_to_json(raw))
        except httpx.HTTPError as error:
            raise unreachable_error(error) from None
        return str(raise_for(response)["tx_hash"])

    async def submit_many(self, raws: Sequence[bytes]) -> list[dict[str, Any]]:
        """As `Client.submit_many`."""
        results: list[dict[str, Any]] = []
        for chunk in batches_of(raws):
            try:
                response = await self._http.post(
                    "/v1/txs", content=msgspec.msgpack.encode(list(chunk)), headers=MSGPACK
                )
            except httpx.HTTPError as error:
                raise unreachable_error(error) from None
            results.extend(batch_results(response, len(chunk)))
        return results

    async def block_receipts(self, height: int) -> dict[str, Any]:
        return await self._get(f"/v1/blocks/{height}/receipts")

    async def wait(self, tx_hash: str, timeout_s: float = WAIT_S_DEFAULT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        pauses = poll_pauses()
        while True:
            try:
                record = await self.transaction(tx_hash)
                if record["status"] != "pending":
                    return record
            except ClientError as error:
                if error.code != "not_found":
                    raise
            if time.monotonic() > deadline:
                raise TimeoutWaitingError(tx_hash, timeout_s)
            await asyncio.sleep(next(pauses))

    async def call(
        self,
        signer: Signer,
        contract: str,
        method: str,
        args: dict[str, Any] | None = None,
        *,
        nonce: int | None = None,
        wait: bool = False,
        timeout_s: float = WAIT_S_DEFAULT,
    ) -> dict[str, Any]:
        if nonce is None:
            nonce = int((await self.account(signer.account))["nonce"])
        height = int((await self.status())["height"])
        raw = signer.transaction(
            contract, method, args or {}, nonce=nonce, expiry_height=height + EXPIRY_AHEAD_DEFAULT
        )
        tx_hash = await self.submit(raw)
        if not wait:
            return {"tx_hash": tx_hash, "status": "pending"}
        return await self.wait(tx_hash, timeout_s)

    # ------------------------------------------------------------------ subscriptions

    def subscribe_blocks(
        self, from_height: int | None = None, *, retry: Reconnect | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Each committed block's summary (`height`, `hash`, `parent_hash`, `epoch`, `round`,
        `timestamp_ms`, `tx_count`, `state_root`), from `from_height` (default: the next
        block) on, for ever. A dropped connection is resumed after the last block seen,
        without gap or duplicate; ClientError `subscription_lost` once `retry` gives up."""
        params = {} if from_height is None else {"from": str(from_height)}
        return _follow(self._http, "/v1/subscribe/blocks", params, retry or Reconnect())

    def subscribe_events(
        self,
        from_height: int | None = None,
        *,
        contract: str | None = None,
        event: str | None = None,
        account: str | None = None,
        retry: Reconnect | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Each contract event (`height`, `index`, `tx_hash`, `tx_index`, `contract`, `name`,
        `attributes`) matching every filter given, from `from_height` (default: the next
        block) on, for ever; resumed as `subscribe_blocks` is. `account` matches events
        whose account-naming attributes (docs/node.md) name it."""
        params = {"from": from_height, "contract": contract, "event": event, "account": account}
        given = {name: str(value) for name, value in params.items() if value is not None}
        return _follow(self._http, "/v1/subscribe/events", given, retry or Reconnect())


@dataclass(frozen=True, slots=True)
class Reconnect:
    """How a subscription resumes a dropped stream: at most `attempts` reconnections in a
    row (a message received resets the count), waiting `backoff_s`, doubled each time up to
    `backoff_s_max`. `read_timeout_s` without a byte (the node sends a keep-alive every
    15 s) counts as a dropped connection."""

    attempts: int = 8
    backoff_s: float = 0.25
    backoff_s_max: float = 8.0
    read_timeout_s: float = 45.0


# Answers after which a subscription tries again; any other refusal is final.
_RETRYABLE: Final = frozenset({502, 503, 504})


async def _follow(
    http: httpx.AsyncClient, path: str, params: dict[str, str], retry: Reconnect
) -> AsyncIterator[dict[str, Any]]:
    last_id: str | None = None
    failures = 0
    timeout = httpx.Timeout(http.timeout.connect, read=retry.read_timeout_s)
    if "from" not in params:  # pin "the next block" now, so a reconnection leaves no gap
        try:
            height = int(raise_for(await http.get("/v1/status"))["height"])
        except httpx.HTTPError as error:
            raise unreachable_error(error) from None
        params = {**params, "from": str(height + 1)}
    while True:
        headers = {"accept": "text/event-stream"}
        if last_id is not None:
            headers["last-event-id"] = last_id
        try:
            async with http.stream(
                "GET", path, params=params, headers=headers, timeout=timeout
            ) as response:
                if response.status_code != 200:
                    await response.aread()
                    if response.status_code not in _RETRYABLE:
                        raise_for(response)
                    cause = f"{response.status_code} {response.text[:200]}"
                else:
                    async for message in server_events(response.aiter_lines()):
                        data = json.loads(message.data)
                        last_id = message.id if message.id is not None else last_id
                        failures = 0
                        yield data
                    cause = "the node ended the stream"
        except (httpx.HTTPError, StreamFormatError, ValueError) as error:
            cause = f"{type(error).__name__}: {error}".rstrip(": ")
        failures += 1
        if failures > retry.attempts:
            resume = f"; resume after id {last_id}" if last_id is not None else ""
            raise ClientError(
                "subscription_lost",
                f"{path}: gave up after {retry.attempts} reconnections ({cause}){resume}",
            )
        await asyncio.sleep(min(retry.backoff_s * 2 ** (failures - 1), retry.backoff_s_max))
