"""A node's TLS identity: its certificate and its private key, loaded into an ssl context.

`tls.key` is a consortia key file like every other private key (Argon2id + the suite's AEAD,
purpose "tls"), so cracking it costs what cracking the consensus key costs. Python's ssl module
(OpenSSL) reads private keys only from files, so `load_node_identity` decrypts the key with
the node's passphrase (NFC-normalised, as every key file is) and hands it to OpenSSL as an
encrypted PKCS#8 PEM under a fresh random 256-bit password that exists only in this process,
through an anonymous in-memory file where the platform has one (Linux memfd) and otherwise a
private temporary file that is removed at once. The key is never written unencrypted.

This module must never write a private key unencrypted, nor keep the one-time password.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    PrivateFormat,
)

from consortia.errors import CertificateError, KeyFileError
from consortia.identity.certificates import CERTIFICATE_SIZE_MAX, parse_certificate
from consortia.identity.files import read_bounded
from consortia.identity.keystore import load_key, p256_private_key, p256_public_point

ONE_TIME_PASSWORD_SIZE: Final = 32


def load_node_identity(
    context: ssl.SSLContext, certificate_path: Path, key_path: Path, passphrase: str
) -> None:
    """Load the node certificate at `certificate_path` and its key from the key file at
    `key_path` (opened with `passphrase`) into `context`.

    WrongPassphraseError for a wrong passphrase; KeyFileError when the key is not a TLS key or
    does not belong to the certificate.
    """
    certificate_pem = read_bounded(
        certificate_path, CERTIFICATE_SIZE_MAX, CertificateError, "certificate"
    )
    certificate = parse_certificate(certificate_pem, str(certificate_path))
    unlocked = load_key(key_path, passphrase, purpose="tls")
    if p256_public_point(certificate.public_key()) != unlocked.header.public_key_bytes:
        raise KeyFileError(f"{key_path} is not the key of {certificate_path}")
    password = secrets.token_bytes(ONE_TIME_PASSWORD_SIZE)
    pem = p256_private_key(unlocked.private_key).private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(password)
    )
    with _transient_file(pem) as transient:
        context.load_cert_chain(certificate_path, transient, password=password)


@contextlib.contextmanager
def _transient_file(data: bytes) -> Iterator[str]:
    """A path that reads as `data` while the block runs and is gone afterwards."""
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is not None and Path("/proc/self/fd").is_dir():
        descriptor = memfd_create("consortia-tls-key", getattr(os, "MFD_CLOEXEC", 0))
        try:
            os.write(descriptor, data)
            yield f"/proc/self/fd/{descriptor}"
        finally:
            os.close(descriptor)
        return
    with tempfile.TemporaryDirectory(prefix="consortia-tls-") as directory:
        path = Path(directory) / "key.pem"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(descriptor, data)
        finally:
            os.close(descriptor)
        try:
            yield str(path)
        finally:
            path.unlink(missing_ok=True)
