"""The execution layer's say on proposals: epoch changes only as committed governance says.

The consensus core asks its node, through `ProposalChecker`, whether a proposed block may end
the epoch with a given validator set; a node (and each simulated slot) answers from its own
engine's committed governance state, so a Byzantine leader can never invent a validator set.
Leaders ask the same object what the next epoch is when one is due. A node also refuses a
block carrying any item that does not decode as the signed transaction envelope, or the same
transaction twice (one id, even re-signed): blocks carry transactions and nothing else (a bad
signature or nonce is the engine's business: it gets a failed receipt, since whether it is
valid can depend on the transactions before it).

Owns nothing; reads governance's state only through its accessors. Must never write state.
"""

from __future__ import annotations

from consortia.errors import DecodeError
from consortia.execution.contracts import governance_state
from consortia.execution.engine import Engine, KnownTransactions
from consortia.types.consensus import BlockHeader, EpochConfig
from consortia.types.encoding import decode
from consortia.types.signing import transaction_id
from consortia.types.transaction import Transaction


class EngineMembership:
    """A replica's `ProposalChecker`, backed by its node's engine."""

    def __init__(self, engine: Engine, *, envelopes_only: bool = True) -> None:
        self.engine = engine
        # False only in the simulator, whose filler payload items stand for transactions.
        self.envelopes_only = envelopes_only
        # Transactions the node already decoded (its mempool's `known`), set by the node.
        self.known: KnownTransactions | None = None

    def check_payload(self, header: BlockHeader, payload: list[bytes]) -> bool:
        if not self.envelopes_only:
            return True
        seen: set[bytes] = set()
        known = self.known
        for item in payload:
            found = known(item) if known is not None else None
            if found is not None:
                tx_id = found[0]
            else:
                try:
                    tx = decode(item, Transaction)
                except DecodeError:
                    return False
                tx_id = transaction_id(self.engine.suite, tx.body)
            if tx_id in seen:
                return False
            seen.add(tx_id)
        return True

    def check_epoch_change(self, header: BlockHeader, config: EpochConfig) -> bool:
        return config == governance_state.pending_epoch_config(self.engine.query, header.epoch)

    def next_epoch(self, epoch: int) -> EpochConfig | None:
        return governance_state.pending_epoch_config(self.engine.query, epoch)
