"""The consortium's X.509 certificates: a self-signed root CA and one mutual-TLS cert per node.

Every key here is ECDSA P-256 with SHA-256 signatures, in both crypto suites: links between
nodes run TLS 1.3 through Python's ssl module, which has no SM2/SM4 cipher suites (see
docs/security.md for how the gm suite is secured and what remains for TLCP). A node
certificate binds the node's identity: its subject CN is the node id (hex of the suite's hash
of the node's consensus public key), O is the member institution, and its SubjectAltName holds
the node's host (DNS name or IP) and the URI `consortia:node:<node id hex>`. It is valid for
both server and client authentication, so the same certificate serves both ends of a link.

The root carries critical name constraints: it may certify only the hosts (DNS names and
their subdomains, IPv4 addresses or networks) the consortium named when the CA was made, so a
consortium CA added to some trust store cannot vouch for anyone else's web site. Its path
length is 0 (no intermediate CA). A node asks for its certificate with a PKCS#10 request
(CSR) made at its institution, so its TLS private key never leaves it.

This module must never write a private key; it only builds, reads and checks certificates
and requests.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from consortia.errors import CertificateError, InvalidArgumentError
from consortia.identity.addresses import check_host
from consortia.identity.files import read_bounded
from consortia.types.primitives import HASH_HEX_PATTERN

CA_VALIDITY: Final = datetime.timedelta(days=3650)
NODE_VALIDITY: Final = datetime.timedelta(days=825)
# Certificates start an hour early, so a peer whose clock runs slightly behind accepts them.
CLOCK_SKEW: Final = datetime.timedelta(hours=1)
NODE_URI_PREFIX: Final = "consortia:node:"
CERTIFICATE_SIZE_MAX: Final = 64 * 1024
PERMITTED_NAMES_MAX: Final = 1024
_NODE_ID_HEX: Final = re.compile(HASH_HEX_PATTERN)

_E = TypeVar("_E", bound=x509.ExtensionType)


def generate_tls_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA P-256 key for TLS or the CA."""
    return ec.generate_private_key(ec.SECP256R1())


def permitted_names(entries: Sequence[str]) -> list[x509.GeneralName]:
    """The name constraints for `--permit NAME,...`: a DNS name (itself and its subdomains),
    an IPv4 address, or an IPv4 network in CIDR form (10.20.0.0/16)."""
    if not 1 <= len(entries) <= PERMITTED_NAMES_MAX:
        raise InvalidArgumentError(f"--permit needs 1 to {PERMITTED_NAMES_MAX} names")
    names: list[x509.GeneralName] = []
    for raw in entries:
        entry = raw.strip().lower()
        if "/" in entry:
            try:
                network = ipaddress.IPv4Network(entry, strict=True)
            except ValueError:
                raise InvalidArgumentError(f"--permit {raw!r} is not an IPv4 network") from None
            names.append(x509.IPAddress(network))
            continue
        host = check_host(entry, f"--permit {raw!r}")
        try:
            names.append(x509.IPAddress(ipaddress.IPv4Network(f"{host}/32")))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def create_ca_certificate(
    ca_key: ec.EllipticCurvePrivateKey,
    chain_id: str,
    now: datetime.datetime,
    permitted: Sequence[x509.GeneralName],
) -> x509.Certificate:
    """The consortium's self-signed root: may sign node certificates for the `permitted`
    hosts, nothing below them (path length 0)."""
    assert permitted, "a consortium CA always has name constraints"
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"{chain_id} root CA"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "consortia"),
        ]
    )
    public_key = ca_key.public_key()
    constraints = x509.NameConstraints(permitted_subtrees=list(permitted), excluded_subtrees=None)
    builder = (
        _base_builder(name, name, public_key, now, CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(certificate_sign=True), critical=True)
        .add_extension(constraints, critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), False)
    )
    return builder.sign(ca_key, hashes.SHA256())


@dataclass(frozen=True)
class RequestedNode:
    """What a node's certificate request asks for, read from a checked CSR."""

    node_id: str  # hex
    member: str
    host: str
    public_key: ec.EllipticCurvePublicKey


def certificate_request(
    tls_key: ec.EllipticCurvePrivateKey, *, node_id: bytes, member: str, host: str
) -> x509.CertificateSigningRequest:
    """The PKCS#10 request a node sends its CA, signed by its TLS key (proof of possession)."""
    subject = _node_subject(node_id, member)
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .add_extension(x509.SubjectAlternativeName(_alt_names(host, node_id)), critical=False)
        .sign(tls_key, hashes.SHA256())
    )


def request_pem(request: x509.CertificateSigningRequest) -> bytes:
    return request.public_bytes(Encoding.PEM)


