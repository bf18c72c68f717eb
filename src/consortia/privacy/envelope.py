"""Confidential records: a value sealed for its readers and the regulator's escrow key.

A sealed record holds a label (what kind of record it is), a commitment to the value, the value
encrypted under a fresh data key with the chain suite's AEAD, and that data key wrapped to each
reader's encryption key and always to the regulator's escrow key (party ESCROW_PARTY). On chain
it travels as `encode_sealed`'s lowercase hex text; contracts `decode_sealed` it (strict and
bounded) and check a revealed value with `verify_opening`, never seeing the plaintext.

- plaintext  = encode(_Plaintext(salt, value)), salt 32 random bytes, value canonical JSON-like
- commitment = hash(COMMITMENT_DOMAIN || lp(label) || lp(salt) || lp(encode(value))), lp(x) =
  u32 big-endian length of x || x
- ciphertext = suite.encrypt(data_key, plaintext, CIPHERTEXT_DOMAIN || lp(suite) || lp(label)
  || commitment)
- each key   = suite.wrap_key(reader key, data_key, WRAP_CONTEXT_DOMAIN || lp(label) ||
  commitment), sorted by party, one per party

Opening decrypts, then recomputes the commitment from the decrypted salt and value: a record
whose ciphertext does not match its commitment is refused, whatever key opened it.

Everything here but `seal` and `rewrap` is pure: no clock, no randomness, no I/O, so contracts
may decode and check records. `seal`/`rewrap` draw randomness only through the suite. This
module must never log, print or put in an error message a value, a salt, a data key or a private
key.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Sequence
from typing import Any, Final, NamedTuple

import msgspec

from consortia.crypto import SUITE_NAMES, Suite
from consortia.crypto import suite as suite_named
from consortia.crypto.base import AEAD_NONCE_SIZE, AEAD_TAG_SIZE
from consortia.errors import (
    CiphertextRejectedError,
    CommitmentMismatchError,
    CryptoError,
    DecodeError,
    DuplicateReaderError,
    InvalidReaderError,
    InvalidRecordLabelError,
    InvalidRecordValueError,
    MalformedSealedRecordError,
    NotAReaderError,
    PrivacyError,
    SealedRecordTooLargeError,
    TooManyReadersError,
    UnwrapFailedError,
)
from consortia.types.encoding import decode, encode
from consortia.types.primitives import HEX_BYTES_PATTERN, ID_PATTERN

SEALED_VERSION: Final = 1
ESCROW_PARTY: Final = "regulator:escrow"
SEALED_BYTES_MAX: Final = 16 * 1024  # the encoded record, before hex
VALUE_BYTES_MAX: Final = 12 * 1024  # the canonical encoding of the value
READERS_MAX: Final = 16  # readers besides the escrow key
LABEL_LENGTH_MAX: Final = 64
PARTY_LENGTH_MAX: Final = 64
KEY_VERSION_MAX: Final = 2**32 - 1
SALT_SIZE: Final = 32
PAD_BLOCK: Final = 256  # plaintexts are padded to a multiple of this many bytes
VALUE_DEPTH_MAX: Final = 16
# Labels and parties use the characters of the ids contracts create; labels may also use '/'.
_PARTY: Final = re.compile(ID_PATTERN)
_LABEL: Final = re.compile(r"[A-Za-z0-9_.:/-]{1,64}\Z")
_HEX: Final = re.compile(HEX_BYTES_PATTERN)

COMMITMENT_DOMAIN: Final = b"consortia/record/commitment/v1\x00"
CIPHERTEXT_DOMAIN: Final = b"consortia/record/ciphertext/v1\x00"
WRAP_CONTEXT_DOMAIN: Final = b"consortia/record/key/v1\x00"


class Reader(NamedTuple):
    """A party entitled to read, with the version and public key of its encryption key."""

    party: str
    key_version: int
    public_key: bytes


class Wrapped(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """The record's data key wrapped to one party's encryption key of `key_version`."""

    party: str
    key_version: int
    wrapped: bytes


class Sealed(
    msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True, tag="sealed"
):
    """A confidential record as it goes on chain (see the module docstring)."""

    v: int
    suite: str
    label: str
    commitment: bytes
    ciphertext: bytes
    keys: list[Wrapped]


class Opened(NamedTuple):
    """A record's value and salt, as one of its readers decrypted them."""

    value: Any
    salt: bytes

    def __repr__(self) -> str:
        return "<opened record: value hidden>"


