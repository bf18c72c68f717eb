"""The regulator's escrow key held k of n by regulator officers.

Splitting: a fresh random 16-byte recovery key encrypts the escrow private key with the chain
suite's AEAD (the AEAD key is the first aead_key_size bytes of hash(RECOVERY_KEY_DOMAIN ||
recovery key)); the recovery key is split with Shamir's scheme over GF(2^128) (pycryptodomex's
`Cryptodome.Protocol.SecretSharing.Shamir`) into n shares of which any k recover it. Every
share carries the public part of the split (suite, k, n, escrow public key, key id, the
encrypted escrow key and the digest of every share), so shares vouch for one another: a share
whose value was altered no longer matches the digest the others hold for it.

Recovery needs k distinct shares of one split. It refuses too few, duplicated, mixed (another
split or another key) and altered shares with their own codes, then checks that the recovered
private key belongs to the escrow public key.

Each officer keeps one share in a file sealed under the officer's passphrase with the key files'
own Argon2id and AEAD (consortia.identity.keystore). This module must never log, print or put
in an error message a share, a recovery key, a passphrase or the escrow private key, and never
writes a share file anyone but its owner can read.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Final, Literal

import msgspec
from Cryptodome.Protocol.SecretSharing import Shamir
from msgspec import Meta

from consortia.crypto import Suite, suite
from consortia.errors import (
    CryptoError,
    DecodeError,
    EscrowRecoveryFailedError,
    EscrowShareDuplicateError,
    EscrowShareInvalidError,
    EscrowSharesMixedError,
    EscrowSharesTooFewError,
    InvalidArgumentError,
    KeyFileError,
    WrongPassphraseError,
)
from consortia.identity.files import read_bounded, write_private_file
from consortia.identity.keystore import (
    DEFAULT_ARGON2,
    Argon2Cost,
    KdfParams,
    derive_passphrase_key,
    new_kdf_params,
)
from consortia.identity.strict_json import check_unique_keys
from consortia.types.encoding import decode, encode
from consortia.types.primitives import HEX_BYTES_PATTERN

SHARE_VERSION: Final = 1
SHARE_SIZE: Final = 16  # Shamir over GF(2^128): 16-byte secrets and shares
OFFICERS_MAX: Final = 32
THRESHOLD_MIN: Final = 2
SHARE_FILE_FORMAT: Final = "consortia-escrow-share"
SHARE_FILE_SIZE_MAX: Final = 64 * 1024
RECOVERY_KEY_DOMAIN: Final = b"consortia/escrow/recovery-key/v1\x00"
ESCROW_KEY_DOMAIN: Final = b"consortia/escrow/encrypted-key/v1\x00"
KEY_ID_DOMAIN: Final = b"consortia/escrow/key-id/v1\x00"
SHARE_DIGEST_DOMAIN: Final = b"consortia/escrow/share/v1\x00"
_SHARE_FILE_DOMAIN: Final = b"consortia/escrow/share-file/v1\x00"


class Share(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True, tag="share"):
    """One officer's share of the escrow key's recovery key, with the split's public part."""

    v: int
    suite: str
    index: int  # 1..n
    k: int
    n: int
    escrow_public_key: bytes
    key_id: bytes  # hash(KEY_ID_DOMAIN || escrow public key): the key's fingerprint
    encrypted_key: bytes  # the escrow private key under the recovery key (suite AEAD)
    share_digests: list[bytes]  # hash(SHARE_DIGEST_DOMAIN || index || share) of all n shares
    share: bytes  # the Shamir share of the 16-byte recovery key (secret)

    def __repr__(self) -> str:
        return f"<escrow share {self.index} of {self.n} (k={self.k}) for {self.key_id.hex()[:16]}…>"


def key_id(chain_suite: Suite, escrow_public_key: bytes) -> bytes:
    """The fingerprint of an escrow public key that shares and records refer to."""
    return chain_suite.hash(KEY_ID_DOMAIN + escrow_public_key)


