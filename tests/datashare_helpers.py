"""Signed data requests for tests: what a consumer account signs (consortia.gateway.protocol)
and the `datashare.log_access` arguments a gateway sends for it."""

from __future__ import annotations

from typing import Any

from consortia.gateway.protocol import DataRequest, signed_request
from consortia.types.genesis import genesis_hash
from tests.execution_helpers import CHAIN_ID, Ledger

PARAMS: dict[str, str | int] = {"firm": "firm-7"}


def nonce(number: int) -> str:
    """A request nonce (32 hex digits) numbered for a test."""
    return f"{number:032x}"


def signed_data_request(
    ledger: Ledger,
    consumer: str,
    grant: int,
    *,
    dataset: str = "firm-credit",
    params: dict[str, str | int] | None = None,
    sequence: int = 0,
    timestamp_ms: int | None = None,
    signer: str | None = None,
) -> DataRequest:
    """`consumer`'s request, signed with the key of `signer` (default: the consumer's own),
    stamped with the time of the ledger's next block unless told another."""
    stamp = ledger.block_time_ms(ledger.height + 1) if timestamp_ms is None else timestamp_ms
    unsigned = DataRequest(
        consumer, dataset, grant, dict(PARAMS if params is None else params), stamp, nonce(sequence)
    )
    private_key = ledger.keys[consumer if signer is None else signer][0]
    return signed_request(
        ledger.suite, private_key, CHAIN_ID, genesis_hash(ledger.genesis), unsigned
    )


def log_args(
    ledger: Ledger, request: DataRequest, *, answer_digest: str = "b2" * 32, rows: int = 3
) -> dict[str, Any]:
    """The `log_access` arguments for `request`, as the gateway sends them."""
    return {
        "grant": request.grant,
        "consumer_account": request.consumer,
        "query_digest": request.query_digest(ledger.suite, CHAIN_ID, genesis_hash(ledger.genesis)),
        "answer_digest": answer_digest,
        "rows": rows,
        **request.chain_fields(ledger.suite),
    }