def read_certificate_request(pem: bytes, source: str) -> RequestedNode:
    """The node a PEM certificate request asks for; CertificateError unless it is one
    P-256 request, signed by its own key, naming one node id, one member and one host."""
    try:
        request = x509.load_pem_x509_csr(pem)
    except ValueError:
        raise CertificateError(f"{source} is not a PEM certificate request") from None
    public_key = request.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
        public_key.curve, ec.SECP256R1
    ):
        raise CertificateError(f"{source} is not for an ECDSA P-256 key")
    if not request.is_signature_valid:
        raise CertificateError(f"{source} is not signed by the key it names")
    node_id = _single(request.subject, NameOID.COMMON_NAME, source)
    member = _single(request.subject, NameOID.ORGANIZATION_NAME, source)
    if not _NODE_ID_HEX.match(node_id):
        raise CertificateError(f"{source}: subject CN is not a node id (64 hex digits)")
    try:
        names = request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        raise CertificateError(f"{source} asks for no SubjectAltName") from None
    uris = names.get_values_for_type(x509.UniformResourceIdentifier)
    hosts = [*names.get_values_for_type(x509.DNSName)]
    hosts += [str(address) for address in names.get_values_for_type(x509.IPAddress)]
    if uris != [f"{NODE_URI_PREFIX}{node_id}"] or len(hosts) != 1 or len(names) != 2:
        raise CertificateError(
            f"{source} must ask for exactly one host and the URI {NODE_URI_PREFIX}<node id>"
        )
    return RequestedNode(node_id, member, hosts[0], public_key)


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
    """A node's mutual-TLS certificate, signed by the consortium CA.

    CertificateError, and no certificate, when the CA's name constraints do not permit `host`.
    """
    usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    ca_public = ca_key.public_key()
    builder = (
        _base_builder(
            _node_subject(node_id, member), ca_certificate.subject, public_key, now, NODE_VALIDITY
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(certificate_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectAlternativeName(_alt_names(host, node_id)), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public), False)
    )
    certificate = builder.sign(ca_key, hashes.SHA256())
    _check_policy(certificate, ca_certificate, now, f"a certificate for {host}")
    return certificate


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


def load_certificate(path: Path) -> x509.Certificate:
    """The PEM certificate at `path`; CertificateError when it is missing or malformed."""
    return parse_certificate(
        read_bounded(path, CERTIFICATE_SIZE_MAX, CertificateError, "certificate"), str(path)
    )


def verify_ca_certificate(ca: x509.Certificate, now: datetime.datetime, source: str) -> None:
    """CertificateError unless `ca` is a valid, current, self-signed consortium CA: a P-256
    key, critical CA:TRUE with path length 0, critical keyCertSign usage and critical name
    constraints."""
    _check_signed_by(ca, ca, source)
    _check_current(ca, now, source)
    if not isinstance(ca.public_key(), ec.EllipticCurvePublicKey):
        raise CertificateError(f"{source} does not hold an ECDSA key")
    constraints = _critical(ca, x509.BasicConstraints, source)
    if not constraints.ca:
        raise CertificateError(f"{source} is not a CA certificate")
    if constraints.path_length != 0:
        raise CertificateError(f"{source} must have path length 0 (it may sign no CA)")
    usage = _critical(ca, x509.KeyUsage, source)
    if not usage.key_cert_sign or usage.digital_signature:
        raise CertificateError(f"{source}: key usage must be keyCertSign, not digitalSignature")
    names = _critical(ca, x509.NameConstraints, source)
    if not names.permitted_subtrees:
        raise CertificateError(f"{source} permits no names; a consortium CA names its hosts")


def verify_node_certificate(
    certificate: x509.Certificate,
    ca: x509.Certificate,
    node_id_hex: str,
    now: datetime.datetime,
    source: str,
) -> None:
    """CertificateError unless `certificate` is a current node certificate for `node_id_hex`
    signed by `ca`, usable for both ends of a mutual-TLS link, with digitalSignature (and no
    CA) key usage and names the CA's constraints permit."""
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
    if _critical(certificate, x509.BasicConstraints, source).ca:
        raise CertificateError(f"{source} is a CA certificate, not a node certificate")
    usage = _critical(certificate, x509.KeyUsage, source)
    if not usage.digital_signature or usage.key_cert_sign or usage.crl_sign:
        raise CertificateError(
            f"{source}: key usage must be digitalSignature only (it may sign no certificate)"
        )
    _check_policy(certificate, ca, now, source)


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


def _node_subject(node_id: bytes, member: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, node_id.hex()),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, member),
        ]
    )


def _single(name: x509.Name, oid: x509.ObjectIdentifier, source: str) -> str:
    values = [attribute.value for attribute in name.get_attributes_for_oid(oid)]
    if len(values) != 1 or not isinstance(values[0], str) or not values[0]:
        raise CertificateError(f"{source}: the subject must name one {oid._name}")
    return values[0]


def _check_policy(
    certificate: x509.Certificate, ca: x509.Certificate, now: datetime.datetime, source: str
) -> None:
    """The independent check of `cryptography`'s path validator (RFC 5280 with the web PKI's
    rules): the chain, key usage, extended key usage and the CA's name constraints."""
    verifier = (
        verification.PolicyBuilder()
        .store(verification.Store([ca]))
        .time(now)
        .max_chain_depth(0)
        .build_client_verifier()
    )
    try:
        verifier.verify(certificate, [])
    except verification.VerificationError as error:
        raise CertificateError(f"{source} is refused by the CA's policy: {error}") from None


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


def _critical(certificate: x509.Certificate, kind: type[_E], source: str) -> _E:
    try:
        extension = certificate.extensions.get_extension_for_class(kind)
    except x509.ExtensionNotFound:
        raise CertificateError(f"{source} lacks the {kind.__name__} extension") from None
    if not extension.critical:
        raise CertificateError(f"{source}: its {kind.__name__} extension must be critical")
    return extension.value


def _extension(certificate: x509.Certificate, kind: type[_E], source: str) -> _E:
    try:
        return certificate.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        raise CertificateError(f"{source} lacks the {kind.__name__} extension") from None
