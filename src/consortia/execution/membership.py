"""The execution layer's say on proposals: epoch changes only as committed governance says.

The consensus core asks its node, through `ProposalChecker`, whether a proposed block may end
the epoch with a given validator set; a node (and each simulated slot) answers from its own
engine's committed governance state, so a Byzantine leader can never invent a validator set.
Leaders ask the same object what the next epoch is when one is due.

Owns nothing; reads governance's state only through its accessors. Must never write state.
"""

from __future__ import annotations

from consortia.execution.contracts import governance_state
from consortia.execution.engine import Engine
from consortia.types.consensus import BlockHeader, EpochConfig


class EngineMembership:
    """A replica's `ProposalChecker`, backed by its node's engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def check_payload(self, header: BlockHeader, payload: list[bytes]) -> bool:
        return True

    def check_epoch_change(self, header: BlockHeader, config: EpochConfig) -> bool:
        return config == governance_state.pending_epoch_config(self.engine.query, header.epoch)

    def next_epoch(self, epoch: int) -> EpochConfig | None:
        return governance_state.pending_epoch_config(self.engine.query, epoch)
