"""The consortium's offline certificate authority: its folder, issuing and revoking.

    CA/ca.key       the CA's ECDSA P-256 key, a key file under the CA's own passphrase
    CA/ca.crt       the root certificate (its fingerprint goes into the genesis)
    CA/issued/      a copy of every certificate it issued, named by serial number
    CA/ca.crl       the certificate revocation list, re-signed on every revocation

The CA's folder belongs on a machine that is not on the network: only whoever holds both the
folder and the CA's passphrase can admit a node. `issue` checks a node's key request (its
signatures and its certificate request) before signing, and the CA's name constraints bound
which hosts it can certify at all.

This module must never write the CA's key unencrypted, and never issues a certificate for a
request it has not checked completely.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from consortia.errors import CertificateError, KeyFileError
from consortia.identity import layout
from consortia.identity.certificates import (
    CERTIFICATE_SIZE_MAX,
    certificate_pem,
    create_ca_certificate,
    issue_node_certificate,
    parse_certificate,
    verify_ca_certificate,
)
from consortia.identity.files import (
    make_private_dir,
    read_bounded,
    replace_public_file,
    write_private_file,
    write_public_file,
)
from consortia.identity.keystore import (
    DEFAULT_ARGON2,
    Argon2Cost,
    load_key,
    new_keypair,
    p256_private_key,
    p256_public_point,
    read_key_header,
    seal_key,
)
from consortia.identity.requests import CheckedNodeRequest

CRL_VALIDITY: Final = datetime.timedelta(days=30)
CRL_SIZE_MAX: Final = 16 * 1024 * 1024
# The CA key's file records a suite like every key file; P-256 is the same in both suites.
_CA_KEY_SUITE: Final = "intl"


@dataclasses.dataclass(frozen=True)
class Authority:
    """An opened CA: its folder, key and root certificate."""

    directory: Path
    key: ec.EllipticCurvePrivateKey = dataclasses.field(repr=False)
    certificate: x509.Certificate


def create_authority(
    directory: Path,
    *,
    chain_id: str,
    permitted: Sequence[x509.GeneralName],
    passphrase: str,
    now: datetime.datetime,
    cost: Argon2Cost = DEFAULT_ARGON2,
) -> Authority:
    """Write a new CA into the existing, empty, private directory `directory`."""
    private_key, _public_key = new_keypair(_CA_KEY_SUITE, "tls-ca")
    sealed = seal_key(_CA_KEY_SUITE, "tls-ca", private_key, passphrase, cost=cost)
    write_private_file(directory / layout.CA_KEY_FILE, sealed)
    key = p256_private_key(private_key)
    certificate = create_ca_certificate(key, chain_id, now, permitted)
    write_public_file(directory / layout.CA_CERTIFICATE_FILE, certificate_pem(certificate))
    make_private_dir(directory / layout.CA_ISSUED_DIR)
    return Authority(directory, key, certificate)


def load_ca_certificate(directory: Path) -> x509.Certificate:
    """The root certificate in the CA folder `directory` (no passphrase needed)."""
    path = directory / layout.CA_CERTIFICATE_FILE
    data = read_bounded(path, CERTIFICATE_SIZE_MAX, CertificateError, "CA certificate")
    return parse_certificate(data, str(path))


def open_authority(directory: Path, passphrase: str, now: datetime.datetime) -> Authority:
    """The CA in `directory`, its key decrypted with the CA's passphrase."""
    certificate = load_ca_certificate(directory)
    verify_ca_certificate(certificate, now, str(directory / layout.CA_CERTIFICATE_FILE))
    key_path = directory / layout.CA_KEY_FILE
    if p256_public_point(certificate.public_key()) != read_key_header(key_path).public_key_bytes:
        raise KeyFileError(f"{key_path} is not the key of {layout.CA_CERTIFICATE_FILE}")
    unlocked = load_key(key_path, passphrase, purpose="tls-ca")
    return Authority(directory, p256_private_key(unlocked.private_key), certificate)


def issue(
    authority: Authority, node: CheckedNodeRequest, now: datetime.datetime
) -> x509.Certificate:
    """The node certificate for a checked node request; a copy goes to `issued/`.

    CertificateError when the CA's name constraints do not permit the node's host.
    """
    requested = node.certificate_request
    certificate = issue_node_certificate(
        authority.key,
        authority.certificate,
        node_id=bytes.fromhex(requested.node_id),
        member=requested.member,
        host=requested.host,
        public_key=requested.public_key,
        now=now,
    )
    record = authority.directory / layout.CA_ISSUED_DIR / f"{certificate.serial_number:x}.crt"
    write_public_file(record, certificate_pem(certificate))
    return certificate


def revoke(
    authority: Authority, certificate: x509.Certificate, now: datetime.datetime
) -> x509.CertificateRevocationList:
    """Add `certificate` to the CA's revocation list and re-sign it; returns the new list."""
    try:
        certificate.verify_directly_issued_by(authority.certificate)
    except (ValueError, TypeError, InvalidSignature):
        raise CertificateError("the certificate was not issued by this CA") from None
    revoked = {entry.serial_number: entry for entry in _current_revocations(authority)}
    if certificate.serial_number in revoked:
        raise CertificateError(f"certificate {certificate.serial_number:x} is already revoked")
    revoked[certificate.serial_number] = (
        x509.RevokedCertificateBuilder()
        .serial_number(certificate.serial_number)
        .revocation_date(now)
        .build()
    )
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(authority.certificate.subject)
        .last_update(now)
        .next_update(now + CRL_VALIDITY)
    )
    for entry in sorted(revoked.values(), key=lambda item: item.serial_number):
        builder = builder.add_revoked_certificate(entry)
    crl = builder.sign(authority.key, hashes.SHA256())
    replace_public_file(authority.directory / layout.CA_CRL_FILE, crl.public_bytes(Encoding.PEM))
    return crl


def check_not_revoked(
    certificate: x509.Certificate, crl: x509.CertificateRevocationList, ca: x509.Certificate
) -> None:
    """CertificateError when `crl` (which must be signed by `ca`) lists `certificate`."""
    public_key = ca.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not crl.is_signature_valid(
        public_key
    ):
        raise CertificateError("the revocation list is not signed by the consortium CA")
    if crl.get_revoked_certificate_by_serial_number(certificate.serial_number) is not None:
        raise CertificateError(f"certificate {certificate.serial_number:x} has been revoked")


def load_crl(path: Path) -> x509.CertificateRevocationList:
    data = read_bounded(path, CRL_SIZE_MAX, CertificateError, "revocation list")
    try:
        return x509.load_pem_x509_crl(data)
    except ValueError:
        raise CertificateError(f"{path} is not a PEM revocation list") from None


def _current_revocations(authority: Authority) -> list[x509.RevokedCertificate]:
    path = authority.directory / layout.CA_CRL_FILE
    if not path.exists():
        return []
    crl = load_crl(path)
    public_key = authority.certificate.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    if not crl.is_signature_valid(public_key):
        raise CertificateError(f"{path} is not signed by this CA; refusing to extend it")
    return list(crl)
