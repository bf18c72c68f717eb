"""The node's HTTP API: JSON routes over `NodeService`, an OpenAPI document, Prometheus metrics.

Every client mistake is a 4xx with the body `{"error": {"code": "...", "message": "..."}}`;
"mempool_full" is a 503 with Retry-After (the node's problem, not the client's); a body over
the limit is refused with 413 before it is read whole. `202 pending` is answered only once the
transaction is in the node's journal (node/journal.py): it survives a crash of this node; when
that write fails the answer is 503 `journal_failed` and the node stops. Signed transactions
and signed read requests come as JSON (`{"body": {...}, "signature": "<hex>"}`, keys and
signatures in hex) or in their canonical binary encoding (`Content-Type: application/msgpack`).

`POST /v1/txs` takes up to BATCH_TRANSACTIONS_MAX transactions at once (a JSON array of the
objects `POST /v1/tx` takes, or a msgpack array of canonical encodings) and admits them in one
mempool call; it answers 200 with one result per transaction, in order, each either
`{"tx_hash", "status": "pending"}` or `{"error": {"code", "message"}}` (with `tx_hash` when the
node could name the transaction). A body that is no array is 400 `malformed_batch`; too many
transactions or too many bytes is 413 (`too_many_transactions`, `too_large`).

Proofs (docs/node.md, *Execution certificates*): `GET /v1/blocks/{height}/certificate` is 404
`not_certified` until the node holds the block's execution certificate; `GET
/v1/tx/{hash}?proof=true` is 409 `not_committed` or `not_certified` until it can prove the
receipt; `GET /v1/epochs/{epoch}/proof` serves the proofs light clients follow epochs with.
`GET /v1/subscribe/blocks` and `GET /v1/subscribe/events` are server-sent event streams that
follow the chain (api/streams.py holds them; this module only registers their routes).

Owns routing and the mapping between HTTP and the node's values. Must never change node state
but through `NodeService.submit` and `submit_many`, and never log a request body.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from consortia.api.openapi import openapi_document
from consortia.api.streams import KEEPALIVE_S, is_decimal, subscription_routes
from consortia.errors import DecodeError
from consortia.node.service import (
    HEX_ID_LENGTH,
    JournalFailedError,
    NodeService,
    NotFoundError,
    NotReadyError,
)
from consortia.types.encoding import decode, encode
from consortia.types.state_proof import HeightUnavailableError
from consortia.types.transaction import Transaction, TransactionBody

BODY_BYTES_MAX: Final = 128 * 1024
# POST /v1/txs: at most this many transactions, in a body of at most this many bytes.
BATCH_TRANSACTIONS_MAX: Final = 2000
BATCH_BODY_BYTES_MAX: Final = 8 * 1024 * 1024
# Accounts one POST /v1/nonces asks about, and the longest account id it takes.
NONCES_ACCOUNTS_MAX: Final = 1000
NONCES_ACCOUNT_ID_MAX: Final = 128
BINARY_TYPES: Final = ("application/msgpack", "application/octet-stream")
# Admission refusals that are not plain bad requests.
_STATUS_OF_CODE: Final = {
    "too_large": 413,
    "duplicate": 409,
    "nonce_taken": 409,
    "mempool_full": 503,
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(status: int, code: str, message: str) -> JSONResponse:
    headers = {"Retry-After": "1"} if status == 503 else None
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


class _Signed(msgspec.Struct, forbid_unknown_fields=True):
    body: dict[str, Any]
    signature: str


async def _read_body(request: Request, limit: int = BODY_BYTES_MAX) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not is_decimal(declared) or int(declared) > limit):
        raise ApiError(413, "too_large", f"the body is limited to {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "too_large", f"the body is limited to {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _content_type(request: Request) -> str:
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip()
    if content_type not in (*BINARY_TYPES, "application/json"):
        raise ApiError(415, "unsupported_media_type", f"send JSON or {BINARY_TYPES[0]}")
    return content_type


async def signed_transaction(request: Request) -> bytes:
    """The canonical bytes of the signed transaction (or read request) in the body."""
    data = await _read_body(request)
    if _content_type(request) in BINARY_TYPES:
        return data
    return _from_json(data)


def _from_json(data: bytes | msgspec.Raw) -> bytes:
    """The canonical bytes of one signed transaction in its JSON form; ApiError 400
    malformed_transaction when it is none."""
    try:
        signed = msgspec.json.decode(data, type=_Signed)
        body = dict(signed.body)
        body["public_key"] = bytes.fromhex(str(body.get("public_key", "")))
        # The constructor takes the fields as they are; decoding the canonical encoding
        # below applies every type and bound, exactly as for a binary submission.
        transaction = Transaction(
            body=TransactionBody(**body), signature=bytes.fromhex(signed.signature)
        )
        raw = encode(transaction)
        decode(raw, Transaction)  # the same checks a binary submission meets
    except (
        msgspec.DecodeError,
        msgspec.ValidationError,
        ValueError,
        TypeError,
        DecodeError,
    ) as error:
        raise ApiError(400, "malformed_transaction", _short(error)) from None
    return raw


_BatchItem = bytes | ApiError


async def signed_batch(request: Request) -> list[_BatchItem]:
    """The transactions of a POST /v1/txs body, in order: a JSON array of signed transactions
    in their JSON form, or a msgpack array of their canonical encodings. An item that is no
    signed transaction in JSON form is its ApiError (answered in its place); a body that is no
    array, or holds too many, is refused whole."""
    data = await _read_body(request, BATCH_BODY_BYTES_MAX)
    binary = _content_type(request) in BINARY_TYPES
    try:
        items: list[Any] = (
            msgspec.msgpack.decode(data, type=list[bytes])
            if binary
            else msgspec.json.decode(data, type=list[msgspec.Raw])
        )
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise ApiError(400, "malformed_batch", _short(error)) from None
    if len(items) > BATCH_TRANSACTIONS_MAX:
        raise ApiError(
            413, "too_many_transactions", f"at most {BATCH_TRANSACTIONS_MAX} transactions a batch"
        )
    if binary:
        return list(items)
    parsed: list[_BatchItem] = []
    for item in items:
        try:
            parsed.append(_from_json(item))
        except ApiError as error:
            parsed.append(error)
    return parsed


class _NonceQuery(msgspec.Struct, forbid_unknown_fields=True):
    accounts: list[str]


async def nonce_query(request: Request) -> list[str]:
    """The accounts of a POST /v1/nonces body: {"accounts": [id, ...]}, 1 to
    NONCES_ACCOUNTS_MAX ids of at most NONCES_ACCOUNT_ID_MAX characters each."""
    try:
        query = msgspec.json.decode(await _read_body(request), type=_NonceQuery)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise ApiError(400, "bad_argument", _short(error)) from None
    accounts = query.accounts
    if not 1 <= len(accounts) <= NONCES_ACCOUNTS_MAX:
        raise ApiError(400, "bad_argument", f"1 to {NONCES_ACCOUNTS_MAX} accounts a request")
    if any(not 1 <= len(account) <= NONCES_ACCOUNT_ID_MAX for account in accounts):
        raise ApiError(400, "bad_argument", f"account ids are 1 to {NONCES_ACCOUNT_ID_MAX} long")
    return accounts


def _short(error: Exception) -> str:
    return str(error).splitlines()[0][:300] if str(error) else type(error).__name__


def _hex_id(value: str) -> bytes:
    if len(value) != HEX_ID_LENGTH:
        raise ApiError(400, "bad_argument", f"expected {HEX_ID_LENGTH} hex digits")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise ApiError(400, "bad_argument", "not hex") from None


def _height(request: Request, name: str = "height") -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if not is_decimal(raw):
        raise ApiError(400, "bad_argument", f"{name} must be a non-negative integer")
    return int(raw)


def _path_int(request: Request, name: str) -> int:
    raw = request.path_params[name]
    if not is_decimal(raw):
        raise ApiError(400, "bad_argument", f"{name} must be a non-negative integer")
    return int(raw)


def _flag(request: Request, name: str) -> bool:
    raw = request.query_params.get(name, "false")
    if raw not in ("true", "false"):
        raise ApiError(400, "bad_argument", f"{name} is true or false")
    return raw == "true"


async def _api_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ApiError)
    return error_response(error.status, error.code, error.message)


async def _not_found(request: Request, error: Exception) -> Response:
    return error_response(404, "not_found", str(error))


async def _not_ready(request: Request, error: Exception) -> Response:
    assert isinstance(error, NotReadyError)
    return error_response(error.status, error.code, str(error))


async def _journal_failed(request: Request, error: Exception) -> Response:
    return error_response(503, "journal_failed", str(error))


async def _gone(request: Request, error: Exception) -> Response:
    assert isinstance(error, HeightUnavailableError)
    return error_response(410, error.code, str(error))


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "bad_request")
    return error_response(error.status_code, code, str(error.detail))


Handler = Callable[[Request], Awaitable[Response]]


def create_app(
    service: NodeService,
    registry: CollectorRegistry | None = None,
    *,
    keepalive_s: float = KEEPALIVE_S,
) -> Starlette:
    async def submit(request: Request) -> Response:
        admission = await service.submit(await signed_transaction(request))
        if not admission.ok:
            status = _STATUS_OF_CODE.get(admission.code, 400)
            return error_response(status, admission.code, admission.message)
        return JSONResponse({"tx_hash": admission.tx_id.hex(), "status": "pending"}, 202)

    async def submit_batch(request: Request) -> Response:
        items = await signed_batch(request)
        raws = [item for item in items if isinstance(item, bytes)]
        admissions = iter(await service.submit_many(raws))
        results: list[dict[str, Any]] = []
        for item in items:
            if isinstance(item, ApiError):
                results.append({"error": {"code": item.code, "message": item.message}})
                continue
            admission = next(admissions)
            if admission.ok:
                results.append({"tx_hash": admission.tx_id.hex(), "status": "pending"})
            else:
                refused: dict[str, Any] = {
                    "error": {"code": admission.code, "message": admission.message}
                }
                if admission.tx_id:
                    refused["tx_hash"] = admission.tx_id.hex()
                results.append(refused)
        return JSONResponse({"results": results})

    async def transaction(request: Request) -> Response:
        tx_id = _hex_id(request.path_params["tx_hash"])
        if _flag(request, "proof"):
            return JSONResponse(service.transaction_proof(tx_id))
        return JSONResponse(service.transaction(tx_id))

    async def certificate(request: Request) -> Response:
        return JSONResponse(service.certificate_view(_path_int(request, "height")))

    async def epoch_proof(request: Request) -> Response:
        return JSONResponse(service.epoch_proof(_path_int(request, "epoch")))

    async def view(request: Request) -> Response:
        height = _height(request)
        return JSONResponse(service.view(await signed_transaction(request), height))

    async def block(request: Request) -> Response:
        raw, encoded = request.path_params["height"], _flag(request, "encoded")
        if raw == "latest":
            return JSONResponse(service.block(None, encoded=encoded))
        if not is_decimal(raw):
            raise ApiError(400, "bad_argument", "a block is named by its height or 'latest'")
        return JSONResponse(service.block(int(raw), encoded=encoded))

    async def block_receipts(request: Request) -> Response:
        raw = request.path_params["height"]
        if not is_decimal(raw):
            raise ApiError(400, "bad_argument", "a block is named by its height")
        return JSONResponse(service.block_receipts(int(raw)))

    async def status(request: Request) -> Response:
        return JSONResponse(service.status())

    async def nonces(request: Request) -> Response:
        return JSONResponse(service.nonces(await nonce_query(request)))

    async def account(request: Request) -> Response:
        proof = _flag(request, "proof")
        return JSONResponse(service.account(request.path_params["account_id"], proof=proof))

    async def state(request: Request) -> Response:
        params, proof = request.path_params, _flag(request, "proof")
        return JSONResponse(
            service.state(params["contract"], params["key"], _height(request), proof=proof)
        )

    async def metrics(request: Request) -> Response:
        if registry is None:
            raise ApiError(404, "not_found", "metrics are not enabled")
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document())

    routes = [
        Route("/v1/tx", submit, methods=["POST"]),
        Route("/v1/txs", submit_batch, methods=["POST"]),
        Route("/v1/tx/{tx_hash}", transaction, methods=["GET"]),
        Route("/v1/views", view, methods=["POST"]),
        Route("/v1/blocks/{height}", block, methods=["GET"]),
        Route("/v1/blocks/{height}/receipts", block_receipts, methods=["GET"]),
        Route("/v1/blocks/{height}/certificate", certificate, methods=["GET"]),
        Route("/v1/epochs/{epoch}/proof", epoch_proof, methods=["GET"]),
        Route("/v1/status", status, methods=["GET"]),
        Route("/v1/accounts/{account_id}", account, methods=["GET"]),
        Route("/v1/nonces", nonces, methods=["POST"]),
        Route("/v1/state/{contract}/{key:path}", state, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        *subscription_routes(service, keepalive_s),  # server-sent events: api/streams.py
    ]
    return Starlette(
        routes=routes,
        exception_handlers={
            ApiError: _api_error,
            NotFoundError: _not_found,
            NotReadyError: _not_ready,
            JournalFailedError: _journal_failed,
            HeightUnavailableError: _gone,
            HTTPException: _http_error,
        },
    )