class _Plaintext(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    salt: bytes
    value: Any
    pad: bytes = b""  # zeros bringing the encoding to a multiple of PAD_BLOCK (see _padded)


# --- Sealing (client side) -------------------------------------------------------------------


def seal(suite: Suite, label: str, value: Any, readers: Sequence[Reader], escrow: Reader) -> Sealed:
    """`value` sealed for `readers` and the escrow key, under a fresh data key and salt."""
    _check_label(label)
    canonical = canonical_value(value)
    if escrow.party != ESCROW_PARTY:
        raise InvalidReaderError(f"the escrow reader's party must be {ESCROW_PARTY!r}")
    if len(readers) > READERS_MAX:
        raise TooManyReadersError(f"at most {READERS_MAX} readers besides the escrow key")
    everyone = [*readers, escrow]
    for reader in everyone:
        _check_reader(suite, reader)
    parties = [reader.party for reader in everyone]
    if len(set(parties)) != len(parties):
        raise DuplicateReaderError("each party may read a record once (escrow included)")
    salt = suite.random_bytes(SALT_SIZE)
    commitment = _commitment(suite, label, salt, canonical)
    data_key = suite.generate_aead_key()
    plaintext = _padded(salt, value)
    ciphertext = suite.encrypt(data_key, plaintext, _associated_data(suite.name, label, commitment))
    context = wrap_context(label, commitment)
    keys = [
        Wrapped(
            reader.party, reader.key_version, suite.wrap_key(reader.public_key, data_key, context)
        )
        for reader in sorted(everyone, key=lambda reader: reader.party)
    ]
    sealed = Sealed(SEALED_VERSION, suite.name, label, commitment, ciphertext, keys)
    if len(encode(sealed)) > SEALED_BYTES_MAX:
        raise SealedRecordTooLargeError(f"a sealed record is at most {SEALED_BYTES_MAX} bytes")
    return sealed


def open_sealed(suite: Suite, sealed: Sealed, party: str, private_key: bytes) -> Opened:
    """The value of `sealed` for `party` holding `private_key`, checked against the commitment.

    NotAReaderError, UnwrapFailedError, CiphertextRejectedError or CommitmentMismatchError
    (all PrivacyError) when it cannot be opened; MalformedSealedRecordError for a bad record.
    """
    opened, _data_key = _open(suite, sealed, party, private_key)
    return opened


def rewrap(
    suite: Suite, sealed: Sealed, party: str, old_private_key: bytes, new_reader: Reader
) -> Wrapped:
    """`party`'s data key wrapped to its new key version (key rotation).

    The record is opened in full first, so a key that does not open it is never re-wrapped.
    """
    if new_reader.party != party:
        raise InvalidReaderError("a rewrap keeps the party; only its key version changes")
    _check_reader(suite, new_reader)
    _opened, data_key = _open(suite, sealed, party, old_private_key)
    context = wrap_context(sealed.label, sealed.commitment)
    wrapped = suite.wrap_key(new_reader.public_key, data_key, context)
    return Wrapped(party, new_reader.key_version, wrapped)


def _open(suite: Suite, sealed: Sealed, party: str, private_key: bytes) -> tuple[Opened, bytes]:
    check_sealed(sealed)
    if sealed.suite != suite.name:
        raise MalformedSealedRecordError(
            f"the record is sealed under suite {sealed.suite!r}, not {suite.name!r}"
        )
    entry = next((key for key in sealed.keys if key.party == party), None)
    if entry is None:
        raise NotAReaderError(f"the record holds no key for {party!r}")
    try:
        data_key = suite.unwrap_key(
            private_key, entry.wrapped, wrap_context(sealed.label, sealed.commitment)
        )
    except CryptoError:
        raise UnwrapFailedError(
            f"the key for {party!r} does not open: wrong private key, or the wrapped key was"
            " altered or taken from another record"
        ) from None
    associated_data = _associated_data(sealed.suite, sealed.label, sealed.commitment)
    try:
        plaintext = suite.decrypt(data_key, sealed.ciphertext, associated_data)
        inner = decode(plaintext, _Plaintext, size_max=SEALED_BYTES_MAX)
    except (CryptoError, DecodeError, RecursionError):  # a value nested past the decoder's limit
        raise CiphertextRejectedError("the record's ciphertext fails authentication") from None
    try:
        canonical = canonical_value(inner.value)
        if len(inner.salt) != SALT_SIZE:
            raise InvalidRecordValueError("salt of the wrong size")
    except InvalidRecordValueError:
        raise CiphertextRejectedError("the record's plaintext is malformed") from None
    expected = _commitment(suite, sealed.label, inner.salt, canonical)
    if not hmac.compare_digest(expected, sealed.commitment):
        raise CommitmentMismatchError("the decrypted value does not match the record's commitment")
    return Opened(inner.value, inner.salt), data_key


def _padded(salt: bytes, value: Any) -> bytes:
    """The plaintext's encoding, padded with zeros to a multiple of PAD_BLOCK bytes, so that a
    sealed record's size tells only its value's size to within PAD_BLOCK (an amount's
    magnitude, for one, no longer shows in the width of its encoding)."""
    bare = len(encode(_Plaintext(salt=salt, value=value)))
    target = -(-(bare + 8) // PAD_BLOCK) * PAD_BLOCK  # room for the pad field itself
    while True:
        # The pad field costs its name and a length prefix that grows with it: try the few
        # pad lengths that can land exactly on the target, else the next block.
        guess = target - bare
        for length in range(guess, max(guess - 16, -1), -1):
            plaintext = encode(_Plaintext(salt=salt, value=value, pad=bytes(length)))
            if len(plaintext) == target:
                return plaintext
        target += PAD_BLOCK


# --- Commitments (pure: contracts use these) -------------------------------------------------


def commitment_of(suite: Suite, label: str, salt: bytes, value: Any) -> bytes:
    """The commitment a record of `label` with this salt and value carries."""
    _check_label(label)
    if not isinstance(salt, bytes) or len(salt) != SALT_SIZE:
        raise InvalidRecordValueError(f"a record salt is {SALT_SIZE} bytes")
    return _commitment(suite, label, salt, canonical_value(value))


def verify_opening(
    suite: Suite, sealed_or_commitment: Sealed | bytes, label: str, salt: bytes, value: Any
) -> bool:
    """True when (label, salt, value) is what the record (or bare commitment) commits to.

    Never raises: malformed input is simply False. With a record, its suite and label must match.
    """
    candidate: object = sealed_or_commitment  # callers' arguments are checked, not trusted
    if isinstance(candidate, Sealed):
        if candidate.suite != suite.name or candidate.label != label:
            return False
        commitment = candidate.commitment
    elif isinstance(candidate, bytes):
        commitment = candidate
    else:
        return False
    try:
        expected = commitment_of(suite, label, salt, value)
    except PrivacyError:
        return False
    return hmac.compare_digest(expected, commitment)


def wrap_context(label: str, commitment: bytes) -> bytes:
    """The context every wrapped key of a record is bound to: its label and commitment."""
    return WRAP_CONTEXT_DOMAIN + _prefixed(label.encode()) + commitment


def canonical_value(value: Any) -> bytes:
    """The canonical encoding of a JSON-like value; InvalidRecordValueError for anything else.

    Allowed: None, bool, int (64-bit), str, list and dict with str keys, nested at most
    VALUE_DEPTH_MAX deep. Floats are refused (money is integers), as are bytes and tuples.
    """
    _check_value(value, 0)
    try:
        encoded = encode(value)
    except (OverflowError, TypeError, ValueError, msgspec.EncodeError):
        raise InvalidRecordValueError(
            "the value cannot be encoded (an integer out of range?)"
        ) from None
    if len(encoded) > VALUE_BYTES_MAX:
        raise InvalidRecordValueError(f"the value's encoding exceeds {VALUE_BYTES_MAX} bytes")
    return encoded


def _check_value(value: Any, depth: int) -> None:
    if depth > VALUE_DEPTH_MAX:
        raise InvalidRecordValueError(f"the value is nested deeper than {VALUE_DEPTH_MAX}")
    if value is None or isinstance(value, bool | str):
        return
    if isinstance(value, int):
        if not -(2**63) <= value < 2**64:
            raise InvalidRecordValueError("integers in a record fit in 64 bits")
        return
    if isinstance(value, list):
        for item in value:
            _check_value(item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidRecordValueError("record maps have text keys only")
            _check_value(item, depth + 1)
        return
    raise InvalidRecordValueError(
        f"a record value may not hold a {type(value).__name__} (JSON-like values, no floats)"
    )


def _commitment(suite: Suite, label: str, salt: bytes, canonical: bytes) -> bytes:
    return suite.hash(
        COMMITMENT_DOMAIN + _prefixed(label.encode()) + _prefixed(salt) + _prefixed(canonical)
    )


def _associated_data(suite_name: str, label: str, commitment: bytes) -> bytes:
    return (
        CIPHERTEXT_DOMAIN + _prefixed(suite_name.encode()) + _prefixed(label.encode()) + commitment
    )


def _prefixed(part: bytes) -> bytes:
    return len(part).to_bytes(4, "big") + part


# --- Encoding (pure, strict, bounded: contracts use these) ----------------------------------


def encode_sealed(sealed: Sealed) -> str:
    """Lowercase hex of the record's canonical encoding: a flat contract argument."""
    check_sealed(sealed)
    return encode(sealed).hex()


def decode_sealed(text: str) -> Sealed:
    """The record `encode_sealed` wrote; MalformedSealedRecordError for anything else.

    Refuses non-text, upper-case or odd hex, more than SEALED_BYTES_MAX bytes, any encoding
    but the canonical one, an unknown version or suite, a malformed label or commitment, keys
    unsorted, duplicated, too many, of the wrong size, or without the escrow key.
    """
    if not isinstance(text, str) or len(text) > 2 * SEALED_BYTES_MAX or not _HEX.match(text):
        raise MalformedSealedRecordError(
            f"a sealed record is lowercase hex of at most {SEALED_BYTES_MAX} bytes"
        )
    try:
        sealed = decode(bytes.fromhex(text), Sealed, size_max=SEALED_BYTES_MAX)
    except DecodeError:
        raise MalformedSealedRecordError("not the canonical encoding of a sealed record") from None
    check_sealed(sealed)
    return sealed


def check_sealed(sealed: Sealed) -> None:
    """MalformedSealedRecordError unless `sealed` is well formed (see `decode_sealed`)."""
    if not isinstance(sealed, Sealed) or sealed.v != SEALED_VERSION:
        raise MalformedSealedRecordError(f"not a version {SEALED_VERSION} sealed record")
    if sealed.suite not in SUITE_NAMES:
        raise MalformedSealedRecordError("a sealed record names an unknown suite")
    chain_suite = suite_named(sealed.suite)
    if not isinstance(sealed.label, str) or not _LABEL.match(sealed.label):
        raise MalformedSealedRecordError("a sealed record's label is malformed")
    if len(sealed.commitment) != chain_suite.hash_size:
        raise MalformedSealedRecordError("a sealed record's commitment has the wrong size")
    if not AEAD_NONCE_SIZE + AEAD_TAG_SIZE <= len(sealed.ciphertext) <= SEALED_BYTES_MAX:
        raise MalformedSealedRecordError("a sealed record's ciphertext has the wrong size")
    if not 1 <= len(sealed.keys) <= READERS_MAX + 1:
        raise MalformedSealedRecordError(f"a sealed record has 1 to {READERS_MAX + 1} keys")
    parties = [key.party for key in sealed.keys]
    if parties != sorted(set(parties)):
        raise MalformedSealedRecordError("a sealed record's keys are unsorted or duplicated")
    if ESCROW_PARTY not in parties:
        raise MalformedSealedRecordError("a sealed record holds no key for the escrow")
    for key in sealed.keys:
        if not _PARTY.match(key.party) or not 0 <= key.key_version <= KEY_VERSION_MAX:
            raise MalformedSealedRecordError("a sealed record's key names a malformed party")
        if len(key.wrapped) != chain_suite.wrapped_key_size:
            raise MalformedSealedRecordError("a sealed record's wrapped key has the wrong size")


def _check_label(label: str) -> None:
    if not isinstance(label, str) or not _LABEL.match(label):
        raise InvalidRecordLabelError(
            f"a record label is 1 to {LABEL_LENGTH_MAX} of A-Z a-z 0-9 _ . : / -"
        )


def _check_reader(suite: Suite, reader: Reader) -> None:
    if not isinstance(reader.party, str) or not _PARTY.match(reader.party):
        raise InvalidReaderError(f"a party is 1 to {PARTY_LENGTH_MAX} of A-Z a-z 0-9 _ . : -")
    if (
        isinstance(reader.key_version, bool)
        or not isinstance(reader.key_version, int)
        or not 0 <= reader.key_version <= KEY_VERSION_MAX
    ):
        raise InvalidReaderError(f"{reader.party}: a key version is 0 to {KEY_VERSION_MAX}")
    if not isinstance(reader.public_key, bytes) or not suite.valid_encryption_public_key(
        reader.public_key
    ):
        raise InvalidReaderError(f"{reader.party}: not a usable {suite.name} encryption key")
