"""The SDK's synchronous client (`Client`) and what both clients share: errors, the chain's
identity (`ChainInfo`), signing with a caller-held key (`Signer`), answers and batches.

Owns the HTTP conversation with a node (httpx) and waiting for commits by polling with a
bounded back-off. The asynchronous client, with the chain's streams, is `async_sdk.py` (the
same API). Must never send a private key or a passphrase anywhere, nor log one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from consortia.client.codec import transaction_to_json
from consortia.client.light import (
    LightClient,
    VerificationError,
    claimed_epoch,
    decode_certificate,
    header_record,
    receipt_record,
)
from consortia.client.state_reads import verified_account, verified_state
from consortia.crypto import suite as get_suite
from consortia.types.encoding import decode, encode
from consortia.types.signing import SigningDomain, sign, transaction_id
from consortia.types.transaction import Transaction, TransactionBody

# How far ahead of the node's height a transaction's expiry is set by default.
EXPIRY_AHEAD_DEFAULT: Final = 1000
WAIT_S_DEFAULT: Final = 30.0
POLL_S_MIN: Final = 0.02
POLL_S_MAX: Final = 0.5
# The most transactions one POST /v1/txs carries (the node refuses more with 413);
# `submit_many` splits longer lists into requests of at most this many.
BATCH_TRANSACTIONS_MAX: Final = 2000
NONCES_PER_REQUEST: Final = 1000  # accounts a POST /v1/nonces asks about (the node's limit)
T = TypeVar("T")
MSGPACK: Final = {"content-type": "application/msgpack"}


def poll_pauses(first_s: float = POLL_S_MIN, most_s: float = POLL_S_MAX) -> Iterator[float]:
    """The pauses between the polls of a wait (the SDK's, the asynchronous SDK's and the data
    gateway's): `first_s`, then doubling, never more than `most_s`."""
    pause = first_s
    while True:
        yield pause
        pause = min(pause * 2, most_s)


class ClientError(Exception):
    """The node refused, or could not be reached: `code` is the node's stable code."""

    def __init__(self, code: str, message: str, status: int = 0) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status = code, message, status


class TimeoutWaitingError(ClientError):
    def __init__(self, tx_hash: str, seconds: float) -> None:
        super().__init__("timeout", f"{tx_hash} not committed within {seconds} s")


@dataclass(frozen=True, slots=True)
class ChainInfo:
    """What signing needs to know about the chain, as the node reports it."""

    chain_id: str
    suite: str
    genesis_hash: bytes
    contract_versions: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_status(cls, status: dict[str, Any]) -> ChainInfo:
        return cls(
            chain_id=status["chain_id"],
            suite=status["suite"],
            genesis_hash=bytes.fromhex(status["genesis_hash"]),
            contract_versions={
                name: int(entry["active_version"])
                for name, entry in status.get("contracts", {}).items()
                if entry.get("active_version") is not None
            },
        )


class Signer:
    """An account and its private key, held in memory by the caller, and the chain it signs
    for. Its repr names the account only."""

    __slots__ = ("_domain", "_key", "_suite", "account", "chain", "public_key")

    def __init__(self, account: str, private_key: bytes, chain: ChainInfo) -> None:
        self.account = account
        self.chain = chain
        self._suite = get_suite(chain.suite)
        self._domain = SigningDomain(chain.genesis_hash)
        self._key = self._suite.signing_key(private_key)  # expanded once, not per signature
        self.public_key = self._key.public_key

    @classmethod
    def from_private_key(cls, account: str, private_key: bytes, chain: ChainInfo) -> Signer:
        return cls(account, private_key, chain)

    def __repr__(self) -> str:
        return f"<signer {self.account}>"

    def transaction(
        self,
        contract: str,
        method: str,
        args: dict[str, Any],
        *,
        nonce: int,
        expiry_height: int,
        contract_version: int | None = None,
    ) -> bytes:
        """The canonical bytes of a signed transaction."""
        return self.signed(
            contract,
            method,
            args,
            nonce=nonce,
            expiry_height=expiry_height,
            contract_version=contract_version,
        )[0]

    def signed(
        self,
        contract: str,
        method: str,
        args: dict[str, Any],
        *,
        nonce: int,
        expiry_height: int,
        contract_version: int | None = None,
    ) -> tuple[bytes, str]:
        """The canonical bytes of a signed transaction and the hash the node will give it."""
        version = contract_version or self.chain.contract_versions.get(contract, 1)
        body = TransactionBody(
            self.chain.chain_id,
            self.account,
            self.public_key,
            nonce,
            contract,
            version,
            method,
            args,
            expiry_height,
        )
        raw = encode(Transaction(body, sign(self._suite, self._key, body, self._domain)))
        return raw, transaction_id(self._suite, body).hex()


def unreachable_error(error: httpx.HTTPError) -> ClientError:
    """No answer from the node: the kind of failure (ConnectError, ReadTimeout, ...) and its
    text, which httpx leaves empty for some."""
    return ClientError("unreachable", f"{type(error).__name__}: {error}".rstrip(": "))


def raise_for(response: httpx.Response) -> dict[str, Any]:
    try:
        payload = response.json()
    except ValueError:
        raise ClientError("bad_response", response.text[:200], response.status_code) from None
    if response.status_code >= 400:
        error = payload.get("error", {}) if isinstance(payload, dict) else {}
        raise ClientError(
            str(error.get("code", "http_error")),
            str(error.get("message", "")),
            response.status_code,
        )
    assert isinstance(payload, dict)
    return payload


def batch_results(response: httpx.Response, expected: int) -> list[dict[str, Any]]:
    results = raise_for(response).get("results")
    if not isinstance(results, list) or len(results) != expected:
        raise ClientError("bad_response", "not one result per transaction", response.status_code)
    return results


def batches_of(items: Sequence[T], size: int = BATCH_TRANSACTIONS_MAX) -> list[Sequence[T]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def state_path(contract: str, key: str, height: int | None, proof: bool) -> str:
    query = [f"height={height}"] if height is not None else []
    query += ["proof=true"] if proof else []
    path = f"/v1/state/{quote(contract, safe='')}/{quote(key, safe='/')}"  # ids hold '#'
    return path + ("?" + "&".join(query) if query else "")


def need_light(light: LightClient | None) -> LightClient:
    if light is None:
        raise VerificationError("setup", "verifying needs a LightClient (Client(..., light=))")
    return light


def tx_hash_of(raw: bytes, suite_name: str) -> str:
    """The id the node gives a signed transaction (its body's hash), before submitting."""
    return transaction_id(get_suite(suite_name), decode(raw, Transaction).body).hex()


class Client:
    """A node's API, synchronously."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        light: LightClient | None = None,
    ) -> None:
        self._http = httpx.Client(base_url=base_url, timeout=timeout_s, transport=transport)
        self._chain: ChainInfo | None = None
        # Validator sets proven from the genesis: what `verify=True` checks answers against.
        self.light = light

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _get(self, path: str) -> dict[str, Any]:
        try:
            return raise_for(self._http.get(path))
        except httpx.HTTPError as error:
            raise unreachable_error(error) from None

    def status(self) -> dict[str, Any]:
        return self._get("/v1/status")

    def chain(self) -> ChainInfo:
        if self._chain is None:
            self._chain = ChainInfo.from_status(self.status())
        return self._chain

    def account(self, account_id: str, *, verify: bool = False) -> dict[str, Any]:
        """The account's record and balances. With `verify`, only as proven under the state
        root of a certified execution header (VerificationError otherwise)."""
        if not verify:
            return self._get(f"/v1/accounts/{account_id}")
        answer = self._get(f"/v1/accounts/{account_id}?proof=true")
        self.follow_epochs(claimed_epoch(answer))
        return verified_account(need_light(self.light), answer, account_id)

    def nonces(self, account_ids: Sequence[str]) -> dict[str, int | None]:
        """The next nonce of each account (None: no such account), at the node's latest
        committed height; asked NONCES_PER_REQUEST accounts a request."""
        nonces: dict[str, int | None] = {}
        for chunk in batches_of(account_ids, NONCES_PER_REQUEST):
            try:
                answer = raise_for(self._http.post("/v1/nonces", json={"accounts": list(chunk)}))
            except httpx.HTTPError as error:
                raise unreachable_error(error) from None
            nonces.update(answer["nonces"])
        return nonces

    def block(self, height: int | None = None) -> dict[str, Any]:
        return self._get(f"/v1/blocks/{'latest' if height is None else height}")

    def state(
        self, contract: str, key: str, height: int | None = None, *, verify: bool = False
    ) -> Any:
        """A state value. With `verify`, only as proven (its absence included) under the
        state root of a certified execution header (VerificationError otherwise)."""
        return self.state_answer(contract, key, height, verify=verify)["value"]

    def state_answer(
        self, contract: str, key: str, height: int | None = None, *, verify: bool = False
    ) -> dict[str, Any]:
        """A state value with the height it was read at: `{"contract", "key", "height",
        "value", "verified"}`; with `verify`, only as proven (its absence included) under
        the state root of a certified execution header, which comes as `header`."""
        answer = self._get(state_path(contract, key, height, verify))
        if not verify:
            return {**answer, "verified": False}
        self.follow_epochs(claimed_epoch(answer))
        return verified_state(need_light(self.light), answer, contract, key)

    def transaction(self, tx_hash: str, *, verify: bool = False) -> dict[str, Any]:
        """The transaction's record. With `verify`, only a committed one whose receipt is
        proven against an execution header certified by its epoch's validators (learnt from
        the genesis on, through this client's `light`), built from the proven receipt;
        VerificationError (code verification_failed) when a check fails, ClientError
        not_certified or not_committed while there is no proof yet."""
        if not verify:
            return self._get(f"/v1/tx/{tx_hash}")
        return self.check_transaction(self.transaction_proof(tx_hash), tx_hash)

    def transaction_proof(self, tx_hash: str) -> dict[str, Any]:
        """The node's answer with the receipt's proof (`GET /v1/tx/{hash}?proof=true`),
        unchecked: its `proof` holds the canonical receipt, its proof against the receipts
        root and the execution certificate (hex), which anyone can check again later.
        ClientError not_certified or not_committed while there is no proof yet."""
        return self._get(f"/v1/tx/{tx_hash}?proof=true")

    def check_transaction(self, answer: dict[str, Any], tx_hash: str) -> dict[str, Any]:
        """The record of `transaction(tx_hash, verify=True)` from a `transaction_proof`
        answer, once its receipt is proven against a certified header (VerificationError
        otherwise)."""
        light = need_light(self.light)
        self.follow_epochs(claimed_epoch(answer))
        return receipt_record(*light.verify_receipt(answer, tx_hash))

    def certificate(self, height: int, *, verify: bool = False) -> dict[str, Any]:
        """The execution certificate of block `height` (404 not_certified until there is
        one); with `verify`, the header it certifies, once checked."""
        answer = self._get(f"/v1/blocks/{height}/certificate")
        if not verify:
            return answer
        certificate = decode_certificate(answer.get("encoded"))
        self.follow_epochs(certificate.header.epoch)
        return header_record(need_light(self.light).verify_certificate(certificate, height))

    def epoch_proof(self, epoch: int) -> bytes:
        """The canonical encoding of the proof that `epoch` ended (checked by `light`)."""
        try:
            return bytes.fromhex(str(self._get(f"/v1/epochs/{epoch}/proof")["proof"]))
        except (KeyError, ValueError):
            raise ClientError("bad_response", "no epoch proof in the answer") from None

    def follow_epochs(self, epoch: int) -> None:
        """Learn validator sets up to `epoch`, each from the proof the previous one ended
        (one proof a step, a bounded number of steps)."""
        light = need_light(self.light)
        for _ in range(light.follow_limit(epoch)):
            ending = light.needs(epoch)
            if ending is None:
                return
            light.learn_epoch(self.epoch_proof(ending))

    def submit(self, raw: bytes) -> str:
        try:
            response = self._http.post("/v1/tx", json=transaction_to_json(raw))
        except httpx.HTTPError as error:
            raise unreachable_error(error) from None
        return str(raise_for(response)["tx_hash"])

    def submit_many(self, raws: Sequence[bytes]) -> list[dict[str, Any]]:
        """Submit signed transactions in batches (POST /v1/txs, binary); one result per
        transaction, in order: `{"tx_hash": ..., "status": "pending"}` when admitted, else
        `{"error": {"code": ..., "message": ...}}`."""
        results: list[dict[str, Any]] = []
        for chunk in batches_of(raws):
            try:
                response = self._http.post(
                    "/v1/txs", content=msgspec.msgpack.encode(list(chunk)), headers=MSGPACK
                )
            except httpx.HTTPError as error:
                raise unreachable_error(error) from None
            results.extend(batch_results(response, len(chunk)))
        return results

    def block_receipts(self, height: int) -> dict[str, Any]:
        """The outcome of every transaction in the committed block at `height`."""
        return self._get(f"/v1/blocks/{height}/receipts")

    def view(self, raw: bytes, height: int | None = None) -> dict[str, Any]:
        suffix = "" if height is None else f"?height={height}"
        try:
            response = self._http.post(f"/v1/views{suffix}", json=transaction_to_json(raw))
        except httpx.HTTPError as error:
            raise unreachable_error(error) from None
        return raise_for(response)

    def wait(self, tx_hash: str, timeout_s: float = WAIT_S_DEFAULT) -> dict[str, Any]:
        """The transaction's record once committed (or failed), polling with back-off."""
        deadline = time.monotonic() + timeout_s
        pauses = poll_pauses()
        while True:
            try:
                record = self.transaction(tx_hash)
                if record["status"] != "pending":
                    return record
            except ClientError as error:
                if error.code != "not_found":
                    raise
            if time.monotonic() > deadline:
                raise TimeoutWaitingError(tx_hash, timeout_s)
            time.sleep(next(pauses))

    def call(
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
        """Sign and submit a call; with `wait`, its committed record (receipt included)."""
        if nonce is None:
            nonce = int(self.account(signer.account)["nonce"])
        height = int(self.status()["height"])
        raw = signer.transaction(
            contract, method, args or {}, nonce=nonce, expiry_height=height + EXPIRY_AHEAD_DEFAULT
        )
        tx_hash = self.submit(raw)
        if not wait:
            return {"tx_hash": tx_hash, "status": "pending"}
        return self.wait(tx_hash, timeout_s)
