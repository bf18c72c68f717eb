"""The interface every crypto suite implements, and the shared parallel verifier.

A chain picks one suite at genesis and never mixes suites: every key, signature and digest on
a chain comes from the same suite. Callers hold a `Suite` object and never import a primitive
library directly, so the international and the Chinese national (GM) suites are interchangeable.

This module must never log or otherwise expose private keys or plaintexts.
"""

from __future__ import annotations

import abc
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import ClassVar

from consortia.errors import CryptoError

# A verify batch below this size is checked inline: handing it to threads costs more than it saves.
PARALLEL_VERIFY_THRESHOLD = 32
# Nonces for the randomised AEAD are 96 bits, as both GCM modes recommend.
AEAD_NONCE_SIZE = 12
AEAD_TAG_SIZE = 16
# The context a wrapped key is bound to (a record's label and commitment) is at most this long.
WRAP_CONTEXT_SIZE_MAX = 1024

VerifyItem = tuple[bytes, bytes, bytes]
"""(public_key, message, signature)"""

_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def _verify_pool() -> ThreadPoolExecutor:
    """One process-wide pool, one thread per core. The primitive libraries release the GIL."""
    global _pool  # noqa: PLW0603 - a lazily created process-wide singleton
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(
                max_workers=max(1, os.cpu_count() or 1), thread_name_prefix="verify"
            )
        return _pool


class SigningKey(abc.ABC):
    """A private key made ready for repeated signing: the key expansion is paid once.

    It lives exactly as long as its holder keeps it (the suite keeps no reference, and no
    cache is keyed by a private key), so a validator that holds one for its epoch and drops it
    afterwards leaves no copy behind in the suite. Its repr shows only a public key prefix.
    """

    __slots__ = ()

    @property
    @abc.abstractmethod
    def public_key(self) -> bytes:
        """The public key that belongs to this private key."""

    @abc.abstractmethod
    def sign(self, message: bytes) -> bytes:
        """A signature of `message`."""

    def __repr__(self) -> str:
        return f"<signing key {self.public_key.hex()[:16]}…>"


