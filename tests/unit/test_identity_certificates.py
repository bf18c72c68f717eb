"""Consortium CA and node certificates, certificate requests, revocation, and TLS keys.

Beyond our own checks, each node certificate is verified by `cryptography`'s independent path
validator (as a server for its host and as a client) and used in a real TLS 1.3 mutual
handshake through Python's ssl module, with keys loaded from Argon2id key files.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from consortia.crypto import suite
from consortia.errors import (
    CertificateError,
    InvalidArgumentError,
    KeyFileError,
    WrongPassphraseError,
)
from consortia.identity.certificates import (
    NODE_URI_PREFIX,
    certificate_pem,
    certificate_request,
    create_ca_certificate,
    fingerprint,
    generate_tls_key,
    issue_node_certificate,
    parse_certificate,
    permitted_names,
    read_certificate_request,
    request_pem,
    verify_ca_certificate,
    verify_node_certificate,
)
from consortia.identity.keystore import P256_SCALAR_SIZE, seal_key
from consortia.identity.tls import load_node_identity
from tests.identity_helpers import FAST

NOW = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
PASSPHRASE = "a long enough passphrase"
PERMITTED = permitted_names(["127.0.0.1", "bank.example"])


class Node:
    def __init__(self, ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, host: str) -> None:
        public_key = suite("gm").generate_keypair()[1]
        self.node_id = suite("gm").hash(public_key)
        self.host = host
        self.key = generate_tls_key()
        self.scalar = self.key.private_numbers().private_value.to_bytes(P256_SCALAR_SIZE, "big")
        self.certificate = issue_node_certificate(
            ca_key,
            ca,
            node_id=self.node_id,
            member="bank-0",
            host=host,
            public_key=self.key.public_key(),
            now=NOW,
        )


@pytest.fixture(scope="module")
def ca_key() -> ec.EllipticCurvePrivateKey:
    return generate_tls_key()


@pytest.fixture(scope="module")
def ca(ca_key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    return create_ca_certificate(ca_key, "test-chain", NOW, PERMITTED)


@pytest.fixture(scope="module")
def node(ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate) -> Node:
    return Node(ca_key, ca, "127.0.0.1")


def test_ca_is_a_valid_self_signed_root(ca: x509.Certificate) -> None:
    verify_ca_certificate(ca, NOW, "ca.crt")
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature


def test_node_certificate_binds_the_node_id(node: Node, ca: x509.Certificate) -> None:
    verify_node_certificate(node.certificate, ca, node.node_id.hex(), NOW, "tls.crt")
    subject = node.certificate.subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == node.node_id.hex()
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "bank-0"
    names = node.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    uris = names.value.get_values_for_type(x509.UniformResourceIdentifier)
    assert uris == [NODE_URI_PREFIX + node.node_id.hex()]
    assert names.value.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    usages = node.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    node.certificate.verify_directly_issued_by(ca)


def test_dns_host_goes_into_a_dns_name(
    ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate
) -> None:
    named = Node(ca_key, ca, "node-1.bank.example")
    names = named.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert names.value.get_values_for_type(x509.DNSName) == ["node-1.bank.example"]


def test_independent_path_validation(node: Node, ca: x509.Certificate) -> None:
    store = verification.Store([ca])
    builder = verification.PolicyBuilder().store(store).time(NOW)
    server = builder.build_server_verifier(x509.IPAddress(ipaddress.ip_address(node.host)))
    chain = server.verify(node.certificate, [])
    assert chain[-1] == ca
    client = builder.build_client_verifier().verify(node.certificate, [])
    assert client.chain[-1] == ca


def test_wrong_ca_node_id_or_time_is_refused(node: Node, ca: x509.Certificate) -> None:
    other_ca = create_ca_certificate(generate_tls_key(), "other-chain", NOW, PERMITTED)
    node_id = node.node_id.hex()
    with pytest.raises(CertificateError, match="not signed"):
        verify_node_certificate(node.certificate, other_ca, node_id, NOW, "tls.crt")
    with pytest.raises(CertificateError, match="CN"):
        verify_node_certificate(node.certificate, ca, "00" * 32, NOW, "tls.crt")
    later = NOW + datetime.timedelta(days=3000)
    with pytest.raises(CertificateError, match="valid only"):
        verify_node_certificate(node.certificate, ca, node_id, later, "tls.crt")
    with pytest.raises(CertificateError):
        verify_ca_certificate(node.certificate, NOW, "tls.crt")


def test_ca_certificate_is_not_a_node_certificate(ca: x509.Certificate) -> None:
    with pytest.raises(CertificateError):
        verify_node_certificate(ca, ca, "00" * 32, NOW, "ca.crt")


def test_fingerprint_and_pem(node: Node) -> None:
    pem = certificate_pem(node.certificate)
    again = parse_certificate(pem, "tls.crt")
    assert fingerprint(again) == fingerprint(node.certificate)
    assert len(fingerprint(again)) == 64
    with pytest.raises(CertificateError):
        parse_certificate(b"not a certificate", "tls.crt")


def _context(
    side: int, node: Node, ca: x509.Certificate, tmp_path: Path, passphrase: str = PASSPHRASE
) -> ssl.SSLContext:
    cert_path, key_path = tmp_path / f"{side}.crt", tmp_path / f"{side}.key"
    cert_path.write_bytes(certificate_pem(node.certificate))
    key_path.write_bytes(seal_key("intl", "tls", node.scalar, PASSPHRASE, cost=FAST))
    context = ssl.SSLContext(side)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    load_node_identity(context, cert_path, key_path, passphrase)
    context.load_verify_locations(cadata=certificate_pem(ca).decode())
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def test_mutual_tls_13_handshake(
    ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, tmp_path: Path
) -> None:
    server_node, client_node = Node(ca_key, ca, "127.0.0.1"), Node(ca_key, ca, "127.0.0.1")
    server_ctx = _context(ssl.PROTOCOL_TLS_SERVER, server_node, ca, tmp_path)
    client_ctx = _context(ssl.PROTOCOL_TLS_CLIENT, client_node, ca, tmp_path)
    pipes = [ssl.MemoryBIO() for _ in range(4)]
    server = server_ctx.wrap_bio(pipes[0], pipes[1], server_side=True)
    client = client_ctx.wrap_bio(pipes[2], pipes[3], server_hostname="127.0.0.1")
    for _ in range(10):
        for end in (client, server):
            with contextlib.suppress(ssl.SSLWantReadError):
                end.do_handshake()
        pipes[0].write(pipes[3].read())
        pipes[2].write(pipes[1].read())
    assert client.version() == server.version() == "TLSv1.3"
    server_seen = server.getpeercert()
    client_seen = client.getpeercert()
    assert server_seen is not None and client_seen is not None
    assert ((("commonName", client_node.node_id.hex()),)) in server_seen["subject"]
    assert ((("commonName", server_node.node_id.hex()),)) in client_seen["subject"]
    assert ("URI", NODE_URI_PREFIX + server_node.node_id.hex()) in client_seen["subjectAltName"]


# --- Name constraints, key usage, path length ------------------------------------------------


def _ca_variant(key: ec.EllipticCurvePrivateKey, change: str) -> x509.Certificate:
    """A self-signed CA like ours but with one thing wrong."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "variant root CA")])
    path_length = {"pathlen-none": None, "pathlen-1": 1}.get(change, 0)
    usage = x509.KeyUsage(
        digital_signature=change == "usage-signature",
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=change != "usage-signature",
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(hours=1))
        .not_valid_after(NOW + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(usage, critical=change != "usage-not-critical")
    )
    if change != "no-constraints":
        constraints = x509.NameConstraints(permitted_subtrees=PERMITTED, excluded_subtrees=None)
        builder = builder.add_extension(constraints, critical=True)
    return builder.sign(key, hashes.SHA256())


