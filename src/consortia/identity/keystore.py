"""Encrypted key files: private keys at rest, sealed under a passphrase.

A key file is JSON with hex fields: a header (format, version, suite, purpose, algorithm,
public key, KDF parameters, passphrase check) and the private key encrypted with the chain
suite's AEAD (AES-256-GCM for intl, SM4-GCM for gm). The AEAD key comes from Argon2id over the
passphrase with the parameters stored in the header. The canonical MessagePack encoding of the
whole header is the AEAD's associated data, so no header field can be edited undetected. The
header alone, without the passphrase, tells what a file holds.

Argon2id yields the AEAD key followed by 32 more bytes whose hash is stored as the passphrase
check: it tells a wrong passphrase (check differs) from an altered file (check matches, the
AEAD fails). Guessing a passphrase against the check costs the same Argon2id run as guessing it
against the ciphertext, so the check weakens nothing.

Purposes: "consensus" (the validator's signing key, the suite's algorithm), "account" (a
ledger account's signing key), "tls" (a node's mutual-TLS key, ECDSA P-256), "tls-ca" (the
consortium CA's ECDSA P-256 key) and "encryption" (a party's key for confidential records:
X25519 on intl, SM2 on gm; see docs/privacy.md). Every private key consortia stores is in this
one format, under the same memory-hard KDF.

This module must never print, log or expose through a repr a private key or a passphrase, and
never writes a key file that anyone but its owner can read (mode 0600).
"""

from __future__ import annotations

import hmac
import os
import threading
from pathlib import Path
from typing import Annotated, Final, Literal, NamedTuple

import msgspec
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from msgspec import Meta

from consortia.crypto import Suite, suite
from consortia.errors import CryptoError, KeyFileError, WrongPassphraseError
from consortia.identity.files import read_bounded, write_private_file
from consortia.identity.passphrase import passphrase_bytes
from consortia.identity.strict_json import check_unique_keys
from consortia.types.encoding import encode
from consortia.types.primitives import HEX_BYTES_PATTERN

KEY_FILE_FORMAT: Final = "consortia-key"
KEY_FILE_VERSION: Final = 1
KEY_FILE_SIZE_MAX: Final = 64 * 1024
SALT_SIZE: Final = 16
CHECK_SIZE: Final = 32
P256_SCALAR_SIZE: Final = 32
_ASSOCIATED_DATA_DOMAIN: Final = b"consortia/key-file/v1\x00"
_CHECK_DOMAIN: Final = b"consortia/key-file/passphrase-check/v1\x00"
# Loading refuses KDF parameters beyond these before deriving anything, so a hostile file can
# make a reader spend at most about ten times the default work (4x its memory, at most 8
# passes) before its passphrase check fails: room to raise the cost later, not to exhaust a
# machine.
ARGON2_MEMORY_KIB_MAX: Final = 256 * 1024  # 256 MiB
ARGON2_ITERATIONS_MAX: Final = 8
ARGON2_LANES_MAX: Final = 8

Purpose = Literal["consensus", "account", "tls", "tls-ca", "encryption"]
Algorithm = Literal["ed25519", "sm2", "ecdsa-p256", "x25519"]
PURPOSES: Final[tuple[Purpose, ...]] = ("consensus", "account", "tls", "tls-ca", "encryption")
P256_PURPOSES: Final[frozenset[Purpose]] = frozenset({"tls", "tls-ca"})
_SIGNING_ALGORITHMS: Final[dict[str, Algorithm]] = {"intl": "ed25519", "gm": "sm2"}
_ENCRYPTION_ALGORITHMS: Final[dict[str, Algorithm]] = {"intl": "x25519", "gm": "sm2"}

HexBytes = Annotated[str, Meta(min_length=2, max_length=8192, pattern=HEX_BYTES_PATTERN)]


class Argon2Cost(NamedTuple):
    """Argon2id cost. The default is RFC 9106's second recommendation (64 MiB, t=3, p=4)."""

    memory_kib: int = 64 * 1024
    iterations: int = 3
    lanes: int = 4


DEFAULT_ARGON2: Final = Argon2Cost()


class KdfParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    algorithm: Literal["argon2id"]
    salt: Annotated[str, Meta(pattern=r"^[0-9a-f]{32}\Z")]
    memory_kib: Annotated[int, Meta(ge=8, le=ARGON2_MEMORY_KIB_MAX)]
    iterations: Annotated[int, Meta(ge=1, le=ARGON2_ITERATIONS_MAX)]
    lanes: Annotated[int, Meta(ge=1, le=ARGON2_LANES_MAX)]


