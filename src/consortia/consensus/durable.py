"""Signed messages held back until the safety state that allows them is durable.

Every vote and timeout the safety rules sign changes the safety state; the driver must make
that state durable (`Persist`) and say so (`PersistDone`) before the signed message may leave,
or a crash could let the replica sign a conflicting message after restarting. This module
owns the `Persist` sequence numbers and the messages held behind them, and releases them in
order; a `PersistDone` for a sequence never issued breaks an invariant (the replica halts).
It never decides what to sign (`safety.py`) nor where a message goes (`replica.py`).
Pure: no clock, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from consortia.consensus.events import Action, Persist
from consortia.consensus.invariants import require
from consortia.types.consensus import Block, ConsensusMessage, SafetyState

# Signed messages waiting for their safety state to be durable. A driver that leaves this
# many unacknowledged has stopped persisting: the replica halts rather than buffer more.
HELD_MAX = 1024


@dataclass(slots=True)
class Held:
    """What to release once `Persist(sequence)` is durable."""

    sequence: int
    outgoing: list[Action]  # actions for the driver (sends, broadcasts)
    loopback: list[ConsensusMessage]  # messages this replica hands itself (its own vote)


@dataclass(slots=True)
class DurableGate:
    # The last sequence number issued. Invariant: only rises.
    sequence: int = 0
    # Invariant: sequences strictly rising, none above `sequence`, at most HELD_MAX entries.
    held: list[Held] = field(default_factory=list)

    def persist(
        self,
        state: SafetyState,
        outgoing: list[Action],
        loopback: list[ConsensusMessage],
        block: Block | None = None,
    ) -> Persist:
        """Hold `outgoing` and `loopback` until the returned `Persist` is acknowledged."""
        self.sequence += 1
        self.held.append(Held(self.sequence, outgoing, loopback))
        return Persist(self.sequence, state, block)

    def release(self, sequence: int) -> list[Held]:
        """Everything held behind `Persist`s up to `sequence`, oldest first. A `PersistDone`
        for a `Persist` never issued means the driver lost track: the replica halts."""
        require(sequence <= self.sequence, f"PersistDone({sequence}) for a Persist never issued")
        count = 0
        while count < len(self.held) and self.held[count].sequence <= sequence:
            count += 1
        released, self.held = self.held[:count], self.held[count:]
        return released

    def check(self) -> str | None:
        """The first broken invariant, or None."""
        if len(self.held) > HELD_MAX:
            return f"persistence stalled: {len(self.held)} signed messages wait for PersistDone"
        if self.held and self.held[-1].sequence > self.sequence:
            return "a held message is behind a Persist never issued"
        return None
