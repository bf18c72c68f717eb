"""Mutual TLS 1.3 between validators: the two ssl contexts and the peer's node id.

A link's peer is the node id bound in its certificate (subject CN and the SubjectAltName URI
`consortia:node:<node id hex>`, both 64 lowercase hex digits, as the consortium CA issues
them), read after OpenSSL has checked the chain against the consortium CA. Nothing else names
a peer: not its address, not anything it sends.

Python's ssl module (OpenSSL) loads a private key only from a file. `pem_identity` therefore
hands OpenSSL the key as PKCS#8 encrypted under a random one-time password that lives only in
this process, through an anonymous in-memory file (Linux memfd) or, where there is none, a
private 0700 temporary directory removed as soon as the key is loaded.

This module must never write a private key unencrypted, keep the one-time password, log a key,
or take a peer's identity from anything but its verified certificate.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import ssl
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final, NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    PrivateFormat,
    load_pem_private_key,
)
from cryptography.x509.oid import NameOID

from consortia.errors import CertificateError
from consortia.net.counters import Refusal
from consortia.types.primitives import HASH_HEX_PATTERN, HASH_SIZE

NODE_ID_SIZE: Final = HASH_SIZE
NODE_URI_PREFIX: Final = "consortia:node:"
PEM_SIZE_MAX: Final = 64 * 1024
ONE_TIME_PASSWORD_SIZE: Final = 32
_NODE_ID_HEX: Final = re.compile(HASH_HEX_PATTERN)

# OpenSSL's X509_V_ERR_* codes that name a refusal more precisely than "invalid".
_VERIFY_CODES: Final = {
    2: Refusal.UNKNOWN_CA,  # unable to get issuer certificate
    7: Refusal.UNKNOWN_CA,  # certificate signature failure (issuer name forged)
    9: Refusal.NOT_YET_VALID,
    10: Refusal.EXPIRED,
    18: Refusal.SELF_SIGNED,  # depth zero self-signed
    19: Refusal.SELF_SIGNED,  # self-signed certificate in chain
    20: Refusal.UNKNOWN_CA,  # unable to get local issuer certificate
    21: Refusal.UNKNOWN_CA,  # unable to verify the first certificate
}

IdentityLoader = Callable[[ssl.SSLContext], None]
"""Loads the node's certificate and private key into an ssl context (`load_cert_chain`)."""


class TlsContexts(NamedTuple):
    """The context that accepts links (server side) and the one that dials them (client)."""

    server: ssl.SSLContext
    client: ssl.SSLContext


class PeerIdentityError(Exception):
    """A verified certificate that names no node id, or names two."""


def build_contexts(ca_pem: bytes, load_identity: IdentityLoader) -> TlsContexts:
    """Both contexts of a node: TLS 1.3 only, the consortium CA as the only trust anchor, a
    certificate required from the peer on both sides, no hostname check (identity is the node
    id), no compression and no session tickets. `load_identity` loads the node's own
    certificate and key into each context; CertificateError when either is unusable."""
    ca = _single_ca(ca_pem)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    for context in (server, client):
        _configure(context, ca)
        try:
            load_identity(context)
        except ssl.SSLError as error:
            raise CertificateError(
                f"the node's TLS certificate or key is unusable: {error}"
            ) from None
    return TlsContexts(server, client)


def contexts_from_pem(
    ca_pem: bytes,
    certificate_pem: bytes,
    private_key: ec.EllipticCurvePrivateKey | bytes,
    *,
    key_password: bytes | None = None,
) -> TlsContexts:
    """`build_contexts` for a node whose certificate and key are in memory: the key as an
    object (say, decrypted from the node's key file) or as PEM bytes, encrypted under
    `key_password` or not."""
    return build_contexts(ca_pem, pem_identity(certificate_pem, private_key, key_password))


def pem_identity(
    certificate_pem: bytes,
    private_key: ec.EllipticCurvePrivateKey | bytes,
    key_password: bytes | None = None,
) -> IdentityLoader:
    """An `IdentityLoader` for a certificate and key held in memory. The key must be ECDSA P-256
    and belong to the certificate; CertificateError otherwise."""
    if len(certificate_pem) > PEM_SIZE_MAX:
        raise CertificateError("the node certificate is larger than 64 KiB")
    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem)
    except ValueError:
        raise CertificateError("the node certificate is not a PEM X.509 certificate") from None
    key = _private_key(private_key, key_password)
    if key.public_key() != certificate.public_key():
        raise CertificateError("the TLS private key does not belong to the node certificate")

    def load(context: ssl.SSLContext) -> None:
        password = secrets.token_bytes(ONE_TIME_PASSWORD_SIZE)
        encrypted = key.private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(password)
        )
        pem = certificate.public_bytes(Encoding.PEM) + encrypted
        with _transient_file(pem) as path:
            context.load_cert_chain(path, password=password)

    return load


