"""Checking a consortium directory that `consortia init` made, as `consortia demo` does.

`inspect_consortium` loads the genesis and checks, with no passphrase: that the CA certificate
is the one the genesis names; that every folder holding keys (the CA's, each institution's,
each node's, each accounts folder and data folder) is reachable by its owner only and every
private key file is mode 0600; for every validator, that its config expects this genesis, its
copy of the genesis has that hash, its consensus key is the validator's, its TLS certificate
chains to the CA, names the node id and belongs to its TLS key; and for every genesis account,
that its key file holds the account's public key (a member's account in the member's folder,
a demo account of `consortia cluster up` in DIR/accounts). With the passphrases it also opens
every key (the CA's, each node's consensus and TLS keys, each member's account keys) and checks
each against its public half.

This module only reads; it must never modify a consortium, nor print or log a key or passphrase.
"""

from __future__ import annotations

import datetime
import hmac
import re
from pathlib import Path
from typing import Final

from cryptography import x509

from consortia.errors import CertificateError, ConfigError, InsecurePermissionsError, KeyFileError
from consortia.identity import layout
from consortia.identity.certificates import (
    fingerprint,
    load_certificate,
    verify_ca_certificate,
    verify_node_certificate,
)
from consortia.identity.config import NodeConfig, load_node_config, resolve
from consortia.identity.consortium import ConsortiumSummary, NodeSummary
from consortia.identity.custody import CA_HOLDER, Holder, Passphrases
from consortia.identity.files import PRIVATE_FILE_MODE, file_mode
from consortia.identity.genesis import load_genesis
from consortia.identity.institution import check_private_dir
from consortia.identity.keystore import Purpose, load_key, p256_public_point, read_key_header
from consortia.types.genesis import Genesis, GenesisAccount, GenesisValidator

_SAFE_DIR_NAME: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")


def is_consortium(directory: Path) -> bool:
    """Whether `directory` looks like the output of `consortia init` (it has a genesis)."""
    return (directory / layout.GENESIS_FILE).is_file()


def inspect_consortium(root: Path, passphrases: Passphrases | None) -> ConsortiumSummary:
    """Check the consortium in `root`; open its keys too when `passphrases` is given."""
    genesis, digest = load_genesis(root / layout.GENESIS_FILE, None)
    now = datetime.datetime.now(datetime.UTC)
    check_private_dir(root)
    _check_layout(root, genesis)
    ca = load_certificate(root / layout.CA_CERTIFICATE_FILE)
    verify_ca_certificate(ca, now, str(root / layout.CA_CERTIFICATE_FILE))
    if fingerprint(ca) != genesis.ca_certificate_fingerprint:
        raise CertificateError("ca.crt is not the CA certificate the genesis names")
    keys = _KeyChecker(genesis.suite, passphrases)
    ca_dir = root / layout.CA_DIR
    if ca_dir.exists():  # the CA may be kept elsewhere (init --ca), or moved offline
        _check_ca_dir(ca_dir, ca, keys)
    checker = _NodeChecker(root, genesis=genesis, digest=digest, ca=ca, keys=keys, now=now)
    nodes = tuple(checker.check(validator) for validator in genesis.validators)
    for account in genesis.accounts:
        _check_account(root, account, keys)
    return ConsortiumSummary(
        root, genesis.chain_id, genesis.suite, digest, nodes, passphrases is not None
    )


def _check_layout(root: Path, genesis: Genesis) -> None:
    """ConfigError, saying what to do, for a folder an earlier consortia made (node folders at
    the top, one passphrase for everything), which this version cannot check."""
    first = genesis.validators[0]
    if _SAFE_DIR_NAME.match(first.name) and _SAFE_DIR_NAME.match(first.member):
        old = root / first.name / layout.CONFIG_FILE
        if old.is_file() and not (root / first.member / first.name).exists():
            raise ConfigError(
                f"{root} was made by an earlier consortia (node folders at the top, one"
                " passphrase for every key); remove it and make a new consortium"
            )


