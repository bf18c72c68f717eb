"""Proven state reads: a value (or its absence) with a proof under the state root of an
execution header the validators certified, so a light client need not trust this node.

Owns the shape of `GET /v1/state/{contract}/{key}?proof=true` and
`GET /v1/accounts/{id}?proof=true` answers: which height is proven (the latest certified one
this node holds, or the one asked for), and the proof object every such answer carries
(`height`, `header`, `certificate`, and per state key its raw value and sparse Merkle proof).
The client side that checks them is `consortia.client.state_reads`.

Must never answer a proof at a height without the certificate of that height, nor a value
other than the one the proof shows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from consortia.node.chain import Chain
from consortia.types.encoding import encode
from consortia.types.execution import ExecutionCertificate, ExecutionHeader
from consortia.types.state_proof import StateAnswer

# How far below the committed height the latest certified height is looked for: certificates
# form within a round trip of a commit, so the latest is a block or two back.
CERTIFIED_LOOKBACK: Final = 64


class UncertifiedHeightError(Exception):
    """No certificate of the height asked for (or of any recent height) is held here."""


def proven_height(
    chain: Chain, certificate: Callable[[int], ExecutionCertificate | None], height: int | None
) -> tuple[int, ExecutionCertificate]:
    """The height a proof is given at and its certificate: `height` when given (it must be
    certified here), else the latest certified height within CERTIFIED_LOOKBACK."""
    if height is not None:
        found = certificate(height) if 1 <= height <= chain.height else None
        if found is None:
            raise UncertifiedHeightError(f"block {height} has no execution certificate here")
        return height, found
    for candidate in range(chain.height, max(0, chain.height - CERTIFIED_LOOKBACK), -1):
        found = certificate(candidate)
        if found is not None:
            return candidate, found
    raise UncertifiedHeightError("no recent block has an execution certificate here yet")


def proof_object(
    certificate: ExecutionCertificate,
    header_view: Callable[[ExecutionHeader], dict[str, Any]],
    answers: list[tuple[str, str, StateAnswer]],
) -> dict[str, Any]:
    """The `proof` of an answer: the certified header, its certificate, and for each
    (contract, key) the raw stored value (hex; null: absent) and its proof (hex)."""
    header = certificate.header
    for _, _, answer in answers:
        assert answer.height == header.height and answer.root == header.state_root, (
            "a proof is given under the certified root of its own height"
        )
    return {
        "height": header.height,
        "header": header_view(header),
        "certificate": encode(certificate).hex(),
        "entries": [
            {
                "contract": contract,
                "key": key,
                "value": None if answer.value is None else answer.value.hex(),
                "state_proof": encode(answer.proof).hex(),
            }
            for contract, key, answer in answers
        ],
    }
