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
`AHEAD` heights, or that was down when a height was certified, forms no certificate for
those heights. It asks for them instead: each height that leaves the window uncertified (and,
at a start, each of the last `RESTART_SCAN` heights without one) is noted missing, and the
node asks one validator (in turn) for up to `CERTIFICATE_REQUEST_MAX` of them from the lowest
(`CertificateRequest`); one request at a time, the next (to the next validator) when the
answer came, or after `ASK_STALE_COMMITS` commits without one. Only the answer of the
validator asked is read (others' are dropped unread). It takes each certificate answered only
for a missing height it executed, of its own header's epoch and block (another is dropped),
when a quorum of that epoch signed it validly; a valid one of other roots for its own block
is divergence. A height that `ATTEMPTS_MAX` answers lacked is given up (its API answers 404
`not_certified`). A node answers at most `ANSWERS_PER_COMMIT` requests a peer between two of
its commits: with the certificates it holds and, for a height it executed without one, its own
vote (the asker gathers such votes for its missing heights into a certificate, `_recover`).

A whole-cluster crash loses the certificates formed only in memory on every node: at its
start (`start`) a node signs again and sends its vote for each of the last `REVOTE_MAX`
heights it executed without a certificate (the safety rules sign the same header again).

Never decides anything the replica decides; signs nothing itself.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Protocol

from consortia.consensus.safety import Refusal
from consortia.node.attestation import (
    BEHIND,
    Attestations,
    ExecutionDivergedError,
    same_block,
)
from consortia.node.chain import Chain, CommittedBlock, genesis_epoch
from consortia.types.consensus import EpochConfig
from consortia.types.encoding import encode
from consortia.types.execution import (
    ExecutionCertificate,
    ExecutionHeader,
    ExecutionSignature,
    certificate_problem,
)
from consortia.types.network import (
    CERTIFICATE_REQUEST_MAX,
    CertificateRequest,
    CertificateResponse,
    ExecutionVote,
)
from consortia.types.signing import SigningDomain

# Certificates held for the next commit's write before they are written on their own.
UNSAVED_MAX = 64
# Missing certificates: how many heights are remembered, how often one request goes out,
# how many times a height is asked for before it is given up, and how far back a start looks.
MISSING_MAX = 4096
ASK_STALE_COMMITS = 8
ATTEMPTS_MAX = 8
RESTART_SCAN = 1024
# Requests from one peer answered between two of this node's commits.
ANSWERS_PER_COMMIT = 4
# Heights, from the top, whose vote a start sends again when they lack a certificate.
REVOTE_MAX = 64
# Missing heights whose peers' votes are gathered at once (`_recover`).
RECOVERING_MAX = 64


class Peers(Protocol):
    """What the driver and the certifier need of the transport."""

    def send(self, node_id: bytes, frame: bytes) -> bool: ...

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
        sign: Callable[[ExecutionHeader], bytes | Refusal],
        transport: Peers,
    ) -> None:
        self._chain = chain
        self._node_id = node_id
        self._sign = sign
        self._transport = transport
        self._domain = domain = SigningDomain(chain.genesis_hash)
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
        # Executed heights without a certificate -> times asked. Invariant: <= MISSING_MAX.
        self.missing: dict[int, int] = {}
        self._commits = 0
        # The request awaiting its answer (peer, start, count), and the commit count then.
        self._outstanding: tuple[bytes, int, int] | None = None
        self._asked_at = 0
        self._turn = 0  # which validator is asked next
        # Requests answered per peer since this node's last commit.
        self._answered: Counter[bytes] = Counter()
        # Missing height -> signer -> signature of this node's own header, gathered from the
        # votes peers answer requests with. Invariant: at most RECOVERING_MAX heights.
        self._recovering: dict[int, dict[bytes, bytes]] = {}
        # CertificateResponse frames dropped unread: not from the validator asked.
        self.unrequested = 0
        top = chain.height - BEHIND - 1
        for height in range(max(1, top - RESTART_SCAN + 1), top + 1):
            if chain.store.execution_certificate(height) is None:
                self._note_missing(height)

    def executed(self, committed: list[CommittedBlock]) -> None:
        """Sign and send this node's vote for each block just committed, in order."""
        for entry in committed:
            header = entry.execution
            assert header is not None, "a committed block without its execution header"
            self._store(self.attestations.executed(header))
            vote = self._own_vote(header)
            if vote is not None:
                self._transport.broadcast(encode(vote))
                self._store(self.attestations.add(vote, self._node_id))
            next_epoch = entry.block.header.next_epoch
            if next_epoch is not None:
                self.epoch(next_epoch)
            left = header.height - BEHIND - 1  # the height that just left the vote window
            if left >= 1 and self.certificate(left) is None:
                self._note_missing(left)
        self._commits += 1
        self._answered.clear()
        self._ask()

    def start(self) -> None:
        """Send again this node's vote for each of the last `REVOTE_MAX` heights it executed
        that hold no certificate (after a whole-cluster crash nobody else would)."""
        top = self._chain.height
        for height in range(max(1, top - REVOTE_MAX + 1), top + 1):
            if self.certificate(height) is not None:
                continue
            record = self._chain.store.execution_record(height)
            vote = None if record is None else self._own_vote(record.header)
            if vote is not None:
                self._transport.broadcast(encode(vote))
                self.on_vote(self._node_id, vote)

    def on_vote(self, sender: bytes, vote: ExecutionVote) -> None:
        height = vote.header.height
        if height < self.attestations.height - BEHIND and height in self.missing:
            self._recover(sender, vote)
        else:
            self._store(self.attestations.add(vote, sender))

    def _own_vote(self, header: ExecutionHeader) -> ExecutionVote | None:
        """This node's vote for its own `header`, when it is a validator of its epoch."""
        validators = self.attestations.validators(header.epoch)
        if validators is None or self._node_id not in validators:
            return None
        signature = self._sign(header)
        if isinstance(signature, Refusal):
            why = (
                "it is of another chain"
                if signature.rule == "execution_other_chain"
                else "this node already signed another one for it"
            )
            raise ExecutionDivergedError(
                f"the safety rules refused to sign the execution header of block "
                f"{header.height} ({signature.rule}): {why}"
            )
        return ExecutionVote(header=header, signer=self._node_id, signature=signature)

    def _recover(self, sender: bytes, vote: ExecutionVote) -> None:
        """A vote for a missing height below the window: gathered when it is for this node's
        own header, validly signed by a validator of its epoch; a quorum is the certificate."""
        header, height = vote.header, vote.header.height
        record = self._chain.store.execution_record(height)
        if record is None or header != record.header or vote.signer != sender:
            return
        validators = self.attestations.validators(header.epoch)
        index = None if validators is None else validators.index_of.get(sender)
        if validators is None or index is None:
            return
        votes = self._recovering.get(height)
        if votes is None:
            for stale in [h for h in self._recovering if h not in self.missing]:
                del self._recovering[stale]
            if len(self._recovering) >= RECOVERING_MAX:
                return
            votes = self._recovering[height] = {}
        if sender in votes:
            return
        message = self._domain.signing_bytes(header)
        public_key = validators.validators[index].public_key
        if not self._chain.suite.verify(public_key, message, vote.signature):
            return
        votes[sender] = vote.signature
        if not validators.has_quorum([validators.index_of[s] for s in votes]):
            return
        signatures = [ExecutionSignature(s, votes[s]) for s in sorted(votes)]
        del self._recovering[height], self.missing[height]
        self._store([ExecutionCertificate(header=header, signatures=signatures)])

    def epoch(self, config: EpochConfig) -> None:
        """A validator set this node learned (a commit or an epoch proof)."""
        self._store(self.attestations.add_epoch(config))

    # ------------------------------------------------------------------ missing certificates

    def on_request(self, sender: bytes, request: CertificateRequest) -> None:
        """A peer asks for certificates: those this node holds, within the rate limit, and
        for each height it executed without one, its own vote (sent first)."""
        if self._answered[sender] >= ANSWERS_PER_COMMIT:
            return
        self._answered[sender] += 1
        found = []
        for height in range(request.start, request.start + request.count):
            certificate = self.certificate(height)
            if certificate is not None:
                found.append(certificate)
                continue
            record = self._chain.store.execution_record(height)
            vote = None if record is None else self._own_vote(record.header)
            if vote is not None:
                self._transport.send(sender, encode(vote))
        # Answered even when empty: the asker then turns to another validator at once.
        self._transport.send(sender, encode(CertificateResponse(found)))

    def on_response(self, sender: bytes, response: CertificateResponse) -> None:
        """Certificates the validator asked answered (any other peer's answer is dropped
        unread): each taken only for a missing height this node executed, of its own header's
        epoch and block, when a quorum of that epoch validly signed it (the sender is not
        trusted). The answer counts one attempt for each height it lacked; the next request
        goes out at once."""
        outstanding = self._outstanding
        if outstanding is None or outstanding[0] != sender:
            self.unrequested += 1
            return
        _, start, count = outstanding
        taken = []
        for certificate in response.certificates:
            header = certificate.header
            if header.height not in self.missing or not start <= header.height < start + count:
                continue
            record = self._chain.store.execution_record(header.height)
            if record is None:
                continue
            if not same_block(header, record.header):
                self.attestations.counters.drop("other_block")
                continue
            validators = self.attestations.validators(header.epoch)
            if validators is None:
                continue
            message = self._domain.signing_bytes(header)
            if certificate_problem(self._chain.suite, message, certificate, validators.config):
                continue
            if header != record.header:
                raise ExecutionDivergedError(
                    f"validators holding a quorum certified block {header.height} with state "
                    f"root {header.state_root.hex()}; this node reached "
                    f"{record.header.state_root.hex()}: its execution diverged"
                )
            del self.missing[header.height]
            taken.append(certificate)
        self._store(taken)
        for height in range(start, start + count):
            if height in self.missing:
                self.missing[height] += 1
                if self.missing[height] >= ATTEMPTS_MAX:
                    del self.missing[height]  # no validator asked had it: given up
        self._outstanding = None
        self._ask()

    def _note_missing(self, height: int) -> None:
        self.missing[height] = 0
        while len(self.missing) > MISSING_MAX:
            del self.missing[min(self.missing)]

    def _ask(self) -> None:
        """Ask the next validator for the lowest missing certificates, unless a request is
        still unanswered (and not yet `ASK_STALE_COMMITS` commits old)."""
        if not self.missing:
            return
        if self._outstanding is not None and self._commits - self._asked_at < ASK_STALE_COMMITS:
            return
        validators = self.attestations.validators(self.attestations.latest_epoch)
        peers = [] if validators is None else [n for n in validators.index_of if n != self._node_id]
        if not peers:
            return
        start = min(self.missing)
        count = min(CERTIFICATE_REQUEST_MAX, self._chain.height - start + 1)
        peer = peers[self._turn % len(peers)]
        self._turn += 1
        self._asked_at = self._commits
        self._outstanding = (peer, start, count)
        self._transport.send(peer, encode(CertificateRequest(start=start, count=count)))

    # ------------------------------------------------------------------ certificates

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
