"""The mempool: admission, deduplication, bounds, ordering by sender and nonce, batching.

Owns the transactions this node has admitted and not yet seen committed, and the record of
which signed transactions it has already decoded and whose signatures it checked, or that
validators holding more than the faulty power checked (`known`:
the proposal checks, the engine and the mempool's own bookkeeping then neither decode nor
hash nor verify them again; a valid signature is valid on every node, so skipping the check
never changes a result).

Admission, in a fixed order, each refusal a stable code that changes nothing: the size, the
encoding, the chain id, the expiry window, the account and its next nonce (no replay; at most
`per_sender_max` ahead), duplicates, the signature under the chain's suite and genesis (checked
in batches over every core), then the per-sender and total bounds ("mempool_full").

Batches take, sender by sender in the order senders first arrived, the next nonces each can
run, so one busy sender never starves the others and no batch holds a nonce gap.

Must never: read a clock, the disk or the network (the node hands in the height and each
account's next nonce), or execute anything.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

import msgspec

from consortia.crypto import Suite
from consortia.errors import DecodeError
from consortia.types.encoding import decode
from consortia.types.genesis import MempoolParams
from consortia.types.signing import SigningDomain, transaction_id
from consortia.types.transaction import Transaction, TransactionBody

# Higher than any expiry height: what `Mempool._expiry_floor` is while nothing waits.
_NEVER: Final = 2**64
# An account's next nonce, or None when no such account exists (committed state).
NextNonce = Callable[[str], int | None]
# A signed transaction this node decoded and whose signature verified: its id and the
# transaction decoded from exactly those bytes.
Known = tuple[bytes, Transaction]


@dataclass(frozen=True, slots=True)
class MempoolLimits:
    transactions_max: int = MempoolParams().transactions_max
    bytes_max: int = MempoolParams().bytes_max
    transaction_bytes_max: int = MempoolParams().transaction_bytes_max
    batch_transactions_max: int = MempoolParams().batch_transactions_max
    # Transactions one sender may have waiting: nonces next .. next + per_sender_max - 1.
    per_sender_max: int = 256
    # The farthest ahead an expiry height may be (the engine refuses beyond it too).
    expiry_blocks_max: int = 100_000

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            assert getattr(self, name) >= 1, f"mempool limit {name} must be positive"
        assert self.transaction_bytes_max <= self.bytes_max

    @classmethod
    def from_genesis(cls, params: MempoolParams, *, expiry_blocks_max: int) -> MempoolLimits:
        return cls(
            transactions_max=params.transactions_max,
            bytes_max=params.bytes_max,
            transaction_bytes_max=params.transaction_bytes_max,
            batch_transactions_max=params.batch_transactions_max,
            expiry_blocks_max=expiry_blocks_max,
        )


# Admission's records are msgspec structs, not dataclasses: one of each is built for every
# transaction admitted, and a struct is built in C, several times faster.


class Admission(msgspec.Struct, frozen=True):
    """The answer to one submitted transaction: accepted, or refused with a stable code."""

    ok: bool
    code: str  # "ok" or why not
    message: str
    tx_id: bytes  # empty when the bytes are no transaction at all


class _Entry(msgspec.Struct):
    tx_id: bytes
    body: TransactionBody
    raw: bytes


class _Candidate(msgspec.Struct):
    index: int
    raw: bytes
    tx: Transaction
    tx_id: bytes


@dataclass(slots=True)
class Mempool:
    suite: Suite
    domain: SigningDomain
    chain_id: str
    limits: MempoolLimits = field(default_factory=MempoolLimits)
    # Invariants: every entry is in `_by_id` and in `_by_sender` under its nonce, once;
    # `_bytes` is the sum of their sizes; both bounded by the limits.
    _by_id: dict[bytes, _Entry] = field(default_factory=dict)
    _by_sender: OrderedDict[str, dict[int, _Entry]] = field(default_factory=OrderedDict)
    _bytes: int = 0
    # Whole signed transactions whose signature verified here, with their id and decoded form
    # (bounded by `transactions_max`, oldest out).
    _known: OrderedDict[bytes, Known] = field(default_factory=OrderedDict)
    # No waiting transaction expires below this height (a lower bound: an entry's removal may
    # leave it lower than it needs to be). Until a block reaches it, `committed` looks only
    # at the senders the block touched; a block that reaches it looks at every waiting
    # transaction and sets it afresh.
    _expiry_floor: int = _NEVER

    def __len__(self) -> int:
        return len(self._by_id)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __contains__(self, tx_id: bytes) -> bool:
        return tx_id in self._by_id

    def transactions(self) -> list[bytes]:
        """Every waiting transaction's signed bytes, in the order they were admitted (what a
        node's journal must keep: node/journal.py)."""
        return [entry.raw for entry in self._by_id.values()]

    def admit(self, raw: bytes, *, height: int, next_nonce: NextNonce) -> Admission:
        return self.admit_many([raw], height=height, next_nonce=next_nonce)[0]

    def admit_many(
        self, raws: list[bytes], *, height: int, next_nonce: NextNonce, checked: bool = False
    ) -> list[Admission]:
        """Admit transactions in order; signatures are checked together, over every core.
        `checked`: their signatures were checked by validators holding more than the faulty
        power (the node's vouching, node/vouching.py), so they are not checked again here."""
        answers: list[Admission | None] = [None] * len(raws)
        candidates: list[_Candidate] = []
        seen: set[bytes] = set()  # the ids of `candidates`, for duplicates within the call
        for index, raw in enumerate(raws):
            refused = self._precheck(
                index, raw, height, next_nonce, candidates=candidates, seen=seen
            )
            if isinstance(refused, Admission):
                answers[index] = refused
        valid = (
            [True] * len(candidates)
            if checked
            else self.suite.verify_many(
                [
                    (c.tx.body.public_key, self.domain.signing_bytes(c.tx.body), c.tx.signature)
                    for c in candidates
                ]
            )
        )
        for candidate, good in zip(candidates, valid, strict=True):
            answers[candidate.index] = (
                self._insert(candidate, next_nonce)
                if good
                else _refused("bad_signature", "the signature does not verify", candidate.tx_id)
            )
        return [answer for answer in answers if answer is not None]

    def _precheck(
        self,
        index: int,
        raw: bytes,
        height: int,
        next_nonce: NextNonce,
        *,
        candidates: list[_Candidate],
        seen: set[bytes],
    ) -> Admission | None:
        limits = self.limits
        if len(raw) > limits.transaction_bytes_max:
            return _refused("too_large", f"over {limits.transaction_bytes_max} bytes", b"")
        try:
            tx = decode(raw, Transaction)
        except DecodeError as error:
            return _refused("malformed_transaction", error.message, b"")
        body = tx.body
        tx_id = transaction_id(self.suite, body)
        if body.chain_id != self.chain_id:
            return _refused("wrong_chain", f"transaction is for chain {body.chain_id!r}", tx_id)
        if body.expiry_height <= height:
            return _refused("expired", f"expired at height {body.expiry_height}", tx_id)
        if body.expiry_height > height + 1 + limits.expiry_blocks_max:
            return _refused("expiry_too_far", "the expiry height is too far ahead", tx_id)
        if tx_id in self._by_id or tx_id in seen:
            return _refused("duplicate", "already waiting", tx_id)
        expected = next_nonce(body.sender)
        if expected is None:
            return _refused("unknown_account", f"no account {body.sender!r}", tx_id)
        if body.nonce < expected:
            return _refused(
                "stale_nonce", f"nonce {body.nonce} is spent; next is {expected}", tx_id
            )
        if body.nonce >= expected + limits.per_sender_max:
            return _refused("nonce_too_far", f"nonce {body.nonce}; next is {expected}", tx_id)
        if body.nonce in self._by_sender.get(body.sender, _NONE_WAITING):
            return _refused(
                "nonce_taken", f"another transaction waits with nonce {body.nonce}", tx_id
            )
        candidates.append(_Candidate(index, raw, tx, tx_id))
        seen.add(tx_id)
        return None

    def _insert(self, candidate: _Candidate, next_nonce: NextNonce) -> Admission:
        limits = self.limits
        body = candidate.tx.body
        self._remember(candidate)
        waiting = self._by_sender.get(body.sender, _NONE_WAITING)
        if body.nonce in waiting:  # a twin in the same submission
            return _refused(
                "nonce_taken", "another transaction waits with this nonce", candidate.tx_id
            )
        if len(waiting) >= limits.per_sender_max:
            return _refused("sender_limit", "too many transactions waiting", candidate.tx_id)
        if (
            len(self._by_id) >= limits.transactions_max
            or self._bytes + len(candidate.raw) > limits.bytes_max
        ):
            return _refused("mempool_full", "the mempool is full; retry later", candidate.tx_id)
        entry = _Entry(candidate.tx_id, body, candidate.raw)
        self._by_id[entry.tx_id] = entry
        self._by_sender.setdefault(body.sender, {})[body.nonce] = entry
        self._bytes += len(candidate.raw)
        self._expiry_floor = min(self._expiry_floor, body.expiry_height)
        return Admission(True, "ok", "", candidate.tx_id)

    def _remember(self, candidate: _Candidate) -> None:
        self._known[candidate.raw] = (candidate.tx_id, candidate.tx)
        self._known.move_to_end(candidate.raw)
        while len(self._known) > self.limits.transactions_max:
            self._known.popitem(last=False)

    def signatures_valid(self, raws: list[bytes]) -> bool:
        """Whether every one of `raws` is a signed transaction whose signature verifies
        (those this node checked already are not checked again): what a validator vouches for
        when it acks a batch."""
        unchecked: list[Transaction] = []
        for raw in raws:
            if raw in self._known:
                continue
            try:
                unchecked.append(decode(raw, Transaction))
            except DecodeError:
                return False
        return all(
            self.suite.verify_many(
                [
                    (tx.body.public_key, self.domain.signing_bytes(tx.body), tx.signature)
                    for tx in unchecked
                ]
            )
        )

    def known(self, raw: bytes) -> Known | None:
        """The id and decoded form of this exact signed transaction, when its signature
        verified here; None otherwise (then decode and verify it yourself)."""
        return self._known.get(raw)

    def batch(
        self, *, next_nonce: NextNonce, items_max: int | None = None, bytes_max: int | None = None
    ) -> list[bytes]:
        """Transactions for the next block: for each sender, in order of first arrival, its
        next runnable nonces, one sender at a time round after round. A sender's next nonce
        is asked for at its first turn: a full batch leaves the senders after it unasked."""
        items_max = min(
            items_max or self.limits.batch_transactions_max, self.limits.batch_transactions_max
        )
        bytes_max = bytes_max or self.limits.bytes_max
        cursors: dict[str, int | None] = {}  # each sender's next nonce in this batch
        chosen: list[bytes] = []
        size = 0
        progress = True
        while progress and len(chosen) < items_max:
            progress = False
            for sender, waiting in self._by_sender.items():
                if len(chosen) >= items_max:
                    break
                if sender in cursors:
                    nonce = cursors[sender]
                else:
                    nonce = cursors[sender] = next_nonce(sender)
                entry = waiting.get(nonce) if nonce is not None else None
                if entry is None:
                    continue
                if size + len(entry.raw) > bytes_max:
                    return chosen
                chosen.append(entry.raw)
                size += len(entry.raw)
                cursors[sender] = nonce + 1 if nonce is not None else None
                progress = True
        return chosen

    def committed(self, payload: Iterable[bytes], *, height: int, next_nonce: NextNonce) -> None:
        """A block committed with these transactions: forget them, and every waiting one whose
        nonce they spent (a sender may have signed another body with the same nonce and sent
        it elsewhere) or whose expiry has passed (looked for only once a block reaches the
        lowest expiry height waiting)."""
        touched: dict[str, None] = {}  # the senders of `payload`, in its order
        for raw in payload:
            known = self._known.get(raw)
            if known is None:
                try:
                    body = decode(raw, Transaction).body
                except DecodeError:
                    continue
                tx_id = transaction_id(self.suite, body)
            else:
                tx_id, body = known[0], known[1].body
            touched[body.sender] = None
            entry = self._by_id.get(tx_id)
            if entry is not None:
                self._remove(entry)
        expiring = height >= self._expiry_floor
        senders = self._by_sender if expiring else [s for s in touched if s in self._by_sender]
        for sender in list(senders):
            expected = next_nonce(sender) if sender in touched else None
            for entry in list(self._by_sender.get(sender, _NONE_WAITING).values()):
                spent = expected is not None and entry.body.nonce < expected
                if spent or entry.body.expiry_height <= height:
                    self._remove(entry)
        if expiring:
            self._expiry_floor = min(
                (entry.body.expiry_height for entry in self._by_id.values()), default=_NEVER
            )

    def _remove(self, entry: _Entry) -> None:
        del self._by_id[entry.tx_id]
        waiting = self._by_sender[entry.body.sender]
        del waiting[entry.body.nonce]
        if not waiting:
            del self._by_sender[entry.body.sender]
        self._bytes -= len(entry.raw)
        assert self._bytes >= 0


# The nonces a sender with nothing waiting has waiting (never written).
_NONE_WAITING: Final[Mapping[int, _Entry]] = MappingProxyType({})


def _refused(code: str, message: str, tx_id: bytes) -> Admission:
    return Admission(False, code, message, tx_id)
