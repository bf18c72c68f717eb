"""f+1 signature checks of transactions passed on between validators.

Every validator must agree on whether a transaction's signature is valid, but not every
validator has to check it: it is enough that validators holding more than the faulty power
(f+1 of n when all weigh the same) did, for at least one of them is honest, and an honest
validator's check gives the answer this node's own check would (the same code). So a batch of
transactions passed on (`TxBatch`) is checked by its *checkers*: the validator that sent it
(it admitted them, so it checked them) and the validators after it in the epoch's order until
their power exceeds the faulty power. A checker other than the sender checks the whole batch
and, only when every signature in it verified, sends every validator a `TxAck` naming the
batch by the hash of its frame. Every other validator holds the batch until the sender and
the acks it received vouch with more than the faulty power, then admits the transactions as
checked (`Mempool.admit_many(..., checked=True)`), or, when no such vouching arrives within
`wait_ms` (a checker down, or a faulty sender whose batch an honest checker refused), checks
the batch itself, and that sender's next batches too for DISTRUST_MS, or until one of its
checkers acks one of them (it is back: a busy checker's pause, executing a large block, can
outlast the wait); but a wait in vain again soon after such an ack makes the distrust firm
(a faulty checker withholding its acks and ending the distrust, again and again, would
otherwise have every batch of that sender wait). With four validators each signature is
checked twice instead of four times.

What is vouched for is exactly the bytes hashed: a faulty sender that sends different frames
to different validators gets no matching acks, and its batch is checked where it arrives. An
ack counts only from a validator of the current epoch, once per validator, and never for the
sender's own batch (the sender vouches by sending; a second sender of the same bytes
vouches too, so a faulty validator replaying an honest batch changes nothing). Held batches
(by count and by bytes) and early acks are bounded: beyond the bound a batch is checked at
once; each validator keeps its share of the early acks, its own oldest out (one validator's
flood never pushes out the others').

Owns the held batches and the acks received; must never verify, admit, send or read a clock
(the driver hands in the time and does all of those).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final, Literal, get_args

from consortia.consensus.validators import ValidatorSet

# How long a batch waits for its checkers' acks before this node checks it itself: longer
# than a busy checker's pause (executing a large block), short enough that a checker down
# delays its sender's transactions here once, by this much.
ACK_WAIT_MS: Final = 1000
# After a batch from a sender waited in vain, this node checks that sender's batches itself
# for this long (its checkers may be down or faulty), then tries their vouching again.
DISTRUST_MS: Final = 10_000
# Batches held at once (beyond: checked at once), and batches whose acks arrived first.
HELD_BATCHES_MAX: Final = 256
HELD_BYTES_MAX: Final = 64 * 1024 * 1024
EARLY_ACKS_MAX: Final = 4096

Decision = Literal["check", "check_and_ack", "admit_checked", "held"]
# Why an ack was refused. A closed set (mypy checks every call site): counters keyed by it
# never show an unknown reason.
VouchingRefusal = Literal[
    "not_a_validator",  # the acker is not a validator of the current epoch
    "repeated",  # the acker already vouched for the held batch
]
VOUCHING_REFUSALS: Final[frozenset[str]] = frozenset(get_args(VouchingRefusal))


@dataclass(slots=True)
class _Held:
    raws: list[bytes]
    size: int  # bytes of `raws`
    sender: int  # its sender's validator index
    vouchers: set[int]  # validator indexes that vouched for the batch
    deadline_ms: int


@dataclass(slots=True)
class VouchingCounters:
    checked_here: int = 0  # transactions in batches this node checked itself
    admitted_checked: int = 0  # transactions admitted on the vouching of others
    acks_sent: int = 0
    acks_counted: int = 0
    waits_expired: int = 0  # batches checked here because no vouching came in time
    refused: dict[VouchingRefusal, int] = field(default_factory=dict)  # acks refused, by reason


def checkers(validators: ValidatorSet, sender: int) -> list[int]:
    """The validators that check a batch `sender` passed on: the sender, then those after it
    in order, until their power exceeds the faulty power."""
    count = len(validators.validators)
    chosen: list[int] = []
    for step in range(count):
        chosen.append((sender + step) % count)
        if validators.power_of(chosen) >= validators.validity_power:
            break
    return chosen


class Vouching:
    """Which batches this node checks, which it holds for acks, and when a held one is due."""

    def __init__(
        self,
        *,
        wait_ms: int = ACK_WAIT_MS,
        held_max: int = HELD_BATCHES_MAX,
        held_bytes_max: int = HELD_BYTES_MAX,
        early_max: int = EARLY_ACKS_MAX,
    ) -> None:
        assert wait_ms >= 0 and held_max >= 1 and held_bytes_max >= 1 and early_max >= 1
        self.wait_ms, self.held_max, self.early_max = wait_ms, held_max, early_max
        self.held_bytes_max = held_bytes_max
        self._held_bytes = 0  # the transactions' bytes in `_held`
        # Sender index -> until when its batches are checked here (a wait was in vain), and
        # the batches checked here for that reason (digest -> sender; bounded): an ack for one
        # of them shows its checkers are back, and ends the distrust at once.
        self._distrust: dict[int, int] = {}
        # When each sender's last wait was in vain; the senders whose distrust an ack ended
        # early since; and those whose distrust is firm (a wait in vain again, within
        # 2 * DISTRUST_MS, after an ack ended it: no ack ends it early now, so a faulty
        # checker cannot withhold its acks, end the distrust, and withhold them again).
        self._expired_at: dict[int, int] = {}
        self._lifted: set[int] = set()
        self._firm: set[int] = set()
        self._checked_distrusted: OrderedDict[bytes, int] = OrderedDict()
        # Invariant: at most held_max entries, in order of arrival (so of deadline).
        self._held: OrderedDict[bytes, _Held] = OrderedDict()
        # Acks for batches not held here (yet): digest -> acking validator indexes; bounded.
        self._early: OrderedDict[bytes, set[int]] = OrderedDict()
        # The digests each validator acked early, oldest first: at most its share of
        # `early_max`, its oldest out, so one validator's flood only pushes out its own acks
        # (and acks never matched, for batches held elsewhere, age out).
        self._early_by: dict[int, OrderedDict[bytes, None]] = {}
        self.counters = VouchingCounters()

    def __len__(self) -> int:
        assert self._held_bytes == sum(held.size for held in self._held.values())
        return len(self._held)

    def on_batch(
        self,
        validators: ValidatorSet,
        *,
        own: bytes,
        sender: bytes,
        digest: bytes,
        raws: list[bytes],
        now_ms: int,
    ) -> Decision:
        """What to do with a batch `sender` passed on: check it (and ack it, as one of its
        checkers), admit it as checked (vouched for already), or hold it (`held`)."""
        sender_index = validators.index_of.get(sender)
        own_index = validators.index_of.get(own)
        if sender_index is None or own_index is None:
            return self._check(raws)  # only validators vouch, and only to validators
        if own_index in checkers(validators, sender_index):
            self.counters.checked_here += len(raws)
            return "check_and_ack"
        held = self._held.get(digest)
        if held is not None:  # another sender sent these bytes too: it vouches for them
            held.vouchers.add(sender_index)
            return "admit_checked" if self._complete(validators, digest, held) else "held"
        vouchers = {sender_index} | self._take_early(digest)
        if validators.power_of(vouchers) >= validators.validity_power:
            self.counters.admitted_checked += len(raws)
            return "admit_checked"
        if self._distrust.get(sender_index, -1) > now_ms:
            self._checked_distrusted[digest] = sender_index
            if len(self._checked_distrusted) > self.early_max:
                self._checked_distrusted.popitem(last=False)
            return self._check(raws)
        size = sum(map(len, raws))
        if len(self._held) >= self.held_max or self._held_bytes + size > self.held_bytes_max:
            return self._check(raws)
        self._held[digest] = _Held(raws, size, sender_index, vouchers, now_ms + self.wait_ms)
        self._held_bytes += size
        return "held"

    def on_ack(self, validators: ValidatorSet, acker: bytes, digest: bytes) -> list[bytes] | None:
        """An ack from `acker`: the transactions of the held batch it completes the vouching
        of (to admit as checked), or None."""
        index = validators.index_of.get(acker)
        if index is None:
            self._refuse("not_a_validator")
            return None
        held = self._held.get(digest)
        if held is None:
            distrusted = self._checked_distrusted.get(digest)
            if distrusted is not None:
                back = index in checkers(validators, distrusted)[1:]  # one of them is back
                if back and distrusted not in self._firm:
                    del self._checked_distrusted[digest]
                    self._distrust.pop(distrusted, None)
                    self._lifted.add(distrusted)
                return None
            mine = self._early_by.setdefault(index, OrderedDict())
            if digest in mine:
                return None
            if len(mine) >= max(1, self.early_max // len(validators.validators)):
                oldest, _ = mine.popitem(last=False)
                acks = self._early[oldest]
                acks.discard(index)
                if not acks:
                    del self._early[oldest]
            if digest not in self._early and len(self._early) >= self.early_max:
                self._take_early(next(iter(self._early)))
            self._early.setdefault(digest, set()).add(index)
            mine[digest] = None
            return None
        if index in held.vouchers:
            self._refuse("repeated")
            return None
        held.vouchers.add(index)
        self.counters.acks_counted += 1
        return held.raws if self._complete(validators, digest, held) else None

    def _complete(self, validators: ValidatorSet, digest: bytes, held: _Held) -> bool:
        """Whether the held batch's vouchers now exceed the faulty power; if so, it is no
        longer held (its transactions are admitted as checked)."""
        if validators.power_of(held.vouchers) < validators.validity_power:
            return False
        del self._held[digest]
        self._held_bytes -= held.size
        self.counters.admitted_checked += len(held.raws)
        return True

    def due(self, now_ms: int) -> list[list[bytes]]:
        """The held batches whose wait is over (to check here), oldest first."""
        out: list[list[bytes]] = []
        held = self._held
        while held:
            digest, first = next(iter(held.items()))
            if first.deadline_ms > now_ms:
                break
            del held[digest]
            self._held_bytes -= first.size
            self.counters.waits_expired += 1
            self._distrust[first.sender] = now_ms + DISTRUST_MS
            self._expired(first.sender, now_ms)
            out.append(self._check_raws(first.raws))
        return out

    def _expired(self, sender: int, now_ms: int) -> None:
        """A wait for `sender`'s batch was in vain: is its distrust firm now?"""
        last = self._expired_at.get(sender)
        recent = last is not None and now_ms - last < 2 * DISTRUST_MS
        if sender in self._lifted:
            self._lifted.discard(sender)
            if recent:
                self._firm.add(sender)
        elif not recent:
            self._firm.discard(sender)
        self._expired_at[sender] = now_ms

    def next_deadline_ms(self) -> int | None:
        return next(iter(self._held.values())).deadline_ms if self._held else None

    def forget(self) -> list[list[bytes]]:
        """Every held batch, to check here (a new epoch: its validators vouch anew)."""
        batches = [self._check_raws(held.raws) for held in self._held.values()]
        self._held.clear()
        self._held_bytes = 0
        self._early.clear()
        self._early_by.clear()
        self._distrust.clear()
        self._expired_at.clear()
        self._lifted.clear()
        self._firm.clear()
        self._checked_distrusted.clear()
        return batches

    def _take_early(self, digest: bytes) -> set[int]:
        """The acks kept for `digest` (now no longer kept)."""
        acks = self._early.pop(digest, set())
        for index in acks:
            del self._early_by[index][digest]
        return acks

    def _check(self, raws: list[bytes]) -> Decision:
        self._check_raws(raws)
        return "check"

    def _check_raws(self, raws: list[bytes]) -> list[bytes]:
        self.counters.checked_here += len(raws)
        return raws

    def _refuse(self, reason: VouchingRefusal) -> None:
        self.counters.refused[reason] = self.counters.refused.get(reason, 0) + 1