class _KeyChecker:
    """Checks a key file's mode and header, and opens it when there are passphrases."""

    def __init__(self, suite_name: str, passphrases: Passphrases | None) -> None:
        self.suite = suite_name
        self.passphrases = passphrases

    def check(self, path: Path, purpose: Purpose, public_key: bytes, holder: Holder) -> None:
        check_private_mode(path)
        header = read_key_header(path)
        if header.purpose != purpose or (purpose != "tls-ca" and header.suite != self.suite):
            raise KeyFileError(f"{path} is not a {self.suite} {purpose} key")
        if not hmac.compare_digest(header.public_key_bytes, public_key):
            raise KeyFileError(f"{path} is not the key of {_owner(holder, purpose)}")
        if self.passphrases is not None:
            passphrase = self.passphrases.passphrase(holder, creating=False)
            load_key(path, passphrase, purpose=purpose)


def _owner(holder: Holder, purpose: Purpose) -> str:
    if holder.kind == "node":
        return (
            f"validator {holder.name!r}" if purpose == "consensus" else f"{holder.name}'s tls.crt"
        )
    return holder.label


def check_private_mode(path: Path) -> None:
    """InsecurePermissionsError unless the private key file `path` is mode 0600 (or 0400)."""
    mode = file_mode(path)
    if mode & ~PRIVATE_FILE_MODE:
        raise InsecurePermissionsError(
            f"{path} has mode {mode:04o}; private keys must be 0600 (chmod 600)"
        )


def _check_ca_dir(ca_dir: Path, ca: x509.Certificate, keys: _KeyChecker) -> None:
    check_private_dir(ca_dir)
    if fingerprint(load_certificate(ca_dir / layout.CA_CERTIFICATE_FILE)) != fingerprint(ca):
        raise CertificateError(f"{ca_dir} holds another CA than the genesis names")
    key_path = ca_dir / layout.CA_KEY_FILE
    if key_path.exists():
        keys.check(key_path, "tls-ca", p256_public_point(ca.public_key()), CA_HOLDER)


def _check_account(root: Path, account: GenesisAccount, keys: _KeyChecker) -> None:
    """A member's account (`bank-0.treasury`: its key in the member's folder) or a demo
    account (`alice`: its key in DIR/accounts, under its sponsor's passphrase)."""
    member, dot, local = account.id.partition(".")
    if not dot and _SAFE_DIR_NAME.match(account.id):
        folder, local = root, account.id
    elif member == account.sponsor and dot and _SAFE_DIR_NAME.match(member + local):
        folder = root / member
        check_private_dir(folder)
    else:
        raise ConfigError(f"account {account.id!r} is not an account init makes")
    check_private_dir(folder / layout.ACCOUNTS_DIR)
    path = folder / layout.account_key_file(local)
    holder = Holder("member", account.sponsor)
    keys.check(path, "account", bytes.fromhex(account.public_key), holder)


class _NodeChecker:
    """Checks one validator's node folder against the genesis."""

    def __init__(
        self,
        root: Path,
        *,
        genesis: Genesis,
        digest: bytes,
        ca: x509.Certificate,
        keys: _KeyChecker,
        now: datetime.datetime,
    ) -> None:
        self.root = root
        self.genesis = genesis
        self.digest = digest
        self.ca = ca
        self.keys = keys
        self.now = now

    def check(self, validator: GenesisValidator) -> NodeSummary:
        for name in (validator.member, validator.name):
            if not _SAFE_DIR_NAME.match(name):
                raise ConfigError(f"{name!r} in the genesis is not a folder name")
        institution = self.root / validator.member
        node_dir = institution / validator.name
        for directory in (institution, node_dir, node_dir / layout.DATA_DIR):
            check_private_dir(directory)
        config_path = node_dir / layout.CONFIG_FILE
        config = load_node_config(config_path)
        self._check_config(config, config_path, validator)
        load_genesis(resolve(config_path, config.chain.genesis), self.digest)
        holder = Holder("node", validator.name)
        consensus_key = bytes.fromhex(validator.public_key)
        consensus_path = resolve(config_path, config.keys.consensus_key)
        self.keys.check(consensus_path, "consensus", consensus_key, holder)
        self._check_tls(config, config_path, validator, holder)
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

    def _check_tls(
        self, config: NodeConfig, path: Path, validator: GenesisValidator, holder: Holder
    ) -> None:
        cert_path = resolve(path, config.keys.tls_certificate)
        certificate = load_certificate(cert_path)
        verify_node_certificate(certificate, self.ca, validator.node_id, self.now, str(cert_path))
        if fingerprint(certificate) != validator.certificate_fingerprint:
            raise CertificateError(f"{cert_path} is not the certificate the genesis names")
        key_path = resolve(path, config.keys.tls_key)
        self.keys.check(key_path, "tls", p256_public_point(certificate.public_key()), holder)
