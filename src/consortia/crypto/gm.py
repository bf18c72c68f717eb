"""The Chinese national (GM) suite: SM2 signatures, SM3 and SM4-GCM.

SM2 signs with the GM/T 0009 default user id "1234567812345678": the signed digest is
SM3(Z || message), where Z = SM3(ENTL || ID || a || b || xG || yG || xA || yA). Encodings: a
private key is the 32-byte big-endian scalar d (1 <= d <= n - 2), a public key the 65-byte
uncompressed point 0x04 || x || y, a signature the 64 bytes r || s.

The SM2 binding is tongsuopy (Tongsuo, the OpenSSL fork maintained for the national
algorithms), chosen by measurement over gmalglib: it verifies ~3.4k/s on one core and releases
the GIL (~5.1k/s on two threads), while gmalglib verifies ~2.1k/s and holds the GIL. Verification
is the node's hot path; see docs/crypto.md for the numbers and the command that measured them.
SM3 and SM4 come from `cryptography`. SM2 signing draws a fresh random k for every signature
(as the standard requires), so SM2 signatures, unlike Ed25519's, are not deterministic.

Key wrap (a record's data key encrypted to a party's SM2 encryption key): SM2 public-key
encryption (GB/T 32918.4, see gm_encrypt.py) of data_key || SM3(WRAP_DOMAIN || recipient public
key || u32 length of the context || context). Unwrapping decrypts, then checks that digest for
its own public key and the context it was given, so a wrapped key moved to another record or
re-addressed is refused. Wrapped form: C1 (65) || C3 (32) || C2 (48), 145 bytes.

This module must never keep a private key beyond the call that uses it: public keys are
cached (they recur in every vote), private keys never are.
"""

from __future__ import annotations

import functools
import hmac
from typing import ClassVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes as std_hashes
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from tongsuopy.crypto import hashes as gm_hashes
from tongsuopy.crypto import serialization as gm_serialization
from tongsuopy.crypto.asymciphers import ec as gm_ec

from consortia.crypto.base import AEAD_TAG_SIZE, SigningKey, Suite
from consortia.crypto.gm_encrypt import C3_SIZE, POINT_SIZE, sm2_decrypt, sm2_encrypt
from consortia.errors import CryptoError

# The order n of the SM2 base point (GB/T 32918.5).
SM2_ORDER = int("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123", 16)
# The prime p of the SM2 field (GB/T 32918.5): coordinates of a public key are below it.
SM2_FIELD_PRIME = int("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF", 16)
DEFAULT_USER_ID = b"1234567812345678"
# The SM3 binding of a wrapped key to its recipient and record starts with this tag.
WRAP_DOMAIN = b"consortia/wrap/sm2-c1c3c2/v1\x00"
_SM4_KEY_SIZE = 16
_BINDING_SIZE = 32

_SM2_SIGNATURE_ALGORITHM = gm_ec.ECDSA(gm_hashes.SM3())
_PUBLIC_KEY_CACHE_SIZE = 4096


@functools.lru_cache(maxsize=_PUBLIC_KEY_CACHE_SIZE)
def _load_public(public_key: bytes) -> gm_ec.EllipticCurvePublicKey:
    """Parse once per distinct key: validators' keys recur in every vote."""
    return gm_ec.EllipticCurvePublicKey.from_encoded_point(gm_ec.SM2(), public_key)


class _Sm2SigningKey(SigningKey):
    __slots__ = ("_key", "_public_key")

    def __init__(self, private_key: bytes) -> None:
        scalar = int.from_bytes(private_key, "big")
        if not 1 <= scalar <= SM2_ORDER - 2:
            raise CryptoError("SM2 private key is outside [1, n-2]")
        self._key = gm_ec.derive_private_key(scalar, gm_ec.SM2())
        self._public_key = _encode_point(self._key.public_key())

    @property
    def public_key(self) -> bytes:
        return self._public_key

    def sign(self, message: bytes) -> bytes:
        der = self._key.sign(message, _SM2_SIGNATURE_ALGORITHM)
        r, s = decode_dss_signature(der)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _encode_point(key: gm_ec.EllipticCurvePublicKey) -> bytes:
    encoded = key.public_bytes(
        gm_serialization.Encoding.X962, gm_serialization.PublicFormat.UncompressedPoint
    )
    return bytes(encoded)


