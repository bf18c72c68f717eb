"""Key requests: the public parts an institution sends out to join a new consortium.

    MEMBER.member.json   the member's name and its treasury account's public key
    NODE.node.json       a node: its member, name, address, consensus public key, node id and
                         a PKCS#10 certificate request for its TLS key

Each file is JSON, `{"request": {...}, "signature": "<hex>"}`. The signature is made by the
private key the request names (the account key, the consensus key) over REQUEST_DOMAIN and the
canonical MessagePack encoding of the request, and the certificate request is signed by the
node's TLS key: so whoever assembles the genesis knows the sender holds every private key it
names, and nobody can submit another institution's public key as its own. Requests hold no
secret; they may travel by e-mail. Their integrity still matters: the coordinator should
compare each request file's digest (`consortia keys generate` prints it) with the institution
by a second channel.

This module must never read or write a private key; it signs with one it is handed.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Annotated, Final, Literal, TypeVar

import msgspec
from msgspec import Meta

from consortia.crypto import suite
from consortia.errors import CertificateError, KeyRequestError
from consortia.identity.addresses import parse_host_port
from consortia.identity.certificates import RequestedNode, read_certificate_request
from consortia.identity.files import read_bounded
from consortia.identity.genesis import node_id
from consortia.identity.strict_json import check_unique_keys
from consortia.types.encoding import encode
from consortia.types.genesis import Address, HexHash, HexKey
from consortia.types.primitives import AccountId

REQUEST_DOMAIN: Final = b"consortia/key-request/v1\x00"
REQUEST_SIZE_MAX: Final = 64 * 1024
CERTIFICATE_REQUEST_SIZE_MAX: Final = 8 * 1024
# Member and node names become file and directory names, so they are kept to safe characters.
SAFE_NAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z"
SafeName = Annotated[str, Meta(pattern=SAFE_NAME_PATTERN)]
HexSignature = Annotated[str, Meta(pattern=r"^[0-9a-f]{128}\Z")]
SuiteName = Literal["intl", "gm"]
MEMBER_REQUEST_FORMAT: Final = "consortia-member-request"
NODE_REQUEST_FORMAT: Final = "consortia-node-request"
REQUEST_VERSION: Final = 1
_T = TypeVar("_T")


class _Document(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class MemberRequest(_Document, frozen=True):
    format: Literal["consortia-member-request"]
    version: Literal[1]
    suite: SuiteName
    member: SafeName
    account_id: AccountId
    account_public_key: HexKey


class NodeRequest(_Document, frozen=True):
    format: Literal["consortia-node-request"]
    version: Literal[1]
    suite: SuiteName
    member: SafeName
    node: SafeName
    address: Address
    consensus_public_key: HexKey
    node_id: HexHash
    certificate_request: Annotated[str, Meta(max_length=CERTIFICATE_REQUEST_SIZE_MAX)]


class SignedMemberRequest(_Document, frozen=True):
    request: MemberRequest
    signature: HexSignature


class SignedNodeRequest(_Document, frozen=True):
    request: NodeRequest
    signature: HexSignature


class CheckedNodeRequest(msgspec.Struct, frozen=True):
    """A node request whose signature and certificate request have been checked."""

    request: NodeRequest
    certificate_request: RequestedNode


def suite_literal(name: str) -> SuiteName:
    """`name` as the suite type of the schemas; UnknownSuiteError for an unknown suite."""
    suite(name)
    if name == "gm":
        return "gm"
    assert name == "intl", name
    return "intl"


def sign_member_request(request: MemberRequest, account_private_key: bytes) -> bytes:
    """The JSON file of `request`, signed with the account key it names."""
    signature = _sign(request, account_private_key, request.account_public_key)
    return _json(SignedMemberRequest(request=request, signature=signature))


def sign_node_request(request: NodeRequest, consensus_private_key: bytes) -> bytes:
    """The JSON file of `request`, signed with the consensus key it names."""
    signature = _sign(request, consensus_private_key, request.consensus_public_key)
    return _json(SignedNodeRequest(request=request, signature=signature))


def parse_member_request(data: bytes, source: str) -> MemberRequest:
    """The checked member request in `data`; KeyRequestError for any problem."""
    signed = _decode(data, SignedMemberRequest, source)
    request = signed.request
    _check_key_size(request.suite, request.account_public_key, source)
    _verify(request, request.account_public_key, signed.signature, source)
    return request


def parse_node_request(data: bytes, source: str) -> CheckedNodeRequest:
    """The checked node request in `data`: signed by its consensus key, its node id the hash
    of that key, and a certificate request for exactly this node, member and host."""
    signed = _decode(data, SignedNodeRequest, source)
    request = signed.request
    public_key = bytes.fromhex(request.consensus_public_key)
    _check_key_size(request.suite, request.consensus_public_key, source)
    if node_id(suite(request.suite), public_key).hex() != request.node_id:
        raise KeyRequestError(f"{source}: node id is not the hash of the consensus public key")
    _verify(request, request.consensus_public_key, signed.signature, source)
    try:
        requested = read_certificate_request(request.certificate_request.encode(), source)
    except CertificateError as error:
        raise KeyRequestError(error.message) from None
    host, _port = parse_host_port(request.address)
    wanted = (request.node_id, request.member, host)
    if (requested.node_id, requested.member, requested.host) != wanted:
        raise KeyRequestError(
            f"{source}: its certificate request names another node, member or host"
        )
    return CheckedNodeRequest(request, requested)


def load_member_request(path: Path) -> MemberRequest:
    return parse_member_request(_read(path), str(path))


def load_node_request(path: Path) -> CheckedNodeRequest:
    return parse_node_request(_read(path), str(path))


def request_digest(data: bytes) -> str:
    """What an institution reads out by phone so the coordinator can check its file: the
    SHA-256 of the request file's bytes, in hex."""
    return hashlib.sha256(data).hexdigest()


def _read(path: Path) -> bytes:
    return read_bounded(path, REQUEST_SIZE_MAX, KeyRequestError, "key request")


def _decode(data: bytes, kind: type[_T], source: str) -> _T:
    try:
        document = msgspec.json.decode(data, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise KeyRequestError(f"{source} is not a valid key request: {error}") from None
    check_unique_keys(data, KeyRequestError, source)
    return document


def _signing_bytes(request: MemberRequest | NodeRequest) -> bytes:
    return REQUEST_DOMAIN + encode(request)


def _sign(request: MemberRequest | NodeRequest, private_key: bytes, public_hex: str) -> str:
    chain_suite = suite(request.suite)
    signing_key = chain_suite.signing_key(private_key)
    assert hmac.compare_digest(signing_key.public_key.hex(), public_hex), "key does not match"
    return signing_key.sign(_signing_bytes(request)).hex()


def _verify(
    request: MemberRequest | NodeRequest, public_hex: str, signature: str, source: str
) -> None:
    valid = suite(request.suite).verify(
        bytes.fromhex(public_hex), _signing_bytes(request), bytes.fromhex(signature)
    )
    if not valid:
        raise KeyRequestError(f"{source} is not signed by the key it names")


def _check_key_size(suite_name: str, public_hex: str, source: str) -> None:
    size = suite(suite_name).public_key_size
    if len(public_hex) != 2 * size:
        raise KeyRequestError(f"{source}: a {suite_name} public key is {size} bytes")


def _json(document: SignedMemberRequest | SignedNodeRequest) -> bytes:
    return msgspec.json.format(msgspec.json.encode(document), indent=2) + b"\n"
