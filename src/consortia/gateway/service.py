"""The fetch pipeline of the data gateway and its HTTP face (Starlette).

`Gateway.fetch` takes a request's JSON and either answers or refuses (`RefusedError`), in this
order, each step before the next:

1. the request parses within its bounds, names a dataset this gateway serves and brings
   exactly that dataset's parameters;
2. its clock is within the freshness window of the gateway's;
3. the consumer's account is read from the chain (certified) and the signature verifies
   under its registered signing key; only then is the nonce remembered (a replay is refused);
4. the grant and its dataset are read from the chain (certified): the grant is for this
   dataset, its consumer is the account's member, this gateway is one of the dataset's
   gateways, and the grant is live (`datashare_state.grant_problem`, at the height after the
   certified one and the gateway's clock);
5. the consumer's encryption key and the escrow key are found (`keys.KeyDirectory`);
6. the query runs, read-only; the rows are sealed (`answer.py`);
7. the access is logged on chain (`datashare.log_access`: the chain checks the grant again,
   at the block that records it, and the consumer's signature under the key the account
   holds then, from the request's parameter digest, clock, nonce and signature, never its
   parameters) and its receipt proven; a refusal there is the answer;
8. only then the sealed parts go back, with the access record's number and height.

One fetch runs at a time (the replay window and the gateway account's nonces are shared).
The HTTP app: `POST /v1/fetch` (JSON, at most 16 KiB), `GET /v1/health`.

Must never log a row, a parameter, a key or the DSN (logs name the dataset, the grant, the
consumer account, the row count and the access number), and never answer before step 7.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import structlog
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from consortia.crypto import suite as get_suite
from consortia.execution.contracts import datashare_state, identity_state
from consortia.gateway.answer import seal_answer
from consortia.gateway.chain import ChainAccess
from consortia.gateway.database import DatasetQuery
from consortia.gateway.errors import (
    BAD_REQUEST,
    BUSY,
    FORBIDDEN,
    NOT_FOUND,
    TOO_LARGE,
    UNAUTHORISED,
    RefusedError,
)
from consortia.gateway.keys import KeyDirectory
from consortia.gateway.protocol import DataRequest, ReplayWindow, parse_request, verify_signature

BODY_BYTES_MAX: Final = 16 * 1024


class RowSource(Protocol):
    def fetch(self, query: DatasetQuery, params: dict[str, str | int]) -> list[dict[str, Any]]:
        """The query's rows (RefusedError when it cannot run)."""
        ...


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class Gateway:
    suite_name: str
    chain: ChainAccess
    keys: KeyDirectory
    rows: RowSource
    queries: dict[str, DatasetQuery]
    clock_ms: Callable[[], int] = wall_clock_ms
    window: ReplayWindow = field(default_factory=ReplayWindow)
    log: Any = field(default_factory=lambda: structlog.get_logger("consortia.gateway"))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fetch(self, body: Any) -> dict[str, Any]:
        request = parse_request(body)
        with self._lock:
            try:
                answer = self._fetch(request)
            except RefusedError as refusal:
                self.log.info(
                    "fetch refused",
                    code=refusal.code,
                    dataset=request.dataset,
                    grant=request.grant,
                    consumer=request.consumer,
                )
                raise
        self.log.info(
            "access logged",
            dataset=request.dataset,
            grant=request.grant,
            consumer=request.consumer,
            rows=answer["rows"],
            access=answer["access"],
            height=answer["height"],
        )
        return answer

    def _fetch(self, request: DataRequest) -> dict[str, Any]:
        suite = get_suite(self.suite_name)
        query = self.queries.get(request.dataset)
        if query is None:
            raise RefusedError(
                "unknown_dataset", f"{request.dataset} is not served here", NOT_FOUND
            )
        params = query.bind(request.params)
        now_ms = self.clock_ms()
        self._fresh(request, now_ms)
        account = self._consumer_account(request)
        public_key = bytes.fromhex(str(account["public_key"]))
        verify_signature(suite, public_key, self.chain.chain_id, self.chain.genesis_hash, request)
        self.window.admit(request, now_ms)
        grant, dataset, height = self._live_grant(request, account, now_ms)
        consumer_key = self.keys.encryption_key(request.consumer)
        if consumer_key is None:
            raise RefusedError("no_encryption_key", f"{request.consumer} has no encryption key")
        escrow = self.keys.escrow_key()
        if escrow is None:
            raise RefusedError("no_escrow_key", "the regulator's escrow key is not known", BUSY)
        query_digest = request.query_digest(suite, self.chain.chain_id, self.chain.genesis_hash)
        rows = self.rows.fetch(query, params)
        header = {"dataset": dataset["id"], "grant": grant["n"], "query_digest": query_digest}
        sealed = seal_answer(suite, header, rows, (request.consumer, consumer_key), escrow)
        receipt = self.chain.log_access(
            {
                "grant": grant["n"],
                "consumer_account": request.consumer,
                "query_digest": query_digest,
                "answer_digest": sealed.digest,
                "rows": len(rows),
                **request.chain_fields(suite),
            }
        )
        outcome = receipt["receipt"]
        if not outcome["ok"]:
            raise RefusedError(str(outcome["code"]), str(outcome["message"]), FORBIDDEN)
        access = outcome["result"]
        return {
            "access": access["n"],
            "height": receipt["height"],
            "tx_hash": receipt["tx_hash"],
            "certified_height": height,
            "query_digest": query_digest,
            "answer_digest": sealed.digest,
            "rows": len(rows),
            "parts": sealed.parts,
        }

    def _fresh(self, request: DataRequest, now_ms: int) -> None:
        if abs(now_ms - request.timestamp_ms) > self.window.freshness_ms:
            raise RefusedError(
                "stale_request",
                f"the request's clock is more than {self.window.freshness_ms} ms from the"
                " gateway's",
                BAD_REQUEST,
            )

    def _consumer_account(self, request: DataRequest) -> dict[str, Any]:
        record = self.chain.read(
            identity_state.CONTRACT, identity_state.account_key(request.consumer)
        )
        account = record.value
        if not isinstance(account, dict):
            raise RefusedError("unknown_account", f"no account {request.consumer!r}", UNAUTHORISED)
        if account.get("kind", identity_state.INSTITUTION) != identity_state.INSTITUTION:
            raise RefusedError(
                "not_consumer", f"{request.consumer} is no institution account", UNAUTHORISED
            )
        if identity_state.effective_status(account, record.height + 1) != identity_state.ACTIVE:
            raise RefusedError(
                "account_inactive", f"{request.consumer} is not active", UNAUTHORISED
            )
        return account

    def _live_grant(
        self, request: DataRequest, account: dict[str, Any], now_ms: int
    ) -> tuple[dict[str, Any], dict[str, Any], int]:
        """The grant and its dataset, certified, when they let this consumer fetch now."""
        read = self.chain.read(datashare_state.CONTRACT, datashare_state.grant_key(request.grant))
        grant = read.value
        if not isinstance(grant, dict):
            raise RefusedError("unknown_grant", f"no grant {request.grant}", FORBIDDEN)
        if grant["dataset"] != request.dataset:
            raise RefusedError("wrong_dataset", f"grant {request.grant} is for another dataset")
        if grant["consumer"] != account.get("sponsor"):
            raise RefusedError(
                "not_consumer", f"{request.consumer} does not act for the grant's consumer"
            )
        dataset = self.chain.read(
            datashare_state.CONTRACT, datashare_state.dataset_key(request.dataset)
        ).value
        if not isinstance(dataset, dict):
            raise RefusedError(
                "unknown_dataset", f"no dataset {request.dataset} on chain", NOT_FOUND
            )
        if self.chain.account not in dataset["gateways"]:
            raise RefusedError(
                "not_gateway", f"this gateway no longer serves {request.dataset}", BUSY
            )
        # The next block is the earliest that can log the access.
        problem = datashare_state.grant_problem(grant, dataset, read.height + 1, now_ms)
        if problem is not None:
            raise RefusedError(*problem, FORBIDDEN)
        return grant, dataset, read.height


