"""An institution's own keys, made on its own machine: `consortia keys generate --institution`.

A member generates its account key (under the member's passphrase) and each of its nodes
generates its consensus and TLS keys (under that node's passphrase). Each run writes the
private keys into the institution's folder and a signed key request, the only thing that
leaves the institution, into its `public/` folder (layout.py shows the layout):

    generate_member   DIR/accounts/treasury.key and DIR/public/MEMBER.member.json
    generate_node     DIR/NODE/{consensus.key, tls.key, data/} and DIR/public/NODE.node.json

A node's folder is built in a hidden sibling and renamed into place (staging.py), so it
appears whole or not at all; an existing key or request is never overwritten.

This module must never write a private key outside the institution's folder, or unencrypted.
"""

from __future__ import annotations

import dataclasses
import re
import stat
from pathlib import Path
from typing import Final

from consortia.crypto import suite
from consortia.errors import AlreadyExistsError, InsecurePermissionsError, InvalidArgumentError
from consortia.identity import layout
from consortia.identity.addresses import node_placement
from consortia.identity.certificates import certificate_request, request_pem
from consortia.identity.files import (
    NOT_OWNER_BITS,
    PRIVATE_DIR_MODE,
    make_private_dir,
    write_private_file,
    write_public_file,
)
from consortia.identity.genesis import node_id
from consortia.identity.keystore import (
    DEFAULT_ARGON2,
    Argon2Cost,
    Purpose,
    new_keypair,
    p256_private_key,
    seal_key,
)
from consortia.identity.requests import (
    MEMBER_REQUEST_FORMAT,
    NODE_REQUEST_FORMAT,
    REQUEST_VERSION,
    SAFE_NAME_PATTERN,
    MemberRequest,
    NodeRequest,
    request_digest,
    sign_member_request,
    sign_node_request,
    suite_literal,
)
from consortia.identity.staging import staged_directory

_SAFE_NAME: Final = re.compile(SAFE_NAME_PATTERN)


@dataclasses.dataclass(frozen=True)
class GeneratedKeys:
    """What a run made: the request to send out, its digest, and the holder's public key."""

    request_path: Path
    request_digest: str
    public_key: bytes
    node_id: bytes | None = None


def check_name(name: str, option: str) -> str:
    """`name` if it is a safe member or node name (it becomes a file and folder name)."""
    if not _SAFE_NAME.match(name):
        raise InvalidArgumentError(
            f"{option} {name!r}: use 1 to 64 of A-Z a-z 0-9 . _ -, starting with a letter or digit"
        )
    return name


def prepare_institution(directory: Path) -> None:
    """Make the institution's folder (0700) or check the existing one is private."""
    if directory.is_symlink() or (directory.exists() and not directory.is_dir()):
        raise AlreadyExistsError(f"{directory} exists and is not a folder")
    if not directory.exists():
        if not directory.parent.is_dir():
            raise InvalidArgumentError(f"the parent directory {directory.parent} does not exist")
        make_private_dir(directory)
    check_private_dir(directory)
    for child in (layout.ACCOUNTS_DIR, layout.PUBLIC_DIR):
        if not (directory / child).is_dir():
            make_private_dir(directory / child)


def check_private_dir(directory: Path) -> None:
    """InsecurePermissionsError when anyone but the owner can reach `directory`."""
    mode = stat.S_IMODE(directory.lstat().st_mode)
    if mode & NOT_OWNER_BITS:
        raise InsecurePermissionsError(
            f"{directory} has mode {mode:04o}; folders that hold keys must be"
            f" {PRIVATE_DIR_MODE:04o} (chmod 700)"
        )


def generate_member(
    directory: Path,
    *,
    member: str,
    suite_name: str,
    passphrase: str,
    cost: Argon2Cost = DEFAULT_ARGON2,
) -> GeneratedKeys:
    """The member's treasury account key and its signed member request."""
    check_name(member, "--member")
    suite(suite_name)
    prepare_institution(directory)
    key_path = directory / layout.account_key_file(layout.TREASURY_ACCOUNT)
    request_path = directory / layout.PUBLIC_DIR / layout.member_request_file(member)
    _refuse_existing(key_path, request_path)
    private_key, public_key = _write_key(key_path, suite_name, "account", passphrase, cost)
    request = MemberRequest(
        format=MEMBER_REQUEST_FORMAT,
        version=REQUEST_VERSION,
        suite=suite_literal(suite_name),
        member=member,
        account_id=layout.account_id(member, layout.TREASURY_ACCOUNT),
        account_public_key=public_key.hex(),
    )
    data = sign_member_request(request, private_key)
    try:
        write_public_file(request_path, data)
    except BaseException:
        key_path.unlink(missing_ok=True)
        raise
    return GeneratedKeys(request_path, request_digest(data), public_key)


def generate_node(
    directory: Path,
    *,
    member: str,
    node: str,
    address: str,
    suite_name: str,
    passphrase: str,
    cost: Argon2Cost = DEFAULT_ARGON2,
) -> GeneratedKeys:
    """A node's consensus and TLS keys, its data folder and its signed node request."""
    check_name(member, "--member")
    check_name(node, "--node")
    placement = node_placement(address)
    chain_suite = suite(suite_name)
    prepare_institution(directory)
    node_dir = directory / node
    request_path = directory / layout.PUBLIC_DIR / layout.node_request_file(node)
    _refuse_existing(node_dir, request_path)
    written = False
    try:
        with staged_directory(node_dir) as staging:
            make_private_dir(staging / layout.DATA_DIR)
            consensus_private, consensus_public = _write_key(
                staging / layout.CONSENSUS_KEY_FILE, suite_name, "consensus", passphrase, cost
            )
            tls_private, _tls_public = _write_key(
                staging / layout.TLS_KEY_FILE, suite_name, "tls", passphrase, cost
            )
            identity = node_id(chain_suite, consensus_public)
            csr = certificate_request(
                p256_private_key(tls_private), node_id=identity, member=member, host=placement.host
            )
            request = NodeRequest(
                format=NODE_REQUEST_FORMAT,
                version=REQUEST_VERSION,
                suite=suite_literal(suite_name),
                member=member,
                node=node,
                address=placement.address,
                consensus_public_key=consensus_public.hex(),
                node_id=identity.hex(),
                certificate_request=request_pem(csr).decode("ascii"),
            )
            data = sign_node_request(request, consensus_private)
            write_public_file(request_path, data)
            written = True
    except BaseException:
        if written:
            request_path.unlink(missing_ok=True)
        raise
    return GeneratedKeys(request_path, request_digest(data), consensus_public, identity)


def _refuse_existing(*paths: Path) -> None:
    for path in paths:
        if path.exists() or path.is_symlink():
            raise AlreadyExistsError(f"{path} already exists; refusing to overwrite it")


def _write_key(
    path: Path, suite_name: str, purpose: Purpose, passphrase: str, cost: Argon2Cost
) -> tuple[bytes, bytes]:
    private_key, public_key = new_keypair(suite_name, purpose)
    write_private_file(path, seal_key(suite_name, purpose, private_key, passphrase, cost=cost))
    return private_key, public_key
