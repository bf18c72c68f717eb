"""Properties every suite must have, checked for both: the Suite contract, not one algorithm."""

from __future__ import annotations

import gc
import os
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consortia.crypto import SUITE_NAMES, Suite, VerifyItem, suite
from consortia.crypto.base import (
    AEAD_NONCE_SIZE,
    AEAD_TAG_SIZE,
    PARALLEL_VERIFY_THRESHOLD,
)
from consortia.errors import ConsortiaError, CryptoError, UnknownSuiteError

ALL_SUITES = [suite(name) for name in SUITE_NAMES]
SUITE_IDS = list(SUITE_NAMES)

# Hypothesis: no example database written into the checkout, no per-example deadline (the
# first call into a library may pay a one-off setup cost).
FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _flip(data: bytes, bit: int) -> bytes:
    flipped = bytearray(data)
    flipped[bit // 8] ^= 1 << (bit % 8)
    return bytes(flipped)


# --- Suite selection --------------------------------------------------------------------------


def test_suite_names() -> None:
    assert SUITE_NAMES == ("intl", "gm")
    assert [s.name for s in ALL_SUITES] == ["intl", "gm"]
    assert all(isinstance(s, Suite) for s in ALL_SUITES)
    assert suite("intl") is suite("intl")


@pytest.mark.parametrize("name", ["bogus", "", "INTL", "Gm", "sm2", "intl "])
def test_unknown_suite_raises_with_stable_code(name: str) -> None:
    with pytest.raises(UnknownSuiteError) as caught:
        suite(name)
    error = caught.value
    assert isinstance(error, ConsortiaError)
    assert error.code == "unknown_suite"
    assert error.as_dict()["code"] == "unknown_suite"
    assert repr(name) in error.message
    assert str(error).startswith("unknown_suite: ")


@pytest.mark.parametrize(
    ("name", "sizes"),
    [("intl", (32, 32, 64, 32)), ("gm", (32, 65, 64, 16))],
)
def test_declared_sizes(name: str, sizes: tuple[int, int, int, int]) -> None:
    s = suite(name)
    assert (s.private_key_size, s.public_key_size, s.signature_size, s.aead_key_size) == sizes
    private, public = s.generate_keypair()
    assert (len(private), len(public)) == sizes[:2]
    assert len(s.sign(private, b"m")) == sizes[2]
    assert len(s.generate_aead_key()) == sizes[3]
    assert s.hash_size == 32


# --- Signatures -------------------------------------------------------------------------------


@pytest.fixture(params=ALL_SUITES, ids=SUITE_IDS)
def any_suite(request: pytest.FixtureRequest) -> Suite:
    chosen: Suite = request.param
    return chosen


def test_sign_verify_round_trip(any_suite: Suite) -> None:
    private, public = any_suite.generate_keypair()
    assert any_suite.public_key(private) == public
    for message in (b"", b"x", b"\x00" * 1000):
        assert any_suite.verify(public, message, any_suite.sign(private, message)) is True


def test_two_generated_keypairs_differ(any_suite: Suite) -> None:
    assert any_suite.generate_keypair() != any_suite.generate_keypair()


def test_wrong_public_key_fails(any_suite: Suite) -> None:
    private, _public = any_suite.generate_keypair()
    _other_private, other_public = any_suite.generate_keypair()
    signature = any_suite.sign(private, b"m")
    assert any_suite.verify(other_public, b"m", signature) is False


def test_flipped_message_bits_fail(any_suite: Suite) -> None:
    private, public = any_suite.generate_keypair()
    message = b"transfer 100 to bank B"
    signature = any_suite.sign(private, message)
    for bit in (0, 7, 8 * len(message) // 2, 8 * len(message) - 1):
        assert any_suite.verify(public, _flip(message, bit), signature) is False
    assert any_suite.verify(public, message, signature) is True


def test_flipped_signature_bits_fail(any_suite: Suite) -> None:
    private, public = any_suite.generate_keypair()
    signature = any_suite.sign(private, b"m")
    # First and last bit of each half (R/r and S/s) and a few in between.
    for bit in (0, 1, 130, 255, 256, 257, 400, 511):
        assert any_suite.verify(public, b"m", _flip(signature, bit)) is False


def test_wrong_lengths_return_false(any_suite: Suite) -> None:
    private, public = any_suite.generate_keypair()
    signature = any_suite.sign(private, b"m")
    for bad_signature in (b"", signature[:-1], signature + b"\x00", signature * 2):
        assert any_suite.verify(public, b"m", bad_signature) is False
    for bad_public in (b"", public[:-1], public + b"\x00", public[1:]):
        assert any_suite.verify(bad_public, b"m", signature) is False


def test_all_zero_and_all_ones_inputs_return_false(any_suite: Suite) -> None:
    for fill in (0x00, 0xFF):
        public = bytes([fill]) * any_suite.public_key_size
        signature = bytes([fill]) * any_suite.signature_size
        assert any_suite.verify(public, b"m", signature) is False


def test_malformed_private_key_raises(any_suite: Suite) -> None:
    for bad in (b"", b"\x01" * (any_suite.private_key_size - 1), b"\x01" * 64):
        with pytest.raises(CryptoError):
            any_suite.sign(bad, b"m")


def test_hash_is_32_bytes_and_deterministic(any_suite: Suite) -> None:
    assert len(any_suite.hash(b"")) == 32
    assert any_suite.hash(b"data") == any_suite.hash(b"data")
    assert any_suite.hash(b"data") != any_suite.hash(b"datb")


def test_the_two_hashes_differ() -> None:
    assert suite("intl").hash(b"abc") != suite("gm").hash(b"abc")


def test_a_signature_of_one_suite_does_not_verify_in_the_other() -> None:
    intl, gm = suite("intl"), suite("gm")
    gm_private, gm_public = gm.generate_keypair()
    intl_private, intl_public = intl.generate_keypair()
    assert intl.verify(gm_public, b"m", gm.sign(gm_private, b"m")) is False
    assert gm.verify(intl_public, b"m", intl.sign(intl_private, b"m")) is False


@pytest.mark.parametrize("chain_suite", ALL_SUITES, ids=SUITE_IDS)
def test_no_private_key_is_kept_after_use(chain_suite: Suite) -> None:
    """Signing and deriving a public key must not leave the private key referenced by a
    cache (a cache keyed by private keys keeps every key in memory for the process' life)."""
    private_key = bytes(chain_suite.generate_keypair()[0])  # a fresh object only we hold
    references = sys.getrefcount(private_key)
    chain_suite.sign(private_key, b"message")
    chain_suite.public_key(private_key)
    assert sys.getrefcount(private_key) == references
    assert not gc.get_referrers(private_key)[1:], "something besides this frame holds the key"


@pytest.mark.parametrize("chain_suite", ALL_SUITES, ids=SUITE_IDS)
def test_a_held_signing_key_signs_like_the_suite(chain_suite: Suite) -> None:
    private_key, public_key = chain_suite.generate_keypair()
    held = chain_suite.signing_key(private_key)
    assert held.public_key == public_key == chain_suite.public_key(private_key)
    assert chain_suite.verify(public_key, b"m", held.sign(b"m"))
    assert private_key.hex() not in repr(held) and public_key.hex()[:16] in repr(held)
    with pytest.raises(CryptoError):
        chain_suite.signing_key(private_key[:-1])


# --- AEAD -------------------------------------------------------------------------------------


def test_aead_round_trip_and_layout(any_suite: Suite) -> None:
    key = any_suite.generate_aead_key()
    for plaintext in (b"", b"p", b"q" * 1024):
        sealed = any_suite.encrypt(key, plaintext, b"ad")
        assert len(sealed) == AEAD_NONCE_SIZE + len(plaintext) + AEAD_TAG_SIZE
        assert any_suite.decrypt(key, sealed, b"ad") == plaintext
    # associated_data defaults to empty on both sides
    assert any_suite.decrypt(key, any_suite.encrypt(key, b"p")) == b"p"
    assert any_suite.decrypt(key, any_suite.encrypt(key, b"p", b""), b"") == b"p"


def test_encrypting_twice_gives_different_ciphertexts(any_suite: Suite) -> None:
    key = any_suite.generate_aead_key()
    first = any_suite.encrypt(key, b"same plaintext", b"ad")
    second = any_suite.encrypt(key, b"same plaintext", b"ad")
    assert first != second
    assert first[:AEAD_NONCE_SIZE] != second[:AEAD_NONCE_SIZE]
    assert any_suite.decrypt(key, first, b"ad") == any_suite.decrypt(key, second, b"ad")


@pytest.mark.parametrize(
    "where",
    ["nonce-first", "nonce-last", "ciphertext", "tag-first", "tag-last"],
)
def test_tampered_ciphertext_raises(any_suite: Suite, where: str) -> None:
    key = any_suite.generate_aead_key()
    plaintext = b"sixteen byte msg and more"
    sealed = any_suite.encrypt(key, plaintext, b"ad")
    index = {
        "nonce-first": 0,
        "nonce-last": AEAD_NONCE_SIZE - 1,
        "ciphertext": AEAD_NONCE_SIZE + 3,
        "tag-first": len(sealed) - AEAD_TAG_SIZE,
        "tag-last": len(sealed) - 1,
    }[where]
    tampered = bytearray(sealed)
    tampered[index] ^= 0x01
    with pytest.raises(CryptoError) as caught:
        any_suite.decrypt(key, bytes(tampered), b"ad")
    assert caught.value.code == "crypto_error"


def test_tampered_associated_data_raises(any_suite: Suite) -> None:
    key = any_suite.generate_aead_key()
    sealed = any_suite.encrypt(key, b"p", b"header v1")
    for wrong in (b"header v2", b"", b"header v1\x00"):
        with pytest.raises(CryptoError):
            any_suite.decrypt(key, sealed, wrong)


def test_truncated_or_extended_ciphertext_raises(any_suite: Suite) -> None:
    key = any_suite.generate_aead_key()
    sealed = any_suite.encrypt(key, b"plaintext", b"")
    for bad in (b"", sealed[: AEAD_NONCE_SIZE + AEAD_TAG_SIZE - 1], sealed[:-1], sealed + b"\x00"):
        with pytest.raises(CryptoError):
            any_suite.decrypt(key, bad, b"")


def test_wrong_aead_key_raises(any_suite: Suite) -> None:
    key = any_suite.generate_aead_key()
    sealed = any_suite.encrypt(key, b"p")
    with pytest.raises(CryptoError):
        any_suite.decrypt(any_suite.generate_aead_key(), sealed)
    for bad_key in (b"", key[:-1], key + b"\x00"):
        with pytest.raises(CryptoError):
            any_suite.encrypt(bad_key, b"p")
        with pytest.raises(CryptoError):
            any_suite.decrypt(bad_key, sealed)


# --- verify_many ------------------------------------------------------------------------------


def _batch(s: Suite, size: int, bad: set[int]) -> tuple[list[VerifyItem], list[bool]]:
    """`size` items from a few signers; those at positions in `bad` are broken in turn in
    different ways (flipped signature, wrong message, wrong key, truncated signature)."""
    signers = [s.generate_keypair() for _ in range(3)]
    items: list[VerifyItem] = []
    expected: list[bool] = []
    for i in range(size):
        private, public = signers[i % len(signers)]
        message = f"item {i}".encode()
        signature = s.sign(private, message)
        if i in bad:
            kind = i % 4
            if kind == 0:
                signature = _flip(signature, 9)
            elif kind == 1:
                message += b"!"
            elif kind == 2:
                public = signers[(i + 1) % len(signers)][1]
            else:
                signature = signature[:-1]
        items.append((public, message, signature))
        expected.append(i not in bad)
    return items, expected


def test_verify_many_above_threshold_returns_results_in_order(any_suite: Suite) -> None:
    size = 3 * PARALLEL_VERIFY_THRESHOLD + 5  # uneven, so the chunks differ in length
    bad = {0, 1, 2, 3, 17, 40, 41, 64, size - 2, size - 1}
    items, expected = _batch(any_suite, size, bad)
    results = any_suite.verify_many(items)
    assert results == expected
    assert [i for i, ok in enumerate(results) if not ok] == sorted(bad)


def test_verify_many_uses_the_pool_only_above_threshold(
    any_suite: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    chunk_sizes: list[int] = []
    real_chunk = any_suite._verify_chunk

    def recording_chunk(items: list[VerifyItem]) -> list[bool]:
        chunk_sizes.append(len(items))
        return real_chunk(items)

    monkeypatch.setattr(any_suite, "_verify_chunk", recording_chunk)
    small, _ = _batch(any_suite, PARALLEL_VERIFY_THRESHOLD - 1, set())
    assert any_suite.verify_many(small) == [True] * len(small)
    assert chunk_sizes == []
    large, expected = _batch(any_suite, PARALLEL_VERIFY_THRESHOLD * 2 + 1, {5})
    assert any_suite.verify_many(large) == expected
    assert sum(chunk_sizes) == len(large)
    # One chunk per worker thread at most, and more than one whenever there are several.
    workers = max(1, os.cpu_count() or 1)
    assert len(chunk_sizes) <= workers
    assert len(chunk_sizes) >= min(2, workers)


def test_verify_many_at_and_below_threshold(any_suite: Suite) -> None:
    for size in (PARALLEL_VERIFY_THRESHOLD - 1, PARALLEL_VERIFY_THRESHOLD):
        bad = {1, size - 1}
        items, expected = _batch(any_suite, size, bad)
        assert any_suite.verify_many(items) == expected


def test_verify_many_edge_batches(any_suite: Suite) -> None:
    assert any_suite.verify_many([]) == []
    items, _expected = _batch(any_suite, PARALLEL_VERIFY_THRESHOLD * 2, set())
    assert any_suite.verify_many(items) == [True] * len(items)
    broken = [(pk, msg + b"?", sig) for pk, msg, sig in items]
    assert any_suite.verify_many(broken) == [False] * len(items)


def test_verify_many_agrees_with_verify_on_garbage(any_suite: Suite) -> None:
    private, public = any_suite.generate_keypair()
    items: list[VerifyItem] = [
        (b"", b"", b""),
        (public, b"m", b"\x00" * any_suite.signature_size),
        (b"\xff" * any_suite.public_key_size, b"m", b"\xff" * any_suite.signature_size),
        (public, b"m", any_suite.sign(private, b"m")),
    ] * PARALLEL_VERIFY_THRESHOLD
    assert any_suite.verify_many(items) == [any_suite.verify(*item) for item in items]
    assert any_suite.verify_many(items).count(True) == PARALLEL_VERIFY_THRESHOLD


# --- Robustness: verify and decrypt on arbitrary input ----------------------------------------


def _sized(size: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=size, max_size=size)


def _public_keys(s: Suite) -> st.SearchStrategy[bytes]:
    # Arbitrary lengths, plus keys of the right length (with the SM2 uncompressed prefix
    # for gm) so that the input reaches the primitive library instead of the length check.
    right_size = _sized(s.public_key_size)
    if s.public_key_size == 65:
        right_size = _sized(64).map(lambda xy: b"\x04" + xy)
    return st.one_of(st.binary(max_size=100), right_size)


def _signatures(s: Suite) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=100), _sized(s.signature_size))


@pytest.mark.parametrize("s", ALL_SUITES, ids=SUITE_IDS)
def test_verify_never_raises_on_arbitrary_bytes(s: Suite) -> None:
    @FUZZ
    @given(public=_public_keys(s), message=st.binary(max_size=200), signature=_signatures(s))
    def check(public: bytes, message: bytes, signature: bytes) -> None:
        result = s.verify(public, message, signature)
        assert result is False  # a random signature of a random key is never valid

    check()


@pytest.mark.parametrize("s", ALL_SUITES, ids=SUITE_IDS)
def test_verify_never_raises_on_mutated_valid_signatures(s: Suite) -> None:
    private, public = s.generate_keypair()
    signature = s.sign(private, b"m")

    @FUZZ
    @given(
        index=st.integers(0, s.signature_size - 1),
        mask=st.integers(1, 255),
        key_index=st.integers(0, s.public_key_size - 1),
        key_mask=st.integers(0, 255),
    )
    def check(index: int, mask: int, key_index: int, key_mask: int) -> None:
        bad_signature = bytearray(signature)
        bad_signature[index] ^= mask
        bad_public = bytearray(public)
        bad_public[key_index] ^= key_mask
        assert s.verify(bytes(bad_public), b"m", bytes(bad_signature)) is False

    check()


@pytest.mark.parametrize("s", ALL_SUITES, ids=SUITE_IDS)
def test_decrypt_of_arbitrary_bytes_only_raises_crypto_error(s: Suite) -> None:
    key = s.generate_aead_key()

    @FUZZ
    @given(ciphertext=st.binary(max_size=200), associated_data=st.binary(max_size=50))
    def check(ciphertext: bytes, associated_data: bytes) -> None:
        with pytest.raises(CryptoError):
            s.decrypt(key, ciphertext, associated_data)

    check()


@pytest.mark.parametrize("s", ALL_SUITES, ids=SUITE_IDS)
def test_sign_verify_and_aead_round_trip_on_arbitrary_messages(s: Suite) -> None:
    private, public = s.generate_keypair()
    key = s.generate_aead_key()

    @settings(max_examples=50, deadline=None, database=None)
    @given(message=st.binary(max_size=500), associated_data=st.binary(max_size=50))
    def check(message: bytes, associated_data: bytes) -> None:
        assert s.verify(public, message, s.sign(private, message)) is True
        assert s.decrypt(key, s.encrypt(key, message, associated_data), associated_data) == (
            message
        )

    check()
