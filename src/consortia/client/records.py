"""Confidential records, the client's side: seal a value to its readers and the regulator's
escrow key as the chain knows them, store it in the `vault`, and open it again.

The chain holds only what `consortia.privacy.envelope` seals (ciphertext, each reader's
wrapped data key, the commitment). Here a client learns the readers' current encryption keys
and the escrow key from a node (`identity` and `regulator` state; with `verify`, proven under
a state root certified by the validators, so a lying node cannot slip in a key of its own),
seals, and builds the `vault` call's arguments; to open, it reads the stored record, takes
the newest wrap for the party (a rewrap after a key rotation, or a share, lands in the
record's `wraps`), and decrypts with the party's private key on this machine.

The contracts' names and keys are spelled here as their state modules spell them
(identity_state, regulator_state, vault_state; tests/unit/test_contract_vault.py,
`test_the_sdk_spells_the_keys_it_reads_as_their_owners_do`, holds them equal, and the reading
of a versioned key record equal to identity_state.versioned_key), since a client imports no
execution code. Must never send a plaintext or a private key anywhere:
only sealed records and wrapped keys leave this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Protocol

import msgspec

from consortia.client.light import VerificationError
from consortia.crypto import Suite
from consortia.errors import NoEncryptionKeyError, UnknownRecordError
from consortia.privacy import (
    ESCROW_PARTY,
    Opened,
    Reader,
    Sealed,
    Wrapped,
    canonical_value,
    decode_sealed,
    encode_sealed,
    open_sealed,
    rewrap,
    seal,
)

VAULT: Final = "vault"
IDENTITY: Final = "identity"
REGULATOR: Final = "regulator"
ESCROW_KEY: Final = "escrow_key"
# A transaction's text argument is at most 4096 characters: longer hex travels as chunks.
ARGUMENT_CHUNK: Final = 4096


class StateSource(Protocol):
    """What this module asks of a node client (`consortia.client.Client` is one)."""

    def state(
        self, contract: str, key: str, height: int | None = None, *, verify: bool = False
    ) -> Any: ...


def encryption_key_key(account: str) -> str:
    """identity's key of an account's encryption keys."""
    return f"encryption_key/{account}"


def record_key(record_id: str) -> str:
    """vault's key of a stored record."""
    return f"record/{record_id}"


def reader_of(source: StateSource, account: str, *, verify: bool = True) -> Reader:
    """`account` as a reader: its current encryption key and that key's version.

    NoEncryptionKeyError (code no_encryption_key) when it registered none."""
    record = source.state(IDENTITY, encryption_key_key(account), verify=verify)
    version_key = _current(record)
    if version_key is None:
        raise NoEncryptionKeyError(f"{account} has registered no encryption key")
    return Reader(account, version_key[0], version_key[1])


def escrow_reader(source: StateSource, *, verify: bool = True) -> Reader:
    """The regulator's escrow key at its current version, as the escrow party."""
    version_key = _current(source.state(REGULATOR, ESCROW_KEY, verify=verify))
    if version_key is None:
        raise NoEncryptionKeyError("governance has set no escrow key: nothing can be sealed yet")
    return Reader(ESCROW_PARTY, version_key[0], version_key[1])


def seal_for(
    source: StateSource,
    suite: Suite,
    label: str,
    value: Any,
    readers: Sequence[str],
    *,
    verify: bool = True,
) -> Sealed:
    """`value` sealed to each of `readers` (accounts) and the escrow, at their current keys."""
    everyone = [reader_of(source, account, verify=verify) for account in readers]
    return seal(suite, label, value, everyone, escrow_reader(source, verify=verify))


def put_arguments(record_id: str, sealed: Sealed, readers: Sequence[str]) -> dict[str, Any]:
    """The arguments of `vault.put` storing `sealed` as `record_id` for `readers`."""
    return {"record": record_id, "sealed": chunks(encode_sealed(sealed)), "readers": list(readers)}


def chunks(text: str) -> list[str]:
    """`text` cut into transaction-argument-sized pieces, in order."""
    return [text[i : i + ARGUMENT_CHUNK] for i in range(0, len(text), ARGUMENT_CHUNK)] or [text]


