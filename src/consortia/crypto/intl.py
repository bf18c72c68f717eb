"""The international suite: Ed25519 (RFC 8032), SHA-256, AES-256-GCM and X25519.

Key wrap (a record's data key encrypted to a party's X25519 key): a fresh ephemeral X25519 key
per wrap, HKDF-SHA256 of the shared secret with info = WRAP_DOMAIN || ephemeral public key ||
recipient public key || u32 length of the context || context, and AES-256-GCM of the data key
under the derived key. Wrapped form: ephemeral public key (32) || nonce (12) || ciphertext (32)
|| tag (16), 92 bytes.

Ed25519 uses libsodium through PyNaCl, the fastest verifier that installs here (ANCHORS: ~18k
verifications per second per core, GIL released). Keys are RFC 8032 encodings: a 32-byte
private seed, a 32-byte public key and a 64-byte signature. Signing is deterministic.

This module must never keep a private key beyond the call that uses it: no cache is keyed by
one, so a key lives only as long as its holder keeps it.
"""

from __future__ import annotations

import hashlib
from typing import ClassVar

import nacl.bindings as sodium
import nacl.exceptions
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from consortia.crypto.base import AEAD_NONCE_SIZE, AEAD_TAG_SIZE, SigningKey, Suite
from consortia.errors import CryptoError

# The HKDF info of an X25519 agreement starts with this tag, then both public keys.
AGREEMENT_DOMAIN = b"consortia/x25519/v2\x00"
# The HKDF info of a key wrap starts with this tag; it is also the AES-GCM associated data.
WRAP_DOMAIN = b"consortia/wrap/x25519-hkdf-sha256-aes256gcm/v1\x00"
SIGNATURE_SIZE = 64
X25519_KEY_SIZE = 32
# u < p = 2^255 - 19 and the unused top bit clear: the one encoding of each public key.
_X25519_P = 2**255 - 19
# A fixed clamped scalar: any point of order 1, 2, 4 or 8 gives the all-zero shared secret with
# it (every clamped scalar is a multiple of 8), which the library refuses. This tests a public
# key for low order with the library's own arithmetic; the scalar is public and secret nothing.
_LOW_ORDER_PROBE = X25519PrivateKey.from_private_bytes(bytes([0x08] + [0x5A] * 30 + [0x40]))


class _Ed25519SigningKey(SigningKey):
    """libsodium's 64-byte signing key (seed || public key)."""

    __slots__ = ("_secret",)

    def __init__(self, seed: bytes) -> None:
        _public, secret = sodium.crypto_sign_seed_keypair(seed)
        self._secret = bytes(secret)

    @property
    def public_key(self) -> bytes:
        return self._secret[32:]

    def sign(self, message: bytes) -> bytes:
        return bytes(sodium.crypto_sign(message, self._secret)[:SIGNATURE_SIZE])


