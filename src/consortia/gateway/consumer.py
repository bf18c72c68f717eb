"""The consumer's side of a data gateway: sign a request, send it, open the sealed answer.

    consumer = DataConsumer(gateway_url, "bank-1.treasury", signing_key, chain, encryption_key)
    fetched = consumer.fetch("firm-credit", grant=0, params={"firm": "firm-7"})
    fetched.rows, fetched.access, fetched.height

The request is signed with the account's signing key (the one registered on chain), with the
consumer's clock and a fresh nonce (`protocol.py`); the chain checks that signature again when
the gateway logs the access, so no access is logged in this account's name without it. The
answer's parts are opened with the account's encryption private key and checked: every part
answers this very request (its query digest), the parts are all there and in order, and the
answer digest is the one the gateway logged. Given a `node` (a `Client` with a `LightClient`),
it also checks the access record on chain: the transaction the gateway names is proven
committed under a certified header, and it logged this account, this grant, this query digest
and this answer digest (`not_logged` otherwise), so a gateway cannot answer outside the log
unnoticed. A refusal raises `ClientError` with the gateway's code and HTTP status.

Keys stay in the caller's process: this module must never send, log or keep beyond its object
a private key, and never return a row from a part it could not check.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeGuard

import httpx

from consortia.client import ChainInfo, ClientError
from consortia.client.sdk import raise_for, unreachable_error
from consortia.crypto import suite as get_suite
from consortia.errors import ConsortiaError
from consortia.gateway.answer import LABEL, PARTS_MAX, answer_digest
from consortia.gateway.protocol import (
    INT64_MAX,
    DataRequest,
    integer_within,
    new_nonce,
    signed_request,
)
from consortia.privacy.envelope import decode_sealed, open_sealed

TIMEOUT_S_DEFAULT: Final = 120.0  # the gateway waits for the access record's proof


class ProvenReceipts(Protocol):
    """What the consumer asks a node: a transaction's record, its receipt proven (`Client`
    with a `LightClient` is one)."""

    def transaction(self, tx_hash: str, *, verify: bool = False) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Fetched:
    rows: list[dict[str, Any]]
    access: int  # the number of the access record on chain
    height: int  # the height of the block that logged it
    tx_hash: str
    query_digest: str
    answer_digest: str


class DataConsumer:
    """An account fetching shared data from one gateway. Its repr names the account only."""

    __slots__ = ("_chain", "_encryption_key", "_http", "_node", "_signing_key", "account")

    def __init__(
        self,
        gateway_url: str,
        account: str,
        signing_private_key: bytes,
        chain: ChainInfo,
        encryption_private_key: bytes,
        *,
        timeout_s: float = TIMEOUT_S_DEFAULT,
        transport: httpx.BaseTransport | None = None,
        node: ProvenReceipts | None = None,
    ) -> None:
        self.account = account
        self._node = node
        self._chain = chain
        self._signing_key = signing_private_key
        self._encryption_key = encryption_private_key
        self._http = httpx.Client(base_url=gateway_url, timeout=timeout_s, transport=transport)

    def __repr__(self) -> str:
        return f"<data consumer {self.account}>"

    def __enter__(self) -> DataConsumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(
        self, dataset: str, grant: int, params: dict[str, str | int], now_ms: int | None = None
    ) -> DataRequest:
        """A signed request (sent by `fetch`; built alone to test or to send again)."""
        stamp = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        unsigned = DataRequest(self.account, dataset, grant, dict(params), stamp, new_nonce())
        suite = get_suite(self._chain.suite)
        return signed_request(
            suite, self._signing_key, self._chain.chain_id, self._chain.genesis_hash, unsigned
        )

    def send(self, request: DataRequest) -> dict[str, Any]:
        """The gateway's answer to `request`, unopened; ClientError for a refusal."""
        try:
            response = self._http.post("/v1/fetch", json=request.as_json())
        except httpx.HTTPError as error:
            raise unreachable_error(error) from None
        return raise_for(response)

    def fetch(self, dataset: str, grant: int, params: dict[str, str | int]) -> Fetched:
        request = self.request(dataset, grant, params)
        fetched = self.open(request, self.send(request))
        if self._node is not None:
            self.check_logged(request, fetched)
        return fetched

    def check_logged(self, request: DataRequest, fetched: Fetched) -> None:
        """The access record of `fetched`, proven on chain through `node`, is this one."""
        if self._node is None:
            raise ClientError("setup", "checking the log needs a node (DataConsumer(node=))")
        record = self._node.transaction(fetched.tx_hash, verify=True)
        receipt = record["receipt"]
        result = receipt.get("result") if receipt.get("ok") else None
        expected = {
            "n": fetched.access,
            "grant": request.grant,
            "dataset": request.dataset,
            "consumer_account": self.account,
            "query_digest": fetched.query_digest,
            "answer_digest": fetched.answer_digest,
            "rows": len(fetched.rows),
        }
        if not isinstance(result, dict) or any(result.get(k) != v for k, v in expected.items()):
            raise ClientError("not_logged", f"transaction {fetched.tx_hash} is not this access")

    def open(self, request: DataRequest, answer: dict[str, Any]) -> Fetched:
        """The rows of `answer` to `request`, every part opened and checked."""
        suite = get_suite(self._chain.suite)
        digest = request.query_digest(suite, self._chain.chain_id, self._chain.genesis_hash)
        parts = answer.get("parts")
        if not isinstance(parts, list) or not 0 < len(parts) <= PARTS_MAX:
            raise ClientError("bad_answer", "the answer holds no parts")
        if answer.get("query_digest") != digest or answer.get("answer_digest") != answer_digest(
            suite, parts
        ):
            raise ClientError("bad_answer", "the answer's digests are not this request's")
        rows: list[dict[str, Any]] = []
        for index, part in enumerate(parts):
            value = self._open_part(part)
            expected = {
                "dataset": request.dataset,
                "grant": request.grant,
                "query_digest": digest,
                "part": index,
                "parts": len(parts),
            }
            if {key: value.get(key) for key in expected} != expected:
                raise ClientError("bad_answer", f"part {index} answers another request")
            if not isinstance(value.get("rows"), list):
                raise ClientError("bad_answer", f"part {index} holds no rows")
            rows.extend(value["rows"])
        access, height, tx_hash = (answer.get(key) for key in ("access", "height", "tx_hash"))
        if not (_count(access) and _count(height) and isinstance(tx_hash, str) and tx_hash):
            raise ClientError("bad_answer", "the answer does not name its access record")
        return Fetched(rows, access, height, tx_hash, digest, str(answer["answer_digest"]))

    def _open_part(self, part: Any) -> dict[str, Any]:
        suite = get_suite(self._chain.suite)
        try:
            sealed = decode_sealed(part)
            if sealed.label != LABEL:
                raise ClientError("bad_answer", "a part is not a gateway answer")
            value = open_sealed(suite, sealed, self.account, self._encryption_key).value
        except ConsortiaError as error:
            raise ClientError("bad_answer", f"a part does not open: {error.code}") from None
        if not isinstance(value, dict):
            raise ClientError("bad_answer", "a part holds no answer")
        return value


def _count(value: Any) -> TypeGuard[int]:
    """A number a gateway gives (an access number, a height): an integer, never negative."""
    return integer_within(value, 0, INT64_MAX)
