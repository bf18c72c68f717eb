"""The regulator's escrow key: its key, its record and every read of it.

Owns, in the `regulator/` namespace:

    escrow_key    {"current": version, "keys": [{"version", "public_key": hex, "height"}]}:
                  the regulator's escrow encryption public key (the chain suite's), versions
                  1, 2, ... in order, the latest ESCROW_KEYS_KEPT kept

Every sealed record in the `vault` wraps its data key to this key, at its current version, so
that supervision never depends on a party's cooperation. Only a passed governance proposal
(`set_escrow_key`) sets or rotates it (the private key is held by the regulator's officers,
k of n, off the chain); governance's proposal check and the regulator's method share
`escrow_key_arg`. Others (the vault, clients) read it through `read_escrow_key`.

Must never write state (only the `regulator` contract, regulator.py, does); never import a
contract module but identity_state; never read but through a `StateReader`.
"""

from __future__ import annotations

from typing import Any, Final

from consortia.execution.contract import Context, StateReader, contract_caller, read_record
from consortia.execution.contracts import identity_state

CONTRACT: Final = "regulator"
# How the regulator appears as a caller to the contracts it calls (identity's freezes).
CALLER: Final = contract_caller(CONTRACT)
ESCROW_KEY: Final = "escrow_key"
# The party name of the escrow key in a sealed record's wrapped keys (the envelope format's
# `ESCROW_PARTY`, a test holds them equal). The vault never takes it as a reader's account id.
ESCROW_PARTY: Final = "regulator:escrow"
ESCROW_KEYS_KEPT: Final = 16


def read_escrow_keys(read: StateReader) -> dict[str, Any] | None:
    """The escrow key record ({"current", "keys"}), or None before governance set one."""
    return read_record(read, CONTRACT, ESCROW_KEY)


def read_escrow_key(read: StateReader, version: int | None = None) -> tuple[int, str] | None:
    """(version, public key in hex) of the current escrow key, or of `version` when given;
    None when none is set, or that version is unknown or no longer kept."""
    return identity_state.versioned_key(read_escrow_keys(read), version)


def escrow_key_arg(ctx: Context, args: dict[str, Any]) -> dict[str, str]:
    """`public_key`: an encryption public key of the chain's suite never used as the escrow
    key before (`bad_encryption_key`, `key_reused`)."""
    reused = "that key was the escrow key before; rotate to a new one"
    record = read_escrow_keys(ctx.read_other)
    return {"public_key": identity_state.encryption_key_arg(ctx, args, record, reused)}


def with_escrow_key(record: dict[str, Any] | None, public_key: str, height: int) -> dict[str, Any]:
    """The escrow key record after `public_key` becomes the next version."""
    return identity_state.with_encryption_key(record, public_key, height, ESCROW_KEYS_KEPT)