class IntlSuite(Suite):
    name: ClassVar[str] = "intl"
    private_key_size: ClassVar[int] = 32
    public_key_size: ClassVar[int] = 32
    signature_size: ClassVar[int] = SIGNATURE_SIZE
    aead_key_size: ClassVar[int] = 32
    encryption_public_key_size: ClassVar[int] = X25519_KEY_SIZE
    wrapped_key_size: ClassVar[int] = X25519_KEY_SIZE + AEAD_NONCE_SIZE + 32 + AEAD_TAG_SIZE

    def generate_keypair(self) -> tuple[bytes, bytes]:
        public, secret = sodium.crypto_sign_keypair()
        seed = bytes(secret[:32])
        return seed, bytes(public)

    def signing_key(self, private_key: bytes) -> SigningKey:
        self._check_private(private_key)
        return _Ed25519SigningKey(private_key)

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        if len(public_key) != self.public_key_size or len(signature) != self.signature_size:
            return False
        try:
            sodium.crypto_sign_open(signature + message, public_key)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
            return False
        return True

    def hash(self, data: bytes) -> bytes:
        return hashlib.sha256(data).digest()

    def _seal(self, key: bytes, nonce: bytes, plaintext: bytes, associated_data: bytes) -> bytes:
        return AESGCM(key).encrypt(nonce, plaintext, associated_data)

    def _open(self, key: bytes, nonce: bytes, sealed: bytes, associated_data: bytes) -> bytes:
        try:
            return AESGCM(key).decrypt(nonce, sealed, associated_data)
        except InvalidTag:
            raise CryptoError("ciphertext failed authentication") from None

    # Key agreement (X25519), for encrypting to a party's public key.
    def generate_agreement_keypair(self) -> tuple[bytes, bytes]:
        private = X25519PrivateKey.generate()
        return private.private_bytes_raw(), private.public_key().public_bytes_raw()

    def agree(self, private_key: bytes, peer_public_key: bytes) -> bytes:
        """A 32-byte AEAD key both parties derive: HKDF-SHA256 over the X25519 shared secret,
        with both public keys (in byte order, so either side gets the same key) in its info.

        Binding the public keys ties the key to exactly this pair of parties, not only to the
        shared secret, which other key pairs (a low-order or non-canonical peer key) can share.
        """
        try:
            own = X25519PrivateKey.from_private_bytes(private_key)
            peer = X25519PublicKey.from_public_bytes(peer_public_key)
            shared = own.exchange(peer)
        except ValueError as error:
            raise CryptoError(f"X25519 key agreement failed: {error}") from None
        first, second = sorted((own.public_key().public_bytes_raw(), peer.public_bytes_raw()))
        return HKDF(
            algorithm=hashes.SHA256(),
            length=self.aead_key_size,
            salt=None,
            info=AGREEMENT_DOMAIN + first + second,
        ).derive(shared)

    # Encryption keys (X25519) and key wrap.
    def generate_encryption_keypair(self) -> tuple[bytes, bytes]:
        while True:
            private, public = self.generate_agreement_keypair()
            # The top bit of a public key is always clear; the loop never repeats in practice.
            if self.valid_encryption_public_key(public):
                return private, public

    def encryption_public_key(self, private: bytes) -> bytes:
        return _x25519_private(private).public_key().public_bytes_raw()

    def valid_encryption_public_key(self, public: bytes) -> bool:
        if not isinstance(public, bytes) or len(public) != X25519_KEY_SIZE:
            return False
        if int.from_bytes(public, "little") >= _X25519_P:  # top bit set, or u >= p
            return False
        try:
            _LOW_ORDER_PROBE.exchange(X25519PublicKey.from_public_bytes(public))
        except ValueError:  # the all-zero shared secret: a point of low order
            return False
        return True

    def wrap_key(self, recipient_public: bytes, data_key: bytes, context: bytes) -> bytes:
        self._check_aead_key(data_key)
        self._check_wrap_context(context)
        if not self.valid_encryption_public_key(recipient_public):
            raise CryptoError("not a usable X25519 encryption public key")
        ephemeral = X25519PrivateKey.generate()
        ephemeral_public = ephemeral.public_key().public_bytes_raw()
        shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient_public))
        key = _wrap_kdf(shared, ephemeral_public, recipient_public, context)
        wrapped = ephemeral_public + self.encrypt(key, data_key, WRAP_DOMAIN)
        assert len(wrapped) == self.wrapped_key_size
        return wrapped

    def unwrap_key(self, private: bytes, wrapped: bytes, context: bytes) -> bytes:
        self._check_wrap_context(context)
        if len(wrapped) != self.wrapped_key_size:
            raise CryptoError(f"a wrapped key is {self.wrapped_key_size} bytes, got {len(wrapped)}")
        own = _x25519_private(private)
        ephemeral_public = wrapped[:X25519_KEY_SIZE]
        try:
            shared = own.exchange(X25519PublicKey.from_public_bytes(ephemeral_public))
        except ValueError:
            raise CryptoError("the wrapped key's ephemeral key is of low order") from None
        own_public = own.public_key().public_bytes_raw()
        key = _wrap_kdf(shared, ephemeral_public, own_public, context)
        return self.decrypt(key, wrapped[X25519_KEY_SIZE:], WRAP_DOMAIN)

    def _check_private(self, private_key: bytes) -> None:
        if len(private_key) != self.private_key_size:
            raise CryptoError(
                f"Ed25519 private keys are {self.private_key_size} bytes, got {len(private_key)}"
            )


def _x25519_private(private: bytes) -> X25519PrivateKey:
    if not isinstance(private, bytes) or len(private) != X25519_KEY_SIZE:
        raise CryptoError(f"X25519 private keys are {X25519_KEY_SIZE} bytes")
    return X25519PrivateKey.from_private_bytes(private)


def _wrap_kdf(
    shared: bytes, ephemeral_public: bytes, recipient_public: bytes, context: bytes
) -> bytes:
    info = (
        WRAP_DOMAIN
        + ephemeral_public
        + recipient_public
        + len(context).to_bytes(4, "big")
        + context
    )
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared)
