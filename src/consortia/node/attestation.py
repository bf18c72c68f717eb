"""Gathering execution votes into execution certificates, and noticing divergence.

After executing committed block h, every validator signs its `ExecutionHeader` and sends the
vote to the others (the driver does the I/O, `Certifier` below the glue). `Attestations`
keeps the votes per height, checks each against the validator set of the header's epoch
(`consensus.validators.ValidatorSet`: the same membership and quorum a consensus QC needs),
and forms an `ExecutionCertificate` once this node executed the height and signers holding a
quorum of the voting power signed its header.

Which votes count: once this node executed a height, only votes for its own header's
(epoch, height, block_id); a vote naming another epoch or block for the height is dropped
(`other_block`), never taken for divergence: validators of an ended epoch, or a removed set,
are bound by nothing and may sign anything for later heights. Before this node executed a
height, votes of an epoch below the one it runs are dropped (`old_epoch`), the others wait.
Divergence (`ExecutionDivergedError`, the node stops) only when a quorum of the validators
of this node's own header's epoch signed a header of the same epoch, height and block with
another state root or receipts root.

Bounded: votes are kept only for heights from `BEHIND` below this node's height to `AHEAD`
above it, one per signer, epoch and height (the first; a second, different one is dropped),
and at most `VOTES_MAX` in all; votes of the next epoch, whose validator set is not known yet,
wait in a buffer of at most `UNKNOWN_EPOCH_MAX` (and one a window height per sender), pruned
with the window; votes of epochs further ahead are dropped.

`Attestations` is pure (no clock, no I/O): it takes votes and headers and returns
certificates. It never signs: the consensus key stays in `consensus/safety.py`
(`node/certifier.py` asks the replica for the node's signature).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Final, Literal, get_args

from consortia.consensus.validators import ValidatorSet
from consortia.crypto import Suite
from consortia.errors import ConsortiaError
from consortia.types.consensus import EpochConfig
from consortia.types.encoding import encode
from consortia.types.execution import (
    ExecutionCertificate,
    ExecutionHeader,
    ExecutionSignature,
)
from consortia.types.network import ExecutionVote
from consortia.types.signing import SigningDomain

# Heights kept around this node's height: votes for blocks it has not executed yet, and a
# few it has (slower peers' votes still complete its certificates).
AHEAD: Final = 64
BEHIND: Final = 8
# Votes kept at once, all heights together (a cap under the window's own bound).
VOTES_MAX: Final = 16_384
# Votes of an epoch whose validator set this node does not know yet (checked once it does).
UNKNOWN_EPOCH_MAX: Final = 1024
# Validator sets kept, by epoch (the newest).
EPOCHS_MAX: Final = 16


class ExecutionDivergedError(ConsortiaError):
    """A quorum of validators certified a different execution of a block than this node's."""

    code = "execution_diverged"


# Why an execution vote (or a certificate answered for a missing height) was dropped. A closed
# set, exported as a metric's label: an operator's dashboard never shows an unknown reason
# (mypy checks every call site).
AttestationDropReason = Literal[
    "outside_window",  # its height is outside the window around this node's height
    "wrong_chain",  # its header is of another chain
    "unknown_epoch",  # its epoch's validator set is unknown, and it cannot wait for it
    "old_epoch",  # of an epoch below the one this node runs, for a height not executed yet
    "other_block",  # names another epoch or block than this node's own for the height
    "unknown_signer",  # its signer is not a validator of its epoch
    "not_from_signer",  # the peer that sent it is not its signer
    "duplicate",  # the same vote again
    "conflicting",  # a second, different vote of the signer for the height and epoch
    "bad_signature",  # its signature does not verify
    "full",  # VOTES_MAX votes are kept already
    "certified",  # its height is certified already
]
ATTESTATION_DROP_REASONS: Final[frozenset[str]] = frozenset(get_args(AttestationDropReason))


@dataclass(slots=True)
class AttestationCounters:
    votes_accepted: int = 0
    certificates: int = 0
    certified_height: int = 0  # the highest height certified
    # Dropped votes by reason. Invariant: only reasons of `AttestationDropReason`.
    dropped: Counter[AttestationDropReason] = field(default_factory=Counter)

    def drop(self, reason: AttestationDropReason) -> None:
        self.dropped[reason] += 1


