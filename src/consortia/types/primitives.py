"""Bounded primitive field types shared by every canonical struct.

Each alias carries its limits (msgspec `Meta`), so a decoder rejects an oversized field before
any application code sees it. Owns these limits and patterns (the chain-id pattern included:
the `init` command checks a chain id with the same `CHAIN_ID_PATTERN`); must never hold
behaviour or import anything of consortia.
"""

from __future__ import annotations

from typing import Annotated, Final

from msgspec import Meta

HASH_SIZE: Final = 32
PUBLIC_KEY_SIZE_MIN: Final = 32  # Ed25519
PUBLIC_KEY_SIZE_MAX: Final = 65  # SM2, uncompressed point
SIGNATURE_SIZE: Final = 64  # Ed25519 and SM2 (r || s) alike
CHAIN_ID_LENGTH_MAX: Final = 64
# A chain id: lowercase letters, digits, '.' and '-', starting with a letter or digit.
CHAIN_ID_PATTERN: Final = r"^[a-z0-9][a-z0-9.-]*\Z"
NAME_LENGTH_MAX: Final = 64
VALIDATORS_MAX: Final = 1024
# Leader reputation looks back at most this many committed blocks (genesis reputation_window).
REPUTATION_WINDOW_MAX: Final = 4096
PAYLOAD_ITEMS_MAX: Final = 20_000
PAYLOAD_ITEM_SIZE_MAX: Final = 64 * 1024
# msgspec bounds fit in int64; no counter of ours comes near 2**63.
U64_MAX: Final = 2**63 - 1
ACCOUNT_ID_LENGTH_MAX: Final = 64
# An account id: 1 to 64 letters, digits, '_', '.' and '-'. No colon: "contract:<name>" is how
# contracts appear as callers, never an account. Read by the transaction format, requests, the
# genesis document and the reconciliation's postings alike.
ACCOUNT_ID_PATTERN: Final = r"^[A-Za-z0-9_.-]{1,64}\Z"
# An id a contract creates (a receivable, a sealed record, a dataset) or a sealed record's
# party (an account, or "regulator:escrow"): 1 to 64 letters, digits, '_', '.', ':' and '-'.
ID_PATTERN: Final = r"^[A-Za-z0-9_.:-]{1,64}\Z"
# Lowercase hex of a 32-byte hash: a digest, a node id, a transaction hash as the chain shows it.
HASH_HEX_PATTERN: Final = r"^[0-9a-f]{64}\Z"
# A currency: three capital letters (ISO 4217 style); the chain's default when none is named
# (a genesis account's, a transfer's, the balance the API shows as `balance`).
CURRENCY_PATTERN: Final = r"^[A-Z]{3}\Z"
CURRENCY_DEFAULT: Final = "CNY"
# Lowercase hex of one or more whole bytes (sealed records, key files).
HEX_BYTES_PATTERN: Final = r"^(?:[0-9a-f]{2})+\Z"

Hash = Annotated[bytes, Meta(min_length=HASH_SIZE, max_length=HASH_SIZE)]
NodeId = Hash
PublicKey = Annotated[bytes, Meta(min_length=PUBLIC_KEY_SIZE_MIN, max_length=PUBLIC_KEY_SIZE_MAX)]
Signature = Annotated[bytes, Meta(min_length=SIGNATURE_SIZE, max_length=SIGNATURE_SIZE)]
ChainId = Annotated[
    str, Meta(min_length=1, max_length=CHAIN_ID_LENGTH_MAX, pattern=CHAIN_ID_PATTERN)
]
Name = Annotated[str, Meta(min_length=1, max_length=NAME_LENGTH_MAX)]
Currency = Annotated[str, Meta(pattern=CURRENCY_PATTERN)]
AccountId = Annotated[
    str, Meta(min_length=1, max_length=ACCOUNT_ID_LENGTH_MAX, pattern=ACCOUNT_ID_PATTERN)
]
U64 = Annotated[int, Meta(ge=0, le=U64_MAX)]
Round = U64
Epoch = U64
Height = U64
ValidatorIndex = Annotated[int, Meta(ge=0, lt=VALIDATORS_MAX)]
PayloadItem = Annotated[bytes, Meta(max_length=PAYLOAD_ITEM_SIZE_MAX)]
