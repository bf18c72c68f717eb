"""The genesis document: everything a consortium agrees on before its first block.

Stored as `genesis.json` (readable, reviewed by every member before launch) and identified by
its genesis hash: the chain suite's hash of the canonical MessagePack encoding of the parsed
document, so whitespace or key order in the JSON never changes it but any edited value does.
Every node's config records the genesis hash it expects and refuses any other document.

Money is integers in minor units. Percentages are integers. There are no floats anywhere.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec
from msgspec import Meta

from consortia.crypto import suite
from consortia.types.encoding import encode
from consortia.types.primitives import (
    CURRENCY_DEFAULT,
    HASH_HEX_PATTERN,
    PAYLOAD_ITEM_SIZE_MAX,
    PAYLOAD_ITEMS_MAX,
    REPUTATION_WINDOW_MAX,
    U64_MAX,
    VALIDATORS_MAX,
    AccountId,
    ChainId,
    Currency,
    Name,
)

GENESIS_HASH_DOMAIN: Final = b"consortia/genesis/v1\x00"
HexHash = Annotated[str, Meta(pattern=HASH_HEX_PATTERN)]
HexKey = Annotated[str, Meta(pattern=r"^[0-9a-f]{64}([0-9a-f]{66})?\Z")]  # 32 or 65 bytes
Percent = Annotated[int, Meta(ge=1, le=100)]
Positive = Annotated[int, Meta(ge=1, le=2**62)]
Address = Annotated[str, Meta(min_length=3, max_length=255, pattern=r"^[^\s:]+:[0-9]{1,5}\Z")]

Role = Literal["validator_operator", "member", "regulator", "observer"]


class _Document(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """JSON objects with a fixed set of keys; unknown keys are an error, not ignored."""


class GenesisValidator(_Document, frozen=True):
    name: Name
    member: Name
    node_id: HexHash
    public_key: HexKey
    certificate_fingerprint: HexHash
    voting_power: Positive
    address: Address


GENESIS_ACCOUNTS_MAX: Final = 1_000_000
# The timeout back-off multiplies by at least 1 (never shrinks) and at most 4 per round. The
# one statement of these bounds: the genesis schema, governance's parameter changes and the
# replica's `Params` all read them here.
BACKOFF_PERCENT_MIN: Final = 100
BACKOFF_PERCENT_MAX: Final = 400


def round_timeouts_ordered(minimum_ms: int, initial_ms: int, maximum_ms: int) -> bool:
    """The rule every set of consensus parameters keeps: round_timeout_ms_min <=
    round_timeout_ms <= round_timeout_ms_max (genesis, governance and `Params` alike)."""
    return minimum_ms <= initial_ms <= maximum_ms


def mempool_limits_fit(
    transaction_bytes_max: int, bytes_max: int, batch_transactions_max: int, transactions_max: int
) -> bool:
    """A transaction fits the mempool's bytes and a batch its count (genesis and governance
    alike; the mempool asserts it)."""
    return transaction_bytes_max <= bytes_max and batch_transactions_max <= transactions_max


class ConsensusParams(_Document, frozen=True):
    """The consensus parameters a chain fixes at genesis. The one place their defaults live:
    `consortia.consensus.config.Params` takes its defaults from here."""

    # The first round's timeout; each consecutive timeout multiplies it by backoff_percent/100,
    # up to round_timeout_ms_max. Also the adaptive timer's ceiling: 3 s, since rounds with
    # full blocks take up to ~1 s on four validators sharing two cores (docs/consensus.md §2).
    round_timeout_ms: Positive = 3000
    # The timer adapts to recent rounds, but never below this.
    round_timeout_ms_min: Positive = 100
    round_timeout_ms_max: Positive = 60_000
    timeout_backoff_percent: Annotated[
        int, Meta(ge=BACKOFF_PERCENT_MIN, le=BACKOFF_PERCENT_MAX)
    ] = 150
    # A block carries at most PAYLOAD_ITEMS_MAX items (its wire format's bound).
    block_payload_items_max: Annotated[int, Meta(ge=1, le=PAYLOAD_ITEMS_MAX)] = 5000
    block_bytes_max: Positive = 4 * 1024 * 1024
    # Leader reputation: over the last `reputation_window` committed blocks, validators that
    # failed to propose are skipped as leaders (docs/consensus.md). Bounded so that a node's
    # stored reputation snapshot (types/consensus.py ReputationState) stays small.
    reputation_window: Annotated[int, Meta(ge=1, le=REPUTATION_WINDOW_MAX)] = 16


class MempoolParams(_Document, frozen=True):
    transactions_max: Positive = 100_000
    bytes_max: Positive = 256 * 1024 * 1024
    # An admitted transaction becomes one block payload item, at most PAYLOAD_ITEM_SIZE_MAX
    # bytes on the wire: a larger one would make blocks no peer can decode.
    transaction_bytes_max: Annotated[int, Meta(ge=1, le=PAYLOAD_ITEM_SIZE_MAX)] = 64 * 1024
    batch_transactions_max: Positive = 2000


class Member(_Document, frozen=True):
    """A member institution and its roles (JR/T 0184 §13)."""

    name: Name
    roles: Annotated[list[Role], Meta(min_length=1, max_length=4)]


class CommitteeSeat(_Document, frozen=True):
    member: Name
    weight: Positive


class Governance(_Document, frozen=True):
    """The management committee (JR/T 0184 §17)."""

    committee: Annotated[list[CommitteeSeat], Meta(min_length=1, max_length=256)]
    participation_threshold_percent: Percent = 67
    pass_threshold_percent: Percent = 67
    proposal_expiry_blocks: Positive = 10_000
    validators_min: Positive = 4
    validators_warn: Positive = 5
    key_reset_lock_blocks: Positive = 1_000


class GenesisAccount(_Document, frozen=True):
    id: AccountId
    sponsor: Name
    public_key: HexKey
    currency: Currency = CURRENCY_DEFAULT
    balance: Annotated[int, Meta(ge=0, le=2**62)] = 0  # minor units (fen)


class Genesis(_Document, frozen=True):
    chain_id: ChainId
    suite: Literal["intl", "gm"]
    protocol_version: Annotated[int, Meta(ge=1, le=2**16)]
    genesis_time_ms: Annotated[int, Meta(ge=0, le=U64_MAX)]  # must fit the MessagePack hash input
    ca_certificate_fingerprint: HexHash
    validators: Annotated[list[GenesisValidator], Meta(min_length=1, max_length=VALIDATORS_MAX)]
    consensus: ConsensusParams
    mempool: MempoolParams
    members: Annotated[list[Member], Meta(min_length=1, max_length=1024)]
    governance: Governance
    # At most GENESIS_ACCOUNTS_MAX: a bank's worth of accounts (a benchmark's state of
    # 300,000 accounts fits, about 45 MB of genesis file).
    accounts: Annotated[list[GenesisAccount], Meta(max_length=GENESIS_ACCOUNTS_MAX)] = (
        msgspec.field(default_factory=list)
    )


def genesis_hash(genesis: Genesis) -> bytes:
    """The hash that identifies a chain: its suite's hash of GENESIS_HASH_DOMAIN followed by
    the canonical encoding of its genesis document (JSON whitespace and key order never
    change it). Every signature of the chain commits to it (`types.signing.SigningDomain`)."""
    return suite(genesis.suite).hash(GENESIS_HASH_DOMAIN + encode(genesis))
