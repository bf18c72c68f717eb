"""SM2 public-key encryption (GB/T 32918.4) for the gm suite's key wrap, through Tongsuo.

tongsuopy exposes no high-level SM2 encryption, so this module calls Tongsuo's
EVP_PKEY_encrypt/EVP_PKEY_decrypt through tongsuopy's own cffi binding, on keys loaded by
tongsuopy (which marks them as SM2 keys). All curve arithmetic, the KDF and C3 are Tongsuo's.

Tongsuo reads and writes the GM/T 0009 ASN.1 form, SEQUENCE { INTEGER x1, INTEGER y1,
OCTET STRING C3, OCTET STRING C2 }. On chain consortia keeps the fixed-length raw form
C1 || C3 || C2 with C1 = 0x04 || x1 || y1 (65 bytes) and C3 = SM3(x2 || M || y2) (32 bytes),
the order of GB/T 32918.4-2016: one encoding per ciphertext, and gmssl's mode-1 output plus the
0x04 prefix. This module converts between the two forms; it parses only DER of exactly that
shape and refuses anything else.

This module must never keep or expose a private key or a plaintext: keys are loaded per call,
and Tongsuo's error queue is emptied after every failure (its text never reaches a message).
"""

from __future__ import annotations

import hmac
from typing import Any, Final

from tongsuopy.backends.tongsuo import backend as _backend
from tongsuopy.crypto.asymciphers import ec as gm_ec

from consortia.errors import CryptoError

POINT_SIZE: Final = 65
C3_SIZE: Final = 32
COORDINATE_SIZE: Final = 32
# Plaintexts this module encrypts are short (a data key and a binding digest).
PLAINTEXT_SIZE_MAX: Final = 256
# Draws of k before giving up on an all-zero key stream (2^-64 for a 1-byte message).
ENCRYPT_DRAWS_MAX: Final = 8

_lib: Any = _backend._lib
_ffi: Any = _backend._ffi


def sm2_encrypt(public_key: gm_ec.EllipticCurvePublicKey, plaintext: bytes) -> bytes:
    """C1 || C3 || C2 of `plaintext` under `public_key`, with a fresh random k (Tongsuo's).

    GB/T 32918.4 (step A5) draws a new k when the KDF's key stream t is all zeros; Tongsuo
    does not, and answers C2 = M xor 0 = M, the plaintext in the clear (for a 1-byte message,
    one draw in 256). C2 equals M exactly when t is all zeros, so such an answer is drawn
    again, at most `ENCRYPT_DRAWS_MAX` times."""
    assert 0 < len(plaintext) <= PLAINTEXT_SIZE_MAX
    pkey = _evp_pkey(public_key)
    for _ in range(ENCRYPT_DRAWS_MAX):
        der = _run(_lib.EVP_PKEY_encrypt_init, _lib.EVP_PKEY_encrypt, pkey, plaintext)
        raw = der_to_raw(der)
        assert len(raw) == POINT_SIZE + C3_SIZE + len(plaintext)
        if not hmac.compare_digest(raw[POINT_SIZE + C3_SIZE :], plaintext):
            return raw
    raise CryptoError("SM2: every draw of k gave an all-zero key stream")


def sm2_decrypt(private_key: gm_ec.EllipticCurvePrivateKey, ciphertext: bytes) -> bytes:
    """The plaintext of a raw C1 || C3 || C2; CryptoError when C1 is not a curve point, C3
    does not match, the key stream is all zero (C2 = M), or the input is malformed."""
    if len(ciphertext) <= POINT_SIZE + C3_SIZE:
        raise CryptoError("an SM2 ciphertext is longer than C1 and C3")
    c1 = ciphertext[:POINT_SIZE]
    if c1[0] != 0x04:
        raise CryptoError("SM2 ciphertext C1 is not an uncompressed point")
    try:
        gm_ec.EllipticCurvePublicKey.from_encoded_point(gm_ec.SM2(), c1)
    except ValueError:
        _lib.ERR_clear_error()
        raise CryptoError("SM2 ciphertext C1 is not a point on the curve") from None
    der = raw_to_der(ciphertext)
    plaintext = _run(_lib.EVP_PKEY_decrypt_init, _lib.EVP_PKEY_decrypt, _evp_pkey(private_key), der)
    if hmac.compare_digest(plaintext, ciphertext[POINT_SIZE + C3_SIZE :]):
        # t all zero: the standard's step B4 refuses it (Tongsuo does not); never sent by us.
        raise CryptoError("SM2 ciphertext with an all-zero key stream")
    return plaintext


def _evp_pkey(key: gm_ec.EllipticCurvePublicKey | gm_ec.EllipticCurvePrivateKey) -> Any:
    pkey = getattr(key, "_evp_pkey", None)
    assert pkey is not None, "tongsuopy key without an EVP_PKEY"
    assert _lib.EVP_PKEY_id(pkey) == _lib.EVP_PKEY_SM2, "not an SM2 key"
    return pkey


