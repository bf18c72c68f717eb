"""The node's part in execution certificates: sign, send, gather, check, store.

After the chain executed committed blocks, `Certifier.executed` asks the replica for this
validator's signature of each block's `ExecutionHeader` (the consensus key never leaves
`consensus/safety.py`), broadcasts it as an `ExecutionVote`, and hands it with every peer's
vote to `Attestations` (`attestation.py`), which forms the certificate. Certificates are
stored by height with the next commit's durable write (`take_unsaved`; a write of their own
would cost an fsync each), or on their own at `close`; until then `certificate` answers from
memory. A node killed in between loses those (at most a few heights' worth).

A certificate of a header other than this node's own stops the node (the driver's failure
path: `ExecutionDivergedError`), as does the safety rules' refusal to sign a second header for
a height. Validator sets come from the genesis, the stored epoch proofs and the store's tip,
then from every epoch change a commit brings.

What a node misses: votes are sent once, to the validators connected then, and kept only
within the window of `attestation.py`. A node that catches up from further behind than
`AHEAD` heights, or that was down when a height was certified, has no certificate for those
heights (its API answers 404 `not_certified`); the other validators do.

Never decides anything the replica decides; signs nothing itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from consortia.node.attestation import (
    BEHIND,
    Attestations,
    ExecutionDivergedError,
)
from consortia.node.chain import Chain, CommittedBlock, genesis_epoch
from consortia.types.consensus import EpochConfig
from consortia.types.encoding import encode
from consortia.types.execution import ExecutionCertificate, ExecutionHeader
from consortia.types.network import ExecutionVote
from consortia.types.signing import SigningDomain

# Certificates held for the next commit's write before they are written on their own.
UNSAVED_MAX = 64


class Broadcaster(Protocol):
    def broadcast(self, frame: bytes) -> int: ...


def known_epochs(chain: Chain) -> list[EpochConfig]:
    """Every validator set this node's store knows: genesis, each ended epoch's successor,
    the running one."""
    configs = [genesis_epoch(chain.genesis)]
    for proof in chain.store.epoch_proofs():
        if proof.ending.next_epoch is not None:
            configs.append(proof.ending.next_epoch)
    tip = chain.store.tip()
    if tip is not None:
        configs.append(tip.epoch_config)
    return configs


class Certifier:
    def __init__(
        self,
        *,
        chain: Chain,
        node_id: bytes,
        sign: Callable[[ExecutionHeader], bytes | None],
        transport: Broadcaster,
    ) -> None:
        self._chain = chain
        self._node_id = node_id
        self._sign = sign
        self._transport = transport
        domain = SigningDomain(chain.genesis_hash)
        self.attestations = Attestations(
            chain.suite,
            domain,
            chain.genesis.chain_id,
            known_epochs(chain),
            height=chain.height,
        )
        # A restart: this node's own headers of the last few heights, so votes for them
        # that still arrive are checked against them.
        for height in range(max(1, chain.height - BEHIND), chain.height + 1):
            record = chain.store.execution_record(height)
            if record is not None:
                self.attestations.executed(record.header)
        self.on_certificate: list[Callable[[ExecutionCertificate], None]] = []
        # Certificates formed and not yet written, by height. Invariant: at most UNSAVED_MAX.
        self._unsaved: dict[int, ExecutionCertificate] = {}

    def executed(self, committed: list[CommittedBlock]) -> None:
        """Sign and send this node's vote for each block just committed, in order."""
        for entry in committed:
            header = entry.execution
            assert header is not None, "a committed block without its execution header"
            self._store(self.attestations.executed(header))
            validators = self.attestations.validators(header.epoch)
            if validators is not None and self._node_id in validators:
                signature = self._sign(header)
                if signature is None:
                    raise ExecutionDivergedError(
                        f"the safety rules refused to sign the execution header of block "
                        f"{header.height}: this node already signed another one for it"
                    )
                vote = ExecutionVote(header=header, signer=self._node_id, signature=signature)
                self._transport.broadcast(encode(vote))
                self._store(self.attestations.add(vote, self._node_id))
            next_epoch = entry.block.header.next_epoch
            if next_epoch is not None:
                self.epoch(next_epoch)

    def on_vote(self, sender: bytes, vote: ExecutionVote) -> None:
        self._store(self.attestations.add(vote, sender))

    def epoch(self, config: EpochConfig) -> None:
        """A validator set this node learned (a commit or an epoch proof)."""
        self._store(self.attestations.add_epoch(config))

    def certificate(self, height: int) -> ExecutionCertificate | None:
        """The execution certificate of block `height`, written or not yet."""
        unsaved = self._unsaved.get(height)
        if unsaved is not None:
            return unsaved
        stored: ExecutionCertificate | None = self._chain.store.execution_certificate(height)
        return stored

    def take_unsaved(self) -> list[ExecutionCertificate]:
        """The certificates to write with the next commit (they leave this buffer)."""
        taken = list(self._unsaved.values())
        self._unsaved.clear()
        return taken

    def close(self) -> None:
        """Write what is still unsaved (a clean stop loses no certificate)."""
        if self._unsaved:
            self._chain.store.save_execution_certificates(self.take_unsaved())

    def _store(self, certificates: list[ExecutionCertificate]) -> None:
        for certificate in certificates:
            self._unsaved[certificate.header.height] = certificate
            for listener in self.on_certificate:
                listener(certificate)
        if len(self._unsaved) > UNSAVED_MAX:  # no commit for long: write them now
            self.close()
