"""`consortia node configure`: a node folder made by `keys generate` joins a genesis.

Run at the institution, from public inputs only: the genesis (whose hash the operator confirms
by a second channel), the CA certificate and the node's certificate. It finds the node in the
genesis by its consensus public key, checks the CA is the one the genesis names and the
certificate is the one the genesis lists for this node and belongs to the node's TLS key, then
writes genesis.json, ca.crt, tls.crt and config.toml into the node's folder. Nothing but public
key headers is read from the key files, so no passphrase is needed.

A node that joins a running chain (`join=True`: governance adds it with an `add_validator`
proposal) is in no genesis: its name, member and address come from the signed node request
`keys generate` left beside it (`../public/NODE.node.json`), its certificate is checked
against the CA alone, and its peers are the founding validators, which it dials to sync.

This module must never read a private key, and never overwrite a file in a node folder.
"""

from __future__ import annotations

import dataclasses
import datetime
import hmac
from pathlib import Path

from cryptography import x509

from consortia.errors import AlreadyExistsError, CertificateError, ConfigError, KeyFileError
from consortia.identity import layout
from consortia.identity.addresses import Placement, node_placement
from consortia.identity.certificates import (
    certificate_pem,
    fingerprint,
    verify_ca_certificate,
    verify_node_certificate,
)
from consortia.identity.config import (
    ChainSection,
    KeysSection,
    NetworkSection,
    NodeConfig,
    NodeSection,
    Peer,
    config_toml,
)
from consortia.identity.files import write_public_file
from consortia.identity.genesis import parse_genesis
from consortia.identity.institution import check_private_dir
from consortia.identity.keystore import p256_public_point, read_key_header
from consortia.identity.requests import load_node_request
from consortia.types.genesis import Genesis, GenesisValidator


@dataclasses.dataclass(frozen=True)
class JoinedNode:
    """A configured node, as its summary line shows it."""

    name: str
    member: str
    node_id: bytes
    public_key: str
    address: str
    api_listen: str
    certificate_fingerprint: str
    genesis_hash: bytes
    genesis: Genesis


def configure_node(
    node_dir: Path,
    *,
    genesis_document: bytes,
    expected_hash: bytes | None,
    ca_certificate: x509.Certificate,
    certificate: x509.Certificate,
    now: datetime.datetime,
    placement: Placement | None = None,
    join: bool = False,
) -> JoinedNode:
    """Check the inputs against the node's keys and write its public files and config."""
    if not node_dir.is_dir() or node_dir.is_symlink():
        raise ConfigError(f"{node_dir} is not a node folder (consortia keys generate makes one)")
    check_private_dir(node_dir)
    genesis, digest = parse_genesis(genesis_document, expected_hash, "the genesis")
    validator = (
        _joining_validator(node_dir, genesis, certificate)
        if join
        else _validator_of(node_dir, genesis)
    )
    if fingerprint(ca_certificate) != genesis.ca_certificate_fingerprint:
        raise CertificateError("the CA certificate is not the one the genesis names")
    verify_ca_certificate(ca_certificate, now, "the CA certificate")
    source = f"the certificate of {validator.name}"
    verify_node_certificate(certificate, ca_certificate, validator.node_id, now, source)
    if fingerprint(certificate) != validator.certificate_fingerprint:
        raise CertificateError(f"{source} is not the one the genesis lists")
    tls_header = read_key_header(node_dir / layout.TLS_KEY_FILE)
    if tls_header.purpose != "tls" or not hmac.compare_digest(
        tls_header.public_key_bytes, p256_public_point(certificate.public_key())
    ):
        raise KeyFileError(f"{node_dir / layout.TLS_KEY_FILE} is not the key of {source}")
    chosen = placement or node_placement(validator.address, "the genesis address")
    config = _config(genesis, validator, digest, chosen)
    _write_all(
        node_dir,
        {
            layout.GENESIS_FILE: genesis_document,
            layout.CA_CERTIFICATE_FILE: certificate_pem(ca_certificate),
            layout.TLS_CERTIFICATE_FILE: certificate_pem(certificate),
            layout.CONFIG_FILE: config_toml(config),
        },
    )
    return JoinedNode(
        name=validator.name,
        member=validator.member,
        node_id=bytes.fromhex(validator.node_id),
        public_key=validator.public_key,
        address=validator.address,
        api_listen=chosen.api_listen,
        certificate_fingerprint=validator.certificate_fingerprint,
        genesis_hash=digest,
        genesis=genesis,
    )


def _validator_of(node_dir: Path, genesis: Genesis) -> GenesisValidator:
    header = read_key_header(node_dir / layout.CONSENSUS_KEY_FILE)
    if header.purpose != "consensus" or header.suite != genesis.suite:
        raise KeyFileError(
            f"{node_dir / layout.CONSENSUS_KEY_FILE} is not a {genesis.suite} consensus key"
        )
    for validator in genesis.validators:
        if validator.public_key == header.public_key:
            return validator
    raise ConfigError(f"the genesis has no validator with the consensus key in {node_dir}")


def _joining_validator(
    node_dir: Path, genesis: Genesis, certificate: x509.Certificate
) -> GenesisValidator:
    """The node as governance will add it, from its own signed request."""
    header = read_key_header(node_dir / layout.CONSENSUS_KEY_FILE)
    if any(v.public_key == header.public_key for v in genesis.validators):
        raise ConfigError(f"{node_dir} is a founding validator of this genesis; omit --join")
    request_path = node_dir.parent / layout.PUBLIC_DIR / layout.node_request_file(node_dir.name)
    request = load_node_request(request_path).request
    if request.consensus_public_key != header.public_key or request.suite != genesis.suite:
        raise KeyFileError(f"{request_path} is not the request of the keys in {node_dir}")
    return GenesisValidator(
        name=request.node,
        member=request.member,
        node_id=request.node_id,
        public_key=request.consensus_public_key,
        certificate_fingerprint=fingerprint(certificate),
        voting_power=1,
        address=request.address,
    )


def _config(
    genesis: Genesis, validator: GenesisValidator, digest: bytes, placement: Placement
) -> NodeConfig:
    return NodeConfig(
        node=NodeSection(
            name=validator.name,
            node_id=validator.node_id,
            member=validator.member,
            data_dir=layout.DATA_DIR,
        ),
        chain=ChainSection(
            chain_id=genesis.chain_id,
            suite=genesis.suite,
            genesis=layout.GENESIS_FILE,
            genesis_hash=digest.hex(),
        ),
        keys=KeysSection(
            consensus_key=layout.CONSENSUS_KEY_FILE,
            tls_certificate=layout.TLS_CERTIFICATE_FILE,
            tls_key=layout.TLS_KEY_FILE,
            ca_certificate=layout.CA_CERTIFICATE_FILE,
        ),
        network=NetworkSection(
            listen=placement.listen,
            advertise=validator.address,
            api_listen=placement.api_listen,
        ),
        peers=[
            Peer(node_id=other.node_id, name=other.name, address=other.address)
            for other in genesis.validators
            if other is not validator
        ],
    )


def _write_all(node_dir: Path, files: dict[str, bytes]) -> None:
    """Write every file or none: nothing is written when one already exists, and a failure
    removes what this call wrote."""
    for name in files:
        path = node_dir / name
        if path.exists() or path.is_symlink():
            raise AlreadyExistsError(f"{path} already exists; this node is configured already")
    written: list[Path] = []
    try:
        for name, data in files.items():
            write_public_file(node_dir / name, data)
            written.append(node_dir / name)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
