"""The international suite: Ed25519 (RFC 8032), SHA-256, AES-256-GCM and X25519.

Ed25519 uses libsodium through PyNaCl, the fastest verifier that installs here (ANCHORS: ~18k
verifications per second per core, GIL released). Keys are RFC 8032 encodings: a 32-byte
private seed, a 32-byte public key and a 64-byte signature. Signing is deterministic.
"""

from __future__ import annotations

import functools
import hashlib
from typing import ClassVar

import nacl.bindings as sodium
import nacl.exceptions
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from consortia.crypto.base import Suite
from consortia.errors import CryptoError

# Expanded signing keys are cached so that a validator signing many votes pays the key
# expansion once. The cache is small and in process memory only.
_SIGNING_KEY_CACHE_SIZE = 64


@functools.lru_cache(maxsize=_SIGNING_KEY_CACHE_SIZE)
def _expanded_secret(seed: bytes) -> bytes:
    _public, secret = sodium.crypto_sign_seed_keypair(seed)
    return bytes(secret)


class IntlSuite(Suite):
    name: ClassVar[str] = "intl"
    private_key_size: ClassVar[int] = 32
    public_key_size: ClassVar[int] = 32
    signature_size: ClassVar[int] = 64
    aead_key_size: ClassVar[int] = 32

    def generate_keypair(self) -> tuple[bytes, bytes]:
        public, secret = sodium.crypto_sign_keypair()
        seed = bytes(secret[:32])
        return seed, bytes(public)

    def public_key(self, private_key: bytes) -> bytes:
        self._check_private(private_key)
        return _expanded_secret(private_key)[32:]

    def sign(self, private_key: bytes, message: bytes) -> bytes:
        self._check_private(private_key)
        signed = sodium.crypto_sign(message, _expanded_secret(private_key))
        return bytes(signed[: self.signature_size])

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
        """A 32-byte shared secret, hashed so that it is a uniform AEAD key."""
        try:
            shared = X25519PrivateKey.from_private_bytes(private_key).exchange(
                X25519PublicKey.from_public_bytes(peer_public_key)
            )
        except ValueError as error:
            raise CryptoError(f"X25519 key agreement failed: {error}") from None
        return self.hash(b"consortia/x25519/" + shared)

    def _check_private(self, private_key: bytes) -> None:
        if len(private_key) != self.private_key_size:
            raise CryptoError(
                f"Ed25519 private keys are {self.private_key_size} bytes, got {len(private_key)}"
            )
