"""The international suite: Ed25519 (RFC 8032), SHA-256, AES-256-GCM and X25519.

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

from consortia.crypto.base import SigningKey, Suite
from consortia.errors import CryptoError

# The HKDF info of an X25519 agreement starts with this tag, then both public keys.
AGREEMENT_DOMAIN = b"consortia/x25519/v2\x00"
SIGNATURE_SIZE = 64


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

    def _check_private(self, private_key: bytes) -> None:
        if len(private_key) != self.private_key_size:
            raise CryptoError(
                f"Ed25519 private keys are {self.private_key_size} bytes, got {len(private_key)}"
            )
