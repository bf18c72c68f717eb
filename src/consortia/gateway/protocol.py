"""The consumer's signed request to a data gateway, its digest, and the window that refuses
stale and replayed requests.

A request (JSON, `POST /v1/fetch`) names the consumer's account, the dataset, the grant, the
query's parameters (a flat map of text and integers), the consumer's clock (`timestamp_ms`)
and a fresh random `nonce`; `signature` is the account's signature, with its signing key
registered on chain (`identity/account/<id>`), over

    REQUEST_DOMAIN || genesis hash || encode([chain id, consumer, dataset, grant,
                                              params_digest, timestamp_ms, nonce])
    params_digest = hash(PARAMS_DOMAIN || nonce || encode([[name, value], ... by name]))

(the bytes are built in consortia.types.datashare_request, which the `datashare` contract
uses too). The domain keeps a request from ever passing for a transaction or a vote (those
sign under `consortia/sig/v2`), the genesis hash and chain id from passing on another chain.
The parameters are signed through their digest, salted with the nonce, so the gateway can
hand the chain everything it needs to check the signature again (`log_access` refuses an
access the consumer did not sign with its current key) without revealing the parameters,
nor letting a guess of them be confirmed. The request's query digest,
`hash(QUERY_DOMAIN || signed bytes)`, is what goes on chain: it names this one request (the
nonce makes it unique), so a consumer can later prove which query an access record stands
for.

Owns the format, its bounds and `ReplayWindow`. Pure: no clock (times are handed in), no I/O,
no randomness but the consumer's nonce, which `new_nonce` draws. Must never accept a request
outside its bounds, nor a nonce twice within the window.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Final, TypeGuard

from consortia.crypto import Suite
from consortia.gateway.errors import BAD_REQUEST, BUSY, CONFLICT, UNAUTHORISED, RefusedError
from consortia.types import datashare_request as request_format
from consortia.types import primitives
from consortia.types.datashare_request import QUERY_DOMAIN, REQUEST_DOMAIN

__all__ = [
    "QUERY_DOMAIN",
    "REQUEST_DOMAIN",
    "DataRequest",
    "ReplayWindow",
    "new_nonce",
    "parse_request",
    "signed_request",
    "verify_signature",
]

PARAMETERS_MAX: Final = 16
PARAMETER_NAME: Final = re.compile(r"[a-z][a-z0-9_]{0,31}\Z")
PARAMETER_TEXT_MAX: Final = 256
ID_PATTERN: Final = re.compile(primitives.ID_PATTERN)
NONCE_PATTERN: Final = re.compile(r"[0-9a-f]{32}\Z")  # 16 random bytes
SIGNATURE_HEX_MAX: Final = 256
GRANT_MAX: Final = 2**62
INT64_MAX: Final = 2**63 - 1  # a parameter or a clock in milliseconds: a signed 64-bit integer
# How far a request's clock may be from the gateway's (the chain allows as much from the
# block time of the block that logs the access: a longer window here buys nothing).
FRESHNESS_MS_DEFAULT: Final = request_format.FRESHNESS_MS
NONCES_KEPT_MAX: Final = 100_000  # requests remembered within the freshness window

FIELDS: Final = frozenset(
    {"consumer", "dataset", "grant", "params", "timestamp_ms", "nonce", "signature"}
)


@dataclass(frozen=True, slots=True)
class DataRequest:
    consumer: str
    dataset: str
    grant: int
    params: dict[str, str | int]
    timestamp_ms: int
    nonce: str
    signature: str = ""

    def params_digest(self, suite: Suite) -> str:
        """The digest of the parameters, salted with the nonce (lowercase hex)."""
        return suite.hash(request_format.params_preimage(self.nonce, self.params)).hex()

    def signed_bytes(self, suite: Suite, chain_id: str, genesis_hash: bytes) -> bytes:
        """What the consumer signs (see the module docstring)."""
        return request_format.signed_bytes(
            chain_id=chain_id,
            genesis_hash=genesis_hash,
            consumer=self.consumer,
            dataset=self.dataset,
            grant=self.grant,
            params_digest=self.params_digest(suite),
            timestamp_ms=self.timestamp_ms,
            nonce=self.nonce,
        )

    def query_digest(self, suite: Suite, chain_id: str, genesis_hash: bytes) -> str:
        """The digest logged on chain for this request (lowercase hex)."""
        signed = self.signed_bytes(suite, chain_id, genesis_hash)
        return suite.hash(request_format.query_preimage(signed)).hex()

    def chain_fields(self, suite: Suite) -> dict[str, Any]:
        """What `datashare.log_access` needs, besides the query digest, to check the
        consumer's signature on chain: never the parameters themselves."""
        return {
            "params_digest": self.params_digest(suite),
            "timestamp_ms": self.timestamp_ms,
            "nonce": self.nonce,
            "signature": self.signature,
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "consumer": self.consumer,
            "dataset": self.dataset,
            "grant": self.grant,
            "params": dict(self.params),
            "timestamp_ms": self.timestamp_ms,
            "nonce": self.nonce,
            "signature": self.signature,
        }


def new_nonce() -> str:
    return secrets.token_hex(16)


