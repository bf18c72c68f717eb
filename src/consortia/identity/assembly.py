"""`consortia genesis build`: the genesis, from the requests institutions sent and the CA's
certificates.

The coordinator gathers into one folder every institution's public files and the CA's answers:

    MEMBER.member.json   a member's request (its treasury account's public key)
    NODE.node.json       a node's request (consensus public key, node id, TLS request)
    NODE.crt             the certificate the CA issued for that node (`consortia ca issue`)

`gather` reads and checks them all; `assemble_genesis` makes the genesis: every member that
sent a request, with a treasury account; every node as a validator of voting power 1, its
member a validator operator; the regulator, if named, as a member with no keys; a governance
committee of one seat per member. `consortia init` uses the same function, so a one-machine
test network and a consortium formed by separate institutions have genesis files of one shape.
A local demo network (`consortia cluster up`) adds funded customer accounts after the
treasuries (`extra_accounts`), so the first member's treasury stays the currency's issuer.

This module only reads public files; it must never read or ask for a private key.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final

from cryptography import x509

from consortia import PROTOCOL_VERSION
from consortia.errors import CertificateError, GenesisError, InvalidArgumentError
from consortia.identity import layout
from consortia.identity.certificates import (
    CERTIFICATE_SIZE_MAX,
    fingerprint,
    parse_certificate,
    verify_ca_certificate,
    verify_node_certificate,
)
from consortia.identity.files import read_bounded
from consortia.identity.genesis import check_genesis
from consortia.identity.keystore import p256_public_point
from consortia.identity.requests import (
    CheckedNodeRequest,
    MemberRequest,
    load_member_request,
    load_node_request,
    suite_literal,
)
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
from consortia.types.primitives import CURRENCY_DEFAULT

NODES_MAX: Final = 256
MEMBERS_MAX: Final = 1024
BFT_NODES_MIN: Final = 4  # 3f + 1 with f = 1: the fewest validators that survive one fault
TREASURY_BALANCE: Final = 100_000_000_000  # minor units (fen): 1 billion CNY per member


@dataclasses.dataclass(frozen=True)
class GatheredNode:
    """A checked node request and the CA's certificate for it."""

    request: CheckedNodeRequest
    certificate: x509.Certificate


@dataclasses.dataclass(frozen=True)
class Gathered:
    members: tuple[MemberRequest, ...]
    nodes: tuple[GatheredNode, ...]


def gather(directory: Path) -> Gathered:
    """Every member and node request in `directory`, each node with its certificate."""
    if not directory.is_dir():
        raise InvalidArgumentError(f"--from {directory} is not a folder")
    member_files = sorted(directory.glob(f"*{layout.MEMBER_REQUEST_SUFFIX}"))
    node_files = sorted(directory.glob(f"*{layout.NODE_REQUEST_SUFFIX}"))
    if not 1 <= len(member_files) <= MEMBERS_MAX or not 1 <= len(node_files) <= NODES_MAX:
        raise InvalidArgumentError(
            f"{directory} needs 1 to {MEMBERS_MAX} *{layout.MEMBER_REQUEST_SUFFIX} and 1 to"
            f" {NODES_MAX} *{layout.NODE_REQUEST_SUFFIX} files; it has {len(member_files)}"
            f" and {len(node_files)}"
        )
    members = tuple(load_member_request(path) for path in member_files)
    nodes = []
    for path in node_files:
        request = load_node_request(path)
        certificate_path = directory / layout.node_certificate_file(request.request.node)
        if not certificate_path.is_file():
            raise InvalidArgumentError(
                f"no certificate {certificate_path} for {path.name}: the CA issues it with"
                f" consortia ca issue --request {path}"
            )
        data = read_bounded(certificate_path, CERTIFICATE_SIZE_MAX, CertificateError, "certificate")
        nodes.append(GatheredNode(request, parse_certificate(data, str(certificate_path))))
    return Gathered(members, tuple(nodes))


