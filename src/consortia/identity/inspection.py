"""Checking a consortium directory that `consortia init` made, as `consortia demo` does.

`inspect_consortium` loads the genesis and, for every validator, its node directory: the config
must expect the genesis hash, the node's copy of the genesis must have that hash, the consensus
key's public key must be the validator's (so its node id matches), the TLS certificate must
chain to the consortium CA and name the node id, and private key files must be mode 0600. With
the passphrase it also decrypts every key and checks each against its public half. The CA key
is checked when present (operators are told to keep it offline).

This module only reads; it must never modify a consortium, nor print or log a key or passphrase.
"""

from __future__ import annotations

import datetime
import re
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from consortia.errors import CertificateError, ConfigError, KeyFileError
from consortia.identity import layout
from consortia.identity.certificates import (
    CERTIFICATE_SIZE_MAX,
    fingerprint,
    parse_certificate,
    verify_ca_certificate,
    verify_node_certificate,
)
from consortia.identity.config import NodeConfig, load_node_config, resolve
from consortia.identity.consortium import ConsortiumSummary, NodeSummary
from consortia.identity.files import PRIVATE_FILE_MODE, file_mode, read_bounded
from consortia.identity.genesis import load_genesis
from consortia.identity.keystore import load_key, read_key_header
from consortia.identity.pkcs8 import decrypt_private_key
from consortia.types.genesis import Genesis, GenesisValidator

_SAFE_DIR_NAME: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")


def is_consortium(directory: Path) -> bool:
    """Whether `directory` looks like the output of `consortia init` (it has a genesis)."""
    return (directory / layout.GENESIS_FILE).is_file()


def inspect_consortium(root: Path, passphrase: str | None) -> ConsortiumSummary:
    """Check the consortium in `root`; decrypt its keys too when `passphrase` is given."""
    genesis, digest = load_genesis(root / layout.GENESIS_FILE, None)
    now = datetime.datetime.now(datetime.UTC)
    ca = load_certificate(root / layout.CA_CERTIFICATE_FILE)
    verify_ca_certificate(ca, now, str(root / layout.CA_CERTIFICATE_FILE))
    if fingerprint(ca) != genesis.ca_certificate_fingerprint:
        raise CertificateError("ca.crt is not the CA certificate the genesis names")
    ca_key = root / layout.CA_KEY_FILE
    if ca_key.exists():  # operators are told to keep it offline, so it may be gone
        _check_ca_key(ca_key, ca, passphrase)
    checker = _NodeChecker(
        root, genesis=genesis, digest=digest, ca=ca, passphrase=passphrase, now=now
    )
    nodes = tuple(checker.check(validator) for validator in genesis.validators)
    return ConsortiumSummary(
        root, genesis.chain_id, genesis.suite, digest, nodes, passphrase is not None
    )


def load_certificate(path: Path) -> x509.Certificate:
    """The PEM certificate at `path`; CertificateError when it is missing or malformed."""
    return parse_certificate(
        read_bounded(path, CERTIFICATE_SIZE_MAX, CertificateError, "certificate"), str(path)
    )


def _check_ca_key(path: Path, ca: x509.Certificate, passphrase: str | None) -> None:
    _check_private_mode(path)
    header = read_key_header(path)
    if header.purpose != "tls-ca" or header.public_key_bytes != _point(ca):
        raise KeyFileError(f"{path} is not the key of the consortium CA certificate")
    if passphrase is not None:
        load_key(path, passphrase, purpose="tls-ca")


def _point(certificate: x509.Certificate) -> bytes:
    return certificate.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def _check_private_mode(path: Path) -> None:
    mode = file_mode(path)
    if mode & ~PRIVATE_FILE_MODE:
        raise KeyFileError(f"{path} has mode {mode:04o}; private keys must be 0600 (chmod 600)")


class _NodeChecker:
    """Checks one validator's node directory against the genesis."""

    def __init__(
        self,
        root: Path,
        *,
        genesis: Genesis,
        digest: bytes,
        ca: x509.Certificate,
        passphrase: str | None,
        now: datetime.datetime,
    ) -> None:
        self.root = root
        self.genesis = genesis
        self.digest = digest
        self.ca = ca
        self.passphrase = passphrase
        self.now = now

    def check(self, validator: GenesisValidator) -> NodeSummary:
        if not _SAFE_DIR_NAME.match(validator.name):
            raise ConfigError(f"validator name {validator.name!r} is not a directory name")
        config_path = self.root / validator.name / layout.CONFIG_FILE
        config = load_node_config(config_path)
        self._check_config(config, config_path, validator)
        load_genesis(resolve(config_path, config.chain.genesis), self.digest)
        self._check_consensus_key(resolve(config_path, config.keys.consensus_key), validator)
        self._check_tls(config, config_path, validator)
        return NodeSummary(
            name=validator.name,
            member=validator.member,
            node_id=bytes.fromhex(validator.node_id),
            address=validator.address,
            api_listen=config.network.api_listen,
            certificate_fingerprint=validator.certificate_fingerprint,
        )

    def _check_config(self, config: NodeConfig, path: Path, validator: GenesisValidator) -> None:
        if config.chain.genesis_hash != self.digest.hex():
            raise ConfigError(f"{path} expects genesis {config.chain.genesis_hash[:16]}…")
        if config.node.node_id != validator.node_id:
            raise ConfigError(f"{path} names node id {config.node.node_id[:16]}…, not the genesis'")
        ca_copy = load_certificate(resolve(path, config.keys.ca_certificate))
        if fingerprint(ca_copy) != self.genesis.ca_certificate_fingerprint:
            raise CertificateError(f"{path}: its CA certificate is not the consortium's")

    def _check_consensus_key(self, path: Path, validator: GenesisValidator) -> None:
        _check_private_mode(path)
        header = read_key_header(path)
        if header.purpose != "consensus" or header.suite != self.genesis.suite:
            raise KeyFileError(f"{path} is not a {self.genesis.suite} consensus key")
        if header.public_key != validator.public_key:
            raise KeyFileError(f"{path} is not the key of validator {validator.name!r}")
        if self.passphrase is not None:
            load_key(path, self.passphrase, purpose="consensus")

    def _check_tls(self, config: NodeConfig, path: Path, validator: GenesisValidator) -> None:
        cert_path = resolve(path, config.keys.tls_certificate)
        certificate = load_certificate(cert_path)
        verify_node_certificate(certificate, self.ca, validator.node_id, self.now, str(cert_path))
        if fingerprint(certificate) != validator.certificate_fingerprint:
            raise CertificateError(f"{cert_path} is not the certificate the genesis names")
        key_path = resolve(path, config.keys.tls_key)
        _check_private_mode(key_path)
        if self.passphrase is not None:
            pem = read_bounded(key_path, CERTIFICATE_SIZE_MAX, KeyFileError, "TLS key")
            key = decrypt_private_key(pem, self.passphrase, str(key_path))
            if _point(certificate) != key.public_key().public_bytes(
                Encoding.X962, PublicFormat.UncompressedPoint
            ):
                raise KeyFileError(f"{key_path} does not belong to {cert_path}")