def signed_request(
    suite: Suite,
    private_key: bytes,
    chain_id: str,
    genesis_hash: bytes,
    request: DataRequest,
) -> DataRequest:
    """`request` with the consumer's signature."""
    signature = suite.sign(private_key, request.signed_bytes(suite, chain_id, genesis_hash))
    return DataRequest(
        request.consumer,
        request.dataset,
        request.grant,
        dict(request.params),
        request.timestamp_ms,
        request.nonce,
        signature.hex(),
    )


def verify_signature(
    suite: Suite, public_key: bytes, chain_id: str, genesis_hash: bytes, request: DataRequest
) -> None:
    """RefusedError `bad_signature` unless the signature verifies under `public_key`."""
    try:
        signature = bytes.fromhex(request.signature)
    except ValueError:
        signature = b""
    message = request.signed_bytes(suite, chain_id, genesis_hash)
    if not signature or not suite.verify(public_key, message, signature):
        raise RefusedError(
            "bad_signature",
            f"the request is not signed with {request.consumer}'s registered key",
            UNAUTHORISED,
        )


def parse_request(body: Any) -> DataRequest:
    """A request from its JSON form, every field checked against its bounds (`bad_request`
    naming the first field that is wrong)."""
    if not isinstance(body, dict) or set(body) != FIELDS:
        raise _bad(f"a request holds exactly the fields {', '.join(sorted(FIELDS))}")
    consumer, dataset = body["consumer"], body["dataset"]
    for name, value in (("consumer", consumer), ("dataset", dataset)):
        if not isinstance(value, str) or not ID_PATTERN.match(value):
            raise _bad(f"{name} is an id of 1 to 64 letters, digits and _ . : -")
    grant = body["grant"]
    if not integer_within(grant, 0, GRANT_MAX):
        raise _bad("grant is a grant number")
    timestamp_ms = body["timestamp_ms"]
    if not integer_within(timestamp_ms, 0, INT64_MAX):
        raise _bad("timestamp_ms is the consumer's clock in milliseconds")
    nonce = body["nonce"]
    if not isinstance(nonce, str) or not NONCE_PATTERN.match(nonce):
        raise _bad("nonce is 32 lowercase hex digits (16 random bytes)")
    signature = body["signature"]
    if (
        not isinstance(signature, str)
        or not 0 < len(signature) <= SIGNATURE_HEX_MAX
        or not re.fullmatch(r"[0-9a-f]+", signature)
    ):
        raise _bad("signature is lowercase hex")
    return DataRequest(
        consumer, dataset, grant, _parameters(body["params"]), timestamp_ms, nonce, signature
    )


def _parameters(params: Any) -> dict[str, str | int]:
    if not isinstance(params, dict) or len(params) > PARAMETERS_MAX:
        raise _bad(f"params is a map of at most {PARAMETERS_MAX} entries")
    checked: dict[str, str | int] = {}
    for name, value in params.items():
        if not isinstance(name, str) or not PARAMETER_NAME.match(name):
            raise _bad("parameter names are lowercase letters, digits and _ (at most 32)")
        if (isinstance(value, str) and len(value) <= PARAMETER_TEXT_MAX) or (
            integer_within(value, -(2**63), INT64_MAX)
        ):
            checked[name] = value
        else:
            raise _bad(f"parameter {name} is text (at most 256) or a 64-bit integer")
    return checked


def integer_within(value: Any, least: int, most: int) -> TypeGuard[int]:
    """Whether `value` is an integer (never a bool) with least <= value <= most: the gateway's
    one check of an integer it is handed (in a request, an answer, a dataset or key file)."""
    return isinstance(value, int) and not isinstance(value, bool) and least <= value <= most


def _bad(message: str) -> RefusedError:
    return RefusedError("bad_request", message, BAD_REQUEST)


@dataclass(slots=True)
class ReplayWindow:
    """The nonces of requests seen within `freshness_ms` of now: a request whose clock is
    further from the gateway's is `stale_request`; a nonce seen within the window is
    `replayed_request`; beyond `capacity` nonces at once, `busy` (an entry is never dropped
    before its window ends, which would let its request be replayed)."""

    freshness_ms: int = FRESHNESS_MS_DEFAULT
    capacity: int = NONCES_KEPT_MAX
    _seen: dict[str, int] = field(default_factory=dict)  # nonce -> its request's timestamp

    def admit(self, request: DataRequest, now_ms: int) -> None:
        if abs(now_ms - request.timestamp_ms) > self.freshness_ms:
            raise RefusedError(
                "stale_request",
                f"the request's clock is more than {self.freshness_ms} ms from the gateway's",
                BAD_REQUEST,
            )
        self._forget_before(now_ms - self.freshness_ms)
        if request.nonce in self._seen:
            raise RefusedError("replayed_request", "this request was received before", CONFLICT)
        if len(self._seen) >= self.capacity:
            raise RefusedError("busy", "too many requests within the freshness window", BUSY)
        self._seen[request.nonce] = request.timestamp_ms

    def _forget_before(self, oldest_ms: int) -> None:
        expired = [nonce for nonce, stamp in self._seen.items() if stamp < oldest_ms]
        for nonce in expired:
            del self._seen[nonce]

    def __len__(self) -> int:
        return len(self._seen)