def split_escrow(chain_suite: Suite, escrow_private_key: bytes, k: int, n: int) -> list[Share]:
    """n shares of `escrow_private_key`, any k of which recover it."""
    if not THRESHOLD_MIN <= k <= n <= OFFICERS_MAX:
        raise InvalidArgumentError(
            f"escrow splits need {THRESHOLD_MIN} <= k <= n <= {OFFICERS_MAX} (got k={k}, n={n})"
        )
    public = chain_suite.encryption_public_key(escrow_private_key)  # CryptoError if malformed
    fingerprint = key_id(chain_suite, public)
    recovery_key = chain_suite.random_bytes(SHARE_SIZE)
    encrypted_key = chain_suite.encrypt(
        _aead_key(chain_suite, recovery_key),
        escrow_private_key,
        _escrow_key_ad(chain_suite.name, fingerprint, k, n),
    )
    pieces = Shamir.split(k, n, recovery_key, False)
    assert [index for index, _ in pieces] == list(range(1, n + 1))
    digests = [_share_digest(chain_suite, index, piece) for index, piece in pieces]
    return [
        Share(
            SHARE_VERSION,
            chain_suite.name,
            index,
            k,
            n,
            public,
            fingerprint,
            encrypted_key,
            digests,
            bytes(piece),
        )
        for index, piece in pieces
    ]


def recover_escrow(chain_suite: Suite, shares: Sequence[Share]) -> bytes:
    """The escrow private key from k distinct valid shares of one split (see the docstring)."""
    if not shares:
        raise EscrowSharesTooFewError("no escrow shares given")
    for share in shares:
        _check_share(chain_suite, share)
    first = shares[0]
    for share in shares[1:]:
        if _public_part(share) != _public_part(first):
            raise EscrowSharesMixedError(
                f"share {share.index} belongs to another split or escrow key than share"
                f" {first.index} (key ids {share.key_id.hex()[:16]}…, {first.key_id.hex()[:16]}…)"
            )
    indices = [share.index for share in shares]
    if len(set(indices)) != len(indices):
        raise EscrowShareDuplicateError(f"share indices repeat: {sorted(indices)}")
    for share in shares:
        digest = _share_digest(chain_suite, share.index, share.share)
        if not hmac.compare_digest(digest, first.share_digests[share.index - 1]):
            raise EscrowShareInvalidError(
                f"share {share.index} was altered: it does not match the split's digest of it"
            )
    if len(shares) < first.k:
        raise EscrowSharesTooFewError(
            f"{len(shares)} distinct shares given; this key needs {first.k} of {first.n}"
        )
    recovery_key = Shamir.combine(
        [(share.index, share.share) for share in shares[: first.k]], False
    )
    try:
        private = chain_suite.decrypt(
            _aead_key(chain_suite, recovery_key),
            first.encrypted_key,
            _escrow_key_ad(first.suite, first.key_id, first.k, first.n),
        )
        public = chain_suite.encryption_public_key(private)
    except CryptoError:
        raise EscrowRecoveryFailedError(
            "the shares do not recover the escrow key (the encrypted key was altered)"
        ) from None
    if not hmac.compare_digest(public, first.escrow_public_key):
        raise EscrowRecoveryFailedError("the recovered key does not match the escrow public key")
    return private


def _check_share(chain_suite: Suite, share: Share) -> None:
    if not isinstance(share, Share) or share.v != SHARE_VERSION:
        raise EscrowShareInvalidError(f"not a version {SHARE_VERSION} escrow share")
    if share.suite != chain_suite.name:
        raise EscrowSharesMixedError(f"share {share.index} is for suite {share.suite!r}")
    valid = (
        THRESHOLD_MIN <= share.k <= share.n <= OFFICERS_MAX
        and 1 <= share.index <= share.n
        and len(share.share) == SHARE_SIZE
        and len(share.share_digests) == share.n
        and all(len(digest) == chain_suite.hash_size for digest in share.share_digests)
        and chain_suite.valid_encryption_public_key(share.escrow_public_key)
        and hmac.compare_digest(share.key_id, key_id(chain_suite, share.escrow_public_key))
    )
    if not valid:
        raise EscrowShareInvalidError(f"escrow share {share.index} is malformed or was altered")


def _public_part(share: Share) -> tuple[object, ...]:
    return (
        share.suite,
        share.k,
        share.n,
        share.escrow_public_key,
        share.key_id,
        share.encrypted_key,
        tuple(share.share_digests),
    )


def _aead_key(chain_suite: Suite, recovery_key: bytes) -> bytes:
    return chain_suite.hash(RECOVERY_KEY_DOMAIN + recovery_key)[: chain_suite.aead_key_size]