class KeyFileHeader(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Everything about a key except the private key; all of it is authenticated."""

    format: Literal["consortia-key"]
    version: Literal[1]
    suite: Annotated[str, Meta(min_length=1, max_length=16)]
    purpose: Purpose
    algorithm: Algorithm
    public_key: HexBytes
    kdf: KdfParams
    passphrase_check: Annotated[str, Meta(pattern=r"^[0-9a-f]{64}\Z")]

    @property
    def public_key_bytes(self) -> bytes:
        return bytes.fromhex(self.public_key)


class KeyFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    header: KeyFileHeader
    ciphertext: HexBytes


class UnlockedKey:
    """A decrypted private key with its header. Its repr never shows the private key."""

    __slots__ = ("header", "private_key")

    def __init__(self, header: KeyFileHeader, private_key: bytes) -> None:
        self.header = header
        self.private_key = private_key

    def __repr__(self) -> str:
        return f"<{self.header.purpose} key {self.header.public_key[:16]}…>"


def key_algorithm(suite_name: str, purpose: Purpose) -> Algorithm:
    """The key algorithm a key of `purpose` uses on a chain of `suite_name`."""
    suite(suite_name)  # UnknownSuiteError for an unknown name
    if purpose == "encryption":
        return _ENCRYPTION_ALGORITHMS[suite_name]
    return "ecdsa-p256" if purpose in P256_PURPOSES else _SIGNING_ALGORITHMS[suite_name]


def new_keypair(suite_name: str, purpose: Purpose) -> tuple[bytes, bytes]:
    """A fresh (private_key, public_key) pair of the algorithm `purpose` uses."""
    if key_algorithm(suite_name, purpose) == "ecdsa-p256":
        private = ec.generate_private_key(ec.SECP256R1())
        scalar = private.private_numbers().private_value.to_bytes(P256_SCALAR_SIZE, "big")
        return scalar, _p256_point(private.public_key())
    if purpose == "encryption":
        return suite(suite_name).generate_encryption_keypair()
    return suite(suite_name).generate_keypair()


def public_key_of(algorithm: Algorithm, suite_name: str, private_key: bytes) -> bytes:
    """The public key of `private_key`; CryptoError when it is malformed."""
    if algorithm == "ecdsa-p256":
        return _p256_point(p256_private_key(private_key).public_key())
    if algorithm == "x25519":
        return suite(suite_name).encryption_public_key(private_key)
    return suite(suite_name).public_key(private_key)


def p256_private_key(scalar: bytes) -> ec.EllipticCurvePrivateKey:
    """The P-256 key whose private scalar is the 32 big-endian bytes `scalar`."""
    if len(scalar) != P256_SCALAR_SIZE:
        raise CryptoError(f"P-256 private keys are {P256_SCALAR_SIZE} bytes, got {len(scalar)}")
    try:
        return ec.derive_private_key(int.from_bytes(scalar, "big"), ec.SECP256R1())
    except ValueError:
        raise CryptoError("P-256 private key is out of range") from None


def seal_key(
    suite_name: str,
    purpose: Purpose,
    private_key: bytes,
    passphrase: str,
    *,
    cost: Argon2Cost = DEFAULT_ARGON2,
) -> bytes:
    """The bytes of a key file holding `private_key`, encrypted under `passphrase`."""
    algorithm = key_algorithm(suite_name, purpose)
    public_key = public_key_of(algorithm, suite_name, private_key)
    chain_suite = suite(suite_name)
    kdf = new_kdf_params(cost)
    aead_key, check = derive_passphrase_key(chain_suite, kdf, passphrase)
    header = KeyFileHeader(
        format=KEY_FILE_FORMAT,
        version=KEY_FILE_VERSION,
        suite=suite_name,
        purpose=purpose,
        algorithm=algorithm,
        public_key=public_key.hex(),
        kdf=kdf,
        passphrase_check=check.hex(),
    )
    ciphertext = chain_suite.encrypt(aead_key, private_key, _associated_data(header))
    document = KeyFile(header=header, ciphertext=ciphertext.hex())
    return msgspec.json.format(msgspec.json.encode(document), indent=2) + b"\n"


def parse_header(data: bytes, source: str = "key file") -> KeyFileHeader:
    """The checked header of the key file `data`, without any passphrase."""
    return _parse(data, source).header


def open_key(
    data: bytes, passphrase: str, *, purpose: Purpose | None = None, source: str = "key file"
) -> UnlockedKey:
    """Decrypt the key file `data`; the private key is checked against the header's public key.

    WrongPassphraseError for a wrong passphrase; KeyFileError for a malformed, truncated or
    edited file, or one of another purpose than `purpose`.
    """
    document = _parse(data, source)
    header = document.header
    if purpose is not None and header.purpose != purpose:
        raise KeyFileError(f"{source} holds a {header.purpose} key, not a {purpose} key")
    chain_suite = suite(header.suite)
    aead_key, check = derive_passphrase_key(chain_suite, header.kdf, passphrase)
    if not hmac.compare_digest(check.hex(), header.passphrase_check):
        raise WrongPassphraseError(
            f"wrong passphrase for {source} (or its KDF parameters were altered)"
        )
    try:
        private_key = chain_suite.decrypt(
            aead_key, bytes.fromhex(document.ciphertext), _associated_data(header)
        )
    except CryptoError:
        raise KeyFileError(f"{source} was altered: its contents fail authentication") from None
    _check_key_pair(header, private_key, source)
    return UnlockedKey(header, private_key)


def write_key_file(path: Path, data: bytes) -> None:
    """Write sealed key file bytes to `path` (mode 0600), refusing to overwrite."""
    write_private_file(path, data)


def read_key_header(path: Path) -> KeyFileHeader:
    """The checked header of the key file at `path`."""
    return parse_header(_read(path), str(path))


def load_key(path: Path, passphrase: str, *, purpose: Purpose | None = None) -> UnlockedKey:
    """Decrypt the key file at `path` (see `open_key`)."""
    return open_key(_read(path), passphrase, purpose=purpose, source=str(path))


def _read(path: Path) -> bytes:
    return read_bounded(path, KEY_FILE_SIZE_MAX, KeyFileError, "key file")


def _parse(data: bytes, source: str) -> KeyFile:
    try:
        document = msgspec.json.decode(data, type=KeyFile)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise KeyFileError(f"{source} is not a valid consortia key file: {error}") from None
    check_unique_keys(data, KeyFileError, source)
    _check_header(document.header, source)
    return document


def _check_header(header: KeyFileHeader, source: str) -> None:
    chain_suite = suite(header.suite)  # UnknownSuiteError for an unknown suite
    expected = key_algorithm(header.suite, header.purpose)
    if header.algorithm != expected:
        raise KeyFileError(
            f"{source}: a {header.purpose} key on a {header.suite} chain is {expected},"
            f" not {header.algorithm}"
        )
    if expected == "ecdsa-p256":
        size = 65
    elif header.purpose == "encryption":
        size = chain_suite.encryption_public_key_size
    else:
        size = chain_suite.public_key_size
    if len(header.public_key_bytes) != size:
        raise KeyFileError(f"{source}: a {expected} public key is {size} bytes")
    if header.kdf.memory_kib < 8 * header.kdf.lanes:
        raise KeyFileError(f"{source}: Argon2id needs at least 8 KiB of memory per lane")


def _check_key_pair(header: KeyFileHeader, private_key: bytes, source: str) -> None:
    try:
        public_key = public_key_of(header.algorithm, header.suite, private_key)
    except CryptoError as error:
        raise KeyFileError(f"{source} holds a malformed private key: {error.message}") from None
    if not hmac.compare_digest(public_key, header.public_key_bytes):
        raise KeyFileError(f"{source}: the private key does not match the public key")


# Argon2id runs one at a time in a process: the library's Argon2id (cryptography 50, lanes > 1)
# deadlocks when two threads derive at once (a client opening several keys from a thread pool
# hung for good). Serialising costs nothing real: each run already uses `lanes` threads.
_ARGON2_LOCK: Final = threading.Lock()


def new_kdf_params(cost: Argon2Cost = DEFAULT_ARGON2) -> KdfParams:
    """Argon2id parameters with a fresh random salt, for a new file sealed under a passphrase."""
    return KdfParams(
        algorithm="argon2id",
        salt=os.urandom(SALT_SIZE).hex(),
        memory_kib=cost.memory_kib,
        iterations=cost.iterations,
        lanes=cost.lanes,
    )


def derive_passphrase_key(
    chain_suite: Suite, kdf: KdfParams, passphrase: str
) -> tuple[bytes, bytes]:
    """(AEAD key, passphrase check) from Argon2id over the passphrase.

    Key files and other files sealed under a passphrase (the escrow shares of
    consortia.privacy.escrow) share this one derivation.
    """
    kdf_function = Argon2id(
        salt=bytes.fromhex(kdf.salt),
        length=chain_suite.aead_key_size + CHECK_SIZE,
        iterations=kdf.iterations,
        lanes=kdf.lanes,
        memory_cost=kdf.memory_kib,
    )
    with _ARGON2_LOCK:
        output = kdf_function.derive(passphrase_bytes(passphrase))
    aead_key, check_seed = output[: chain_suite.aead_key_size], output[-CHECK_SIZE:]
    return aead_key, chain_suite.hash(_CHECK_DOMAIN + check_seed)


def _associated_data(header: KeyFileHeader) -> bytes:
    return _ASSOCIATED_DATA_DOMAIN + encode(header)


def p256_public_point(public_key: object) -> bytes:
    """The uncompressed point of a P-256 public key; KeyFileError for any other key."""
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
        public_key.curve, ec.SECP256R1
    ):
        raise KeyFileError("not an ECDSA P-256 public key")
    return _p256_point(public_key)


def _p256_point(public_key: ec.EllipticCurvePublicKey) -> bytes:
    return public_key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
