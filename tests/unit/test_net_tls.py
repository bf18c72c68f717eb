"""consortia.net.tls: the two contexts, keys held in memory, and the node id of a peer
certificate."""

from __future__ import annotations

import os
import ssl
import tempfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from consortia.errors import CertificateError
from consortia.net import Refusal, contexts_from_pem, peer_node_id
from consortia.net.tls import PeerIdentityError, refusal_of
from tests.unit.test_net_support import issue, make_authority, node_id


def _der(identity_pem: bytes) -> bytes:
    return ssl.PEM_cert_to_DER_cert(identity_pem.decode())


def test_peer_node_id_is_the_id_in_cn_and_uri() -> None:
    ca = make_authority()
    assert peer_node_id(_der(issue(ca, node_id(0)).pem)) == node_id(0)


@pytest.mark.parametrize(
    ("common_name", "uri_id", "match"),
    [
        ("not-a-node-id", None, "not a node id"),
        (node_id(0).hex().upper(), None, "not a node id"),
        (None, node_id(1), "one node URI"),  # CN and URI name different nodes
    ],
)
def test_peer_node_id_refuses_certificates_that_bind_no_single_id(
    common_name: str | None, uri_id: bytes | None, match: str
) -> None:
    ca = make_authority()
    identity = issue(ca, node_id(0), common_name=common_name, uri_id=uri_id)
    with pytest.raises(PeerIdentityError, match=match):
        peer_node_id(_der(identity.pem))


def test_contexts_are_tls13_mutual_without_hostnames_or_compression() -> None:
    ca = make_authority()
    identity = issue(ca, node_id(0))
    server, client = contexts_from_pem(ca.pem, identity.pem, identity.key)
    assert server.protocol == ssl.PROTOCOL_TLS_SERVER
    assert client.protocol == ssl.PROTOCOL_TLS_CLIENT
    for context in (server, client):
        assert context.minimum_version == ssl.TLSVersion.TLSv1_3
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert not context.check_hostname
        assert context.options & ssl.OP_NO_COMPRESSION
        assert context.verify_flags & ssl.VERIFY_X509_STRICT
        assert len(context.get_ca_certs()) == 1  # the consortium CA, no system roots


def test_keys_load_as_objects_or_pem_encrypted_or_not() -> None:
    ca = make_authority()
    identity = issue(ca, node_id(0))
    plain = identity.key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    encrypted = identity.key.private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(b"pass")
    )
    contexts_from_pem(ca.pem, identity.pem, plain)
    contexts_from_pem(ca.pem, identity.pem, encrypted, key_password=b"pass")
    with pytest.raises(CertificateError, match="does not load"):
        contexts_from_pem(ca.pem, identity.pem, encrypted, key_password=b"wrong")


def test_a_key_that_is_not_the_certificates_or_not_p256_is_refused() -> None:
    ca = make_authority()
    identity = issue(ca, node_id(0))
    with pytest.raises(CertificateError, match="does not belong"):
        contexts_from_pem(ca.pem, identity.pem, issue(ca, node_id(1)).key)
    with pytest.raises(CertificateError, match="P-256"):
        contexts_from_pem(ca.pem, identity.pem, ec.generate_private_key(ec.SECP384R1()))


def test_the_ca_must_be_one_ca_certificate() -> None:
    ca, other = make_authority(), make_authority("other")
    identity = issue(ca, node_id(0))
    with pytest.raises(CertificateError, match="exactly one"):
        contexts_from_pem(ca.pem + other.pem, identity.pem, identity.key)
    with pytest.raises(CertificateError, match="not a CA"):
        contexts_from_pem(identity.pem, identity.pem, identity.key)
    with pytest.raises(CertificateError, match="not PEM"):
        contexts_from_pem(b"garbage", identity.pem, identity.key)


def test_without_memfd_the_key_passes_through_a_private_directory_that_is_removed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ca = make_authority()
    identity = issue(ca, node_id(0))
    monkeypatch.delattr(os, "memfd_create", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    seen: list[tuple[int, bytes]] = []
    original = ssl.SSLContext.load_cert_chain

    def spy(self: ssl.SSLContext, certfile: str, *args: object, **kwargs: object) -> None:
        path = Path(certfile)
        seen.append((path.parent.stat().st_mode & 0o777, path.read_bytes()))
        original(self, certfile, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ssl.SSLContext, "load_cert_chain", spy)
    contexts_from_pem(ca.pem, identity.pem, identity.key)
    assert len(seen) == 2
    for mode, content in seen:
        assert mode == 0o700
        assert b"ENCRYPTED PRIVATE KEY" in content  # never the key in the clear
        assert b"BEGIN PRIVATE KEY" not in content
    assert list(tmp_path.iterdir()) == []


def test_refusal_reasons_follow_openssl_verify_codes() -> None:
    def failure(code: int) -> ssl.SSLCertVerificationError:
        error = ssl.SSLCertVerificationError("certificate verify failed")
        error.verify_code = code
        return error

    assert refusal_of(failure(10)) is Refusal.EXPIRED
    assert refusal_of(failure(18)) is Refusal.SELF_SIGNED
    assert refusal_of(failure(20)) is Refusal.UNKNOWN_CA
    assert refusal_of(failure(9)) is Refusal.NOT_YET_VALID
    assert refusal_of(failure(65)) is Refusal.CERTIFICATE_INVALID
    assert refusal_of(TimeoutError()) is Refusal.TIMEOUT
    assert refusal_of(ConnectionResetError()) is Refusal.TLS_ERROR
