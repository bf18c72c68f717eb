"""The safety rules, one rule at a time, and the property they exist for: one vote per round.

`SafetyRules` never verifies certificates (the replica does that first), so these tests use
unsigned QC and TC stubs and look only at which votes and timeouts get signed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consortia.consensus.safety import NO_WEAKENING, Refusal, SafetyRules, Weakening
from consortia.types.consensus import (
    BlockHeader,
    SafetyState,
    TimeoutCertificate,
    TimeoutData,
    TimeoutSignature,
    VoteData,
)
from consortia.types.encoding import decode, encode
from consortia.types.signing import block_id, verify
from tests.consensus_helpers import (
    CHAIN_ID,
    DOMAIN,
    SUITE,
    deterministic_key,
    make_cluster,
    make_header,
    make_replica,
    qc_stub,
)

KEY = deterministic_key("safety")


def fresh_state(epoch: int = 0) -> SafetyState:
    return SafetyState(epoch=epoch, highest_vote_round=0, highest_qc=qc_stub(0, epoch=epoch))


def new_rules(state: SafetyState | None = None, weakening: Weakening = NO_WEAKENING) -> SafetyRules:
    return SafetyRules(
        SUITE, KEY.private_key, CHAIN_ID, state or fresh_state(), weakening, domain=DOMAIN
    )


def header(round_: int, qc_round: int, fork: int = 0, epoch: int = 0) -> BlockHeader:
    """A block of `round_` carrying a QC of `qc_round`; `fork` tells conflicting blocks apart."""
    return make_header(
        round_=round_,
        height=qc_round + 1,
        parent_id=bytes([qc_round % 256]) * 31 + bytes([fork]),
        justify=qc_stub(qc_round, block=bytes([qc_round % 256]) * 31 + bytes([fork]), epoch=epoch),
        author=KEY.node_id,
        epoch=epoch,
        timestamp_ms=round_ * 1000 + fork,
    )


def tc_stub(round_: int, high_qc_rounds: list[int], epoch: int = 0) -> TimeoutCertificate:
    return TimeoutCertificate(
        epoch=epoch,
        round=round_,
        signatures=[TimeoutSignature(i, hqc, bytes(64)) for i, hqc in enumerate(high_qc_rounds)],
        high_qc=qc_stub(max(high_qc_rounds), epoch=epoch),
    )


def vote(
    rules: SafetyRules,
    round_: int,
    qc_round: int,
    fork: int = 0,
    tc: TimeoutCertificate | None = None,
) -> tuple[VoteData, bytes, SafetyState] | Refusal:
    h = header(round_, qc_round, fork)
    return rules.make_vote(h, block_id(SUITE, h), tc)


# ------------------------------------------------------------------ voting rules


def test_vote_needs_round_above_highest_vote_round() -> None:
    rules = new_rules(SafetyState(epoch=0, highest_vote_round=5, highest_qc=qc_stub(0)))
    assert isinstance(vote(rules, 4, 3), Refusal)
    assert isinstance(vote(rules, 5, 4), Refusal)
    assert rules.state.highest_vote_round == 5
    made = vote(rules, 6, 5)
    assert not isinstance(made, Refusal)
    assert made[0].round == 6


def test_vote_needs_round_above_its_qc_round() -> None:
    rules = new_rules()
    # A block whose round is not above its own QC's round is never voted for, even with a TC.
    assert isinstance(vote(rules, 3, 3), Refusal)
    assert isinstance(vote(rules, 3, 3, tc=tc_stub(2, [3])), Refusal)
    assert isinstance(vote(rules, 3, 4), Refusal)
    assert rules.state == fresh_state()


def test_consecutive_qc_is_accepted_and_a_gap_without_tc_is_not() -> None:
    rules = new_rules()
    assert isinstance(vote(rules, 3, 1), Refusal)  # skips round 2, no TC
    made = vote(rules, 3, 2)
    assert not isinstance(made, Refusal)
    data, signature, _state = made
    assert data == VoteData(CHAIN_ID, 0, 3, data.block_id, 3)
    assert verify(SUITE, KEY.public_key, data, signature, DOMAIN)


def test_tc_justified_vote_needs_tc_of_previous_round() -> None:
    # Round 5 extends a QC of round 2; the TC must be of round 4 exactly.
    assert isinstance(vote(new_rules(), 5, 2, tc=tc_stub(3, [2, 1, 0])), Refusal)
    assert isinstance(vote(new_rules(), 5, 2, tc=tc_stub(5, [2, 1, 0])), Refusal)
    assert not isinstance(vote(new_rules(), 5, 2, tc=tc_stub(4, [2, 1, 0])), Refusal)


def test_tc_justified_vote_needs_qc_at_least_tc_highest_qc() -> None:
    tc = tc_stub(4, [1, 3, 2])  # highest_qc_round 3
    assert tc.highest_qc_round == 3
    assert isinstance(vote(new_rules(), 5, 2, tc=tc), Refusal)
    assert isinstance(vote(new_rules(), 5, 1, tc=tc), Refusal)
    assert not isinstance(vote(new_rules(), 5, 3, tc=tc), Refusal)


def test_vote_in_another_epoch_is_refused() -> None:
    rules = new_rules(fresh_state(epoch=2))
    h = header(1, 0, epoch=1)
    assert isinstance(rules.make_vote(h, block_id(SUITE, h), None), Refusal)
    h = header(1, 0, epoch=2)
    assert not isinstance(rules.make_vote(h, block_id(SUITE, h), None), Refusal)


def test_never_two_different_votes_in_one_round() -> None:
    rules = new_rules()
    assert not isinstance(vote(rules, 1, 0, fork=0), Refusal)
    assert isinstance(vote(rules, 1, 0, fork=1), Refusal)
    # Not even with a TC that would otherwise justify the conflicting block.
    assert isinstance(vote(rules, 1, 0, fork=2, tc=tc_stub(0, [0])), Refusal)


def test_same_vote_again_returns_identical_signature_and_unchanged_state() -> None:
    rules = new_rules()
    first = vote(rules, 1, 0)
    assert not isinstance(first, Refusal)
    again = vote(rules, 1, 0)
    assert not isinstance(again, Refusal)
    assert again[0] == first[0]
    assert again[1] == first[1]
    assert again[2] == first[2]  # nothing new to make durable


def test_same_vote_after_restart_is_the_stored_one() -> None:
    rules = new_rules()
    first = vote(rules, 2, 1)
    assert not isinstance(first, Refusal)
    # A restarted replica with the same persisted state but, say, a re-derived key object:
    # the stored signature is returned, not a fresh one.
    persisted = decode(encode(first[2]), SafetyState)
    restarted = SafetyRules(
        SUITE, deterministic_key("other").private_key, CHAIN_ID, persisted, domain=DOMAIN
    )
    again = vote(restarted, 2, 1)
    assert not isinstance(again, Refusal)
    assert again[1] == first[1]
    assert again[0] == first[0]


def test_no_vote_after_timeout_in_the_same_round() -> None:
    rules = new_rules()
    made = rules.make_timeout(1, qc_stub(0), None)
    assert not isinstance(made, Refusal)
    assert rules.state.highest_vote_round == 1
    assert isinstance(vote(rules, 1, 0), Refusal)
    assert not isinstance(vote(rules, 2, 1), Refusal)


def test_state_returned_with_vote_reflects_the_update() -> None:
    rules = new_rules()
    h = header(4, 3)
    made = rules.make_vote(h, block_id(SUITE, h), None)
    assert not isinstance(made, Refusal)
    data, signature, state = made
    assert state is rules.state
    assert state.highest_vote_round == 4
    assert state.highest_qc == h.justify
    assert state.last_vote == data
    assert state.last_vote_signature == signature
    assert state.epoch == 0


def test_vote_never_lowers_highest_qc() -> None:
    rules = new_rules(SafetyState(epoch=0, highest_vote_round=5, highest_qc=qc_stub(5)))
    made = vote(rules, 8, 2, tc=tc_stub(7, [2]))
    assert not isinstance(made, Refusal)
    assert made[2].highest_qc.round == 5
    assert made[2].highest_vote_round == 8


# ------------------------------------------------------------------ timeout rules


def test_timeout_refused_below_the_lock() -> None:
    rules = new_rules()
    assert not isinstance(vote(rules, 3, 2), Refusal)  # locks on the QC of round 2
    assert rules.highest_qc_round == 2
    # Round 4 follows the TC of round 3, so only the lock decides.
    tc = tc_stub(3, [1])
    assert isinstance(rules.make_timeout(4, qc_stub(1), tc), Refusal)
    made = rules.make_timeout(4, qc_stub(2), tc)
    assert not isinstance(made, Refusal)
    assert made[0] == TimeoutData(CHAIN_ID, 0, 4, 2)


def test_timeout_round_must_follow_qc_or_tc() -> None:
    assert isinstance(new_rules().make_timeout(3, qc_stub(0), None), Refusal)
    assert isinstance(new_rules().make_timeout(3, qc_stub(0), tc_stub(1, [0])), Refusal)
    assert not isinstance(new_rules().make_timeout(3, qc_stub(2), None), Refusal)
    assert not isinstance(new_rules().make_timeout(3, qc_stub(0), tc_stub(2, [0])), Refusal)


def test_timeout_allowed_in_voted_round_but_not_below() -> None:
    rules = new_rules()
    assert not isinstance(vote(rules, 3, 2), Refusal)
    assert isinstance(rules.make_timeout(2, qc_stub(2), None), Refusal)
    made = rules.make_timeout(3, qc_stub(2), None)
    assert not isinstance(made, Refusal)
    data, signature, state = made
    assert verify(SUITE, KEY.public_key, data, signature, DOMAIN)
    assert state.highest_vote_round == 3
    assert state.last_vote is not None  # the vote is kept for retransmission


def test_timeout_in_another_epoch_is_refused() -> None:
    rules = new_rules(fresh_state(epoch=1))
    assert isinstance(rules.make_timeout(1, qc_stub(0, epoch=0), None), Refusal)
    assert not isinstance(rules.make_timeout(1, qc_stub(0, epoch=1), None), Refusal)


def test_state_returned_with_timeout_reflects_the_update() -> None:
    rules = new_rules()
    made = rules.make_timeout(1, qc_stub(0), None)
    assert not isinstance(made, Refusal)
    _data, _signature, state = made
    assert state is rules.state
    assert state.highest_vote_round == 1
    again = rules.make_timeout(1, qc_stub(0), None)
    assert not isinstance(again, Refusal)
    assert again[2].highest_vote_round == 1


# ------------------------------------------------------------------ restarts


def test_rebuilt_from_persisted_state_refuses_a_conflicting_vote() -> None:
    rules = new_rules()
    made = vote(rules, 5, 4, fork=0)
    assert not isinstance(made, Refusal)
    persisted = decode(encode(made[2]), SafetyState)
    restarted = new_rules(persisted)
    assert isinstance(vote(restarted, 5, 4, fork=1), Refusal)
    assert isinstance(vote(restarted, 5, 3, fork=1, tc=tc_stub(4, [3])), Refusal)
    assert isinstance(vote(restarted, 4, 3), Refusal)
    again = vote(restarted, 5, 4, fork=0)
    assert not isinstance(again, Refusal)
    assert again[1] == made[1]
    assert not isinstance(vote(restarted, 6, 5), Refusal)


def test_rebuilt_after_timeout_refuses_a_vote_in_that_round() -> None:
    rules = new_rules()
    made = rules.make_timeout(1, qc_stub(0), None)
    assert not isinstance(made, Refusal)
    restarted = new_rules(decode(encode(made[2]), SafetyState))
    assert isinstance(vote(restarted, 1, 0), Refusal)


def test_enter_epoch_resets_rounds() -> None:
    rules = new_rules()
    assert not isinstance(vote(rules, 7, 6), Refusal)
    state = rules.enter_epoch(1, qc_stub(0, epoch=1))
    assert state == SafetyState(epoch=1, highest_vote_round=0, highest_qc=qc_stub(0, epoch=1))
    h = header(1, 0, epoch=1)
    assert not isinstance(rules.make_vote(h, block_id(SUITE, h), None), Refusal)
    with pytest.raises(AssertionError):
        rules.enter_epoch(1, qc_stub(0, epoch=1))


# ------------------------------------------------------------------ property: one vote per round

ROUND_MAX = 8


def _tcs() -> st.SearchStrategy[TimeoutCertificate | None]:
    tc = st.builds(
        tc_stub,
        st.integers(0, ROUND_MAX),
        st.lists(st.integers(0, ROUND_MAX), min_size=1, max_size=3),
    )
    return st.none() | tc


_steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("vote"),
            st.integers(1, ROUND_MAX),
            st.integers(0, ROUND_MAX),
            st.integers(0, 2),
            _tcs(),
        ),
        st.tuples(st.just("timeout"), st.integers(1, ROUND_MAX), st.integers(0, ROUND_MAX), _tcs()),
        st.tuples(st.just("restart")),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=_steps)
def test_at_most_one_block_signed_per_round(steps: list[tuple[Any, ...]]) -> None:
    rules = new_rules()
    durable = rules.state
    voted: dict[int, set[bytes]] = {}
    signatures: dict[tuple[int, bytes], bytes] = {}
    timed_out: set[int] = set()
    highest_vote_round = 0
    for step in steps:
        if step[0] == "restart":
            rules = new_rules(decode(encode(durable), SafetyState))
            continue
        if step[0] == "vote":
            _, round_, qc_round, fork, tc = step
            h = header(round_, qc_round, fork)
            made = rules.make_vote(h, block_id(SUITE, h), tc)
            if isinstance(made, Refusal):
                continue
            data, signature, state = made
            assert verify(SUITE, KEY.public_key, data, signature, DOMAIN)
            key = (data.round, data.block_id)
            if key in signatures:
                assert signatures[key] == signature  # a retransmission, never a new signature
            else:
                assert round_ not in timed_out, "voted in a round after timing out in it"
                assert round_ > highest_vote_round
            signatures[key] = signature
            voted.setdefault(data.round, set()).add(data.block_id)
            assert len(voted[data.round]) == 1, f"two blocks signed in round {data.round}"
        else:
            _, round_, qc_round, tc = step
            made_timeout = rules.make_timeout(round_, qc_stub(qc_round), tc)
            if isinstance(made_timeout, Refusal):
                continue
            _data, _sig, state = made_timeout
            timed_out.add(round_)
        assert state is rules.state
        assert state.highest_vote_round >= highest_vote_round
        assert state.highest_vote_round >= round_
        highest_vote_round = state.highest_vote_round
        durable = state


@settings(max_examples=200, deadline=None)
@given(steps=_steps)
def test_skip_vote_round_check_can_break_one_vote_per_round(steps: list[tuple[Any, ...]]) -> None:
    """The weakened rules are not vacuous: a fixed conflicting pair always gets through."""
    rules = new_rules(weakening=Weakening(skip_vote_round_check=True))
    for step in steps:
        if step[0] == "vote":
            _, round_, qc_round, fork, tc = step
            h = header(round_, qc_round, fork)
            rules.make_vote(h, block_id(SUITE, h), tc)
    assert not isinstance(vote(rules, 1, 0, fork=0), Refusal)
    assert not isinstance(vote(rules, 1, 0, fork=1), Refusal)


# ------------------------------------------------------------------ weakening knobs


def _second_vote_same_round(rules: SafetyRules) -> bool:
    assert not isinstance(vote(rules, 1, 0, fork=0), Refusal)
    return not isinstance(vote(rules, 1, 0, fork=1), Refusal)


def _vote_below_voted_round(rules: SafetyRules) -> bool:
    assert not isinstance(vote(rules, 2, 1), Refusal)
    return not isinstance(vote(rules, 1, 0), Refusal)


def _vote_after_timeout_same_round(rules: SafetyRules) -> bool:
    assert not isinstance(rules.make_timeout(1, qc_stub(0), None), Refusal)
    return not isinstance(vote(rules, 1, 0), Refusal)


def _gap_without_tc(rules: SafetyRules) -> bool:
    return not isinstance(vote(rules, 3, 1), Refusal)


def _tc_qc_below_tc_high_qc(rules: SafetyRules) -> bool:
    return not isinstance(vote(rules, 4, 1, tc=tc_stub(3, [2])), Refusal)


def _tc_of_wrong_round(rules: SafetyRules) -> bool:
    return not isinstance(vote(rules, 4, 1, tc=tc_stub(2, [0])), Refusal)


def _timeout_below_lock(rules: SafetyRules) -> bool:
    assert not isinstance(vote(rules, 3, 2), Refusal)
    return not isinstance(rules.make_timeout(4, qc_stub(1), tc_stub(3, [1])), Refusal)


def _timeout_wrong_round(rules: SafetyRules) -> bool:
    return not isinstance(rules.make_timeout(3, qc_stub(0), None), Refusal)


def _timeout_below_voted_round(rules: SafetyRules) -> bool:
    assert not isinstance(vote(rules, 3, 2), Refusal)
    return not isinstance(rules.make_timeout(2, qc_stub(2), tc_stub(1, [0])), Refusal)


def _consecutive_vote(rules: SafetyRules) -> bool:
    return not isinstance(vote(rules, 1, 0), Refusal)


def _tc_justified_vote(rules: SafetyRules) -> bool:
    return not isinstance(vote(rules, 4, 2, tc=tc_stub(3, [2, 0])), Refusal)


def _plain_timeout(rules: SafetyRules) -> bool:
    return not isinstance(rules.make_timeout(1, qc_stub(0), None), Refusal)


VOTE_ROUND = "skip_vote_round_check"
LOCK = "skip_lock_check"
QUORUM = "quorum_is_f_plus_one"

# Each probe, and the knobs under which it signs (none: the rules refuse it).
PROBES: dict[str, tuple[Callable[[SafetyRules], bool], frozenset[str] | None]] = {
    "second_vote_same_round": (_second_vote_same_round, frozenset({VOTE_ROUND})),
    "vote_below_voted_round": (_vote_below_voted_round, frozenset({VOTE_ROUND})),
    "vote_after_timeout_same_round": (_vote_after_timeout_same_round, frozenset({VOTE_ROUND})),
    "gap_without_tc": (_gap_without_tc, frozenset({LOCK})),
    "tc_qc_below_tc_high_qc": (_tc_qc_below_tc_high_qc, frozenset({LOCK})),
    "tc_of_wrong_round": (_tc_of_wrong_round, frozenset({LOCK})),
    "timeout_below_lock": (_timeout_below_lock, frozenset({LOCK})),
    "timeout_wrong_round": (_timeout_wrong_round, frozenset()),
    "timeout_below_voted_round": (_timeout_below_voted_round, frozenset()),
    # Always signed: no knob may break the happy path.
    "consecutive_vote": (_consecutive_vote, None),
    "tc_justified_vote": (_tc_justified_vote, None),
    "plain_timeout": (_plain_timeout, None),
}

KNOBS = {
    "none": NO_WEAKENING,
    VOTE_ROUND: Weakening(skip_vote_round_check=True),
    LOCK: Weakening(skip_lock_check=True),
    QUORUM: Weakening(quorum_is_f_plus_one=True),
}


@pytest.mark.parametrize("knob", list(KNOBS))
@pytest.mark.parametrize("probe", list(PROBES))
def test_weakening_changes_exactly_the_rule_it_names(knob: str, probe: str) -> None:
    check, signed_under = PROBES[probe]
    expected = True if signed_under is None else knob in signed_under
    assert check(new_rules(weakening=KNOBS[knob])) is expected


def test_weakening_any_and_quorum_knob() -> None:
    assert not NO_WEAKENING.any
    for knob in (VOTE_ROUND, LOCK, QUORUM):
        assert KNOBS[knob].any
    cluster = make_cluster(4)
    normal = make_replica(cluster, cluster.keys[0])
    weak = make_replica(cluster, cluster.keys[0], weakening=KNOBS[QUORUM])
    assert normal.validators.quorum_power == 3
    assert weak.validators.quorum_power == 2  # f + 1
    assert weak.validators.validity_power == normal.validators.validity_power


# ------------------------------------------------------------------ typed refusals


def _rule(result: object) -> str:
    assert isinstance(result, Refusal), f"expected a refusal, got {result!r}"
    return result.rule


def test_each_refusal_names_the_rule_that_refused_and_its_rounds() -> None:
    """Setup: fresh rules, and rules that voted in round 3 on a QC of round 2.
    Test: every way a vote or timeout is refused names its rule and the rounds compared."""
    assert _rule(vote(new_rules(), 3, 1)) == "not_consecutive_without_tc"
    assert _rule(vote(new_rules(), 5, 2, tc=tc_stub(3, [2]))) == "tc_not_previous_round"
    assert _rule(vote(new_rules(), 5, 2, tc=tc_stub(4, [3]))) == "qc_below_tc_high_qc"
    h = header(1, 0, epoch=1)
    assert _rule(new_rules().make_vote(h, block_id(SUITE, h), None)) == "vote_other_epoch"
    assert _rule(new_rules().make_timeout(1, qc_stub(0, epoch=1), None)) == "timeout_other_epoch"
    assert _rule(new_rules().make_timeout(3, qc_stub(0), None)) == "timeout_round_not_following"
    rules = new_rules()
    assert not isinstance(vote(rules, 3, 2), Refusal)
    assert _rule(vote(rules, 3, 2, fork=1)) == "already_voted_in_round"
    assert _rule(vote(rules, 2, 1)) == "vote_round_not_above"
    assert _rule(rules.make_timeout(4, qc_stub(1), tc_stub(3, [1]))) == "timeout_qc_below_lock"
    assert _rule(rules.make_timeout(2, qc_stub(2), None)) == "timeout_round_not_above"
    refusal = vote(rules, 2, 1)
    assert isinstance(refusal, Refusal)
    assert (refusal.round, refusal.qc_round, refusal.highest_vote_round) == (2, 1, 3)
    assert (refusal.highest_qc_round, refusal.tc_round) == (2, None)
    assert str(refusal) == "vote_round_not_above: round 2, qc 1, voted 3, lock 2"


# ------------------------------------------------------------------ review regressions


def test_the_tc_that_justified_a_vote_is_persisted_with_it() -> None:
    """Regression (review, seed 166): a replica that voted in a round entered by TC, then
    restarted, resumed a round behind and its timeout rule refused to sign there. Setup:
    fresh rules. Test: the state returned with a TC-justified vote keeps that TC, so the
    restarted rules can time out in the voted round."""
    rules = new_rules()
    tc = tc_stub(4, [2, 1, 0])
    made = vote(rules, 5, 2, tc=tc)
    assert not isinstance(made, Refusal)
    assert made[2].last_timeout_certificate == tc
    restarted = SafetyRules(
        SUITE, KEY.private_key, CHAIN_ID, decode(encode(made[2]), SafetyState), domain=DOMAIN
    )
    assert not isinstance(restarted.make_timeout(5, qc_stub(2), tc), Refusal)


def test_a_leader_signs_one_proposal_a_round_even_after_a_restart() -> None:
    """Regression (review): an honest leader signed two different proposals for one round
    after a restart. Test: the second signature is refused, before and after a restart."""
    rules = new_rules()
    first = header(3, 2, fork=0)
    made = rules.make_proposal(first, block_id(SUITE, first))
    assert not isinstance(made, Refusal)
    assert made[1].highest_proposal_round == 3
    other = header(3, 2, fork=1)
    assert _rule(rules.make_proposal(other, block_id(SUITE, other))) == "already_proposed_in_round"
    restarted = SafetyRules(
        SUITE, KEY.private_key, CHAIN_ID, decode(encode(made[1]), SafetyState), domain=DOMAIN
    )
    assert _rule(restarted.make_proposal(other, block_id(SUITE, other))) == (
        "already_proposed_in_round"
    )
    later = header(4, 3)
    assert not isinstance(restarted.make_proposal(later, block_id(SUITE, later)), Refusal)
