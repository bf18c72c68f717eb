"""What nodes send each other besides consensus messages: transactions passed on, the acks of
the validators that checked their signatures, and each validator's signature of the execution
header of every committed block it executed.

A client may submit a transaction to any node; the node that admits it passes it on to its
peers in batches, so whichever validator leads next has it. Every frame between nodes decodes
as exactly one `WireMessage`.
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec
from msgspec import Meta

from consortia.types.consensus import ConsensusMessage
from consortia.types.execution import ExecutionCertificate, ExecutionHeader
from consortia.types.primitives import Height, NodeId, Signature

TX_BATCH_MAX: Final = 1024
TX_BYTES_MAX: Final = 64 * 1024
# Execution certificates asked for, or answered, in one message.
CERTIFICATE_REQUEST_MAX: Final = 16


class TxBatch(
    msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True, tag="msg_txs"
):
    """Signed transactions a node admitted, passed on to a peer (each is re-admitted there)."""

    transactions: Annotated[
        list[Annotated[bytes, Meta(max_length=TX_BYTES_MAX)]], Meta(max_length=TX_BATCH_MAX)
    ]


class TxAck(
    msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True, tag="msg_tx_ack"
):
    """A validator checked every signature of the `TxBatch` whose frame hashes to `digest`
    (the suite's hash), as one of its checkers (node/vouching.py); sent to every validator."""

    digest: Annotated[bytes, Meta(min_length=32, max_length=32)]


class ExecutionVote(
    msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True, tag="msg_exec_vote"
):
    """A validator's signature of the execution header of a block it executed (sent to every
    validator; `node.attestation` gathers a quorum of them into an `ExecutionCertificate`)."""

    header: ExecutionHeader
    signer: NodeId
    signature: Signature


class CertificateRequest(
    msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True, tag="msg_cert_request"
):
    """Ask a peer for the execution certificates of heights `start` .. `start + count - 1`
    (a node that missed their votes)."""

    start: Height
    count: Annotated[int, Meta(ge=1, le=CERTIFICATE_REQUEST_MAX)]


class CertificateResponse(
    msgspec.Struct,
    frozen=True,
    array_like=True,
    forbid_unknown_fields=True,
    tag="msg_cert_response",
):
    """The certificates asked for that the peer holds (each checked by the receiver)."""

    certificates: Annotated[list[ExecutionCertificate], Meta(max_length=CERTIFICATE_REQUEST_MAX)]


WireMessage = (
    ConsensusMessage | TxBatch | TxAck | ExecutionVote | CertificateRequest | CertificateResponse
)