class Suite(abc.ABC):
    """A complete set of primitives: signatures, a 32-byte hash, a randomised AEAD and key
    wrapping to a party's encryption key (its own key pair, separate from signing keys)."""

    name: ClassVar[str]
    private_key_size: ClassVar[int]
    public_key_size: ClassVar[int]
    signature_size: ClassVar[int]
    aead_key_size: ClassVar[int]
    hash_size: ClassVar[int] = 32
    encryption_public_key_size: ClassVar[int]
    wrapped_key_size: ClassVar[int]

    @abc.abstractmethod
    def generate_keypair(self) -> tuple[bytes, bytes]:
        """A fresh (private_key, public_key) pair from the operating system's randomness."""

    @abc.abstractmethod
    def signing_key(self, private_key: bytes) -> SigningKey:
        """`private_key` ready for repeated signing. Raises CryptoError when it is malformed."""

    def public_key(self, private_key: bytes) -> bytes:
        """The public key that belongs to `private_key`."""
        return self.signing_key(private_key).public_key

    def sign(self, private_key: bytes, message: bytes) -> bytes:
        """A signature of `message`. Raises CryptoError for a malformed private key.

        Each call prepares the key afresh; a frequent signer keeps a `signing_key` instead.
        """
        return self.signing_key(private_key).sign(message)

    @abc.abstractmethod
    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        """True when `signature` is valid; False for anything else, malformed input included."""

    @abc.abstractmethod
    def hash(self, data: bytes) -> bytes:
        """A 32-byte collision-resistant digest."""

    @abc.abstractmethod
    def _seal(self, key: bytes, nonce: bytes, plaintext: bytes, associated_data: bytes) -> bytes:
        """ciphertext || tag under `nonce`."""

    @abc.abstractmethod
    def _open(self, key: bytes, nonce: bytes, sealed: bytes, associated_data: bytes) -> bytes:
        """The plaintext; raises CryptoError when authentication fails."""

    def generate_aead_key(self) -> bytes:
        return os.urandom(self.aead_key_size)

    def random_bytes(self, size: int) -> bytes:
        """`size` bytes from the operating system's randomness (salts, fresh secrets)."""
        assert 0 < size <= 1024, size
        return os.urandom(size)

    # Encryption to a party: key pairs and wrapping a data key (see docs/crypto.md, "Key wrap").
    @abc.abstractmethod
    def generate_encryption_keypair(self) -> tuple[bytes, bytes]:
        """A fresh (private, public) encryption key pair: X25519 (intl) or SM2 (gm)."""

    @abc.abstractmethod
    def encryption_public_key(self, private: bytes) -> bytes:
        """The encryption public key of `private`; CryptoError when it is malformed."""

    @abc.abstractmethod
    def valid_encryption_public_key(self, public: bytes) -> bool:
        """True when a key can be wrapped to: never raises, deterministic, no randomness.

        Contracts call it to check a party's published key before records are sealed to it.
        """

    @abc.abstractmethod
    def wrap_key(self, recipient_public: bytes, data_key: bytes, context: bytes) -> bytes:
        """`data_key` (an AEAD key of this suite) encrypted to `recipient_public`, bound to
        `context` (the record it belongs to). Randomised: two wraps never give the same bytes.
        CryptoError for a malformed or unusable recipient key, data key or context."""

    @abc.abstractmethod
    def unwrap_key(self, private: bytes, wrapped: bytes, context: bytes) -> bytes:
        """The data key inside `wrapped`; CryptoError for a wrong private key, another
        `context`, any altered byte or malformed input."""

    def encrypt(self, key: bytes, plaintext: bytes, associated_data: bytes = b"") -> bytes:
        """Randomised authenticated encryption: nonce || ciphertext || tag.

        Encrypting the same plaintext twice gives different bytes (a fresh random nonce each
        time), as JR/T 0184 asks of encryption.
        """
        self._check_aead_key(key)
        nonce = os.urandom(AEAD_NONCE_SIZE)
        return nonce + self._seal(key, nonce, plaintext, associated_data)

    def decrypt(self, key: bytes, ciphertext: bytes, associated_data: bytes = b"") -> bytes:
        """The plaintext of `encrypt`'s output; CryptoError if anything was altered."""
        self._check_aead_key(key)
        if len(ciphertext) < AEAD_NONCE_SIZE + AEAD_TAG_SIZE:
            raise CryptoError("ciphertext is shorter than a nonce and a tag")
        nonce, sealed = ciphertext[:AEAD_NONCE_SIZE], ciphertext[AEAD_NONCE_SIZE:]
        return self._open(key, nonce, sealed, associated_data)

    def verify_many(self, items: Sequence[VerifyItem]) -> list[bool]:
        """Verify a batch, spread over every core; result i answers items[i].

        This is the node's hot path (every transaction and vote passes through it). The
        primitive libraries release the GIL, so threads give real parallelism.
        """
        if len(items) < PARALLEL_VERIFY_THRESHOLD:
            return [self.verify(pk, msg, sig) for pk, msg, sig in items]
        pool = _verify_pool()
        workers = pool._max_workers
        chunk = (len(items) + workers - 1) // workers
        parts = [items[i : i + chunk] for i in range(0, len(items), chunk)]
        futures = [pool.submit(self._verify_chunk, part) for part in parts]
        results: list[bool] = []
        for future in futures:
            results.extend(future.result())
        assert len(results) == len(items)
        return results

    def _verify_chunk(self, items: Sequence[VerifyItem]) -> list[bool]:
        return [self.verify(pk, msg, sig) for pk, msg, sig in items]

    def _check_wrap_context(self, context: bytes) -> None:
        if len(context) > WRAP_CONTEXT_SIZE_MAX:
            raise CryptoError(
                f"a key wrap context is at most {WRAP_CONTEXT_SIZE_MAX} bytes, got {len(context)}"
            )

    def _check_aead_key(self, key: bytes) -> None:
        if len(key) != self.aead_key_size:
            raise CryptoError(
                f"{self.name} AEAD keys are {self.aead_key_size} bytes, got {len(key)}"
            )

    def __repr__(self) -> str:
        return f"<crypto suite {self.name}>"
