"""The transaction envelope: who calls which version of which contract, and their signature.

Every transaction names the contract version it expects (JR/T 0184 §12) and an expiry height,
and is signed under the chain's suite over its tagged, chain-bound body. Arguments are a flat
map of bounded scalar values (integers, strings, booleans and lists of them); their meaning
belongs to the contract.
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec
from msgspec import Meta

from consortia.types.primitives import (
    U64,
    AccountId,
    ChainId,
    Height,
    Name,
    PublicKey,
    Signature,
)

ARGS_MAX: Final = 32
ARG_BYTES_MAX: Final = 4096
ARG_LIST_MAX: Final = 256

ArgName = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*\Z")]
ArgScalar = (
    Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]
    | Annotated[str, Meta(max_length=ARG_BYTES_MAX)]
    | bool
)
# Binary values (digests) travel as hex strings: MessagePack unions allow one string-like type.
ArgValue = ArgScalar | Annotated[list[int | str], Meta(max_length=ARG_LIST_MAX)]


class TransactionBody(
    msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True, tag="tx"
):
    chain_id: ChainId
    sender: AccountId
    public_key: PublicKey
    nonce: U64
    contract: Name
    contract_version: Annotated[int, Meta(ge=1, le=2**16)]
    method: Name
    args: Annotated[dict[ArgName, ArgValue], Meta(max_length=ARGS_MAX)]
    expiry_height: Height


class Transaction(
    msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True, tag="signed_tx"
):
    body: TransactionBody
    signature: Signature