def _run(init: Any, operation: Any, pkey: Any, data: bytes) -> bytes:
    """EVP_PKEY_{en,de}crypt of `data`: ask the output size, then run it."""
    context = _lib.EVP_PKEY_CTX_new(pkey, _ffi.NULL)
    if context == _ffi.NULL:
        _lib.ERR_clear_error()
        raise CryptoError("SM2: cannot create a key context")
    context = _ffi.gc(context, _lib.EVP_PKEY_CTX_free)
    size = _ffi.new("size_t *")
    if init(context) != 1 or operation(context, _ffi.NULL, size, data, len(data)) != 1:
        _lib.ERR_clear_error()
        raise CryptoError("SM2 encryption or decryption failed")
    buffer = _ffi.new("unsigned char[]", size[0])
    if operation(context, buffer, size, data, len(data)) != 1:
        _lib.ERR_clear_error()
        raise CryptoError("SM2 encryption or decryption failed")
    return bytes(_ffi.buffer(buffer)[: size[0]])


# --- GM/T 0009 DER <-> raw C1 || C3 || C2 ----------------------------------------------------


def raw_to_der(raw: bytes) -> bytes:
    """The GM/T 0009 DER of a raw 0x04 || x || y || C3 || C2."""
    assert len(raw) > POINT_SIZE + C3_SIZE and raw[0] == 0x04
    x = int.from_bytes(raw[1:33], "big")
    y = int.from_bytes(raw[33:65], "big")
    c3 = raw[POINT_SIZE : POINT_SIZE + C3_SIZE]
    c2 = raw[POINT_SIZE + C3_SIZE :]
    body = _der_integer(x) + _der_integer(y) + _der(0x04, c3) + _der(0x04, c2)
    return _der(0x30, body)


def der_to_raw(der: bytes) -> bytes:
    """The raw 0x04 || x || y || C3 || C2 of GM/T 0009 DER; CryptoError for anything else."""
    body, rest = _read(der, 0x30)
    if rest:
        raise CryptoError("SM2 ciphertext: bytes after the DER sequence")
    x_bytes, body = _read(body, 0x02)
    y_bytes, body = _read(body, 0x02)
    c3, body = _read(body, 0x04)
    c2, body = _read(body, 0x04)
    if body or len(c3) != C3_SIZE or not c2:
        raise CryptoError("SM2 ciphertext: not the GM/T 0009 sequence")
    x, y = _integer(x_bytes), _integer(y_bytes)
    return b"\x04" + _coordinate(x) + _coordinate(y) + c3 + c2


def _der(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        length = bytes([size])
    elif size <= 0xFF:
        length = bytes([0x81, size])
    else:
        assert size <= 0xFFFF
        length = bytes([0x82]) + size.to_bytes(2, "big")
    return bytes([tag]) + length + content


def _der_integer(value: int) -> bytes:
    assert value >= 0
    content = value.to_bytes(value.bit_length() // 8 + 1, "big")  # a leading 0x00 keeps it >= 0
    if len(content) > 1 and content[0] == 0 and content[1] < 0x80:
        content = content[1:]
    return _der(0x02, content)


def _read(data: bytes, tag: int) -> tuple[bytes, bytes]:
    """(content, rest) of one DER element with `tag` at the start of `data`, minimal lengths."""
    if len(data) < 2 or data[0] != tag:
        raise CryptoError("SM2 ciphertext: unexpected DER element")
    first = data[1]
    if first < 0x80:
        size, start = first, 2
    elif first == 0x81 and len(data) >= 3 and data[2] >= 0x80:
        size, start = data[2], 3
    elif first == 0x82 and len(data) >= 4 and data[2] != 0:
        size, start = int.from_bytes(data[2:4], "big"), 4
    else:
        raise CryptoError("SM2 ciphertext: non-minimal or oversized DER length")
    if len(data) < start + size:
        raise CryptoError("SM2 ciphertext: truncated DER")
    return data[start : start + size], data[start + size :]


def _integer(content: bytes) -> int:
    if not content or content[0] & 0x80:
        raise CryptoError("SM2 ciphertext: a negative or empty DER integer")
    if len(content) > 1 and content[0] == 0 and content[1] < 0x80:
        raise CryptoError("SM2 ciphertext: a non-minimal DER integer")
    return int.from_bytes(content, "big")


def _coordinate(value: int) -> bytes:
    if value.bit_length() > COORDINATE_SIZE * 8:
        raise CryptoError("SM2 ciphertext: a coordinate wider than 32 bytes")
    return value.to_bytes(COORDINATE_SIZE, "big")
