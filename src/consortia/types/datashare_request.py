"""The bytes a data consumer signs for a request to a data gateway, in the one place both the
gateway (consortia.gateway.protocol) and the `datashare` contract (which checks the signature
again when the access is logged) build them.

    params preimage = PARAMS_DOMAIN || nonce (16 bytes) || encode([[name, value], ...
                                                                   sorted by name])
    params_digest   = hash(params preimage)                       (lowercase hex)
    signed bytes    = REQUEST_DOMAIN || genesis hash || encode([chain id, consumer, dataset,
                                         grant, params_digest, timestamp_ms, nonce])
    query digest    = hash(QUERY_DOMAIN || signed bytes)          (lowercase hex)

The parameters enter the signature only through their digest, salted with the request's
random nonce, so the chain can check the signature without learning them, and nobody can
confirm a guess of them from the digest. `hash` is the chain's suite hash, applied by the
caller (the gateway with its suite, the contract through `Context.hash`).

Pure: builds bytes, never hashes, signs, reads a clock or draws randomness, so a contract may
import it (the contract import allow-list names it). Must never change a byte of the format
without a new domain version.
"""

from __future__ import annotations

from typing import Final

from consortia.types.encoding import encode

REQUEST_DOMAIN: Final = b"consortia/datashare/request/v2\x00"
QUERY_DOMAIN: Final = b"consortia/datashare/query/v1\x00"
PARAMS_DOMAIN: Final = b"consortia/datashare/params/v1\x00"
NONCE_BYTES: Final = 16
# How far a request's clock may be from the gateway's when it arrives, and from the block time
# of the block that logs its access.
FRESHNESS_MS: Final = 120_000


def params_preimage(nonce: str, params: dict[str, str | int]) -> bytes:
    """What `params_digest` hashes: `nonce` is the request's (32 lowercase hex digits)."""
    parameters = [[name, params[name]] for name in sorted(params)]
    return PARAMS_DOMAIN + bytes.fromhex(nonce) + encode(parameters)


def signed_bytes(
    *,
    chain_id: str,
    genesis_hash: bytes,
    consumer: str,
    dataset: str,
    grant: int,
    params_digest: str,
    timestamp_ms: int,
    nonce: str,
) -> bytes:
    """What the consumer signs (see the module docstring)."""
    body = [chain_id, consumer, dataset, grant, params_digest, timestamp_ms, nonce]
    return REQUEST_DOMAIN + genesis_hash + encode(body)


def query_preimage(signed: bytes) -> bytes:
    """What the query digest logged on chain hashes."""
    return QUERY_DOMAIN + signed
