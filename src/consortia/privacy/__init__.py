"""Confidential records and the regulator's escrow key (see docs/privacy.md).

`envelope` seals a value for its readers and the escrow key and opens it again; its decoding
and commitment checks are pure, for contracts. `escrow` holds the escrow private key k of n.
This package must never log, print or put in an error message a plaintext value, a salt, a data
key, a share or a private key.
"""

from __future__ import annotations

from consortia.privacy.envelope import (
    ESCROW_PARTY,
    LABEL_LENGTH_MAX,
    PARTY_LENGTH_MAX,
    READERS_MAX,
    SEALED_BYTES_MAX,
    SEALED_VERSION,
    Opened,
    Reader,
    Sealed,
    Wrapped,
    canonical_value,
    check_sealed,
    commitment_of,
    decode_sealed,
    encode_sealed,
    open_sealed,
    rewrap,
    seal,
    verify_opening,
    wrap_context,
)
from consortia.privacy.escrow import (
    Share,
    key_id,
    load_share_file,
    open_share,
    recover_escrow,
    seal_share,
    split_escrow,
    write_share_file,
)

__all__ = [
    "ESCROW_PARTY",
    "LABEL_LENGTH_MAX",
    "PARTY_LENGTH_MAX",
    "READERS_MAX",
    "SEALED_BYTES_MAX",
    "SEALED_VERSION",
    "Opened",
    "Reader",
    "Sealed",
    "Share",
    "Wrapped",
    "canonical_value",
    "check_sealed",
    "commitment_of",
    "decode_sealed",
    "encode_sealed",
    "key_id",
    "load_share_file",
    "open_sealed",
    "open_share",
    "recover_escrow",
    "rewrap",
    "seal",
    "seal_share",
    "split_escrow",
    "verify_opening",
    "wrap_context",
    "write_share_file",
]
