"""Encrypted PKCS#8 PEM for TLS private keys, with scrypt as the password KDF.

Python's ssl module loads TLS keys through OpenSSL, so a node's TLS key is stored as an
encrypted PKCS#8 PEM (RFC 5958 EncryptedPrivateKeyInfo with PBES2, RFC 8018) that
`ssl.SSLContext.load_cert_chain(certfile, keyfile, password=passphrase)` opens directly. The
`cryptography` library only writes such files with PBKDF2 at 2048 iterations, which is cheap to
brute-force; this module builds the DER itself with the memory-hard scrypt (RFC 7914 §7) at
N = 2^14, r = 8 (16 MiB, the most OpenSSL 3 accepts under its default limit), p = 4, and
AES-256-CBC. Reading goes through `cryptography`, which understands the same structure.

This module must never write, print or log a private key unencrypted.
"""

from __future__ import annotations

import base64
import os
from typing import Final, NamedTuple

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from consortia.errors import KeyFileError, WrongPassphraseError
from consortia.identity.passphrase import passphrase_bytes

_PEM_LABEL: Final = "ENCRYPTED PRIVATE KEY"
_PBES2: Final = "1.2.840.113549.1.5.13"
_SCRYPT: Final = "1.3.6.1.4.1.11591.4.11"
_AES_256_CBC: Final = "2.16.840.1.101.3.4.1.42"
_SALT_SIZE: Final = 16
_AES_KEY_SIZE: Final = 32
_AES_BLOCK_SIZE: Final = 16


class ScryptCost(NamedTuple):
    """scrypt cost: N = 2**log2_n, block size r, parallelism p (memory is 128 * r * N bytes)."""

    log2_n: int = 14
    r: int = 8
    p: int = 4


DEFAULT_SCRYPT: Final = ScryptCost()


def encrypt_private_key(
    key: ec.EllipticCurvePrivateKey, passphrase: str, *, cost: ScryptCost = DEFAULT_SCRYPT
) -> bytes:
    """The PEM of `key` as PKCS#8, encrypted under `passphrase` (scrypt + AES-256-CBC)."""
    plain = key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
    salt, iv = os.urandom(_SALT_SIZE), os.urandom(_AES_BLOCK_SIZE)
    aes_key = Scrypt(salt=salt, length=_AES_KEY_SIZE, n=2**cost.log2_n, r=cost.r, p=cost.p).derive(
        passphrase_bytes(passphrase)
    )
    padder = padding.PKCS7(_AES_BLOCK_SIZE * 8).padder()
    padded = padder.update(plain) + padder.finalize()
    encryptor = Cipher(algorithms.AES(aes_key), modes.CBC(iv)).encryptor()
    encrypted = encryptor.update(padded) + encryptor.finalize()
    return _pem(_encrypted_private_key_info(salt, cost, iv, encrypted))


def decrypt_private_key(pem: bytes, passphrase: str, source: str) -> ec.EllipticCurvePrivateKey:
    """The P-256 key in the encrypted PKCS#8 `pem`.

    WrongPassphraseError when the passphrase does not open it; KeyFileError for anything that
    is not an encrypted P-256 PKCS#8 key.
    """
    if not pem.lstrip().startswith(f"-----BEGIN {_PEM_LABEL}-----".encode()):
        raise KeyFileError(f"{source} is not an encrypted PKCS#8 private key")
    try:
        key = load_pem_private_key(pem, password=passphrase_bytes(passphrase))
    except ValueError:
        raise WrongPassphraseError(f"wrong passphrase for {source} (or it is damaged)") from None
    except (TypeError, UnsupportedAlgorithm):
        raise KeyFileError(f"{source} is not a usable encrypted private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise KeyFileError(f"{source} is not an ECDSA P-256 key")
    return key


def _encrypted_private_key_info(
    salt: bytes, cost: ScryptCost, iv: bytes, encrypted: bytes
) -> bytes:
    scrypt_params = _sequence(
        _octets(salt), _integer(2**cost.log2_n), _integer(cost.r), _integer(cost.p)
    )
    pbes2_params = _sequence(
        _sequence(_oid(_SCRYPT), scrypt_params),
        _sequence(_oid(_AES_256_CBC), _octets(iv)),
    )
    return _sequence(_sequence(_oid(_PBES2), pbes2_params), _octets(encrypted))


def _pem(der: bytes) -> bytes:
    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    label = _PEM_LABEL.encode()
    return (
        b"\n".join([b"-----BEGIN " + label + b"-----", *lines, b"-----END " + label + b"-----"])
        + b"\n"
    )


# Minimal DER (X.690) encoders: only the shapes the structure above needs.


def _tlv(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


def _sequence(*items: bytes) -> bytes:
    return _tlv(0x30, b"".join(items))


def _octets(data: bytes) -> bytes:
    return _tlv(0x04, data)


def _integer(value: int) -> bytes:
    assert value >= 0
    return _tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _oid(dotted: str) -> bytes:
    arcs = [int(arc) for arc in dotted.split(".")]
    body = bytes([40 * arcs[0] + arcs[1]]) + b"".join(_base128(arc) for arc in arcs[2:])
    return _tlv(0x06, body)


def _base128(value: int) -> bytes:
    """An OID arc: big-endian base-128 digits, every byte but the last with its top bit set."""
    digits = [value & 0x7F]
    value >>= 7
    while value:
        digits.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(digits))
