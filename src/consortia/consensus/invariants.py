"""The replica's invariants, checked after every event: a broken one halts the replica.

Owns `InvariantBrokenError` and the one list of what must hold once an event is handled: the
round state's invariants, stated on `Replica`'s fields ((epoch, round) never decreases, the
proposed round and the round a payload was asked for are at most the current round, the last
TC is of the previous round, the high QC and the commit QC are of this epoch, `Persist`
sequence numbers only rise), then every seam's own bounds (its `check()`). `Replica.handle`
runs `check_invariants` after every event and turns the error into `Halt`. Also the check,
at import, that the replica's transition tables name a handler that exists for every input.

Never changes anything: it only reads the replica. Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from consortia.consensus.replica import Replica


class InvariantBrokenError(Exception):
    """A replica invariant does not hold: the replica halts (see `Replica.handle`)."""


def require(condition: bool, message: str) -> None:
    if not condition:
        raise InvariantBrokenError(message)


def check_invariants(replica: Replica, before: tuple[int, int, int]) -> None:
    """Raise `InvariantBrokenError` at the first broken invariant; `before` is the replica's
    (epoch, round, persist sequence) before the event."""
    epoch, round_, sequence = before
    current = replica.round
    require((replica.epoch, current) >= (epoch, round_), "the round went backwards")
    require(replica.durable.sequence >= sequence, "persist sequence went backwards")
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
    for broken in (
        replica.pacemaker.check(current),
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