def test_ca_carries_critical_name_constraints(ca: x509.Certificate) -> None:
    extension = ca.extensions.get_extension_for_class(x509.NameConstraints)
    assert extension.critical
    assert set(extension.value.permitted_subtrees or []) == set(PERMITTED)
    assert extension.value.excluded_subtrees is None


@pytest.mark.parametrize("host", ["10.0.0.1", "evil.example", "bank.example.evil.test"])
def test_ca_refuses_to_certify_a_host_outside_its_constraints(
    ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, host: str
) -> None:
    with pytest.raises(CertificateError, match="name constraints"):
        Node(ca_key, ca, host)


@pytest.mark.parametrize(
    "change",
    ["pathlen-none", "pathlen-1", "usage-signature", "usage-not-critical", "no-constraints"],
)
def test_ca_checks_key_usage_path_length_and_constraints(change: str) -> None:
    variant = _ca_variant(generate_tls_key(), change)
    with pytest.raises(CertificateError):
        verify_ca_certificate(variant, NOW, "ca.crt")


@pytest.mark.parametrize("change", ["cert-sign", "no-signature", "no-usage", "not-critical"])
def test_node_certificate_key_usage_is_checked(
    ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, change: str
) -> None:
    """A node certificate that could sign certificates (or lacks digitalSignature) is no node
    certificate, whatever else it says."""
    node_key = generate_tls_key()
    node_id = bytes(range(32))
    usage = x509.KeyUsage(
        digital_signature=change != "no-signature",
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=change == "cert-sign",
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    alt_names = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.UniformResourceIdentifier(NODE_URI_PREFIX + node_id.hex()),
    ]
    builder = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, node_id.hex()),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "bank-0"),
                ]
            )
        )
        .issuer_name(ca.subject)
        .public_key(node_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(hours=1))
        .not_valid_after(NOW + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(node_key.public_key()), False)
    )
    if change != "no-usage":
        builder = builder.add_extension(usage, critical=change != "not-critical")
    certificate = builder.sign(ca_key, hashes.SHA256())
    with pytest.raises(CertificateError):
        verify_node_certificate(certificate, ca, node_id.hex(), NOW, "tls.crt")


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([], "1 to"),
        (["10.0.0.0/33"], "IPv4 network"),
        (["10.0.0.1/8"], "IPv4 network"),  # host bits set: ambiguous, refused
        (["a_b.example"], "neither"),
        (["0.0.0.0"], "cannot be dialled"),
    ],
)
def test_bad_permitted_names(entries: list[str], message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        permitted_names(entries)


def test_permitted_names_forms() -> None:
    names = permitted_names(["Bank.Example.", "10.20.0.0/16", "127.0.0.1"])
    assert names == [
        x509.DNSName("bank.example"),
        x509.IPAddress(ipaddress.ip_network("10.20.0.0/16")),
        x509.IPAddress(ipaddress.ip_network("127.0.0.1/32")),
    ]


# --- Certificate requests ---------------------------------------------------------------------


def test_certificate_request_round_trip() -> None:
    key = generate_tls_key()
    node_id = bytes(range(32))
    request = certificate_request(key, node_id=node_id, member="bank-7", host="node.bank.example")
    asked = read_certificate_request(request_pem(request), "node.csr")
    assert (asked.node_id, asked.member, asked.host) == (
        node_id.hex(),
        "bank-7",
        "node.bank.example",
    )
    assert asked.public_key.public_numbers() == key.public_key().public_numbers()


def test_certificate_request_problems() -> None:
    with pytest.raises(CertificateError, match="PEM certificate request"):
        read_certificate_request(b"not a request", "node.csr")
    key = generate_tls_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not-a-node-id")])
    odd = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    with pytest.raises(CertificateError):
        read_certificate_request(request_pem(odd), "node.csr")
    other_curve = ec.generate_private_key(ec.SECP384R1())
    request = certificate_request(other_curve, node_id=bytes(32), member="bank-0", host="127.0.0.1")
    with pytest.raises(CertificateError, match="P-256"):
        read_certificate_request(request_pem(request), "node.csr")


# --- TLS keys in Argon2id key files -----------------------------------------------------------


def test_tls_key_opens_with_the_normalised_passphrase(node: Node, tmp_path: Path) -> None:
    """A key sealed under a passphrase typed in NFC opens when typed in NFD: ssl gets the key
    through consortia's key store, which normalises, not through OpenSSL's raw bytes."""
    composed, decomposed = "caf\u00e9 au lait 42", "cafe\u0301 au lait 42"
    cert_path, key_path = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert_path.write_bytes(certificate_pem(node.certificate))
    key_path.write_bytes(seal_key("gm", "tls", node.scalar, composed, cost=FAST))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    load_node_identity(context, cert_path, key_path, decomposed)
    with pytest.raises(WrongPassphraseError):
        load_node_identity(context, cert_path, key_path, "another passphrase")
    other = tmp_path / "other.key"
    other_scalar = generate_tls_key().private_numbers().private_value.to_bytes(32, "big")
    other.write_bytes(seal_key("gm", "tls", other_scalar, composed, cost=FAST))
    with pytest.raises(KeyFileError, match="not the key"):
        load_node_identity(context, cert_path, other, composed)
    assert not list(tmp_path.glob("*.pem")), "no transient key file is left behind"