def peer_node_id(certificate_der: bytes) -> bytes:
    """The node id a verified peer certificate binds: its subject CN, which must equal the one
    `consortia:node:` URI in its SubjectAltName. PeerIdentityError for anything else."""
    try:
        certificate = x509.load_der_x509_certificate(certificate_der)
    except ValueError:
        raise PeerIdentityError("the certificate does not parse") from None
    common_names = [
        attribute.value
        for attribute in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    ]
    if len(common_names) != 1 or not isinstance(common_names[0], str):
        raise PeerIdentityError("the subject must have exactly one CN")
    node_hex = common_names[0]
    if not _NODE_ID_HEX.match(node_hex):
        raise PeerIdentityError("the subject CN is not a node id (64 lowercase hex digits)")
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (x509.ExtensionNotFound, ValueError):
        raise PeerIdentityError("the certificate has no SubjectAltName") from None
    uris = [
        uri
        for uri in names.value.get_values_for_type(x509.UniformResourceIdentifier)
        if uri.startswith(NODE_URI_PREFIX)
    ]
    if uris != [f"{NODE_URI_PREFIX}{node_hex}"]:
        raise PeerIdentityError("the SubjectAltName must hold one node URI, for the CN's id")
    return bytes.fromhex(node_hex)


def refusal_of(error: BaseException) -> Refusal:
    """Why a TLS handshake failed, as a refusal reason."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return _VERIFY_CODES.get(error.verify_code, Refusal.CERTIFICATE_INVALID)
    if isinstance(error, TimeoutError):
        return Refusal.TIMEOUT
    return Refusal.TLS_ERROR


def _configure(context: ssl.SSLContext, ca: x509.Certificate) -> None:
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_TICKET
    if context.protocol == ssl.PROTOCOL_TLS_SERVER:
        context.num_tickets = 0
    context.load_verify_locations(cadata=ca.public_bytes(Encoding.PEM).decode("ascii"))


def _single_ca(ca_pem: bytes) -> x509.Certificate:
    if len(ca_pem) > PEM_SIZE_MAX:
        raise CertificateError("the CA certificate is larger than 64 KiB")
    try:
        certificates = x509.load_pem_x509_certificates(ca_pem)
    except ValueError:
        raise CertificateError("the CA certificate is not PEM X.509") from None
    if len(certificates) != 1:
        raise CertificateError("the consortium has exactly one CA certificate")
    ca = certificates[0]
    try:
        constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise CertificateError("the CA certificate lacks basic constraints") from None
    if not constraints.ca:
        raise CertificateError("the CA certificate is not a CA")
    return ca


def _private_key(
    private_key: ec.EllipticCurvePrivateKey | bytes, password: bytes | None
) -> ec.EllipticCurvePrivateKey:
    if isinstance(private_key, bytes):
        if len(private_key) > PEM_SIZE_MAX:
            raise CertificateError("the TLS private key is larger than 64 KiB")
        try:
            loaded = load_pem_private_key(private_key, password)
        except (ValueError, TypeError):
            # The message names no key material: it may echo nothing of the input.
            raise CertificateError("the TLS private key does not load") from None
    else:
        loaded = private_key
    if not isinstance(loaded, ec.EllipticCurvePrivateKey) or not isinstance(
        loaded.curve, ec.SECP256R1
    ):
        raise CertificateError("the TLS private key is not ECDSA P-256")
    return loaded


@contextlib.contextmanager
def _transient_file(data: bytes) -> Iterator[str]:
    """A path that reads as `data` while the block runs and is gone afterwards."""
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is not None and Path("/proc/self/fd").is_dir():
        descriptor = memfd_create("consortia-net-identity", getattr(os, "MFD_CLOEXEC", 0))
        try:
            _write_all(descriptor, data)
            yield f"/proc/self/fd/{descriptor}"
        finally:
            os.close(descriptor)
        return
    with tempfile.TemporaryDirectory(prefix="consortia-net-") as directory:
        os.chmod(directory, 0o700)
        path = Path(directory) / "identity.pem"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            _write_all(descriptor, data)
        finally:
            os.close(descriptor)
        try:
            yield str(path)
        finally:
            path.unlink(missing_ok=True)


def _write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(descriptor, view)
        view = view[written:]
