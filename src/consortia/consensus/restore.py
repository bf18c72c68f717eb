"""A replica's parts, built from where it left off (`ReplicaSetup`) and anew at each epoch.

Owns how a start or a restart resumes: the safety state kept on disk (or a fresh one for a
new epoch), the block tree from the committed root with the blocks this replica voted for
above it and the highest QC it knew, leader election restored from its kept state or
replayed from the epoch's committed blocks, and the round to start in after timing out in a
round entered through a TC. Also the validator set and leader election of an epoch, built
the same way at the start and at every epoch change.

Never moves the round, signs, commits or emits an action: `replica.py` owns round state and
decides what to do with what is built here. Pure: no clock, no I/O.
"""

from __future__ import annotations

from consortia.consensus.block_tree import BlockTree
from consortia.consensus.config import Params, ReplicaSetup, root_qc_for
from consortia.consensus.leader import LeaderElection
from consortia.consensus.safety import SafetyRules
from consortia.consensus.validators import ValidatorSet
from consortia.types.consensus import (
    Block,
    EpochConfig,
    QuorumCertificate,
    SafetyState,
    TimeoutCertificate,
)
from consortia.types.signing import SigningDomain, block_id


def validator_set(setup: ReplicaSetup, config: EpochConfig, domain: SigningDomain) -> ValidatorSet:
    """The validators of the epoch `config` describes (f + 1 quorums when a test weakens it)."""
    quorum_override = None
    if setup.weakening.quorum_is_f_plus_one:
        quorum_override = config.fault_power + 1
    return ValidatorSet(
        config,
        setup.suite,
        setup.chain_id,
        domain=domain,
        quorum_override=quorum_override,
    )


def leader_election(validators: ValidatorSet, params: Params) -> LeaderElection:
    """A new epoch's leader election, with nothing committed in it yet."""
    return LeaderElection(validators, params.reputation_window, reputation=params.leader_reputation)


def next_epoch(
    setup: ReplicaSetup, ending: Block, domain: SigningDomain
) -> tuple[ValidatorSet, LeaderElection, QuorumCertificate]:
    """The epoch the committed block `ending` hands over to: its validators, its leader
    election (nothing committed in it yet) and the unsigned QC of its root, `ending`."""
    config = ending.header.next_epoch
    assert config is not None, "only a block that ends an epoch hands over"
    validators = validator_set(setup, config, domain)
    root_qc = root_qc_for(setup.suite, ending, config.epoch)
    return validators, leader_election(validators, setup.params), root_qc


def kept_leaders(setup: ReplicaSetup, validators: ValidatorSet, epoch: int) -> LeaderElection:
    """Leader election as it was: from the kept state when of this epoch, else replayed from
    the epoch's committed blocks."""
    leaders = leader_election(validators, setup.params)
    if setup.reputation is not None and setup.reputation.epoch == epoch:
        leaders.restore(setup.reputation)
    else:
        leaders.record_blocks(setup.recent_committed)
    return leaders


def safety_rules(setup: ReplicaSetup, epoch: int, domain: SigningDomain) -> SafetyRules:
    """The safety rules over the kept safety state; a fresh one when none was kept or the
    kept one is of an older epoch. One of a newer epoch (the node stopped after making the
    next epoch's state durable, before recording the block that ended this one) is kept: it
    refuses to sign in this epoch, and `Replica._enter_epoch` takes it over as it is."""
    state = setup.safety_state
    if state is None or state.epoch < epoch:
        state = SafetyState(epoch=epoch, highest_vote_round=0, highest_qc=setup.root_qc)
    return SafetyRules(
        setup.suite,
        setup.private_key,
        setup.chain_id,
        state,
        setup.weakening,
        domain=domain,
    )


def block_tree(setup: ReplicaSetup, state: SafetyState, epoch: int) -> BlockTree:
    """The tree from the committed root, with the highest QC the safety state knew and the
    blocks of this epoch this replica voted for above the root (oldest first)."""
    suite = setup.suite
    root_id = block_id(suite, setup.root.header)
    assert setup.root_qc.block_id == root_id, "root QC must certify the root"
    tree = BlockTree(setup.root, root_id, setup.root_qc)
    if state.highest_qc.round > tree.high_qc.round:
        tree.high_qc = state.highest_qc
    for voted in sorted(setup.voted_blocks, key=lambda b: b.header.height):
        if voted.header.epoch == epoch:
            tree.insert(block_id(suite, voted.header), voted)
    return tree


def kept_commit_qc(setup: ReplicaSetup, epoch: int) -> QuorumCertificate | None:
    """The QC that made the latest kept commit final, when of this epoch."""
    proof = setup.commit_proof
    return proof if proof is not None and proof.epoch == epoch else None


def start_round(
    high_qc: QuorumCertificate, state: SafetyState, epoch: int
) -> tuple[int, TimeoutCertificate | None]:
    """The round `Start` enters, and the TC it was entered through (None: through a QC).

    Round max(high QC round + 1, 1); but a replica restarted after timing out or voting in a
    round entered through a TC resumes there, with that TC (and the QC it carries).
    """
    after_qc = max(high_qc.round + 1, 1)
    tc = state.last_timeout_certificate
    if tc is not None and tc.epoch == epoch and tc.round + 1 > after_qc:
        return tc.round + 1, tc
    return after_qc, None
