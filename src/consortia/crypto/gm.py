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

This module must never keep a private key beyond the call that uses it: public keys are
cached (they recur in every vote), private keys never are.
"""

from __future__ import annotations

import functools
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
from consortia.errors import CryptoError

# The order n of the SM2 base point (GB/T 32918.5).
SM2_ORDER = int("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123", 16)
DEFAULT_USER_ID = b"1234567812345678"

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
    aead_key_size: ClassVar[int] = 16  # SM4 is a 128-bit block cipher with a 128-bit key

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

    def _check_private(self, private_key: bytes) -> None:
        if len(private_key) != self.private_key_size:
            raise CryptoError(
                f"SM2 private keys are {self.private_key_size} bytes, got {len(private_key)}"
            )
