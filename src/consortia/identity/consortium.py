"""Creating a new consortium: CA, node keys and certificates, genesis and node configs.

Creation happens in two steps. `plan_consortium` checks every argument and chooses addresses
without writing anything; `build_consortium` then writes everything into a temporary sibling
directory and renames it into place, so a failure or an interruption leaves nothing behind and
an existing consortium is never touched. Key derivation (Argon2id) takes a moment per key,
so `build_consortium` reports each step to an optional callback.

All private keys are generated here, on one machine: right for a test network or a bootstrap
operator that the members trust, and documented as such in docs/security.md.

This module must never print, log or write unencrypted a private key or the passphrase (the
demo passphrase file, written only when a plan asks for it, is the one documented exception).
"""

from __future__ import annotations

import dataclasses
import datetime
import errno
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Final, Literal, NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from consortia import PROTOCOL_VERSION
from consortia.crypto import suite
from consortia.errors import AlreadyExistsError, InvalidArgumentError
from consortia.identity import layout
from consortia.identity.addresses import Placement, local_placements, parse_hosts
from consortia.identity.certificates import (
    certificate_pem,
    create_ca_certificate,
    fingerprint,
    generate_tls_key,
    issue_node_certificate,
)
from consortia.identity.config import (
    ChainSection,
    KeysSection,
    NetworkSection,
    NodeConfig,
    NodeSection,
    Peer,
    write_node_config,
)
from consortia.identity.files import make_private_dir, write_private_file, write_public_file
from consortia.identity.genesis import genesis_json, node_id, parse_genesis
from consortia.identity.keystore import (
    DEFAULT_ARGON2,
    Argon2Cost,
    Purpose,
    new_keypair,
    p256_private_key,
    seal_key,
)
from consortia.identity.passphrase import check_new_passphrase
from consortia.identity.pkcs8 import DEFAULT_SCRYPT, ScryptCost, encrypt_private_key
from consortia.types.genesis import (
    CommitteeSeat,
    ConsensusParams,
    Genesis,
    GenesisAccount,
    GenesisValidator,
    Governance,
    Member,
    MempoolParams,
)
from consortia.types.primitives import CHAIN_ID_LENGTH_MAX, CHAIN_ID_PATTERN

NODES_MAX: Final = 256
BFT_NODES_MIN: Final = 4  # 3f + 1 with f = 1: the fewest validators that survive one fault
REGULATOR: Final = "regulator"
TREASURY_BALANCE: Final = 100_000_000_000  # minor units (fen): 1 billion CNY per member
_CHAIN_ID: Final = re.compile(CHAIN_ID_PATTERN)

Progress = Callable[[str], None]


class KeyCosts(NamedTuple):
    """How hard the passphrase KDFs work. Only tests lower these, and only explicitly."""

    argon2: Argon2Cost = DEFAULT_ARGON2
    scrypt: ScryptCost = DEFAULT_SCRYPT


DEFAULT_COSTS: Final = KeyCosts()


@dataclasses.dataclass(frozen=True)
class NodePlan:
    name: str
    member: str
    placement: Placement


@dataclasses.dataclass(frozen=True)
class ConsortiumPlan:
    out_dir: Path
    suite: str
    chain_id: str
    nodes: tuple[NodePlan, ...]
    write_demo_passphrase: bool = False

    @property
    def step_count(self) -> int:
        """How many times `build_consortium` calls its progress callback."""
        return 3 * len(self.nodes) + 2


@dataclasses.dataclass(frozen=True)
class NodeSummary:
    name: str
    member: str
    node_id: bytes
    address: str
    api_listen: str
    certificate_fingerprint: str


@dataclasses.dataclass(frozen=True)
class ConsortiumSummary:
    out_dir: Path
    chain_id: str
    suite: str
    genesis_hash: bytes
    nodes: tuple[NodeSummary, ...]
    keys_decrypted: bool

    @property
    def faults_tolerated(self) -> int:
        return (len(self.nodes) - 1) // 3


def plan_consortium(
    out_dir: Path,
    *,
    nodes: int,
    suite_name: str,
    hosts: str | None = None,
    chain_id: str | None = None,
) -> ConsortiumPlan:
    """Check the arguments of `consortia init` and choose addresses; writes nothing."""
    check_node_count(nodes)
    suite(suite_name)  # UnknownSuiteError for an unknown name
    chain = _chain_id(chain_id)
    out = Path(os.path.abspath(out_dir))
    check_out_dir(out)
    placements = local_placements(nodes) if hosts is None else parse_hosts(hosts, nodes)
    node_plans = tuple(
        NodePlan(layout.node_dir_name(i), layout.member_name(i), placement)
        for i, placement in enumerate(placements)
    )
    return ConsortiumPlan(out, suite_name, chain, node_plans)


def check_node_count(nodes: int) -> None:
    if not 1 <= nodes <= NODES_MAX:
        raise InvalidArgumentError(f"--nodes must be 1 to {NODES_MAX}, got {nodes}")


