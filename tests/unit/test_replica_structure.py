"""The replica's structure: transition tables, parameters, the pacemaker's one formula, the
closed set of drop reasons, and invariants that halt the replica when they break.
"""

from __future__ import annotations

import dataclasses
from typing import get_args

import pytest

from consortia.consensus import replica as replica_module
from consortia.consensus.config import Params
from consortia.consensus.durable import HELD_MAX
from consortia.consensus.events import (
    DROP_REASONS,
    Event,
    Halt,
    Persist,
    PersistDone,
    SetTimer,
    Start,
    TimerFired,
)
from consortia.consensus.pacemaker import BACKOFF_EXPONENT_MAX, Pacemaker, timeout_delay_ms
from consortia.consensus.replica import ON_EVENT, ON_MESSAGE
from consortia.consensus.safety import WEAKENING_NAMES, Weakening
from consortia.errors import ConfigError
from consortia.sim import Scenario, run
from consortia.types.consensus import ConsensusMessage
from consortia.types.genesis import ConsensusParams
from tests.consensus_helpers import make_cluster, make_keys, make_replica, of_type

CLUSTER = make_cluster(4)


def started() -> replica_module.Replica:
    replica = make_replica(CLUSTER, CLUSTER.keys[0])
    replica.handle(Start(now_ms=0))
    return replica


# ------------------------------------------------------------------ transition tables


def test_every_event_and_message_type_has_exactly_one_handler() -> None:
    """Setup: the Event and ConsensusMessage unions. Test: the replica's two transition tables
    name a handler for every member and for nothing else, and every handler exists."""
    assert set(ON_EVENT) == set(get_args(Event))
    assert set(ON_MESSAGE) == set(get_args(ConsensusMessage))
    for name in [*ON_EVENT.values(), *ON_MESSAGE.values()]:
        assert callable(getattr(replica_module.Replica, name))


# ------------------------------------------------------------------ parameters


def test_params_defaults_are_the_genesis_defaults() -> None:
    """The consensus defaults are written once: Params() equals Params.from_genesis of a
    genesis section left at its defaults."""
    assert Params() == Params.from_genesis(ConsensusParams())
    custom = ConsensusParams(round_timeout_ms=250, reputation_window=4)
    params = Params.from_genesis(custom)
    assert (params.round_timeout_ms, params.reputation_window) == (250, 4)


