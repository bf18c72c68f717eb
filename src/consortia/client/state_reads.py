"""Checking proven state reads: a value (or its absence) under the state root of an
execution header certified by its epoch's validators, as `?proof=true` answers carry them.

Owns the client's side of `GET /v1/state/{contract}/{key}?proof=true` and
`GET /v1/accounts/{id}?proof=true`: the certificate checked through a `LightClient`, every
entry's sparse Merkle proof checked against the certified state root for the key the client
itself derives, and the record rebuilt only from proven values (what the node says the value
is, outside the proof, is ignored).

The account's keys are spelled here as the identity and asset contracts spell them
(`execution/contracts/identity_state.py`, `asset.py`; a test holds them equal), since a
client imports no execution code. Must never return a value it did not prove, nor accept an
entry for a key other than the one asked about.
"""

from __future__ import annotations

from typing import Any

import msgspec

from consortia.client.light import (
    LightClient,
    VerificationError,
    decode_certificate,
    decode_strict,
    from_hex,
    header_record,
)
from consortia.types.execution import ExecutionHeader
from consortia.types.primitives import CURRENCY_DEFAULT
from consortia.types.state_proof import SparseMerkleProof, state_key, verify_proof

IDENTITY: str = "identity"
ASSET: str = "asset"


def account_key(account_id: str) -> str:
    """identity's key of an account record."""
    return f"account/{account_id}"


def balance_key(currency: str, account_id: str) -> str:
    """asset's key of an account's balance in `currency`."""
    return f"balance/{currency}/{account_id}"


def verified_state(
    light: LightClient, answer: dict[str, Any], contract: str, key: str
) -> dict[str, Any]:
    """The value of `contract`'s `key` in a proven answer, with the certified header:
    `{"contract", "key", "height", "value", "verified": True, "header"}`."""
    header, proven = _proven_entries(light, answer)
    value = _entry(proven, contract, key)
    return {
        "contract": contract,
        "key": key,
        "height": header.height,
        "value": value,
        "verified": True,
        "header": header_record(header),
    }


def verified_account(light: LightClient, answer: dict[str, Any], account_id: str) -> dict[str, Any]:
    """The account in a proven `GET /v1/accounts/{id}?proof=true` answer, rebuilt from its
    proven record and balances (the default currency's balance must be among them)."""
    header, proven = _proven_entries(light, answer)
    record = _entry(proven, IDENTITY, account_key(account_id))
    if not isinstance(record, dict):
        raise VerificationError("account", f"no account {account_id!r} is proven")
    balances: dict[str, int] = {}
    for (contract, key), value in proven.items():
        if contract == ASSET and key.startswith("balance/") and key.endswith(f"/{account_id}"):
            currency = key[len("balance/") : -len(account_id) - 1]
            if key == balance_key(currency, account_id):
                balances[currency] = int(value or 0)
    if CURRENCY_DEFAULT not in balances:
        raise VerificationError("account", f"the {CURRENCY_DEFAULT} balance is not proven")
    return {
        "id": account_id,
        "nonce": int(record.get("nonce", 0)),
        "status": record.get("status"),
        "roles": record.get("roles", []),
        "member": record.get("sponsor") or record.get("member"),
        "public_key": record.get("public_key"),
        "balances": balances,
        "balance": balances[CURRENCY_DEFAULT],
        "height": header.height,
        "verified": True,
        "header": header_record(header),
    }


def _proven_entries(
    light: LightClient, answer: dict[str, Any]
) -> tuple[ExecutionHeader, dict[tuple[str, str], Any]]:
    """The certified header of a proven answer and each entry's proven value, by
    (contract, key); VerificationError naming the first check that fails."""
    proof = answer.get("proof")
    if not isinstance(proof, dict):
        raise VerificationError("answer", "no proof in the answer")
    header = light.verify_certificate(decode_certificate(proof.get("certificate")))
    if proof.get("height") != header.height or answer.get("height", header.height) != (
        header.height
    ):
        raise VerificationError("answer", "the answer names another height than its header")
    entries = proof.get("entries")
    if not isinstance(entries, list) or not entries:
        raise VerificationError("answer", "no proven entries in the answer")
    proven: dict[tuple[str, str], Any] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            raise VerificationError("answer", "an entry is not an object")
        contract, key = entry.get("contract"), entry.get("key")
        if not isinstance(contract, str) or not isinstance(key, str):
            raise VerificationError("answer", "an entry names no contract and key")
        raw = None if entry.get("value") is None else from_hex(entry.get("value"), "value")
        state_proof: SparseMerkleProof = decode_strict(
            from_hex(entry.get("state_proof"), "state_proof"), SparseMerkleProof, "state_proof"
        )
        if not verify_proof(
            light.suite, header.state_root, state_key(contract, key), raw, state_proof
        ):
            raise VerificationError(
                "state_proof", f"{contract}/{key} is not proven under the certified state root"
            )
        try:
            proven[(contract, key)] = None if raw is None else msgspec.msgpack.decode(raw)
        except msgspec.DecodeError:
            raise VerificationError("value", f"{contract}/{key} holds no value") from None
    return header, proven


def _entry(proven: dict[tuple[str, str], Any], contract: str, key: str) -> Any:
    if (contract, key) not in proven:
        raise VerificationError("answer", f"{contract}/{key} is not among the proven entries")
    return proven[(contract, key)]