def assemble_genesis(
    gathered: Gathered,
    *,
    chain_id: str,
    ca_certificate: x509.Certificate,
    regulator: str | None,
    now: datetime.datetime,
    extra_accounts: Sequence[GenesisAccount] = (),
) -> Genesis:
    """The genesis of a consortium of `gathered`'s members and nodes under `ca_certificate`;
    `extra_accounts` follow the members' treasuries (their sponsors must be members)."""
    verify_ca_certificate(ca_certificate, now, "the CA certificate")
    suite_name = _one_suite(gathered)
    member_names = [member.member for member in gathered.members]
    _unique(member_names, "member")
    _unique((node.request.request.node for node in gathered.nodes), "node")
    for node in gathered.nodes:
        _check_certificate(node, ca_certificate, now)
        if node.request.request.member not in member_names:
            raise GenesisError(
                f"node {node.request.request.node!r} belongs to {node.request.request.member!r},"
                " which sent no member request"
            )
    if regulator is not None and regulator in member_names:
        raise InvalidArgumentError(f"--regulator {regulator!r} is also a member with keys")
    operators = {node.request.request.member for node in gathered.nodes}
    members = [
        Member(
            name=name, roles=["validator_operator", "member"] if name in operators else ["member"]
        )
        for name in member_names
    ]
    if regulator is not None:
        members.append(Member(name=regulator, roles=["regulator"]))
    validators = [_validator(node) for node in gathered.nodes]
    genesis = Genesis(
        chain_id=chain_id,
        suite=suite_literal(suite_name),
        protocol_version=PROTOCOL_VERSION,
        genesis_time_ms=int(now.timestamp() * 1000),
        ca_certificate_fingerprint=fingerprint(ca_certificate),
        validators=validators,
        consensus=ConsensusParams(),
        mempool=MempoolParams(),
        members=members,
        governance=Governance(
            committee=[CommitteeSeat(member=member.name, weight=1) for member in members],
            validators_min=min(BFT_NODES_MIN, len(validators)),
        ),
        accounts=[*(_treasury(member) for member in gathered.members), *extra_accounts],
    )
    check_genesis(genesis, "the new genesis")
    return genesis


def _one_suite(gathered: Gathered) -> str:
    suites = {member.suite for member in gathered.members}
    suites |= {node.request.request.suite for node in gathered.nodes}
    if len(suites) != 1:
        raise GenesisError(f"the requests mix crypto suites ({', '.join(sorted(suites))})")
    return suites.pop()


def _check_certificate(
    node: GatheredNode, ca_certificate: x509.Certificate, now: datetime.datetime
) -> None:
    request = node.request.request
    source = f"the certificate of node {request.node!r}"
    verify_node_certificate(node.certificate, ca_certificate, request.node_id, now, source)
    requested_key = p256_public_point(node.request.certificate_request.public_key)
    if p256_public_point(node.certificate.public_key()) != requested_key:
        raise CertificateError(f"{source} is not for the TLS key the node's request names")
    names = node.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    hosts = [*names.value.get_values_for_type(x509.DNSName)]
    hosts += [str(address) for address in names.value.get_values_for_type(x509.IPAddress)]
    if hosts != [node.request.certificate_request.host]:
        raise CertificateError(f"{source} names another host than {request.address}")


def _validator(node: GatheredNode) -> GenesisValidator:
    request = node.request.request
    return GenesisValidator(
        name=request.node,
        member=request.member,
        node_id=request.node_id,
        public_key=request.consensus_public_key,
        certificate_fingerprint=fingerprint(node.certificate),
        voting_power=1,
        address=request.address,
    )


def _treasury(member: MemberRequest) -> GenesisAccount:
    return GenesisAccount(
        id=member.account_id,
        sponsor=member.member,
        public_key=member.account_public_key,
        currency=CURRENCY_DEFAULT,
        balance=TREASURY_BALANCE,
    )


def _unique(values: Iterable[str], what: str) -> None:
    repeated = [value for value, count in Counter(values).items() if count > 1]
    if repeated:
        raise GenesisError(f"two requests for the {what} {repeated[0]!r}")


def gathered_of(members: Sequence[MemberRequest], nodes: Sequence[GatheredNode]) -> Gathered:
    """A `Gathered` from requests already in memory (as `consortia init` has them)."""
    return Gathered(tuple(members), tuple(nodes))
