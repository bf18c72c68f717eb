"""Key wrap on both suites: round trips, binding to the record, tampering, malformed keys.

The intl format is also opened by an independent computation from the documented recipe
(X25519, HKDF-SHA256, AES-256-GCM straight from `cryptography`); the gm format's interop with
gmssl lives in test_crypto_gm.py.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from consortia.crypto import SUITE_NAMES, suite
from consortia.crypto.base import WRAP_CONTEXT_SIZE_MAX
from consortia.crypto.gm import SM2_FIELD_PRIME
from consortia.crypto.gm_encrypt import der_to_raw, raw_to_der
from consortia.crypto.intl import WRAP_DOMAIN
from consortia.errors import CryptoError

CONTEXT = b"consortia/record/key/v1\x00label-and-commitment"

# X25519 public keys of low order (orders 1, 2, 4, 8) and their non-canonical encodings, as in
# Wycheproof's x25519 test vectors and libsodium's blocklist: every clamped scalar maps them to
# the all-zero shared secret.
X25519_LOW_ORDER = [
    bytes(32),
    b"\x01" + bytes(31),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),  # p - 1
    bytes.fromhex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),  # p
    bytes.fromhex("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),  # p + 1
]
SM2_GX = int("32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7", 16)
SM2_GY = int("BC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0", 16)


def _point(x: int, y: int) -> bytes:
    return b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")


@pytest.fixture(params=SUITE_NAMES)
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_wrap_round_trip_sizes_and_randomness(name: str) -> None:
    s = suite(name)
    private, public = s.generate_encryption_keypair()
    assert len(public) == s.encryption_public_key_size == {"intl": 32, "gm": 65}[name]
    assert s.encryption_public_key(private) == public
    assert s.valid_encryption_public_key(public) is True
    data_key = s.generate_aead_key()
    first = s.wrap_key(public, data_key, CONTEXT)
    second = s.wrap_key(public, data_key, CONTEXT)
    assert first != second
    assert len(first) == len(second) == s.wrapped_key_size == {"intl": 92, "gm": 145}[name]
    assert s.unwrap_key(private, first, CONTEXT) == data_key
    assert s.unwrap_key(private, second, CONTEXT) == data_key
    assert data_key not in first


def test_encryption_keys_are_separate_from_signing_keys(name: str) -> None:
    s = suite(name)
    first, second = s.generate_encryption_keypair(), s.generate_encryption_keypair()
    assert first != second
    signing_private, _ = s.generate_keypair()
    assert first[0] != signing_private


def test_another_context_is_refused(name: str) -> None:
    s = suite(name)
    private, public = s.generate_encryption_keypair()
    wrapped = s.wrap_key(public, s.generate_aead_key(), CONTEXT)
    for other in (b"", CONTEXT[:-1], CONTEXT + b"\x00", CONTEXT[:-1] + b"X"):
        with pytest.raises(CryptoError):
            s.unwrap_key(private, wrapped, other)


def test_another_private_key_is_refused(name: str) -> None:
    s = suite(name)
    _private, public = s.generate_encryption_keypair()
    other_private, _ = s.generate_encryption_keypair()
    wrapped = s.wrap_key(public, s.generate_aead_key(), CONTEXT)
    with pytest.raises(CryptoError):
        s.unwrap_key(other_private, wrapped, CONTEXT)


def test_every_altered_byte_is_refused(name: str) -> None:
    s = suite(name)
    private, public = s.generate_encryption_keypair()
    wrapped = s.wrap_key(public, s.generate_aead_key(), CONTEXT)
    for index in range(len(wrapped)):
        for mask in (0x01, 0x80):
            altered = bytearray(wrapped)
            altered[index] ^= mask
            with pytest.raises(CryptoError):
                s.unwrap_key(private, bytes(altered), CONTEXT)


def test_truncated_extended_and_empty_wraps_are_refused(name: str) -> None:
    s = suite(name)
    private, public = s.generate_encryption_keypair()
    wrapped = s.wrap_key(public, s.generate_aead_key(), CONTEXT)
    for candidate in (b"", wrapped[:-1], wrapped + b"\x00", wrapped[1:], bytes(len(wrapped))):
        with pytest.raises(CryptoError):
            s.unwrap_key(private, candidate, CONTEXT)


def test_wrap_refuses_bad_data_keys_and_contexts(name: str) -> None:
    s = suite(name)
    private, public = s.generate_encryption_keypair()
    for data_key in (b"", bytes(s.aead_key_size - 1), bytes(s.aead_key_size + 1)):
        with pytest.raises(CryptoError):
            s.wrap_key(public, data_key, CONTEXT)
    big = bytes(WRAP_CONTEXT_SIZE_MAX + 1)
    with pytest.raises(CryptoError):
        s.wrap_key(public, s.generate_aead_key(), big)
    wrapped = s.wrap_key(public, s.generate_aead_key(), bytes(WRAP_CONTEXT_SIZE_MAX))
    with pytest.raises(CryptoError):
        s.unwrap_key(private, wrapped, big)


def test_malformed_private_keys_are_refused(name: str) -> None:
    s = suite(name)
    _private, public = s.generate_encryption_keypair()
    wrapped = s.wrap_key(public, s.generate_aead_key(), CONTEXT)
    for private in (b"", bytes(31), bytes(33)):
        with pytest.raises(CryptoError):
            s.unwrap_key(private, wrapped, CONTEXT)
        with pytest.raises(CryptoError):
            s.encryption_public_key(private)


# --- intl ------------------------------------------------------------------------------------


@pytest.mark.parametrize("point", X25519_LOW_ORDER, ids=[p.hex()[:8] for p in X25519_LOW_ORDER])
def test_x25519_low_order_points_are_not_valid_keys(point: bytes) -> None:
    s = suite("intl")
    high_bit = point[:31] + bytes([point[31] | 0x80])
    for candidate in (point, high_bit):
        assert s.valid_encryption_public_key(candidate) is False
        with pytest.raises(CryptoError):
            s.wrap_key(candidate, s.generate_aead_key(), CONTEXT)


def test_x25519_non_canonical_encodings_are_not_valid_keys() -> None:
    s = suite("intl")
    _private, public = s.generate_encryption_keypair()
    assert public[31] & 0x80 == 0
    assert s.valid_encryption_public_key(public[:31] + bytes([public[31] | 0x80])) is False
    # u = p + 2 (a canonical 2 is a valid point of large order; p + 2 is its alias)
    alias = (2**255 - 19 + 2).to_bytes(32, "little")
    assert s.valid_encryption_public_key((2).to_bytes(32, "little")) is True
    assert s.valid_encryption_public_key(alias) is False


def test_x25519_low_order_ephemeral_key_is_refused() -> None:
    s = suite("intl")
    private, public = s.generate_encryption_keypair()
    wrapped = s.wrap_key(public, s.generate_aead_key(), CONTEXT)
    for point in X25519_LOW_ORDER:
        with pytest.raises(CryptoError):
            s.unwrap_key(private, point + wrapped[32:], CONTEXT)


def test_intl_wrap_follows_the_documented_recipe() -> None:
    """Open our wrap with `cryptography` alone, from the format docs/crypto.md describes."""
    s = suite("intl")
    private, public = s.generate_encryption_keypair()
    data_key = s.generate_aead_key()
    wrapped = s.wrap_key(public, data_key, CONTEXT)
    ephemeral, nonce, sealed = wrapped[:32], wrapped[32:44], wrapped[44:]
    shared = X25519PrivateKey.from_private_bytes(private).exchange(
        X25519PublicKey.from_public_bytes(ephemeral)
    )
    info = WRAP_DOMAIN + ephemeral + public + len(CONTEXT).to_bytes(4, "big") + CONTEXT
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared)
    assert AESGCM(key).decrypt(nonce, sealed, WRAP_DOMAIN) == data_key
    assert WRAP_DOMAIN == b"consortia/wrap/x25519-hkdf-sha256-aes256gcm/v1\x00"


# --- gm --------------------------------------------------------------------------------------


def test_sm2_malformed_points_are_not_valid_keys() -> None:
    s = suite("gm")
    _private, public = s.generate_encryption_keypair()
    base = _point(SM2_GX, SM2_GY)
    assert s.valid_encryption_public_key(base) is True
    candidates = [
        public[:-1] + bytes([public[-1] ^ 1]),  # off the curve
        _point(SM2_GX, SM2_GY + 1),
        b"\x04" + bytes(64),  # (0, 0) is not on the curve; infinity has no 65-byte form
        b"\x00" + bytes(64),
        b"\x02" + public[1:],
        b"\x03" + public[1:],
        b"\x06" + public[1:],
        b"\x07" + public[1:],
        public[:33],
        public + b"\x00",
        b"",
        _point(SM2_FIELD_PRIME, SM2_GY),  # coordinates not reduced modulo p
        _point(SM2_GX, SM2_FIELD_PRIME),
        _point(2**256 - 1, 2**256 - 1),
    ]
    for candidate in candidates:
        assert s.valid_encryption_public_key(candidate) is False
        with pytest.raises(CryptoError):
            s.wrap_key(candidate, s.generate_aead_key(), CONTEXT)


def test_sm2_off_curve_c1_is_refused() -> None:
    s = suite("gm")
    private, public = s.generate_encryption_keypair()
    wrapped = s.wrap_key(public, s.generate_aead_key(), CONTEXT)
    for c1 in (
        _point(SM2_GX, SM2_GY + 1),
        b"\x04" + bytes(64),
        b"\x02" + wrapped[1:65],
        _point(SM2_FIELD_PRIME, SM2_GY),
    ):
        with pytest.raises(CryptoError):
            s.unwrap_key(private, c1 + wrapped[65:], CONTEXT)


def test_sm2_private_key_out_of_range_is_refused() -> None:
    s = suite("gm")
    _private, public = s.generate_encryption_keypair()
    wrapped = s.wrap_key(public, s.generate_aead_key(), CONTEXT)
    order = int("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123", 16)
    for scalar in (0, order - 1, order, 2**256 - 1):
        with pytest.raises(CryptoError):
            s.unwrap_key(scalar.to_bytes(32, "big"), wrapped, CONTEXT)


def test_sm2_der_conversion_round_trips_and_is_strict() -> None:
    s = suite("gm")
    _private, public = s.generate_encryption_keypair()
    raw = s.wrap_key(public, s.generate_aead_key(), CONTEXT)
    der = raw_to_der(raw)
    assert der_to_raw(der) == raw
    assert der[0] == 0x30
    for bad in (der + b"\x00", der[:-1], b"\x31" + der[1:], b"", b"\x30\x00"):
        with pytest.raises(CryptoError):
            der_to_raw(bad)
    # a small x needs padding back to 32 bytes, and a non-minimal integer is refused
    tiny = b"\x04" + (5).to_bytes(32, "big") + raw[33:]
    assert der_to_raw(raw_to_der(tiny)) == tiny
    der = raw_to_der(tiny)
    assert der[1] < 0x80  # short-form length: the content starts at byte 2
    content = der[2:].replace(b"\x02\x01\x05", b"\x02\x02\x00\x05", 1)
    with pytest.raises(CryptoError, match="non-minimal DER integer"):
        der_to_raw(bytes([0x30, len(content)]) + content)
    with pytest.raises(CryptoError, match="non-minimal or oversized DER length"):
        der_to_raw(bytes([0x30, 0x81, len(der) - 2]) + der[2:])


# --- properties ------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=80), suite_name=st.sampled_from(SUITE_NAMES))
def test_valid_encryption_public_key_never_raises(data: bytes, suite_name: str) -> None:
    s = suite(suite_name)
    first = s.valid_encryption_public_key(data)
    assert first is s.valid_encryption_public_key(data)  # deterministic
    padded = data.ljust(s.encryption_public_key_size, b"\x01")[: s.encryption_public_key_size]
    for candidate in (padded, b"\x04" + padded[1:]):
        if s.valid_encryption_public_key(candidate):  # the library takes a wrap to it
            assert len(s.wrap_key(candidate, s.generate_aead_key(), b"ctx")) == s.wrapped_key_size


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=200), suite_name=st.sampled_from(SUITE_NAMES))
def test_unwrap_of_arbitrary_bytes_raises_only_crypto_error(data: bytes, suite_name: str) -> None:
    s = suite(suite_name)
    private = KEYS[suite_name]
    candidate = data.ljust(s.wrapped_key_size, b"\x00")[: s.wrapped_key_size]
    for wrapped in (data, candidate, b"\x04" + candidate[1:]):
        with pytest.raises(CryptoError):
            s.unwrap_key(private, wrapped, CONTEXT)


KEYS = {name: suite(name).generate_encryption_keypair()[0] for name in SUITE_NAMES}
