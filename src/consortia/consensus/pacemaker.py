"""The pacemaker: how long a round's timer runs, and the back-off that stretches it.

Owns the count of consecutive rounds ended by timeouts, the highest round this replica has
timed out in, and the one timeout-delay formula. It never moves the round itself: the replica
(`replica.py`) is the single owner of round state, and a round starts in exactly these ways,
each in one function there:

1. `Start` (`Replica._start`): round max(high QC round + 1, 1); after a restart that timed out
   in a round entered through a TC, that TC's round + 1, with the TC remembered.
2. A QC of round r, wherever it came from (a proposal's justify, a quorum of votes, a
   timeout's high QC or commit QC): round r + 1, the last TC forgotten, back-off reset
   (`Replica._advance_by_qc`).
3. A fetched chain whose certificates are ahead of this replica's round: its high QC's round
   + 1, as 2 (`Replica._connect`, through `_advance_by_qc`).
4. A TC of round r (a quorum of timeouts, or one carried in a proposal or a timeout):
   round r + 1, the TC remembered, back-off kept (`Replica._process_tc`).
5. A new epoch: round 1 of the new epoch, back-off reset (`Replica._enter_epoch`).

Every round entered sets a timer of `timeout_delay_ms`; every local timeout (the timer firing,
or f + 1 peers timing out first) re-arms it with the same formula. Pure: no clock, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from consortia.consensus.config import Params
from consortia.consensus.events import Counters, SetTimer
from consortia.consensus.safety import Refusal, SafetyRules
from consortia.types.consensus import QuorumCertificate, SafetyState, Timeout, TimeoutCertificate

# Timeout back-off stops growing after this many consecutive failed rounds.
BACKOFF_EXPONENT_MAX = 16


def timeout_delay_ms(params: Params, consecutive_timeouts: int) -> int:
    """round_timeout_ms * (backoff_percent / 100) ^ k, capped at round_timeout_ms_max.

    k is the number of consecutive rounds ended by timeouts, itself capped at
    BACKOFF_EXPONENT_MAX; integer arithmetic, rounding down at each step.
    """
    delay = params.round_timeout_ms
    for _ in range(min(consecutive_timeouts, BACKOFF_EXPONENT_MAX)):
        delay = min(delay * params.timeout_backoff_percent // 100, params.round_timeout_ms_max)
    return delay


@dataclass(slots=True)
class Pacemaker:
    params: Params
    node_id: bytes
    counters: Counters
    # Rounds ended by timeouts since the last round entered through a QC. Invariant: >= 0;
    # rises by at most one per round (only when `timed_out_round` rises).
    consecutive_timeouts: int = 0
    # The highest round of this epoch this replica signed a timeout in. Invariant: never above
    # the replica's current round; never decreases within an epoch.
    timed_out_round: int = 0

    def timer(self, epoch: int, round_: int) -> SetTimer:
        """The timer for a round just entered, or re-armed after a local timeout."""
        return SetTimer(epoch, round_, timeout_delay_ms(self.params, self.consecutive_timeouts))

    def sign_timeout(
        self,
        safety: SafetyRules,
        round_: int,
        high_qc: QuorumCertificate,
        last_tc: TimeoutCertificate | None,
        high_commit_qc: QuorumCertificate | None,
    ) -> tuple[Timeout, SafetyState] | None:
        """This replica gives up on `round_`: the signed timeout to broadcast and the safety
        state to persist first, or None (counted by rule) when the safety rules refuse."""
        made = safety.make_timeout(round_, high_qc, last_tc)
        if isinstance(made, Refusal):
            self.counters.drop("unsafe_to_timeout")
            self.counters.refuse(made.rule)
            return None
        data, signature, state = made
        timeout = Timeout(
            data=data,
            author=self.node_id,
            signature=signature,
            high_qc=high_qc,
            last_timeout_certificate=last_tc,
            high_commit_qc=high_commit_qc,
        )
        self.timed_out(round_)
        return timeout, state

    def reset_backoff(self) -> None:
        """A QC made progress: the next timers start from round_timeout_ms again."""
        self.consecutive_timeouts = 0

    def timed_out(self, round_: int) -> None:
        """This replica signed a timeout for `round_`: back off, once per round."""
        if self.timed_out_round < round_:
            self.timed_out_round = round_
            self.consecutive_timeouts += 1

    def has_timed_out(self, round_: int) -> bool:
        return self.timed_out_round >= round_

    def new_epoch(self) -> None:
        self.consecutive_timeouts = 0
        self.timed_out_round = 0

    def check(self, current_round: int) -> str | None:
        """The first broken invariant, or None."""
        if self.consecutive_timeouts < 0:
            return f"consecutive_timeouts {self.consecutive_timeouts} below 0"
        if self.timed_out_round > current_round:
            return f"timed out in round {self.timed_out_round} above round {current_round}"
        return None
