"""The replica's invariants, checked after every event: a broken one halts the replica.

Owns `InvariantBrokenError` and the one list of what must hold once an event is handled: the
round state's invariants, stated on `Replica`'s fields ((epoch, round) never decreases, the
round is at least 1 once started, the proposed round and the round a payload was asked for
are at most the current round, the last TC is of the previous round, the high QC and the
commit QC are of this epoch, `Persist` sequence numbers only rise), then every seam's own
invariants (its `check()`; the pacemaker's compare with what it held before the event,
`Before`). `Replica.handle` runs `check_invariants` after every event and turns the error
into `Halt`. Also the check, at import, that the replica's transition tables name a handler
that exists for every input.

Never changes anything: it only reads the replica. Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from consortia.consensus.replica import Replica


class InvariantBrokenError(Exception):
    """A replica invariant does not hold: the replica halts (see `Replica.handle`)."""


def require(condition: bool, message: str) -> None:
    if not condition:
        raise InvariantBrokenError(message)


class Before(NamedTuple):
    """What the replica held before an event: what the invariants that compare start from."""

    epoch: int
    round: int
    sequence: int  # the latest `Persist` sequence number
    timed_out_round: int  # the pacemaker's
    consecutive_timeouts: int  # the pacemaker's


def before_event(replica: Replica) -> Before:
    pacemaker = replica.pacemaker
    return Before(
        replica.epoch,
        replica.round,
        replica.durable.sequence,
        pacemaker.timed_out_round,
        pacemaker.consecutive_timeouts,
    )


def check_invariants(replica: Replica, before: Before) -> None:
    """Raise `InvariantBrokenError` at the first broken invariant; `before` is what the
    replica held before the event (`before_event`)."""
    current = replica.round
    require((replica.epoch, current) >= (before.epoch, before.round), "the round went backwards")
    require(replica.durable.sequence >= before.sequence, "persist sequence went backwards")
    require(
        current >= 1 or not replica.started or replica.node_id not in replica.validators,
        "round 0 after the start",
    )
    require(replica.proposed_round <= current, "proposed above the current round")
    require(replica.payload_requested_round <= current, "payload asked above the round")
    last_tc = replica.last_tc
    require(
        last_tc is None or (last_tc.epoch == replica.epoch and last_tc.round + 1 == current),
        "the last TC is not of the previous round",
    )
    require(replica.tree.high_qc.epoch >= replica.epoch, "high QC of an older epoch")
    require(
        replica.high_commit_qc is None or replica.high_commit_qc.epoch == replica.epoch,
        "commit QC of another epoch",
    )
    # A new epoch starts the pacemaker's counts again from 0.
    same_epoch = replica.epoch == before.epoch
    timed_out = before.timed_out_round if same_epoch else 0
    consecutive = before.consecutive_timeouts if same_epoch else 0
    for broken in (
        replica.pacemaker.check(current, timed_out, consecutive),
        replica.votes.check(current, replica.params.rounds_ahead_max),
        replica.durable.check(),
        replica.sync.check(),
        replica.epochs.check(),
        replica.proposals.check(),
        replica.chain.check(),
    ):
        require(broken is None, str(broken))


def check_transition_tables(owner: type, *tables: Mapping[Any, str]) -> None:
    """Every input type has a handler, and every handler exists (checked at import)."""
    for table in tables:
        for kind, name in table.items():
            assert callable(getattr(owner, name, None)), f"{kind.__name__} -> {name} missing"