def check_out_dir(out_dir: Path) -> None:
    """AlreadyExistsError unless `out_dir` is absent or an empty directory in an existing one."""
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise AlreadyExistsError(f"{out_dir} already exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise AlreadyExistsError(f"{out_dir} already exists and is not empty; refusing to touch it")
    if not out_dir.parent.is_dir():
        raise InvalidArgumentError(f"the parent directory {out_dir.parent} does not exist")


def new_demo_passphrase() -> str:
    """A random passphrase for the demo consortium (32 URL-safe characters)."""
    return secrets.token_urlsafe(24)


def build_consortium(
    plan: ConsortiumPlan,
    passphrase: str,
    *,
    costs: KeyCosts = DEFAULT_COSTS,
    progress: Progress | None = None,
) -> ConsortiumSummary:
    """Write the planned consortium to `plan.out_dir`, all at once or not at all."""
    check_new_passphrase(passphrase)
    check_out_dir(plan.out_dir)
    staging = _staging_dir(plan.out_dir)
    try:
        builder = _Builder(staging, plan, passphrase, costs, progress or (lambda _step: None))
        summary = builder.build()
        _move_into_place(staging, plan.out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dataclasses.replace(summary, out_dir=plan.out_dir)


def _chain_id(chain_id: str | None) -> str:
    if chain_id is None:
        return f"consortia-{secrets.token_hex(4)}"
    if len(chain_id) > CHAIN_ID_LENGTH_MAX or not _CHAIN_ID.match(chain_id):
        raise InvalidArgumentError(
            f"--chain-id {chain_id!r}: use 1 to {CHAIN_ID_LENGTH_MAX} of a-z, 0-9, '.' and '-',"
            " starting with a letter or digit"
        )
    return chain_id


def _staging_dir(out_dir: Path) -> Path:
    """A fresh, private (0700) directory next to `out_dir`, on the same file system."""
    try:
        return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    except OSError as error:
        raise InvalidArgumentError(f"cannot create {out_dir}: {error.strerror}") from None


def _move_into_place(staging: Path, out_dir: Path) -> None:
    try:
        staging.rename(out_dir)  # atomic; replaces out_dir only if it is an empty directory
    except OSError as error:
        if error.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
            raise AlreadyExistsError(f"{out_dir} appeared while it was being created") from None
        raise InvalidArgumentError(f"cannot create {out_dir}: {error.strerror}") from None


@dataclasses.dataclass(frozen=True)
class _Ca:
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate


@dataclasses.dataclass(frozen=True)
class _NodeMaterial:
    plan: NodePlan
    node_id: bytes
    consensus_public_key: bytes
    account_public_key: bytes
    certificate_fingerprint: str


class _Builder:
    """Writes one consortium into a staging directory."""

    def __init__(
        self,
        root: Path,
        plan: ConsortiumPlan,
        passphrase: str,
        costs: KeyCosts,
        progress: Progress,
    ) -> None:
        self.root = root
        self.plan = plan
        self.passphrase = passphrase
        self.costs = costs
        self.progress = progress
        self.now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)

    def build(self) -> ConsortiumSummary:
        ca = self._make_ca()
        materials = [self._make_node(node, ca) for node in self.plan.nodes]
        self.progress("genesis and node configs")
        document = genesis_json(self._genesis(materials, fingerprint(ca.certificate)))
        _parsed, digest = parse_genesis(document)  # the exact bytes every node will check
        write_public_file(self.root / layout.GENESIS_FILE, document)
        for material in materials:
            self._finish_node(
                material, materials, document, certificate_pem(ca.certificate), digest
            )
        if self.plan.write_demo_passphrase:
            data = self.passphrase.encode("utf-8") + b"\n"
            write_private_file(self.root / layout.DEMO_PASSPHRASE_FILE, data)
        return self._summary(materials, digest)

    def _make_ca(self) -> _Ca:
        self.progress("consortium CA key")
        scalar = self._write_key(self.root / layout.CA_KEY_FILE, "tls-ca")[0]
        key = p256_private_key(scalar)
        certificate = create_ca_certificate(key, self.plan.chain_id, self.now)
        write_public_file(self.root / layout.CA_CERTIFICATE_FILE, certificate_pem(certificate))
        return _Ca(key, certificate)

    def _make_node(self, node: NodePlan, ca: _Ca) -> _NodeMaterial:
        node_dir = self.root / node.name
        for directory in (node_dir, node_dir / layout.DATA_DIR, node_dir / layout.ACCOUNTS_DIR):
            make_private_dir(directory)
        self.progress(f"{node.name}: consensus key")
        consensus_public = self._write_key(node_dir / layout.CONSENSUS_KEY_FILE, "consensus")[1]
        identity = node_id(suite(self.plan.suite), consensus_public)
        self.progress(f"{node.name}: account key")
        account_public = self._write_key(node_dir / layout.TREASURY_KEY_FILE, "account")[1]
        self.progress(f"{node.name}: TLS key and certificate")
        certificate = self._make_tls(node_dir, node, identity, ca)
        return _NodeMaterial(node, identity, consensus_public, account_public, certificate)

    def _write_key(self, path: Path, purpose: Purpose) -> tuple[bytes, bytes]:
        private_key, public_key = new_keypair(self.plan.suite, purpose)
        sealed = seal_key(
            self.plan.suite, purpose, private_key, self.passphrase, cost=self.costs.argon2
        )
        write_private_file(path, sealed)
        return private_key, public_key

    def _make_tls(self, node_dir: Path, node: NodePlan, identity: bytes, ca: _Ca) -> str:
        key = generate_tls_key()
        pem = encrypt_private_key(key, self.passphrase, cost=self.costs.scrypt)
        write_private_file(node_dir / layout.TLS_KEY_FILE, pem)
        certificate = issue_node_certificate(
            ca.key,
            ca.certificate,
            node_id=identity,
            member=node.member,
            host=node.placement.host,
            public_key=key.public_key(),
            now=self.now,
        )
        write_public_file(node_dir / layout.TLS_CERTIFICATE_FILE, certificate_pem(certificate))
        return fingerprint(certificate)

    def _genesis(self, materials: list[_NodeMaterial], ca_fingerprint: str) -> Genesis:
        members = [
            Member(name=m.plan.member, roles=["validator_operator", "member"]) for m in materials
        ]
        members.append(Member(name=REGULATOR, roles=["regulator"]))
        return Genesis(
            chain_id=self.plan.chain_id,
            suite=_suite_literal(self.plan.suite),
            protocol_version=PROTOCOL_VERSION,
            genesis_time_ms=int(self.now.timestamp() * 1000),
            ca_certificate_fingerprint=ca_fingerprint,
            validators=[_genesis_validator(material) for material in materials],
            consensus=ConsensusParams(),
            mempool=MempoolParams(),
            members=members,
            governance=Governance(
                committee=[CommitteeSeat(member=member.name, weight=1) for member in members],
                validators_min=min(BFT_NODES_MIN, len(materials)),
            ),
            accounts=[_treasury_account(material) for material in materials],
        )

    def _finish_node(
        self,
        material: _NodeMaterial,
        materials: list[_NodeMaterial],
        genesis_document: bytes,
        ca_pem: bytes,
        digest: bytes,
    ) -> None:
        node_dir = self.root / material.plan.name
        write_public_file(node_dir / layout.GENESIS_FILE, genesis_document)
        write_public_file(node_dir / layout.CA_CERTIFICATE_FILE, ca_pem)
        config = _node_config(self.plan, material, materials, digest)
        write_node_config(node_dir / layout.CONFIG_FILE, config)

    def _summary(self, materials: list[_NodeMaterial], digest: bytes) -> ConsortiumSummary:
        nodes = tuple(
            NodeSummary(
                name=m.plan.name,
                member=m.plan.member,
                node_id=m.node_id,
                address=m.plan.placement.address,
                api_listen=m.plan.placement.api_listen,
                certificate_fingerprint=m.certificate_fingerprint,
            )
            for m in materials
        )
        return ConsortiumSummary(
            self.plan.out_dir, self.plan.chain_id, self.plan.suite, digest, nodes, True
        )


def _suite_literal(name: str) -> Literal["intl", "gm"]:
    if name == "gm":
        return "gm"
    assert name == "intl", name
    return "intl"


def _genesis_validator(material: _NodeMaterial) -> GenesisValidator:
    return GenesisValidator(
        name=material.plan.name,
        member=material.plan.member,
        node_id=material.node_id.hex(),
        public_key=material.consensus_public_key.hex(),
        certificate_fingerprint=material.certificate_fingerprint,
        voting_power=1,
        address=material.plan.placement.address,
    )


def _treasury_account(material: _NodeMaterial) -> GenesisAccount:
    return GenesisAccount(
        id=f"{material.plan.member}.treasury",
        sponsor=material.plan.member,
        public_key=material.account_public_key.hex(),
        currency="CNY",
        balance=TREASURY_BALANCE,
    )


def _node_config(
    plan: ConsortiumPlan,
    material: _NodeMaterial,
    materials: list[_NodeMaterial],
    digest: bytes,
) -> NodeConfig:
    node = material.plan
    return NodeConfig(
        node=NodeSection(
            name=node.name,
            node_id=material.node_id.hex(),
            member=node.member,
            data_dir=layout.DATA_DIR,
        ),
        chain=ChainSection(
            chain_id=plan.chain_id,
            suite=plan.suite,
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
            listen=node.placement.listen,
            advertise=node.placement.address,
            api_listen=node.placement.api_listen,
        ),
        peers=[
            Peer(
                node_id=other.node_id.hex(),
                name=other.plan.name,
                address=other.plan.placement.address,
            )
            for other in materials
            if other is not material
        ],
    )