def stored(source: StateSource, record_id: str, *, verify: bool = True) -> dict[str, Any]:
    """The vault's record `record_id` (ciphertext, wrapped keys, commitment, readers).

    UnknownRecordError when there is none."""
    record = source.state(VAULT, record_key(record_id), verify=verify)
    if not isinstance(record, dict):
        raise UnknownRecordError(f"there is no record {record_id!r}")
    return record


def sealed_of(record: dict[str, Any], party: str | None = None) -> Sealed:
    """The stored record as a sealed record whose key for `party` is the newest wrap the
    vault holds for it (the original one, or one added by `rewrap` or `share`)."""
    try:
        sealed = decode_sealed(str(record["sealed"]))
    except (KeyError, TypeError) as error:
        raise VerificationError("vault_record", f"not a vault record: {error}") from None
    if party is None:
        return sealed
    added = [w for w in record.get("wraps", []) if isinstance(w, dict) and w.get("party") == party]
    if not added:
        return sealed
    newest = added[0]
    for wrap in added:  # the newest version; of equal versions the later (the owner's re-share)
        if int(wrap["key_version"]) >= int(newest["key_version"]):
            newest = wrap
    wrapped = Wrapped(party, int(newest["key_version"]), bytes.fromhex(str(newest["wrapped"])))
    keys = sorted(
        [key for key in sealed.keys if key.party != party] + [wrapped], key=lambda k: k.party
    )
    return msgspec.structs.replace(sealed, keys=keys)


def open_stored(
    source: StateSource,
    suite: Suite,
    record_id: str,
    party: str,
    private_key: bytes,
    *,
    verify: bool = True,
) -> Opened:
    """The value of record `record_id` for `party` holding `private_key` (its newest key)."""
    return open_sealed(
        suite, sealed_of(stored(source, record_id, verify=verify), party), party, private_key
    )


def rewrap_arguments(
    source: StateSource,
    suite: Suite,
    record_id: str,
    party: str,
    old_private_key: bytes,
    *,
    verify: bool = True,
) -> dict[str, Any]:
    """The arguments of `vault.rewrap` giving `party`'s current key (after a rotation) the
    record's data key, opened with its previous private key."""
    new = escrow_reader(source, verify=verify) if party == ESCROW_PARTY else None
    if new is None:
        new = reader_of(source, party, verify=verify)
    sealed = sealed_of(stored(source, record_id, verify=verify), party)
    wrapped = rewrap(suite, sealed, party, old_private_key, new)
    return {
        "record": record_id,
        "party": party,
        "key_version": wrapped.key_version,
        "wrapped": wrapped.wrapped.hex(),
    }


def share_arguments(
    source: StateSource,
    suite: Suite,
    record_id: str,
    holder: str,
    holder_private_key: bytes,
    *,
    new_reader: str,
    verify: bool = True,
) -> dict[str, Any]:
    """The arguments of `vault.share`, signed by `holder` (a reader), adding `new_reader`."""
    sealed = sealed_of(stored(source, record_id, verify=verify), holder)
    reader = reader_of(source, new_reader, verify=verify)
    wrapped = _rewrap_to(suite, sealed, holder, holder_private_key, reader)
    return {
        "record": record_id,
        "party": new_reader,
        "key_version": reader.key_version,
        "wrapped": wrapped.hex(),
    }


def reveal_arguments(record_id: str, opened: Opened) -> dict[str, Any]:
    """The arguments of `vault.reveal`: the plaintext (canonical encoding) and its salt."""
    return {
        "record": record_id,
        "salt": opened.salt.hex(),
        "value": chunks(canonical_value(opened.value).hex()),
    }


def _rewrap_to(
    suite: Suite, sealed: Sealed, holder: str, private_key: bytes, reader: Reader
) -> bytes:
    """The record's data key (opened by `holder`) wrapped to `reader`, bound to the record."""
    as_holder = Reader(holder, reader.key_version, reader.public_key)
    return rewrap(suite, sealed, holder, private_key, as_holder).wrapped


def _current(record: Any) -> tuple[int, bytes] | None:
    """(version, public key) of a versioned key record ({"current", "keys"}), or None."""
    if not isinstance(record, dict):
        return None
    try:
        for entry in record["keys"]:
            if entry["version"] == record["current"]:
                return int(entry["version"]), bytes.fromhex(str(entry["public_key"]))
    except (KeyError, TypeError, ValueError) as error:
        raise VerificationError("key_record", f"malformed: {error}") from None
    return None
