"""The pacemaker: how long a round's timer runs, and the back-off that stretches it.

Owns the count of consecutive rounds ended by timeouts, the highest round this replica has
timed out in, the one timeout-delay formula, and this replica's local timeout: signing it
(through the safety rules, with the vote it signed in the round), when f + 1 peers' timeouts
make it join them (`joins`), and when a certified round's next leader is already overdue
(`certified`). It never moves the round itself: the replica (`replica.py`) is the single
owner of round state, and a round starts in exactly these ways, each in one function there:

1. `Start` (`Replica._start`, the round from `restore.start_round`): round max(high QC round
   + 1, 1); after a restart that timed out in a round entered through a TC, that TC's round
   + 1, with the TC remembered.
2. A QC of round r, wherever it came from (a proposal's justify, a quorum of votes, a
   timeout's high QC or commit QC): round r + 1, the last TC forgotten, back-off reset
   (`Replica._advance_by_qc`). When that QC of the current round was made from votes that
   replicas broadcast on timing out, the leader of r + 1 has sat on them for a whole timeout:
   its round gets OVERDUE_PERCENT of a timer.
3. A fetched chain whose certificates are ahead of this replica's round: its high QC's round
   + 1, as 2 (`Replica._connect`, through `_advance_by_qc`).
4. A TC of round r (a quorum of timeouts, or one carried in a proposal or a timeout):
   round r + 1, the TC remembered, back-off kept (`Replica._process_tc`).
5. A new epoch: round 1 of the new epoch, back-off reset (`Replica._enter_epoch`).

Every round entered sets a timer of `timeout_delay_ms`; every local timeout (the timer firing,
or f + 1 peers timing out first) re-arms it with the same formula. Its base adapts to the
network: a few times the 90th percentile of recent rounds that ended in a QC, between
round_timeout_ms_min and round_timeout_ms, so a failed leader costs a few round trips rather
than a fixed second. Pure: time comes only from events' `now_ms`; no I/O.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from consortia.consensus.config import Params
from consortia.consensus.events import Counters, SetTimer
from consortia.consensus.safety import Refusal, SafetyRules
from consortia.types.consensus import (
    QuorumCertificate,
    SafetyState,
    Timeout,
    TimeoutCertificate,
    Vote,
)

# Timeout back-off stops growing after this many consecutive failed rounds.
BACKOFF_EXPONENT_MAX = 16
# The share of a timeout given to a round whose leader is already overdue.
OVERDUE_PERCENT = 25
# The timer adapts to the network: ADAPTIVE_FACTOR times the 90th percentile of the last
# ROUND_SAMPLES successful rounds, once ROUND_SAMPLES_MIN are known, between
# round_timeout_ms_min and round_timeout_ms.
ADAPTIVE_FACTOR = 4
ROUND_SAMPLES = 32
ROUND_SAMPLES_MIN = 8


def timeout_delay_ms(params: Params, consecutive_timeouts: int, base_ms: int | None = None) -> int:
    """base * (backoff_percent / 100) ^ k, capped at round_timeout_ms_max.

    The base is `base_ms` (the adaptive timer) or round_timeout_ms; k is the number of
    consecutive rounds ended by timeouts, itself capped at BACKOFF_EXPONENT_MAX; integer
    arithmetic, rounding down at each step.
    """
    delay = params.round_timeout_ms if base_ms is None else base_ms
    for _ in range(min(consecutive_timeouts, BACKOFF_EXPONENT_MAX)):
        delay = min(delay * params.timeout_backoff_percent // 100, params.round_timeout_ms_max)
    return delay


@dataclass(slots=True)
class Pacemaker:
    params: Params  # fixed at construction (the replica's)
    node_id: bytes  # fixed at construction
    counters: Counters  # the replica's own; only rise
    # Rounds ended by timeouts since the last round entered through a QC. Invariant: >= 0;
    # rises by at most one per round (only when `timed_out_round` rises).
    consecutive_timeouts: int = 0
    # The highest round of this epoch this replica signed a timeout in. Invariant: never above
    # the replica's current round; never decreases within an epoch.
    timed_out_round: int = 0
    # How long recent rounds that ended in a QC took, newest last. Invariant: at most
    # ROUND_SAMPLES, each >= 0.
    round_ms: deque[int] = field(default_factory=lambda: deque(maxlen=ROUND_SAMPLES))
    # The round this replica is timing (at most its current round; 0 after `new_epoch`), and
    # when it entered it, by the events' clock (so never decreases).
    _timed_round: int = 0
    _entered_ms: int = 0

    def entered(self, round_: int, now_ms: int) -> None:
        self._timed_round, self._entered_ms = round_, now_ms

    def certified(self, qc_round: int, current_round: int, now_ms: int) -> bool:
        """A QC of `qc_round` made progress: remember the round's length if it is the round
        being timed, and reset the back-off. True when the next round's leader is overdue.

        A QC of the current round that arrives after this replica timed out in it was made
        from the votes replicas broadcast when they gave up: the leader of the next round had
        those votes a whole timeout ago and has not proposed, so its round gets a short timer.
        """
        overdue = qc_round == current_round and self.has_timed_out(qc_round)
        if qc_round == self._timed_round:
            self.round_ms.append(max(0, now_ms - self._entered_ms))
        self.reset_backoff()
        return overdue

    def base_ms(self) -> int:
        """The timer before back-off: adapted to recent rounds when enough are known."""
        params = self.params
        if len(self.round_ms) < ROUND_SAMPLES_MIN:
            return params.round_timeout_ms
        ordered = sorted(self.round_ms)
        p90 = ordered[(len(ordered) - 1) * 9 // 10]
        return min(max(ADAPTIVE_FACTOR * p90, params.round_timeout_ms_min), params.round_timeout_ms)

    def timer(self, epoch: int, round_: int, *, overdue: bool = False) -> SetTimer:
        """The timer for a round just entered, or re-armed after a local timeout. A round
        whose leader is already overdue (it held the votes for a whole timeout and did not
        propose) gets OVERDUE_PERCENT of it: an honest leader would have proposed long ago."""
        delay = timeout_delay_ms(self.params, self.consecutive_timeouts, self.base_ms())
        if overdue:
            delay = max(1, delay * OVERDUE_PERCENT // 100)
        return SetTimer(epoch, round_, delay)

    def sign_timeout(
        self,
        safety: SafetyRules,
        epoch: int,
        round_: int,
        high_qc: QuorumCertificate,
        *,
        last_tc: TimeoutCertificate | None,
        high_commit_qc: QuorumCertificate | None,
    ) -> tuple[list[Timeout | Vote], SafetyState] | None:
        """This replica gives up on `round_`: the signed timeout to broadcast (then the vote
        it signed in that round, if any) and the safety state to persist first, or None
        (counted by rule) when the safety rules refuse.

        A vote this replica cast in the round goes to everyone with the timeout: when the
        round failed only because the next leader (who alone collects votes) is faulty, the
        votes still make a QC wherever a quorum of them meets, and the block is not lost.
        """
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
        messages: list[Timeout | Vote] = [timeout]
        vote = self._vote_of_round(state, epoch, round_)
        if vote is not None:
            messages.append(vote)
        return messages, state

    def _vote_of_round(self, state: SafetyState, epoch: int, round_: int) -> Vote | None:
        """The vote this replica signed in `round_` of `epoch`, if any."""
        data, signature = state.last_vote, state.last_vote_signature
        if data is None or signature is None or (data.epoch, data.round) != (epoch, round_):
            return None
        return Vote(data=data, author=self.node_id, signature=signature)

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

    def joins(
        self, timeout_round: int, current_round: int, power: int, validity_power: int
    ) -> bool:
        """Peers' timeouts of `timeout_round` make this replica give up on its round too: f + 1
        of the power timed out in it (so at least one honest replica did) and it has not yet."""
        return (
            timeout_round == current_round
            and not self.has_timed_out(current_round)
            and power >= validity_power
        )

    def new_epoch(self) -> None:
        self.consecutive_timeouts = 0
        self.timed_out_round = 0
        self._timed_round = 0

    def check(
        self, current_round: int, timed_out_before: int, consecutive_before: int
    ) -> str | None:
        """The first broken invariant, or None. `timed_out_before` and `consecutive_before` are
        `timed_out_round` and `consecutive_timeouts` before the event (0 when the event
        entered a new epoch)."""
        if self.consecutive_timeouts < 0:
            return f"consecutive_timeouts {self.consecutive_timeouts} below 0"
        if self.timed_out_round > current_round:
            return f"timed out in round {self.timed_out_round} above round {current_round}"
        if self.timed_out_round < timed_out_before:
            return f"timed_out_round went back from {timed_out_before} to {self.timed_out_round}"
        rounds = self.timed_out_round - timed_out_before
        if self.consecutive_timeouts - consecutive_before > rounds:
            return (
                f"consecutive_timeouts rose from {consecutive_before} to "
                f"{self.consecutive_timeouts} over {rounds} rounds timed out"
            )
        if any(ms < 0 for ms in self.round_ms):
            return "a negative round length kept"
        if self._timed_round > current_round:
            return f"timing round {self._timed_round} above round {current_round}"
        return None
