"""The consortium's X.509 certificates: a self-signed root CA and one mutual-TLS cert per node.

Every key here is ECDSA P-256 with SHA-256 signatures, in both crypto suites: links between
nodes run TLS 1.3 through Python's ssl module, which has no SM2/SM4 cipher suites (see
docs/security.md for how the gm suite is secured and what remains for TLCP). A node
certificate binds the node's identity: its subject CN is the node id (hex of the suite's hash
of the node's consensus public key), O is the member institution, and its SubjectAltName holds
the node's host (DNS name or IP) and the URI `consortia:node:<node id hex>`. It is valid for
both server and client authentication, so the same certificate serves both ends of a link.

This module must never write a private key unencrypted; it only builds and checks certificates.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
from typing import Final, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from consortia.errors import CertificateError

CA_VALIDITY: Final = datetime.timedelta(days=3650)
NODE_VALIDITY: Final = datetime.timedelta(days=825)
# Certificates start an hour early, so a peer whose clock runs slightly behind accepts them.
CLOCK_SKEW: Final = datetime.timedelta(hours=1)
NODE_URI_PREFIX: Final = "consortia:node:"
CERTIFICATE_SIZE_MAX: Final = 64 * 1024

_E = TypeVar("_E", bound=x509.ExtensionType)


def generate_tls_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA P-256 key for TLS or the CA."""
    return ec.generate_private_key(ec.SECP256R1())


def create_ca_certificate(
    ca_key: ec.EllipticCurvePrivateKey, chain_id: str, now: datetime.datetime
) -> x509.Certificate:
    """The consortium's self-signed root: may sign node certificates, nothing below them."""
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"{chain_id} root CA"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "consortia"),
        ]
    )
    public_key = ca_key.public_key()
    builder = (
        _base_builder(name, name, public_key, now, CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(certificate_sign=True), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), False)
    )
    return builder.sign(ca_key, hashes.SHA256())


def issue_node_certificate(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_certificate: x509.Certificate,
    *,
    node_id: bytes,
    member: str,
    host: str,
    public_key: ec.EllipticCurvePublicKey,
    now: datetime.datetime,
) -> x509.Certificate:
    """A node's mutual-TLS certificate, signed by the consortium CA."""
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, node_id.hex()),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, member),
        ]
    )
    usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    ca_public = ca_key.public_key()
    builder = (
        _base_builder(subject, ca_certificate.subject, public_key, now, NODE_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(certificate_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectAlternativeName(_alt_names(host, node_id)), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public), False)
    )
    return builder.sign(ca_key, hashes.SHA256())


def fingerprint(certificate: x509.Certificate) -> str:
    """The SHA-256 of the certificate's DER, as lowercase hex."""
    return hashlib.sha256(certificate.public_bytes(Encoding.DER)).hexdigest()


def certificate_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(Encoding.PEM)


def parse_certificate(pem: bytes, source: str) -> x509.Certificate:
    """The single PEM certificate in `pem`; CertificateError for anything else."""
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise CertificateError(f"{source} is not a PEM X.509 certificate") from None


def verify_ca_certificate(ca: x509.Certificate, now: datetime.datetime, source: str) -> None:
    """CertificateError unless `ca` is a valid, current, self-signed CA certificate."""
    _check_signed_by(ca, ca, source)
    _check_current(ca, now, source)
    constraints = _extension(ca, x509.BasicConstraints, source)
    if not constraints.ca:
        raise CertificateError(f"{source} is not a CA certificate")
    if not isinstance(ca.public_key(), ec.EllipticCurvePublicKey):
        raise CertificateError(f"{source} does not hold an ECDSA key")


def verify_node_certificate(
    certificate: x509.Certificate,
    ca: x509.Certificate,
    node_id_hex: str,
    now: datetime.datetime,
    source: str,
) -> None:
    """CertificateError unless `certificate` is a current node certificate for `node_id_hex`
    signed by `ca`, usable for both ends of a mutual-TLS link."""
    _check_signed_by(certificate, ca, source)
    _check_current(certificate, now, source)
    common_names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if [attribute.value for attribute in common_names] != [node_id_hex]:
        raise CertificateError(f"{source}: subject CN is not the node id {node_id_hex[:16]}…")
    names = _extension(certificate, x509.SubjectAlternativeName, source)
    uris = names.get_values_for_type(x509.UniformResourceIdentifier)
    if f"{NODE_URI_PREFIX}{node_id_hex}" not in uris:
        raise CertificateError(f"{source}: SubjectAltName lacks {NODE_URI_PREFIX}{node_id_hex}")
    usages = set(_extension(certificate, x509.ExtendedKeyUsage, source))
    if not {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= usages:
        raise CertificateError(f"{source} is not valid for both serverAuth and clientAuth")
    if _extension(certificate, x509.BasicConstraints, source).ca:
        raise CertificateError(f"{source} is a CA certificate, not a node certificate")


def _base_builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    now: datetime.datetime,
    validity: datetime.timedelta,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + validity)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _key_usage(*, certificate_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not certificate_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=certificate_sign,
        crl_sign=certificate_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _alt_names(host: str, node_id: bytes) -> list[x509.GeneralName]:
    uri = x509.UniformResourceIdentifier(f"{NODE_URI_PREFIX}{node_id.hex()}")
    try:
        return [x509.IPAddress(ipaddress.ip_address(host)), uri]
    except ValueError:
        return [x509.DNSName(host), uri]


def _check_signed_by(certificate: x509.Certificate, issuer: x509.Certificate, source: str) -> None:
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        raise CertificateError(f"{source} is not signed by the consortium CA") from None


def _check_current(certificate: x509.Certificate, now: datetime.datetime, source: str) -> None:
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise CertificateError(
            f"{source} is valid only from {certificate.not_valid_before_utc:%Y-%m-%d %H:%M}"
            f" to {certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
        )


def _extension(certificate: x509.Certificate, kind: type[_E], source: str) -> _E:
    try:
        return certificate.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        raise CertificateError(f"{source} lacks the {kind.__name__} extension") from None