@dataclass(slots=True)
class _Height:
    """The votes for one height: (signer, epoch) -> (header encoding, signature), and the
    header each encoding stands for."""

    votes: dict[tuple[bytes, int], tuple[bytes, bytes]] = field(default_factory=dict)
    headers: dict[bytes, ExecutionHeader] = field(default_factory=dict)


def same_block(header: ExecutionHeader, own: ExecutionHeader) -> bool:
    """`header` names the epoch, height and block of `own` (its roots may differ)."""
    return (header.epoch, header.height, header.block_id) == (own.epoch, own.height, own.block_id)


class Attestations:
    def __init__(
        self,
        suite: Suite,
        domain: SigningDomain,
        chain_id: str,
        configs: list[EpochConfig],
        *,
        height: int = 0,
    ) -> None:
        self._suite = suite
        self._domain = domain
        self._chain_id = chain_id
        self._sets: dict[int, ValidatorSet] = {}
        # This node's executed height; the window is around it.
        self.height = height
        # The epoch of this node's latest executed block.
        self.epoch = 0
        # height -> votes. Invariant: every height in the window, every vote verified, and
        # for a height this node executed, only votes for its own header's block.
        self._pending: dict[int, _Height] = {}
        self._votes = 0
        # (vote, sender) of the next epoch, not known yet. Invariant: at most
        # UNKNOWN_EPOCH_MAX, every height above the window's low end.
        self._unknown: list[tuple[ExecutionVote, bytes]] = []
        # height -> this node's own header, for heights in the window.
        self._own: dict[int, ExecutionHeader] = {}
        # Heights certified (so later votes for them are not kept), within the window.
        self._certified: set[int] = set()
        self.counters = AttestationCounters()
        for config in configs:
            self.add_epoch(config)

    @property
    def latest_epoch(self) -> int:
        """The latest epoch whose validator set is known."""
        return max(self._sets)

    def validators(self, epoch: int) -> ValidatorSet | None:
        """The validator set of `epoch`, when known."""
        return self._sets.get(epoch)

    # ------------------------------------------------------------------ inputs

    def add_epoch(self, config: EpochConfig) -> list[ExecutionCertificate]:
        """A validator set became known; the votes waiting for it are checked now."""
        if config.epoch in self._sets:
            return []
        self._sets[config.epoch] = ValidatorSet(
            config, self._suite, self._chain_id, domain=self._domain
        )
        while len(self._sets) > EPOCHS_MAX:
            del self._sets[min(self._sets)]
        waiting = self._unknown
        self._unknown = [(v, s) for v, s in waiting if v.header.epoch != config.epoch]
        formed: list[ExecutionCertificate] = []
        for vote, sender in waiting:
            if vote.header.epoch == config.epoch:
                formed.extend(self.add(vote, sender))
        return formed

    def executed(self, header: ExecutionHeader) -> list[ExecutionCertificate]:
        """This node executed `header.height` and reached `header`: the window moves, the
        votes held for the height that name another epoch or block are dropped, and the
        certificate the others already complete is returned (a quorum certifying other roots
        for this very block: `ExecutionDivergedError`)."""
        if header.height >= self.height:
            self.epoch = header.epoch
        self.height = max(self.height, header.height)
        self._own[header.height] = header
        self._prune()
        entry = self._pending.get(header.height)
        if entry is None or header.height in self._certified:
            return []
        for key in [
            k for k, (e, _) in entry.votes.items() if not same_block(entry.headers[e], header)
        ]:
            del entry.votes[key]
            self._votes -= 1
            self._drop("other_block")
        entry.headers = {e: entry.headers[e] for e, _ in entry.votes.values()}
        validators = self._sets.get(header.epoch)
        if validators is None:
            return []
        for encoded in list(entry.headers):
            formed = self._tally(header.height, encoded, validators)
            if formed:
                return formed
        return []

    def add(self, vote: ExecutionVote, sender: bytes) -> list[ExecutionCertificate]:
        """A vote from the peer `sender` (authenticated by the transport; this node itself
        for its own vote). Returns the certificate it completed, when this node has executed
        the height (else the vote waits for `executed`)."""
        header = vote.header
        height = header.height
        refusal = self._refusal(vote, sender)
        if refusal is not None:
            return self._drop(refusal)
        own = self._own.get(height)
        validators = self._sets.get(header.epoch)
        if validators is None:
            if header.epoch == self.latest_epoch + 1 and self._may_wait(sender):
                self._unknown.append((vote, sender))
                return []
            return self._drop("unknown_epoch")
        index = validators.index_of.get(vote.signer)
        if index is None:
            return self._drop("unknown_signer")
        entry = self._pending.get(height)
        encoded = encode(header)
        key = (vote.signer, header.epoch)
        if entry is not None and key in entry.votes:
            same = entry.votes[key][0] == encoded
            return self._drop("duplicate" if same else "conflicting")
        if self._votes >= VOTES_MAX:
            return self._drop("full")
        message = self._domain.signing_bytes(header)
        if not self._suite.verify(validators.validators[index].public_key, message, vote.signature):
            return self._drop("bad_signature")
        if entry is None:
            entry = self._pending[height] = _Height()
        entry.votes[key] = (encoded, vote.signature)
        entry.headers[encoded] = header
        self._votes += 1
        self.counters.votes_accepted += 1
        if own is None:
            return []  # counted once this node executed the height
        return self._tally(height, encoded, validators)

    # ------------------------------------------------------------------ inside

    def _refusal(self, vote: ExecutionVote, sender: bytes) -> AttestationDropReason | None:
        """Why `vote` is dropped before its validators are looked up, or None."""
        header = vote.header
        if header.chain_id != self._chain_id:
            return "wrong_chain"
        if not self.height - BEHIND <= header.height <= self.height + AHEAD:
            return "outside_window"
        if header.height in self._certified:
            return "certified"
        if vote.signer != sender:
            return "not_from_signer"
        own = self._own.get(header.height)
        if own is not None and not same_block(header, own):
            return "other_block"
        if own is None and header.epoch < self.epoch:
            return "old_epoch"
        return None

    def _tally(
        self, height: int, encoded: bytes, validators: ValidatorSet
    ) -> list[ExecutionCertificate]:
        """The certificate of the header `encoded` (of this node's own block of `height`)
        when a quorum of its epoch's `validators` signed it."""
        entry = self._pending[height]
        signers = sorted(s for (s, _), (e, _) in entry.votes.items() if e == encoded)
        if not validators.has_quorum([validators.index_of[s] for s in signers]):
            return []
        header = entry.headers[encoded]
        epoch = header.epoch
        certificate = ExecutionCertificate(
            header=header,
            signatures=[ExecutionSignature(s, entry.votes[(s, epoch)][1]) for s in signers],
        )
        self._votes -= len(entry.votes)
        del self._pending[height]
        self._certified.add(height)
        self.counters.certificates += 1
        self.counters.certified_height = max(self.counters.certified_height, height)
        self._check(certificate, self._own[height])
        return [certificate]

    def _check(self, certificate: ExecutionCertificate, own: ExecutionHeader) -> None:
        if certificate.header != own:
            certified = certificate.header
            raise ExecutionDivergedError(
                f"validators holding a quorum certified block {own.height} with state root "
                f"{certified.state_root.hex()} and receipts root "
                f"{certified.receipts_root.hex()}; this node reached "
                f"{own.state_root.hex()} and {own.receipts_root.hex()}: its execution diverged"
            )

    def _prune(self) -> None:
        low, high = self.height - BEHIND, self.height + AHEAD
        for height in [h for h in self._pending if not low <= h <= high]:
            self._votes -= len(self._pending.pop(height).votes)
        for height in [h for h in self._own if h < low]:
            del self._own[height]
        self._certified = {h for h in self._certified if h >= low}
        self._unknown = [(v, s) for v, s in self._unknown if v.header.height >= low]

    def _may_wait(self, sender: bytes) -> bool:
        """Room for one more vote of an unknown epoch: in all, and from this sender (one per
        height of the window, so no peer can crowd the others' out)."""
        if len(self._unknown) >= UNKNOWN_EPOCH_MAX:
            return False
        return sum(1 for _, s in self._unknown if s == sender) < AHEAD + BEHIND + 1

    def _drop(self, reason: AttestationDropReason) -> list[ExecutionCertificate]:
        self.counters.drop(reason)
        return []

    def check(self) -> str | None:
        """The first broken bound, or None."""
        if self._votes > VOTES_MAX or len(self._unknown) > UNKNOWN_EPOCH_MAX:
            return "attestation buffers above their bounds"
        if self._votes != sum(len(e.votes) for e in self._pending.values()):
            return "attestation vote count out of step"
        return None
