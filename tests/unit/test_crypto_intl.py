"""The international suite: published known answers, cross-checks and Ed25519 edge cases.

Every vector below is written out byte for byte with the document it comes from, so a change
of library (or of how we call it) that alters a single bit fails here rather than on a chain.
"""

from __future__ import annotations

import hashlib

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from consortia.crypto import suite
from consortia.crypto.base import AEAD_NONCE_SIZE, AEAD_TAG_SIZE
from consortia.crypto.intl import IntlSuite
from consortia.errors import CryptoError

INTL = suite("intl")

# RFC 8032 "Edwards-Curve Digital Signature Algorithm (EdDSA)", section 7.1
# "Test Vectors for Ed25519": TEST 1, TEST 2, TEST 3 and TEST SHA(abc).
# (secret key = 32-byte seed, public key, message, signature), all hex.
RFC8032_VECTORS = {
    "TEST 1": (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    "TEST 2": (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    "TEST 3": (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
        "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
    "TEST SHA(abc)": (
        "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
        "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
        "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b589"
        "09351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704",
    ),
}

# The order L of the Ed25519 base point (RFC 8032, section 5.1).
ED25519_L = 2**252 + 27742317777372353535851937790883648493


def _vector(name: str) -> tuple[bytes, bytes, bytes, bytes]:
    seed, public, message, signature = RFC8032_VECTORS[name]
    return (
        bytes.fromhex(seed),
        bytes.fromhex(public),
        bytes.fromhex(message),
        bytes.fromhex(signature),
    )


# --- Ed25519 known answers (RFC 8032 section 7.1) -------------------------------------------


@pytest.mark.parametrize("name", sorted(RFC8032_VECTORS))
def test_rfc8032_public_key_from_seed(name: str) -> None:
    seed, public, _message, _signature = _vector(name)
    assert INTL.public_key(seed) == public


@pytest.mark.parametrize("name", sorted(RFC8032_VECTORS))
def test_rfc8032_signature_is_exact(name: str) -> None:
    # Ed25519 is deterministic, so our signature must equal the published one bit for bit.
    seed, _public, message, signature = _vector(name)
    assert INTL.sign(seed, message) == signature


@pytest.mark.parametrize("name", sorted(RFC8032_VECTORS))
def test_rfc8032_signature_verifies(name: str) -> None:
    _seed, public, message, signature = _vector(name)
    assert INTL.verify(public, message, signature) is True
    assert INTL.verify(public, message + b"\x00", signature) is False


def test_rfc8032_sha_abc_message_is_sha512_of_abc() -> None:
    # The RFC names this vector's message SHA(abc); check our transcription of it.
    _seed, _public, message, _signature = _vector("TEST SHA(abc)")
    assert message == hashlib.sha512(b"abc").digest()


# --- SHA-256 known answers (FIPS 180-2, Appendix B) -----------------------------------------


def test_sha256_fips180_abc() -> None:
    # FIPS 180-2 Appendix B.1, the one-block message "abc".
    assert INTL.hash(b"abc") == bytes.fromhex(
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_sha256_fips180_two_blocks() -> None:
    # FIPS 180-2 Appendix B.2, the 448-bit multi-block message.
    message = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
    assert INTL.hash(message) == bytes.fromhex(
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
    )


def test_sha256_fips180_million_a() -> None:
    # FIPS 180-2 Appendix B.3, one million repetitions of "a".
    assert INTL.hash(b"a" * 1_000_000) == bytes.fromhex(
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
    )


# --- AES-256-GCM known answers --------------------------------------------------------------

# (key, nonce, plaintext, associated data, ciphertext, tag), all hex, 96-bit nonces.
AES_GCM_VECTORS = {
    # NIST CAVP GCM test vectors, gcmEncryptExtIV256.rsp,
    # [Keylen = 256] [IVlen = 96] [PTlen = 128] [AADlen = 0] [Taglen = 128], Count = 0.
    "cavp-256-96-128-0": (
        "31bdadd96698c204aa9ce1448ea94ae1fb4a9a0b3c9d773b51bb1822666b8f22",
        "0d18e06c7c725ac9e362e1ce",
        "2db5168e932556f8089a0622981d017d",
        "",
        "fa4362189661d163fcd6a56d8bf0405a",
        "d636ac1bbedd5cc3ee727dc2ab4a9489",
    ),
    # McGrew and Viega, "The Galois/Counter Mode of Operation (GCM)", the specification
    # submitted to NIST (the basis of SP 800-38D), Appendix B, Test Case 16: AES-256,
    # 96-bit IV, 60-byte plaintext, 20 bytes of associated data.
    "gcm-spec-test-case-16": (
        "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
        "cafebabefacedbaddecaf888",
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
        "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        "feedfacedeadbeeffeedfacedeadbeefabaddad2",
        "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
        "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
        "76fc6ece0f4e1768cddf8853bb2d551b",
    ),
}


def _gcm_vector(name: str) -> tuple[bytes, bytes, bytes, bytes, bytes, bytes]:
    key, nonce, plaintext, aad, ciphertext, tag = AES_GCM_VECTORS[name]
    return (
        bytes.fromhex(key),
        bytes.fromhex(nonce),
        bytes.fromhex(plaintext),
        bytes.fromhex(aad),
        bytes.fromhex(ciphertext),
        bytes.fromhex(tag),
    )


@pytest.mark.parametrize("name", sorted(AES_GCM_VECTORS))
def test_aes_gcm_seal_known_answer(name: str) -> None:
    key, nonce, plaintext, aad, ciphertext, tag = _gcm_vector(name)
    assert INTL._seal(key, nonce, plaintext, aad) == ciphertext + tag


@pytest.mark.parametrize("name", sorted(AES_GCM_VECTORS))
def test_aes_gcm_open_known_answer(name: str) -> None:
    key, nonce, plaintext, aad, ciphertext, tag = _gcm_vector(name)
    assert INTL._open(key, nonce, ciphertext + tag, aad) == plaintext
    # The same bytes in the public layout (nonce || ciphertext || tag) decrypt too.
    assert INTL.decrypt(key, nonce + ciphertext + tag, aad) == plaintext


@pytest.mark.parametrize("name", sorted(AES_GCM_VECTORS))
def test_aes_gcm_open_rejects_a_wrong_tag(name: str) -> None:
    key, nonce, _plaintext, aad, ciphertext, tag = _gcm_vector(name)
    bad_tag = bytes([tag[0] ^ 0x80]) + tag[1:]
    with pytest.raises(CryptoError):
        INTL._open(key, nonce, ciphertext + bad_tag, aad)


# --- Cross-verification against `cryptography`'s Ed25519 (OpenSSL) ---------------------------

MESSAGES = [b"", b"m", b"consortia vote", bytes(range(256)) * 5]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: f"{len(m)}B")
def test_ed25519_our_signature_verifies_in_cryptography(message: bytes) -> None:
    private, public = INTL.generate_keypair()
    signature = INTL.sign(private, message)
    theirs = Ed25519PublicKey.from_public_bytes(public)
    theirs.verify(signature, message)  # raises InvalidSignature on failure
    with pytest.raises(InvalidSignature):
        theirs.verify(signature, message + b"!")


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: f"{len(m)}B")
def test_ed25519_cryptography_signature_verifies_with_suite(message: bytes) -> None:
    theirs = Ed25519PrivateKey.generate()
    public = theirs.public_key().public_bytes_raw()
    signature = theirs.sign(message)
    assert INTL.verify(public, message, signature) is True
    assert INTL.verify(public, message + b"!", signature) is False


def test_ed25519_public_keys_and_signatures_agree_with_cryptography() -> None:
    for _ in range(8):
        private, public = INTL.generate_keypair()
        theirs = Ed25519PrivateKey.from_private_bytes(private)
        assert theirs.public_key().public_bytes_raw() == public
        assert INTL.public_key(private) == public
        # Both are RFC 8032 Ed25519, which is deterministic: the signatures are identical.
        assert theirs.sign(b"same message") == INTL.sign(private, b"same message")


def test_aes_gcm_public_layout_opens_with_cryptography() -> None:
    key = INTL.generate_aead_key()
    sealed = INTL.encrypt(key, b"payload", b"header")
    nonce, body = sealed[:AEAD_NONCE_SIZE], sealed[AEAD_NONCE_SIZE:]
    assert len(body) == len(b"payload") + AEAD_TAG_SIZE
    assert AESGCM(key).decrypt(nonce, body, b"header") == b"payload"
    nonce = bytes(range(AEAD_NONCE_SIZE))
    theirs = nonce + AESGCM(key).encrypt(nonce, b"other payload", b"h2")
    assert INTL.decrypt(key, theirs, b"h2") == b"other payload"


# --- Ed25519 edge cases that matter to a ledger ----------------------------------------------


def test_ed25519_every_single_bit_flip_of_a_signature_fails() -> None:
    seed, public, message, signature = _vector("TEST 2")
    for bit in range(len(signature) * 8):
        flipped = bytearray(signature)
        flipped[bit // 8] ^= 1 << (bit % 8)
        assert INTL.verify(public, message, bytes(flipped)) is False, bit
    assert INTL.sign(seed, message) == signature


def test_ed25519_rejects_non_canonical_s() -> None:
    # S + L is the same scalar mod L; accepting it would make signatures (and so transaction
    # ids that cover them) malleable. RFC 8032 section 5.1.7 requires rejecting S >= L.
    _seed, public, message, signature = _vector("TEST 1")
    s = int.from_bytes(signature[32:], "little")
    malleated = signature[:32] + (s + ED25519_L).to_bytes(32, "little")
    assert malleated != signature
    assert INTL.verify(public, message, malleated) is False


def test_ed25519_rejects_the_identity_public_key() -> None:
    # The neutral element (y = 1) as public key with R = identity and S = 0 satisfies the
    # verification equation for every message; a small-order key must be refused.
    identity = (1).to_bytes(32, "little")
    signature = identity + bytes(32)
    assert INTL.verify(identity, b"anything", signature) is False


def test_ed25519_wrong_key_fails() -> None:
    _seed, _public, message, signature = _vector("TEST 3")
    _other_seed, other_public, _m, _s = _vector("TEST 2")
    assert INTL.verify(other_public, message, signature) is False


@pytest.mark.parametrize("size", [0, 1, 31, 33, 64])
def test_ed25519_malformed_private_key_raises(size: int) -> None:
    with pytest.raises(CryptoError) as caught:
        INTL.sign(b"\x01" * size, b"m")
    assert caught.value.code == "crypto_error"
    with pytest.raises(CryptoError):
        INTL.public_key(b"\x01" * size)


# --- X25519 key agreement ---------------------------------------------------------------------

# RFC 7748 "Elliptic Curves for Security", section 6.1 (Curve25519 Diffie-Hellman).
X25519_ALICE_PRIVATE = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"
X25519_ALICE_PUBLIC = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
X25519_BOB_PRIVATE = "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"
X25519_BOB_PUBLIC = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
X25519_SHARED = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"


def test_x25519_rfc7748_agreement_both_directions() -> None:
    assert isinstance(INTL, IntlSuite)
    alice_private = bytes.fromhex(X25519_ALICE_PRIVATE)
    bob_private = bytes.fromhex(X25519_BOB_PRIVATE)
    # Our key is HKDF-SHA256 (RFC 5869) of the published shared secret, with the domain tag
    # and both public keys in byte order (Alice's, 0x85…, sorts before Bob's, 0xde…) as info.
    info = (
        b"consortia/x25519/v2\x00"
        + bytes.fromhex(X25519_ALICE_PUBLIC)
        + bytes.fromhex(X25519_BOB_PUBLIC)
    )
    expected = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(
        bytes.fromhex(X25519_SHARED)
    )
    assert INTL.agree(alice_private, bytes.fromhex(X25519_BOB_PUBLIC)) == expected
    assert INTL.agree(bob_private, bytes.fromhex(X25519_ALICE_PUBLIC)) == expected
    # Not the shared secret merely hashed: the key depends on who the two parties are.
    assert expected != hashlib.sha256(b"consortia/x25519/" + bytes.fromhex(X25519_SHARED)).digest()


def test_x25519_key_depends_on_both_public_keys() -> None:
    """Bob's key with its unused top bit set is the same point (RFC 7748 masks that bit), so
    the X25519 shared secret is the same; the AEAD key must differ, as the public keys do."""
    assert isinstance(INTL, IntlSuite)
    private = bytes.fromhex(X25519_ALICE_PRIVATE)
    bob = bytes.fromhex(X25519_BOB_PUBLIC)
    twin = bob[:31] + bytes([bob[31] | 0x80])
    raw = X25519PrivateKey.from_private_bytes(private)
    shared = raw.exchange(X25519PublicKey.from_public_bytes(bob))
    assert shared == raw.exchange(X25519PublicKey.from_public_bytes(twin))
    assert INTL.agree(private, twin) != INTL.agree(private, bob)


def test_x25519_generated_pairs_agree() -> None:
    assert isinstance(INTL, IntlSuite)
    a_private, a_public = INTL.generate_agreement_keypair()
    b_private, b_public = INTL.generate_agreement_keypair()
    assert len(a_public) == len(b_public) == 32
    derived = X25519PrivateKey.from_private_bytes(a_private).public_key().public_bytes_raw()
    assert derived == a_public
    key = INTL.agree(a_private, b_public)
    assert key == INTL.agree(b_private, a_public)
    assert len(key) == INTL.aead_key_size
    assert INTL.decrypt(key, INTL.encrypt(key, b"sealed to bob")) == b"sealed to bob"


def test_x25519_rejects_low_order_and_malformed_keys() -> None:
    assert isinstance(INTL, IntlSuite)
    private, _public = INTL.generate_agreement_keypair()
    with pytest.raises(CryptoError):
        INTL.agree(private, bytes(32))  # u = 0: the shared secret would be all zero
    with pytest.raises(CryptoError):
        INTL.agree(private, b"\x09" * 31)
    with pytest.raises(CryptoError):
        INTL.agree(b"\x01" * 31, bytes.fromhex(X25519_BOB_PUBLIC))