@pytest.mark.parametrize(
    "changes",
    [
        {"round_timeout_ms": 0},
        {"round_timeout_ms": 5000, "round_timeout_ms_max": 4000},
        {"timeout_backoff_percent": 99},
        {"timeout_backoff_percent": 401},
        {"block_bytes_max": -1},
        {"pending_proposals_max": 0},
        {"clock_skew_ms_max": -1},
        {"reputation_window": 1.5},
    ],
)
def test_params_refuse_bad_values_on_construction(changes: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        Params(**changes)  # type: ignore[arg-type]


# ------------------------------------------------------------------ pacemaker


def test_timeout_delay_backs_off_by_the_percentage_and_stops_at_the_cap() -> None:
    params = Params(round_timeout_ms=1000, round_timeout_ms_max=5000, timeout_backoff_percent=150)
    delays = [timeout_delay_ms(params, k) for k in range(8)]
    assert delays == [1000, 1500, 2250, 3375, 5000, 5000, 5000, 5000]
    big = Params(
        round_timeout_ms=1,
        round_timeout_ms_min=1,
        round_timeout_ms_max=10**12,
        timeout_backoff_percent=400,
    )
    assert timeout_delay_ms(big, 1000) == timeout_delay_ms(big, BACKOFF_EXPONENT_MAX) == 4**16


def test_timer_re_armed_after_a_local_timeout_uses_the_backed_off_delay() -> None:
    """Setup: a started replica in round 1. Test: its first timer is round_timeout_ms; after
    it times out in round 1, the re-armed timer for round 1 is backed off once."""
    replica = make_replica(CLUSTER, CLUSTER.keys[0])
    base = replica.params.round_timeout_ms
    first = of_type(replica.handle(Start(now_ms=0)), SetTimer)
    assert [t.delay_ms for t in first] == [base]
    again = of_type(replica.handle(TimerFired(base, 0, 1)), SetTimer)
    assert [(t.round, t.delay_ms) for t in again] == [(1, base * 3 // 2)]


# ------------------------------------------------------------------ drop reasons


def test_simulated_drops_are_all_named_reasons() -> None:
    """Setup: a Byzantine twin under partitions (many kinds of drops). Test: every reason the
    replicas counted belongs to the closed set an operator's dashboard knows."""
    result = run(Scenario(nodes=4, byzantine=1, partitions=True, seed=3, heights=8))
    assert result.dropped
    assert set(result.dropped) <= DROP_REASONS


# ------------------------------------------------------------------ halting


def test_persist_done_for_a_persist_never_issued_halts_the_replica() -> None:
    """A driver that acknowledges a write it was never asked for has lost track of the
    replica's durable state: the replica halts with a reason and then answers nothing."""
    replica = started()
    actions = replica.handle(PersistDone(now_ms=1, sequence=7))
    assert len(actions) == 1 and isinstance(actions[0], Halt)
    assert "never issued" in actions[0].reason
    assert replica.halted == actions[0].reason
    assert replica.handle(TimerFired(5000, 0, 1)) == []


def test_a_second_start_that_would_move_the_round_back_halts() -> None:
    replica = started()
    replica.handle(TimerFired(1000, 0, 1))
    replica.round = 5  # as if certificates had moved it on
    actions = replica.handle(Start(now_ms=2000))
    assert of_type(actions, Halt) == [Halt("the round went backwards")]
    assert replica.handle(Start(now_ms=3000)) == []


def test_a_driver_that_stops_persisting_halts_the_replica_before_its_buffer_grows() -> None:
    """Setup: a replica that times out again and again while the driver never answers its
    Persists. Test: after HELD_MAX unacknowledged signed messages it halts; nothing signed
    ever left before its state was durable."""
    replica = started()
    halted = None
    for attempt in range(HELD_MAX + 2):
        actions = replica.handle(TimerFired(1000 * (attempt + 1), 0, 1))
        assert not [a for a in actions if type(a).__name__ == "Broadcast"]
        if of_type(actions, Halt):
            halted = attempt
            break
        assert len(of_type(actions, Persist)) == 1
    assert halted == HELD_MAX
    assert replica.halted is not None and "persistence stalled" in replica.halted


def test_halt_discards_whatever_the_failing_event_produced() -> None:
    """Setup: a replica whose invariant check is made to fail after a timer event that would
    sign a timeout. Test: only the Halt comes out, never the Persist the event produced."""
    replica = started()
    replica.proposed_round = 99  # breaks "proposed round <= current round"
    actions = replica.handle(TimerFired(1000, 0, 1))
    assert actions == [Halt("proposed above the current round")]


def test_weakening_names_are_the_fields_of_weakening() -> None:
    assert tuple(f.name for f in dataclasses.fields(Weakening)) == WEAKENING_NAMES


def test_votes_kept_outside_the_round_window_halt_the_replica() -> None:
    """Setup: a started replica (round 1) whose vote buffer is made to hold a round beyond
    round + rounds_ahead_max (what `add_vote` refuses and `prune` forgets). Test: the
    invariant check after the next event halts it, naming the vote buffer."""
    replica = started()
    far = 1 + replica.params.rounds_ahead_max + 1
    replica.votes.votes[far] = {0: (bytes(32), 1, bytes(64))}
    actions = replica.handle(TimerFired(10, 0, 7))  # a stale timer: otherwise nothing happens
    assert actions == [Halt(f"votes of round {far} kept outside rounds 0..{far - 1}")]


def test_the_vote_collector_check_names_each_broken_invariant() -> None:
    """Each invariant stated on `VoteCollector`'s fields, broken alone, is reported; the
    window's edges (round - 1 and round + rounds_ahead_max) are inside it."""
    replica = started()
    votes = replica.votes
    ahead = replica.params.rounds_ahead_max
    entry = (bytes(32), 1, bytes(64))
    assert votes.check(5, ahead) is None
    votes.votes[4] = {0: entry}
    votes.votes[5 + ahead] = {3: entry}
    assert votes.check(5, ahead) is None
    assert votes.check(6, ahead) == f"votes of round 4 kept outside rounds 5..{6 + ahead}"
    votes.votes[5] = {4: entry}  # four validators: indexes 0..3
    assert votes.check(5, ahead) == "a vote of round 5 from a validator index out of range"
    votes.votes.clear()
    votes.timeouts[5] = {0: (2, bytes(64)), 1: (3, bytes(64))}
    assert votes.check(5, ahead) == "timeout QCs kept for other rounds than the timeouts"
    votes.timeout_qcs[5] = replica.tree.high_qc  # of round 0, below the timeouts' highest (3)
    assert votes.check(5, ahead) == "the timeout QC of round 5 is not its timeouts' highest"
    votes.timeouts[5] = {0: (0, bytes(64))}
    assert votes.check(5, ahead) is None


def test_round_zero_after_the_start_halts_a_validator_but_not_an_observer() -> None:
    """Setup: a validator's replica marked started while still in round 0 (what a `_start`
    that forgot to enter its round would leave). Test: the next event halts it; an observer
    in round 0 (one waiting for the first certificate of an epoch it entered) does not."""
    replica = make_replica(CLUSTER, CLUSTER.keys[0])
    replica.started = True
    assert replica.handle(TimerFired(10, 0, 7)) == [Halt("round 0 after the start")]
    observer = make_replica(CLUSTER, make_keys(1, "observer")[0])
    observer.started = True
    assert observer.handle(TimerFired(10, 0, 7)) == []
    assert observer.halted is None


class _DoubleBackoff(Pacemaker):
    """A pacemaker that backs off twice for one round timed out."""

    def timed_out(self, round_: int) -> None:
        super().timed_out(round_)
        self.consecutive_timeouts += 1


def test_a_backoff_rising_twice_in_one_round_halts_the_replica() -> None:
    """Setup: a replica whose pacemaker counts two timeouts for one round. Test: its first
    local timeout halts it (`consecutive_timeouts` rises by at most one per round)."""
    replica = started()
    replica.pacemaker = _DoubleBackoff(replica.params, replica.node_id, replica.counters)
    actions = replica.handle(TimerFired(1000, 0, 1))
    assert actions == [
        Halt("consecutive_timeouts rose from 0 to 2 over 1 rounds timed out"),
    ]


def test_the_pacemaker_check_names_each_broken_invariant() -> None:
    pacemaker = started().pacemaker
    pacemaker.timed_out(3)
    pacemaker.timed_out(4)
    assert (pacemaker.timed_out_round, pacemaker.consecutive_timeouts) == (4, 2)
    assert pacemaker.check(4, 0, 0) is None  # two rounds timed out, two more timeouts
    assert (
        pacemaker.check(4, 3, 0) == "consecutive_timeouts rose from 0 to 2 over 1 rounds timed out"
    )
    assert pacemaker.check(4, 5, 0) == "timed_out_round went back from 5 to 4"
    assert pacemaker.check(3, 0, 0) == "timed out in round 4 above round 3"
    pacemaker.reset_backoff()  # a QC: the count falls, which is allowed
    assert pacemaker.check(4, 4, 2) is None
    pacemaker.entered(5, 100)
    assert pacemaker.check(4, 4, 0) == "timing round 5 above round 4"
    pacemaker.round_ms.append(-1)
    assert pacemaker.check(5, 4, 0) == "a negative round length kept"
