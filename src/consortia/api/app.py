"""The node's HTTP API: JSON routes over `NodeService`, an OpenAPI document, Prometheus metrics.

Every client mistake is a 4xx with the body `{"error": {"code": "...", "message": "..."}}`;
"mempool_full" is a 503 with Retry-After (the node's problem, not the client's); a body over
the limit is refused with 413 before it is read whole. Signed transactions and signed read
requests come as JSON (`{"body": {...}, "signature": "<hex>"}`, keys and signatures in hex)
or in their canonical binary encoding (`Content-Type: application/msgpack`).

Owns routing and the mapping between HTTP and the node's values. Must never change node state
but through `NodeService.submit`, and never log a request body.
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
from consortia.errors import DecodeError
from consortia.execution.state import HeightUnavailableError
from consortia.node.service import HEX_ID_LENGTH, NodeService, NotFoundError
from consortia.types.encoding import decode, encode
from consortia.types.transaction import Transaction, TransactionBody

BODY_BYTES_MAX: Final = 128 * 1024
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


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > BODY_BYTES_MAX):
        raise ApiError(413, "too_large", f"the body is limited to {BODY_BYTES_MAX} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > BODY_BYTES_MAX:
            raise ApiError(413, "too_large", f"the body is limited to {BODY_BYTES_MAX} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def signed_transaction(request: Request) -> bytes:
    """The canonical bytes of the signed transaction (or read request) in the body."""
    data = await _read_body(request)
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip()
    if content_type in BINARY_TYPES:
        return data
    if content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", f"send JSON or {BINARY_TYPES[0]}")
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
    if not raw.isdigit() or len(raw) > 19:
        raise ApiError(400, "bad_argument", f"{name} must be a non-negative integer")
    return int(raw)


Handler = Callable[[Request], Awaitable[Response]]


def create_app(service: NodeService, registry: CollectorRegistry | None = None) -> Starlette:
    async def submit(request: Request) -> Response:
        admission = service.submit(await signed_transaction(request))
        if not admission.ok:
            status = _STATUS_OF_CODE.get(admission.code, 400)
            return error_response(status, admission.code, admission.message)
        return JSONResponse({"tx_hash": admission.tx_id.hex(), "status": "pending"}, 202)

    async def transaction(request: Request) -> Response:
        return JSONResponse(service.transaction(_hex_id(request.path_params["tx_hash"])))

    async def view(request: Request) -> Response:
        height = _height(request)
        return JSONResponse(service.view(await signed_transaction(request), height))

    async def block(request: Request) -> Response:
        raw = request.path_params["height"]
        if raw == "latest":
            return JSONResponse(service.block(None))
        if not raw.isdigit() or len(raw) > 19:
            raise ApiError(400, "bad_argument", "a block is named by its height or 'latest'")
        return JSONResponse(service.block(int(raw)))

    async def status(request: Request) -> Response:
        return JSONResponse(service.status())

    async def account(request: Request) -> Response:
        return JSONResponse(service.account(request.path_params["account_id"]))

    async def state(request: Request) -> Response:
        params = request.path_params
        return JSONResponse(service.state(params["contract"], params["key"], _height(request)))

    async def metrics(request: Request) -> Response:
        if registry is None:
            raise ApiError(404, "not_found", "metrics are not enabled")
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document())

    async def api_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, ApiError)
        return error_response(error.status, error.code, error.message)

    async def not_found(request: Request, error: Exception) -> Response:
        return error_response(404, "not_found", str(error))

    async def gone(request: Request, error: Exception) -> Response:
        assert isinstance(error, HeightUnavailableError)
        return error_response(410, error.code, str(error))

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "bad_request")
        return error_response(error.status_code, code, str(error.detail))

    routes = [
        Route("/v1/tx", submit, methods=["POST"]),
        Route("/v1/tx/{tx_hash}", transaction, methods=["GET"]),
        Route("/v1/views", view, methods=["POST"]),
        Route("/v1/blocks/{height}", block, methods=["GET"]),
        Route("/v1/status", status, methods=["GET"]),
        Route("/v1/accounts/{account_id}", account, methods=["GET"]),
        Route("/v1/state/{contract}/{key:path}", state, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={
            ApiError: api_error,
            NotFoundError: not_found,
            HeightUnavailableError: gone,
            HTTPException: http_error,
        },
    )
