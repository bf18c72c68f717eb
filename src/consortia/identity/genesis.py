"""Reading, checking, hashing and writing the genesis document, and the epoch it starts.

`load_genesis` is the one way a node reads `genesis.json`: it parses the JSON against the
`Genesis` schema, checks what a schema cannot (node ids are the hash of their public keys, key
sizes fit the suite, names are unique and refer to known members), and compares the genesis
hash with the one the node's config expects, which is how an edited genesis is caught.

The genesis hash is the chain suite's hash of GENESIS_HASH_DOMAIN followed by the canonical
MessagePack encoding of the parsed document: JSON whitespace and key order never change it.

This module must never write over an existing file and never accepts a document it has not
checked completely.
"""

from __future__ import annotations

import hmac
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import msgspec

from consortia.crypto import Suite, suite
from consortia.errors import GenesisError
from consortia.identity.files import read_bounded, write_public_file
from consortia.identity.strict_json import check_unique_keys
from consortia.types.consensus import EpochConfig, Validator
from consortia.types.genesis import Genesis, mempool_limits_fit, round_timeouts_ordered
from consortia.types.genesis import genesis_hash as types_genesis_hash

GENESIS_SIZE_MAX: Final = 256 * 1024 * 1024  # 1,000,000 accounts at ~150 bytes each
# EpochConfig bounds each validator's power to 2**32.
VOTING_POWER_MAX: Final = 2**32


def node_id(chain_suite: Suite, public_key: bytes) -> bytes:
    """A node's id: the suite's hash of its consensus public key."""
    return chain_suite.hash(public_key)


def genesis_hash(genesis: Genesis) -> bytes:
    """The hash that identifies `genesis` (see the module docstring)."""
    return types_genesis_hash(genesis)


def genesis_json(genesis: Genesis) -> bytes:
    """`genesis` as indented, readable JSON."""
    return msgspec.json.format(msgspec.json.encode(genesis), indent=2) + b"\n"


def write_genesis(path: Path, genesis: Genesis) -> None:
    """Write `genesis` to `path` (which must not exist)."""
    write_public_file(path, genesis_json(genesis))


def parse_genesis(
    data: bytes, expected_hash: bytes | None = None, source: str = "genesis"
) -> tuple[Genesis, bytes]:
    """The checked genesis in the JSON `data` and its hash; GenesisError for any problem."""
    try:
        genesis = msgspec.json.decode(data, type=Genesis)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise GenesisError(f"{source} is not a valid genesis document: {error}") from None
    check_unique_keys(data, GenesisError, source)
    check_genesis(genesis, source)
    digest = genesis_hash(genesis)
    if expected_hash is not None and not hmac.compare_digest(digest, expected_hash):
        raise GenesisError(
            f"{source} has hash {digest.hex()}, but {expected_hash.hex()} was expected:"
            " the document was edited or is not this chain's genesis"
        )
    return genesis, digest


def load_genesis(path: Path, expected_hash: bytes | None) -> tuple[Genesis, bytes]:
    """The checked genesis at `path` and its hash, which must equal `expected_hash` if given."""
    return parse_genesis(read_genesis_file(path), expected_hash, str(path))


def read_genesis_file(path: Path) -> bytes:
    """The bytes of the genesis file at `path` (bounded; not yet checked)."""
    return read_bounded(path, GENESIS_SIZE_MAX, GenesisError, "genesis file")


def epoch_config(genesis: Genesis) -> EpochConfig:
    """Epoch 0: the genesis validators, sorted by node id bytes."""
    validators = sorted(
        (
            Validator(
                node_id=bytes.fromhex(entry.node_id),
                public_key=bytes.fromhex(entry.public_key),
                voting_power=entry.voting_power,
            )
            for entry in genesis.validators
        ),
        key=lambda validator: validator.node_id,
    )
    return EpochConfig(epoch=0, validators=validators)


def check_genesis(genesis: Genesis, source: str = "genesis") -> None:
    """GenesisError for every inconsistency the schema alone cannot see."""
    _check_validators(genesis, source)
    _check_members(genesis, source)
    _check_accounts(genesis, source)
    consensus = genesis.consensus
    if not round_timeouts_ordered(
        consensus.round_timeout_ms_min, consensus.round_timeout_ms, consensus.round_timeout_ms_max
    ):
        raise GenesisError(
            f"{source}: round timeouts must be ordered: round_timeout_ms_min <= "
            "round_timeout_ms <= round_timeout_ms_max"
        )
    mempool = genesis.mempool
    if not mempool_limits_fit(
        mempool.transaction_bytes_max,
        mempool.bytes_max,
        mempool.batch_transactions_max,
        mempool.transactions_max,
    ):
        raise GenesisError(
            f"{source}: a transaction or batch must fit the mempool: transaction_bytes_max <= "
            "bytes_max and batch_transactions_max <= transactions_max"
        )
    if mempool.transaction_bytes_max > consensus.block_bytes_max:
        raise GenesisError(
            f"{source}: a transaction the mempool admits must fit a block: "
            "transaction_bytes_max <= consensus.block_bytes_max"
        )


def _check_validators(genesis: Genesis, source: str) -> None:
    chain_suite = suite(genesis.suite)
    for validator in genesis.validators:
        where = f"{source}: validator {validator.name!r}"
        public_key = bytes.fromhex(validator.public_key)
        if len(public_key) != chain_suite.public_key_size:
            raise GenesisError(
                f"{where} has a {len(public_key)}-byte public key;"
                f" {genesis.suite} keys are {chain_suite.public_key_size} bytes"
            )
        if node_id(chain_suite, public_key).hex() != validator.node_id:
            raise GenesisError(f"{where}: node id is not the hash of its public key")
        if validator.voting_power > VOTING_POWER_MAX:
            raise GenesisError(f"{where}: voting power exceeds {VOTING_POWER_MAX}")
    _unique((v.node_id for v in genesis.validators), "validator node id", source)
    _unique((v.name for v in genesis.validators), "validator name", source)
    _unique((v.address for v in genesis.validators), "validator address", source)
    _unique((v.certificate_fingerprint for v in genesis.validators), "certificate", source)


def _check_members(genesis: Genesis, source: str) -> None:
    _unique((member.name for member in genesis.members), "member name", source)
    roles = {member.name: set(member.roles) for member in genesis.members}
    for validator in genesis.validators:
        if "validator_operator" not in roles.get(validator.member, set()):
            raise GenesisError(
                f"{source}: validator {validator.name!r} belongs to {validator.member!r},"
                " which is not a member with the validator_operator role"
            )
    seats = [seat.member for seat in genesis.governance.committee]
    _unique(seats, "committee seat", source)
    for seat in seats:
        if seat not in roles:
            raise GenesisError(f"{source}: committee seat for unknown member {seat!r}")


def _check_accounts(genesis: Genesis, source: str) -> None:
    chain_suite = suite(genesis.suite)
    members = {member.name for member in genesis.members}
    _unique((account.id for account in genesis.accounts), "account id", source)
    for account in genesis.accounts:
        if account.sponsor not in members:
            raise GenesisError(f"{source}: account {account.id!r} has unknown sponsor")
        if len(account.public_key) != 2 * chain_suite.public_key_size:
            raise GenesisError(f"{source}: account {account.id!r} has a wrong-size public key")


def _unique(values: Iterable[str], what: str, source: str) -> None:
    duplicates = [value for value, count in Counter(values).items() if count > 1]
    if duplicates:
        raise GenesisError(f"{source}: duplicate {what} {duplicates[0]!r}")
