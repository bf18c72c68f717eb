"""The validator set of one epoch: membership, voting power and certificate checks.

Signatures are checked with the chain's suite through `verify_many` (both cores). A small
memo of certificates already verified keeps a QC that arrives in a proposal, then in a
timeout, then in a block response from being checked three times; it is bounded.
"""

from __future__ import annotations

from collections import OrderedDict

from consortia.crypto import Suite
from consortia.types.consensus import (
    EpochConfig,
    QuorumCertificate,
    TimeoutCertificate,
    TimeoutData,
    Validator,
    VoteData,
)
from consortia.types.encoding import encode
from consortia.types.signing import SigningDomain

_VERIFIED_MEMO_SIZE = 1024


class ValidatorSet:
    def __init__(
        self,
        config: EpochConfig,
        suite: Suite,
        chain_id: str,
        *,
        domain: SigningDomain,
        quorum_override: int | None = None,
    ) -> None:
        self.domain = domain
        self.config = config
        self.epoch = config.epoch
        self.suite = suite
        self.chain_id = chain_id
        self.validators: list[Validator] = list(config.validators)
        self.index_of: dict[bytes, int] = {v.node_id: i for i, v in enumerate(self.validators)}
        self.total_power = config.total_power
        self.quorum_power = quorum_override if quorum_override is not None else config.quorum_power
        # f+1 power: enough timeouts that at least one honest replica timed out.
        self.validity_power = config.fault_power + 1
        # Certificates already checked, valid or not: a replayed certificate costs one lookup.
        self._verified: OrderedDict[bytes, bool] = OrderedDict()

    def __contains__(self, node_id: bytes) -> bool:
        return node_id in self.index_of

    def power_of(self, indexes: set[int] | list[int]) -> int:
        return sum(self.validators[i].voting_power for i in indexes)

    def has_quorum(self, indexes: set[int] | list[int]) -> bool:
        return self.power_of(indexes) >= self.quorum_power

    def verify_one(self, index: int, payload: VoteData | TimeoutData, signature: bytes) -> bool:
        validator = self.validators[index]
        return self.suite.verify(
            validator.public_key, self.domain.signing_bytes(payload), signature
        )

    def verify_qc(self, qc: QuorumCertificate, *, epoch_root_id: bytes | None = None) -> bool:
        """True when `qc` is a quorum of valid votes of this epoch, or the epoch's root QC.

        The root QC (round 0, no signatures) certifies the block that started the epoch; it is
        valid only for the root the caller names, which every honest replica agrees on.
        """
        if qc.epoch != self.epoch:
            return False
        if qc.round == 0:
            return not qc.signatures and epoch_root_id is not None and qc.block_id == epoch_root_id
        key = b"qc" + encode(qc)
        known = self._verified.get(key)
        if known is not None:
            return known
        indexes = [entry.index for entry in qc.signatures]
        if not self._known(indexes) or not self.has_quorum(indexes):
            return False
        message = self.domain.signing_bytes(qc.vote_data(self.chain_id))
        items = [
            (self.validators[entry.index].public_key, message, entry.signature)
            for entry in qc.signatures
        ]
        valid = all(self.suite.verify_many(items))
        self._remember(key, valid)
        return valid

    def verify_tc(self, tc: TimeoutCertificate, *, epoch_root_id: bytes) -> bool:
        """True when `tc` is a quorum of valid timeouts of this epoch whose highest signed
        high-QC round is the round of the valid QC it carries."""
        if tc.epoch != self.epoch:
            return False
        key = b"tc" + encode(tc)
        known = self._verified.get(key)
        if known is not None:
            return known
        indexes = [entry.index for entry in tc.signatures]
        if not self._known(indexes) or not self.has_quorum(indexes):
            return False
        if tc.high_qc.round >= tc.round or not self.verify_qc(
            tc.high_qc, epoch_root_id=epoch_root_id
        ):
            self._remember(key, False)
            return False
        items = [
            (
                self.validators[entry.index].public_key,
                self.domain.signing_bytes(
                    TimeoutData(self.chain_id, tc.epoch, tc.round, entry.high_qc_round)
                ),
                entry.signature,
            )
            for entry in tc.signatures
        ]
        valid = all(self.suite.verify_many(items))
        self._remember(key, valid)
        return valid

    def _known(self, indexes: list[int]) -> bool:
        """Every index names a validator, once (a struct built in memory, not decoded, could
        hold a negative index that aliases another)."""
        return all(0 <= index < len(self.validators) for index in indexes) and len(
            set(indexes)
        ) == len(indexes)

    def _remember(self, key: bytes, valid: bool) -> None:
        self._verified[key] = valid
        if len(self._verified) > _VERIFIED_MEMO_SIZE:
            self._verified.popitem(last=False)