def _escrow_key_ad(suite_name: str, fingerprint: bytes, k: int, n: int) -> bytes:
    return ESCROW_KEY_DOMAIN + suite_name.encode() + b"\x00" + fingerprint + bytes([k, n])


def _share_digest(chain_suite: Suite, index: int, piece: bytes) -> bytes:
    return chain_suite.hash(SHARE_DIGEST_DOMAIN + bytes([index]) + piece)


# --- Share files, sealed under an officer's passphrase ---------------------------------------

HexText = Annotated[str, Meta(min_length=2, max_length=16384, pattern=HEX_BYTES_PATTERN)]


class ShareFileHeader(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What a share file says without its passphrase; all of it is authenticated."""

    format: Literal["consortia-escrow-share"]
    version: Literal[1]
    suite: Annotated[str, Meta(min_length=1, max_length=16)]
    index: Annotated[int, Meta(ge=1, le=OFFICERS_MAX)]
    k: Annotated[int, Meta(ge=THRESHOLD_MIN, le=OFFICERS_MAX)]
    n: Annotated[int, Meta(ge=THRESHOLD_MIN, le=OFFICERS_MAX)]
    key_id: Annotated[str, Meta(pattern=r"^[0-9a-f]{64}\Z")]
    kdf: KdfParams
    passphrase_check: Annotated[str, Meta(pattern=r"^[0-9a-f]{64}\Z")]


class ShareFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    header: ShareFileHeader
    ciphertext: HexText


def seal_share(share: Share, passphrase: str, *, cost: Argon2Cost = DEFAULT_ARGON2) -> bytes:
    """The bytes of a share file holding `share`, encrypted under `passphrase` (Argon2id)."""
    chain_suite = suite(share.suite)
    kdf = new_kdf_params(cost)
    aead_key, check = derive_passphrase_key(chain_suite, kdf, passphrase)
    header = ShareFileHeader(
        format=SHARE_FILE_FORMAT,
        version=SHARE_VERSION,
        suite=share.suite,
        index=share.index,
        k=share.k,
        n=share.n,
        key_id=share.key_id.hex(),
        kdf=kdf,
        passphrase_check=check.hex(),
    )
    ciphertext = chain_suite.encrypt(aead_key, encode(share), _SHARE_FILE_DOMAIN + encode(header))
    document = ShareFile(header=header, ciphertext=ciphertext.hex())
    return msgspec.json.format(msgspec.json.encode(document), indent=2) + b"\n"


def open_share(data: bytes, passphrase: str, *, source: str = "share file") -> Share:
    """The share in a share file; WrongPassphraseError or KeyFileError (altered, malformed)."""
    try:
        document = msgspec.json.decode(data, type=ShareFile)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise KeyFileError(f"{source} is not a valid escrow share file: {error}") from None
    check_unique_keys(data, KeyFileError, source)
    header = document.header
    chain_suite = suite(header.suite)
    aead_key, check = derive_passphrase_key(chain_suite, header.kdf, passphrase)
    if not hmac.compare_digest(check.hex(), header.passphrase_check):
        raise WrongPassphraseError(f"wrong passphrase for {source}")
    try:
        plaintext = chain_suite.decrypt(
            aead_key, bytes.fromhex(document.ciphertext), _SHARE_FILE_DOMAIN + encode(header)
        )
        share = decode(plaintext, Share, size_max=SHARE_FILE_SIZE_MAX)
    except (CryptoError, DecodeError):
        raise KeyFileError(f"{source} was altered: its contents fail authentication") from None
    if (share.suite, share.index, share.k, share.n, share.key_id.hex()) != (
        header.suite,
        header.index,
        header.k,
        header.n,
        header.key_id,
    ):
        raise KeyFileError(f"{source}: the header does not describe the share inside")
    return share


def write_share_file(
    path: Path, share: Share, passphrase: str, *, cost: Argon2Cost = DEFAULT_ARGON2
) -> None:
    """Write `share` sealed under `passphrase` to `path` (mode 0600), refusing to overwrite."""
    write_private_file(path, seal_share(share, passphrase, cost=cost))


def load_share_file(path: Path, passphrase: str) -> Share:
    """The share in the share file at `path` (see `open_share`)."""
    data = read_bounded(path, SHARE_FILE_SIZE_MAX, KeyFileError, "escrow share file")
    return open_share(data, passphrase, source=str(path))
