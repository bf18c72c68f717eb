"""The `vault/` namespace: its keys, its records, its argument rules and every read of them.

Owns the layout of the vault contract's state (docs/contracts.md, `vault`; docs/privacy.md):

    record/<id>   {"owner": the account that stored it, "label", "suite", "commitment": hex,
                   "sealed": hex (the sealed record exactly as stored: ciphertext and wrapped
                   keys), "readers": [account ids, sorted], "versions": {party: the newest
                   key version a data key is wrapped to, for every reader and the escrow
                   party}, "wraps": [{"party", "key_version", "wrapped": hex, "by", "height"}]
                   (wraps added after the record was stored: rewraps and shares, at most
                   WRAPS_MAX for readers and ESCROW_WRAPS_MAX for the escrow party),
                   "height", "revealed": {"by", "height"} or None}
    commitment/<hex>  the id of the record that carries this commitment (each is stored once)

Nothing here is plaintext: a record holds ciphertext, wrapped keys and a commitment. Other
code (receivable, clients' tests) reads the vault only through the readers below.

Must never write state (only the `vault` contract, vault.py, does); never import a contract
module but identity_state and regulator_state; never read but through a `StateReader`.
"""

from __future__ import annotations

from typing import Any, Final

from consortia.execution.contract import (
    ID_CHARACTERS,
    ContractError,
    StateReader,
    arg_str,
    read_record,
)

CONTRACT: Final = "vault"

RECORD_ID_LENGTH_MAX: Final = 64
READERS_MAX: Final = 16  # accounts that may read one record (the escrow party besides)
# A sealed record's hex encoding, at most (the envelope's 16 KiB): with its added wraps the
# record fits a stored value (64 KiB). A transaction's text argument is at most 4096
# characters, so a longer record travels as a list of hex chunks, joined in order.
SEALED_HEX_LENGTH_MAX: Final = 32 * 1024
# One wrapped data key, in hex: exactly the suite's size (92 bytes intl, 145 gm) is checked.
WRAPPED_HEX_LENGTH_MAX: Final = 512
WRAPS_MAX: Final = 32  # wraps added to one record after it was stored, for its readers
# Wraps added for the escrow party (by regulator accounts, after escrow rotations) count apart:
# a reader filling the record's WRAPS_MAX cannot stop the regulator from rewrapping.
ESCROW_WRAPS_MAX: Final = 8
SALT_HEX_LENGTH_MAX: Final = 128
LABEL_LENGTH_MAX: Final = 64


def record_key(record_id: str) -> str:
    return f"record/{record_id}"


def commitment_key(commitment_hex: str) -> str:
    return f"commitment/{commitment_hex}"


def read_vault_record(read: StateReader, record_id: str) -> dict[str, Any] | None:
    """The stored record (ciphertext, wrapped keys, commitment), or None."""
    if not isinstance(record_id, str) or not record_id:
        return None
    return read_record(read, CONTRACT, record_key(record_id))


def readable_by(record: dict[str, Any], party: str) -> bool:
    """Whether the record wraps its data key to `party` (an account among its readers)."""
    return party in record["readers"]


def record_id_arg(args: dict[str, Any], name: str = "record") -> str:
    """A record id: letters, digits and _ . : -, at most RECORD_ID_LENGTH_MAX."""
    value = arg_str(args, name, max_length=RECORD_ID_LENGTH_MAX)
    if not set(value) <= ID_CHARACTERS:
        raise ContractError("bad_argument", f"{name} uses only letters, digits and _ . : -")
    return value