def create_app(gateway: Gateway) -> Starlette:
    """`POST /v1/fetch` and `GET /v1/health` over `gateway`."""

    async def fetch(request: Request) -> Response:
        body = await _body(request)
        if isinstance(body, Response):
            return body
        try:
            # The pipeline blocks on the chain and the database: run it off the event loop.
            answer = await run_in_threadpool(gateway.fetch, body)
        except RefusedError as refusal:
            return JSONResponse({"error": refusal.as_dict()}, status_code=refusal.status)
        return JSONResponse(answer)

    async def health(request: Request) -> Response:
        del request
        return JSONResponse(
            {"status": "ok", "account": gateway.chain.account, "datasets": sorted(gateway.queries)}
        )

    return Starlette(
        routes=[
            Route("/v1/fetch", fetch, methods=["POST"]),
            Route("/v1/health", health, methods=["GET"]),
        ]
    )


async def _body(request: Request) -> Any:
    """The request's JSON, or the error response (too large, not JSON)."""
    data = b""
    async for chunk in request.stream():
        data += chunk
        if len(data) > BODY_BYTES_MAX:
            refusal = RefusedError(
                "too_large", f"a request is at most {BODY_BYTES_MAX} bytes", TOO_LARGE
            )
            return JSONResponse({"error": refusal.as_dict()}, status_code=refusal.status)
    try:
        return json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: arrays or maps nested too deep
        refusal = RefusedError("bad_request", "the body is not JSON", BAD_REQUEST)
        return JSONResponse({"error": refusal.as_dict()}, status_code=refusal.status)
