"""Consortium CA and node certificates, and the scrypt-encrypted PKCS#8 TLS keys.

Beyond our own checks, each node certificate is verified by `cryptography`'s independent path
validator (as a server for its host and as a client) and used in a real TLS 1.3 mutual
handshake through Python's ssl module, with keys loaded from the encrypted PKCS#8 files.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import ipaddress
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from consortia.crypto import suite
from consortia.errors import CertificateError, KeyFileError, WrongPassphraseError
from consortia.identity.certificates import (
    NODE_URI_PREFIX,
    certificate_pem,
    create_ca_certificate,
    fingerprint,
    generate_tls_key,
    issue_node_certificate,
    parse_certificate,
    verify_ca_certificate,
    verify_node_certificate,
)
from consortia.identity.pkcs8 import ScryptCost, decrypt_private_key, encrypt_private_key

NOW = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
PASSPHRASE = "a long enough passphrase"
FAST_SCRYPT = ScryptCost(log2_n=4, r=8, p=1)


class Node:
    def __init__(self, ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, host: str) -> None:
        public_key = suite("gm").generate_keypair()[1]
        self.node_id = suite("gm").hash(public_key)
        self.host = host
        self.key = generate_tls_key()
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
    return create_ca_certificate(ca_key, "test-chain", NOW)


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
    other_ca = create_ca_certificate(generate_tls_key(), "other-chain", NOW)
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


def test_pkcs8_round_trip_and_errors(node: Node) -> None:
    pem = encrypt_private_key(node.key, PASSPHRASE, cost=FAST_SCRYPT)
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    key = decrypt_private_key(pem, PASSPHRASE, "tls.key")
    assert key.private_numbers() == node.key.private_numbers()
    with pytest.raises(WrongPassphraseError):
        decrypt_private_key(pem, PASSPHRASE + "x", "tls.key")
    with pytest.raises(KeyFileError):
        decrypt_private_key(b"-----BEGIN PRIVATE KEY-----\n", PASSPHRASE, "tls.key")


def test_pkcs8_uses_scrypt_with_openssl_compatible_defaults(node: Node) -> None:
    pem = encrypt_private_key(node.key, PASSPHRASE)
    der = base64.b64decode(b"".join(pem.splitlines()[1:-1]))
    scrypt_oid = bytes.fromhex("06092b06010401da47040b")
    assert scrypt_oid in der
    assert bytes.fromhex("02024000") in der  # N = 16384


def _context(side: int, node: Node, ca: x509.Certificate, tmp_path: Path) -> ssl.SSLContext:
    cert_path, key_path = tmp_path / f"{side}.crt", tmp_path / f"{side}.key"
    cert_path.write_bytes(certificate_pem(node.certificate))
    key_path.write_bytes(encrypt_private_key(node.key, PASSPHRASE, cost=FAST_SCRYPT))
    context = ssl.SSLContext(side)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(cert_path, key_path, password=PASSPHRASE)
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