class GmSuite(Suite):
    name: ClassVar[str] = "gm"
    private_key_size: ClassVar[int] = 32
    public_key_size: ClassVar[int] = 65
    signature_size: ClassVar[int] = 64
    aead_key_size: ClassVar[int] = _SM4_KEY_SIZE  # SM4: a 128-bit block cipher, 128-bit key
    encryption_public_key_size: ClassVar[int] = 65
    wrapped_key_size: ClassVar[int] = POINT_SIZE + C3_SIZE + _SM4_KEY_SIZE + _BINDING_SIZE

    def generate_keypair(self) -> tuple[bytes, bytes]:
        while True:
            private = gm_ec.generate_private_key(gm_ec.SM2())
            scalar = private.private_numbers().private_value
            if scalar <= SM2_ORDER - 2:  # SM2 excludes n-1; the library may not
                return scalar.to_bytes(32, "big"), _encode_point(private.public_key())

    def signing_key(self, private_key: bytes) -> SigningKey:
        self._check_private(private_key)
        return _Sm2SigningKey(private_key)

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        if len(public_key) != self.public_key_size or len(signature) != self.signature_size:
            return False
        if public_key[0] != 0x04:
            return False
        r = int.from_bytes(signature[:32], "big")
        s = int.from_bytes(signature[32:], "big")
        if not (1 <= r < SM2_ORDER and 1 <= s < SM2_ORDER):
            return False
        try:
            key = _load_public(public_key)
            key.verify(encode_dss_signature(r, s), message, _SM2_SIGNATURE_ALGORITHM)
        except Exception:
            return False
        return True

    def hash(self, data: bytes) -> bytes:
        digest = std_hashes.Hash(std_hashes.SM3())
        digest.update(data)
        return digest.finalize()

    def _seal(self, key: bytes, nonce: bytes, plaintext: bytes, associated_data: bytes) -> bytes:
        encryptor = Cipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
        encryptor.authenticate_additional_data(associated_data)
        ciphertext = encryptor.update(plaintext) + encryptor.finalize()
        return ciphertext + encryptor.tag

    def _open(self, key: bytes, nonce: bytes, sealed: bytes, associated_data: bytes) -> bytes:
        ciphertext, tag = sealed[:-AEAD_TAG_SIZE], sealed[-AEAD_TAG_SIZE:]
        decryptor = Cipher(algorithms.SM4(key), modes.GCM(nonce, tag)).decryptor()
        decryptor.authenticate_additional_data(associated_data)
        try:
            return decryptor.update(ciphertext) + decryptor.finalize()
        except InvalidTag:
            raise CryptoError("ciphertext failed authentication") from None

    # Encryption keys (SM2, the same encodings as signing keys, but a key pair of their own).
    def generate_encryption_keypair(self) -> tuple[bytes, bytes]:
        return self.generate_keypair()

    def encryption_public_key(self, private: bytes) -> bytes:
        return self.public_key(private)

    def valid_encryption_public_key(self, public: bytes) -> bool:
        if not isinstance(public, bytes) or len(public) != self.encryption_public_key_size:
            return False
        if public[0] != 0x04:
            return False
        x, y = int.from_bytes(public[1:33], "big"), int.from_bytes(public[33:], "big")
        if x >= SM2_FIELD_PRIME or y >= SM2_FIELD_PRIME:
            return False
        try:
            _load_public(public)  # the library checks the point is on the curve
        except Exception:
            return False
        return True

    def wrap_key(self, recipient_public: bytes, data_key: bytes, context: bytes) -> bytes:
        self._check_aead_key(data_key)
        self._check_wrap_context(context)
        if not self.valid_encryption_public_key(recipient_public):
            raise CryptoError("not a usable SM2 encryption public key")
        binding = self._wrap_binding(recipient_public, context)
        wrapped = sm2_encrypt(_load_public(recipient_public), data_key + binding)
        assert len(wrapped) == self.wrapped_key_size
        return wrapped

    def unwrap_key(self, private: bytes, wrapped: bytes, context: bytes) -> bytes:
        self._check_wrap_context(context)
        if len(wrapped) != self.wrapped_key_size:
            raise CryptoError(f"a wrapped key is {self.wrapped_key_size} bytes, got {len(wrapped)}")
        self._check_private(private)
        key = _Sm2SigningKey(private)  # CryptoError for a scalar outside [1, n-2]
        plaintext = sm2_decrypt(key._key, wrapped)
        if len(plaintext) != _SM4_KEY_SIZE + _BINDING_SIZE:
            raise CryptoError("the wrapped key has the wrong length")
        data_key, binding = plaintext[:_SM4_KEY_SIZE], plaintext[_SM4_KEY_SIZE:]
        if not hmac.compare_digest(binding, self._wrap_binding(key.public_key, context)):
            raise CryptoError("the wrapped key belongs to another record or recipient")
        return data_key

    def wrap_binding(self, recipient_public: bytes, context: bytes) -> bytes:
        """SM3(WRAP_DOMAIN || recipient_public || u32 len(context) || context): the 32 bytes
        after the data key in a wrapped key's plaintext (public for interoperability tests)."""
        return self._wrap_binding(recipient_public, context)

    def _wrap_binding(self, recipient_public: bytes, context: bytes) -> bytes:
        return self.hash(WRAP_DOMAIN + recipient_public + len(context).to_bytes(4, "big") + context)

    def _check_private(self, private_key: bytes) -> None:
        if len(private_key) != self.private_key_size:
            raise CryptoError(
                f"SM2 private keys are {self.private_key_size} bytes, got {len(private_key)}"
            )
