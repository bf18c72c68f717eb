"""Hypothesis strategies for every canonical struct and for the genesis document.

Each strategy builds values that satisfy every declared constraint, so `decode(encode(x),
type(x)) == x` holds for whatever it draws. Sizes are kept small (a handful of validators,
signatures, payload items) so property tests stay fast; pass larger bounds where a test needs
them.

Cryptographic content is random bytes of the right length: signatures do not verify and a
block's `payload_root` does not commit to its payload unless `blocks(suite=...)` is used.
Tests that need real signatures should sign with `consortia.types.signing.sign` themselves.

Naming: one function per struct, plural, snake case (`transactions()`, `blocks()`,
`quorum_certificates()`, `consensus_messages()`, `geneses()`). `canonical_values()` draws from
every MessagePack struct type; `STRATEGIES_BY_TYPE` maps each type to its strategy.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from typing import Any, get_args

import msgspec
from hypothesis import strategies as st

from consortia.crypto import Suite
from consortia.types.consensus import (
    BLOCK_REQUEST_COUNT_MAX,
    Block,
    BlockHeader,
    BlockRequest,
    BlockResponse,
    CommitProof,
    ConsensusMessage,
    EpochChangeRequest,
    EpochChangeResponse,
    EpochConfig,
    Proposal,
    ProposalData,
    QuorumCertificate,
    ReputationMark,
    ReputationRound,
    ReputationState,
    SafetyState,
    SignerSignature,
    Timeout,
    TimeoutCertificate,
    TimeoutData,
    TimeoutSignature,
    Validator,
    Vote,
    VoteData,
)
from consortia.types.genesis import (
    BACKOFF_PERCENT_MAX,
    BACKOFF_PERCENT_MIN,
    CommitteeSeat,
    ConsensusParams,
    Genesis,
    GenesisAccount,
    GenesisValidator,
    Governance,
    Member,
    MempoolParams,
    Role,
)
from consortia.types.primitives import (
    CHAIN_ID_LENGTH_MAX,
    HASH_SIZE,
    NAME_LENGTH_MAX,
    PAYLOAD_ITEM_SIZE_MAX,
    PAYLOAD_ITEMS_MAX,
    PUBLIC_KEY_SIZE_MAX,
    PUBLIC_KEY_SIZE_MIN,
    REPUTATION_WINDOW_MAX,
    SIGNATURE_SIZE,
    U64_MAX,
    VALIDATORS_MAX,
)
from consortia.types.signing import merkle_root
from consortia.types.transaction import (
    ARG_BYTES_MAX,
    ARG_LIST_MAX,
    ARGS_MAX,
    Transaction,
    TransactionBody,
)

# --------------------------------------------------------------------------------------------
# Primitives


def hashes() -> st.SearchStrategy[bytes]:
    return st.binary(min_size=HASH_SIZE, max_size=HASH_SIZE)


node_ids = hashes


def public_keys() -> st.SearchStrategy[bytes]:
    return st.binary(min_size=PUBLIC_KEY_SIZE_MIN, max_size=PUBLIC_KEY_SIZE_MAX)


def signatures() -> st.SearchStrategy[bytes]:
    return st.binary(min_size=SIGNATURE_SIZE, max_size=SIGNATURE_SIZE)


_CHAIN_ID_FIRST = string.ascii_lowercase + string.digits
_CHAIN_ID_REST = _CHAIN_ID_FIRST + ".-"


def chain_ids() -> st.SearchStrategy[str]:
    """Strings matching `^[a-z0-9][a-z0-9.-]*$`, 1 to CHAIN_ID_LENGTH_MAX characters."""
    return st.builds(
        str.__add__,
        st.sampled_from(_CHAIN_ID_FIRST),
        st.text(alphabet=_CHAIN_ID_REST, max_size=CHAIN_ID_LENGTH_MAX - 1),
    )


def u64s() -> st.SearchStrategy[int]:
    return st.integers(min_value=0, max_value=U64_MAX)


rounds = u64s
epochs = u64s
heights = u64s


def validator_indexes() -> st.SearchStrategy[int]:
    return st.integers(min_value=0, max_value=VALIDATORS_MAX - 1)


def names(max_size: int = 16) -> st.SearchStrategy[str]:
    """Any non-empty text (the `Name` type has no pattern); short by default for speed."""
    return st.text(min_size=1, max_size=min(max_size, NAME_LENGTH_MAX))


def protocol_versions() -> st.SearchStrategy[int]:
    return st.integers(min_value=1, max_value=2**16)


# --------------------------------------------------------------------------------------------
# Consensus structs


def validators() -> st.SearchStrategy[Validator]:
    return st.builds(
        Validator,
        node_id=node_ids(),
        public_key=public_keys(),
        voting_power=st.integers(min_value=1, max_value=2**32),
    )


def epoch_configs(min_size: int = 1, max_size: int = 5) -> st.SearchStrategy[EpochConfig]:
    """Validators sorted by node id, no duplicates."""
    members = st.lists(
        validators(), min_size=min_size, max_size=max_size, unique_by=lambda v: v.node_id
    )
    return st.builds(
        EpochConfig,
        epoch=epochs(),
        validators=members.map(lambda vs: sorted(vs, key=lambda v: v.node_id)),
    )


def vote_data(chain_id: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[VoteData]:
    return st.builds(
        VoteData,
        chain_id=chain_id if chain_id is not None else chain_ids(),
        epoch=epochs(),
        round=rounds(),
        block_id=hashes(),
        height=heights(),
    )


def signer_signatures() -> st.SearchStrategy[SignerSignature]:
    return st.builds(SignerSignature, index=validator_indexes(), signature=signatures())


def _sorted_by_index(entries: list[Any]) -> list[Any]:
    return sorted(entries, key=lambda entry: entry.index)


def quorum_certificates(max_signers: int = 4) -> st.SearchStrategy[QuorumCertificate]:
    """Signatures strictly increasing by validator index (possibly none, as at genesis)."""
    signers = st.lists(
        signer_signatures(), max_size=max_signers, unique_by=lambda entry: entry.index
    ).map(_sorted_by_index)
    return st.builds(
        QuorumCertificate,
        epoch=epochs(),
        round=rounds(),
        block_id=hashes(),
        height=heights(),
        signatures=signers,
    )


def timeout_data(
    chain_id: st.SearchStrategy[str] | None = None,
) -> st.SearchStrategy[TimeoutData]:
    return st.builds(
        TimeoutData,
        chain_id=chain_id if chain_id is not None else chain_ids(),
        epoch=epochs(),
        round=rounds(),
        high_qc_round=rounds(),
    )


def timeout_signatures() -> st.SearchStrategy[TimeoutSignature]:
    return st.builds(
        TimeoutSignature,
        index=validator_indexes(),
        high_qc_round=rounds(),
        signature=signatures(),
    )


@st.composite
def timeout_certificates(draw: st.DrawFn, max_signers: int = 4) -> TimeoutCertificate:
    """At least one signature, strictly increasing by validator index; the carried QC is of
    the TC's epoch and its highest signed round, which is below the TC's round."""
    signers = draw(
        st.lists(
            st.builds(
                TimeoutSignature,
                index=validator_indexes(),
                high_qc_round=st.integers(min_value=0, max_value=2**62),
                signature=signatures(),
            ),
            min_size=1,
            max_size=max(1, max_signers),
            unique_by=lambda entry: entry.index,
        ).map(_sorted_by_index)
    )
    epoch = draw(epochs())
    highest = max(entry.high_qc_round for entry in signers)
    qc = msgspec.structs.replace(draw(quorum_certificates(max_signers)), epoch=epoch, round=highest)
    round_ = draw(st.integers(min_value=highest + 1, max_value=2**63 - 1))
    return TimeoutCertificate(epoch=epoch, round=round_, signatures=signers, high_qc=qc)


def block_headers(
    payload_count: st.SearchStrategy[int] | None = None,
) -> st.SearchStrategy[BlockHeader]:
    return st.builds(
        BlockHeader,
        chain_id=chain_ids(),
        protocol_version=protocol_versions(),
        epoch=epochs(),
        round=rounds(),
        height=heights(),
        parent_id=hashes(),
        justify=quorum_certificates(),
        author=node_ids(),
        timestamp_ms=u64s(),
        payload_root=hashes(),
        payload_count=(
            payload_count
            if payload_count is not None
            else st.integers(min_value=0, max_value=PAYLOAD_ITEMS_MAX)
        ),
        next_epoch=st.none() | epoch_configs(max_size=3),
    )


def payload_items(max_size: int = 48) -> st.SearchStrategy[bytes]:
    return st.binary(max_size=max_size)


def blocks(max_items: int = 4, suite: Suite | None = None) -> st.SearchStrategy[Block]:
    """A block whose header's payload_count matches its payload.

    With `suite`, the header's payload_root is the payload's Merkle root under that suite;
    without, it is an arbitrary hash (decoding does not check it).
    """

    @st.composite
    def build(draw: Callable[[st.SearchStrategy[Any]], Any]) -> Block:
        payload: list[bytes] = draw(st.lists(payload_items(), max_size=max_items))
        header: BlockHeader = draw(block_headers(payload_count=st.just(len(payload))))
        if suite is not None:
            header = msgspec.structs.replace(header, payload_root=merkle_root(suite, payload))
        return Block(header=header, payload=payload)

    return build()


def proposal_data(
    chain_id: st.SearchStrategy[str] | None = None,
) -> st.SearchStrategy[ProposalData]:
    return st.builds(
        ProposalData,
        chain_id=chain_id if chain_id is not None else chain_ids(),
        epoch=epochs(),
        round=rounds(),
        block_id=hashes(),
    )


def proposals() -> st.SearchStrategy[Proposal]:
    return st.builds(
        Proposal,
        block=blocks(),
        signature=signatures(),
        timeout_certificate=st.none() | timeout_certificates(),
    )


def votes() -> st.SearchStrategy[Vote]:
    return st.builds(Vote, data=vote_data(), author=node_ids(), signature=signatures())


def timeouts() -> st.SearchStrategy[Timeout]:
    return st.builds(
        Timeout,
        data=timeout_data(),
        author=node_ids(),
        signature=signatures(),
        high_qc=quorum_certificates(),
        last_timeout_certificate=st.none() | timeout_certificates(),
    )


def block_requests() -> st.SearchStrategy[BlockRequest]:
    return st.builds(
        BlockRequest,
        epoch=epochs(),
        block_id=hashes(),
        count=st.integers(min_value=1, max_value=BLOCK_REQUEST_COUNT_MAX),
    )


def block_responses(max_blocks: int = 2) -> st.SearchStrategy[BlockResponse]:
    return st.builds(
        BlockResponse,
        request_block_id=hashes(),
        blocks=st.lists(blocks(max_items=2), max_size=max_blocks),
    )


def commit_proofs() -> st.SearchStrategy[CommitProof]:
    return st.builds(
        CommitProof,
        headers=st.lists(block_headers(), min_size=1, max_size=3),
        qc=quorum_certificates(),
    )


def epoch_change_requests() -> st.SearchStrategy[EpochChangeRequest]:
    return st.builds(EpochChangeRequest, epoch=epochs())


def epoch_change_responses() -> st.SearchStrategy[EpochChangeResponse]:
    return st.builds(EpochChangeResponse, ending=block_headers(), proof=commit_proofs())


def safety_states() -> st.SearchStrategy[SafetyState]:
    return st.builds(
        SafetyState,
        epoch=epochs(),
        highest_vote_round=rounds(),
        highest_qc=quorum_certificates(),
        last_vote=st.none() | vote_data(),
        last_vote_signature=st.none() | signatures(),
    )


def consensus_messages() -> st.SearchStrategy[Any]:
    """Any member of the union `ConsensusMessage` (built from the union itself)."""
    return st.one_of([STRATEGIES_BY_TYPE[member]() for member in get_args(ConsensusMessage)])


# --------------------------------------------------------------------------------------------
# Transactions

_ARG_NAME_REST = string.ascii_lowercase + string.digits + "_"
_ACCOUNT_ID_ALPHABET = string.ascii_letters + string.digits + "_.-"


def arg_names() -> st.SearchStrategy[str]:
    """Strings matching `^[a-z][a-z0-9_]*$`, at most 64 characters."""
    return st.builds(
        str.__add__,
        st.sampled_from(string.ascii_lowercase),
        st.text(alphabet=_ARG_NAME_REST, max_size=15),
    )


def arg_scalars() -> st.SearchStrategy[int | str | bool]:
    return st.one_of(
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.text(max_size=min(24, ARG_BYTES_MAX)),
        st.booleans(),
    )


def arg_values() -> st.SearchStrategy[Any]:
    """A scalar or a list of integers and strings (never booleans: they do not round-trip)."""
    list_items = st.one_of(
        st.integers(min_value=-(2**63), max_value=2**64 - 1), st.text(max_size=8)
    )
    return arg_scalars() | st.lists(list_items, max_size=min(4, ARG_LIST_MAX))


def transaction_args(max_size: int = 4) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(arg_names(), arg_values(), max_size=min(max_size, ARGS_MAX))


def account_ids() -> st.SearchStrategy[str]:
    return st.text(alphabet=_ACCOUNT_ID_ALPHABET, min_size=1, max_size=24)


def transaction_bodies(
    chain_id: st.SearchStrategy[str] | None = None,
) -> st.SearchStrategy[TransactionBody]:
    return st.builds(
        TransactionBody,
        chain_id=chain_id if chain_id is not None else chain_ids(),
        sender=account_ids(),
        public_key=public_keys(),
        nonce=u64s(),
        contract=names(),
        contract_version=protocol_versions(),
        method=names(),
        args=transaction_args(),
        expiry_height=heights(),
    )


def transactions() -> st.SearchStrategy[Transaction]:
    return st.builds(Transaction, body=transaction_bodies(), signature=signatures())


def signables(chain_id: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[Any]:
    """Any payload that `consortia.types.signing.sign` accepts."""
    return st.one_of(
        vote_data(chain_id),
        timeout_data(chain_id),
        proposal_data(chain_id),
        transaction_bodies(chain_id),
    )


def reputation_rounds() -> st.SearchStrategy[ReputationRound]:
    return st.builds(
        ReputationRound,
        round=rounds(),
        author=node_ids(),
        signers=st.lists(node_ids(), max_size=4).map(sorted),
        failed=st.lists(st.tuples(rounds(), node_ids()), max_size=3),
    )


def reputation_marks() -> st.SearchStrategy[ReputationMark]:
    return st.builds(
        ReputationMark, node_id=node_ids(), recorded=u64s(), block_round=rounds(), round=rounds()
    )


def reputation_states() -> st.SearchStrategy[ReputationState]:
    return st.builds(
        ReputationState,
        epoch=epochs(),
        recorded=u64s(),
        history=st.lists(reputation_rounds(), max_size=4),
        failed=st.lists(reputation_marks(), max_size=4),
        authored=st.lists(reputation_marks(), max_size=4),
    )


# --------------------------------------------------------------------------------------------
# Every MessagePack struct type

STRATEGIES_BY_TYPE: dict[type, Callable[[], st.SearchStrategy[Any]]] = {
    Validator: validators,
    EpochConfig: epoch_configs,
    VoteData: vote_data,
    SignerSignature: signer_signatures,
    QuorumCertificate: quorum_certificates,
    TimeoutData: timeout_data,
    TimeoutSignature: timeout_signatures,
    TimeoutCertificate: timeout_certificates,
    BlockHeader: block_headers,
    Block: blocks,
    ProposalData: proposal_data,
    Proposal: proposals,
    Vote: votes,
    Timeout: timeouts,
    BlockRequest: block_requests,
    BlockResponse: block_responses,
    CommitProof: commit_proofs,
    EpochChangeRequest: epoch_change_requests,
    EpochChangeResponse: epoch_change_responses,
    SafetyState: safety_states,
    TransactionBody: transaction_bodies,
    Transaction: transactions,
    ReputationRound: reputation_rounds,
    ReputationMark: reputation_marks,
    ReputationState: reputation_states,
}
"""Each canonical (tagged, array-like) struct type and a strategy for it."""


def canonical_values() -> st.SearchStrategy[Any]:
    """A value of any canonical struct type."""
    return st.one_of([strategy() for strategy in STRATEGIES_BY_TYPE.values()])


# --------------------------------------------------------------------------------------------
# Genesis document (JSON)


def _hex(size: int) -> st.SearchStrategy[str]:
    return st.binary(min_size=size, max_size=size).map(bytes.hex)


def hex_hashes() -> st.SearchStrategy[str]:
    return _hex(32)


def hex_keys() -> st.SearchStrategy[str]:
    return _hex(32) | _hex(65)


def positives() -> st.SearchStrategy[int]:
    return st.integers(min_value=1, max_value=2**62)


def addresses() -> st.SearchStrategy[str]:
    host = st.text(alphabet=string.ascii_lowercase + string.digits + ".-", min_size=1, max_size=20)
    port = st.integers(min_value=0, max_value=99_999).map(str)
    return st.builds(lambda h, p: f"{h}:{p}", host, port)


def genesis_validators() -> st.SearchStrategy[GenesisValidator]:
    return st.builds(
        GenesisValidator,
        name=names(),
        member=names(),
        node_id=hex_hashes(),
        public_key=hex_keys(),
        certificate_fingerprint=hex_hashes(),
        voting_power=positives(),
        address=addresses(),
    )


def consensus_params() -> st.SearchStrategy[ConsensusParams]:
    return st.just(ConsensusParams()) | st.builds(
        ConsensusParams,
        round_timeout_ms=positives(),
        round_timeout_ms_min=positives(),
        round_timeout_ms_max=positives(),
        timeout_backoff_percent=st.integers(
            min_value=BACKOFF_PERCENT_MIN, max_value=BACKOFF_PERCENT_MAX
        ),
        block_payload_items_max=st.integers(min_value=1, max_value=PAYLOAD_ITEMS_MAX),
        block_bytes_max=positives(),
        reputation_window=st.integers(min_value=1, max_value=REPUTATION_WINDOW_MAX),
    )


def mempool_params() -> st.SearchStrategy[MempoolParams]:
    return st.just(MempoolParams()) | st.builds(
        MempoolParams,
        transactions_max=positives(),
        bytes_max=positives(),
        transaction_bytes_max=st.integers(min_value=1, max_value=PAYLOAD_ITEM_SIZE_MAX),
        batch_transactions_max=positives(),
    )


_ROLES = get_args(Role)  # the roles the genesis document allows, in their one order


def members() -> st.SearchStrategy[Member]:
    return st.builds(
        Member, name=names(), roles=st.lists(st.sampled_from(_ROLES), min_size=1, max_size=4)
    )


def committee_seats() -> st.SearchStrategy[CommitteeSeat]:
    return st.builds(CommitteeSeat, member=names(), weight=positives())


def governances() -> st.SearchStrategy[Governance]:
    percents = st.integers(min_value=1, max_value=100)
    return st.builds(
        Governance,
        committee=st.lists(committee_seats(), min_size=1, max_size=3),
        participation_threshold_percent=percents,
        pass_threshold_percent=percents,
        proposal_expiry_blocks=positives(),
        validators_min=positives(),
        validators_warn=positives(),
        key_reset_lock_blocks=positives(),
    )


def genesis_accounts() -> st.SearchStrategy[GenesisAccount]:
    return st.builds(
        GenesisAccount,
        id=account_ids(),
        sponsor=names(),
        public_key=hex_keys(),
        currency=st.text(alphabet=string.ascii_uppercase, min_size=3, max_size=3),
        balance=st.integers(min_value=0, max_value=2**62),
    )


def geneses() -> st.SearchStrategy[Genesis]:
    """A Genesis document that satisfies every declared field constraint.

    Cross-field consistency (members named by validators exist, and so on) is not the type's
    job and is not guaranteed here.
    """
    return st.builds(
        Genesis,
        chain_id=chain_ids(),
        suite=st.sampled_from(("intl", "gm")),
        protocol_version=protocol_versions(),
        genesis_time_ms=u64s(),
        ca_certificate_fingerprint=hex_hashes(),
        validators=st.lists(genesis_validators(), min_size=1, max_size=3),
        consensus=consensus_params(),
        mempool=mempool_params(),
        members=st.lists(members(), min_size=1, max_size=3),
        governance=governances(),
        accounts=st.lists(genesis_accounts(), max_size=2),
    )
