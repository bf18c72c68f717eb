"""The mempool: every admission refusal by its code, bounds, ordering by sender and nonce,
batches without nonce gaps, cleanup after a commit, and the engine skipping a signature the
mempool already checked."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consortia.crypto import suite as get_suite
from consortia.mempool import Mempool, MempoolLimits
from consortia.types.encoding import decode, encode
from consortia.types.signing import SigningDomain, sign, transaction_id
from consortia.types.transaction import Transaction, TransactionBody

SUITE = get_suite("intl")
DOMAIN = SigningDomain(SUITE.hash(b"mempool test genesis"))
CHAIN = "mempool-test"
KEYS = {name: SUITE.hash(name.encode()) for name in ("alice", "bob", "carol")}
NONCES = {"alice": 0, "bob": 3, "carol": 0}


def next_nonce(sender: str) -> int | None:
    return NONCES.get(sender)


def tx(sender: str, nonce: int, *, expiry: int = 100, amount: int = 1, **changes: object) -> bytes:
    private_key = KEYS.get(sender, KEYS["alice"])
    fields: dict[str, object] = {
        "chain_id": CHAIN,
        "sender": sender,
        "public_key": SUITE.public_key(private_key),
        "nonce": nonce,
        "contract": "asset",
        "contract_version": 1,
        "method": "transfer",
        "args": {"to": "bob", "amount": amount},
        "expiry_height": expiry,
    }
    fields.update(changes)
    body = TransactionBody(**fields)  # type: ignore[arg-type]
    return encode(Transaction(body, sign(SUITE, private_key, body, DOMAIN)))


def pool(**limits: int) -> Mempool:
    return Mempool(SUITE, DOMAIN, CHAIN, MempoolLimits(**limits))


def codes(mempool: Mempool, raws: list[bytes], height: int = 1) -> list[str]:
    return [a.code for a in mempool.admit_many(raws, height=height, next_nonce=next_nonce)]


def test_every_refusal_has_its_code_and_changes_nothing() -> None:
    mempool = pool(transaction_bytes_max=400)
    good = tx("alice", 0)
    forged = encode(msgspec.structs.replace(decode(good, Transaction), signature=bytes(64)))
    cases = {
        "too_large": b"\x00" * 401,
        "malformed_transaction": b"\x92\x01\x02",
        "wrong_chain": tx("alice", 0, chain_id="other"),
        "expired": tx("alice", 0, expiry=1),
        "expiry_too_far": tx("alice", 0, expiry=200_000),
        "unknown_account": tx("dave", 0),
        "stale_nonce": tx("bob", 2),
        "nonce_too_far": tx("alice", 256),
        "bad_signature": forged,
    }
    answers = codes(mempool, list(cases.values()))
    assert answers == list(cases)
    assert len(mempool) == 0 and mempool.size_bytes == 0


def test_duplicates_and_taken_nonces_are_refused() -> None:
    mempool = pool()
    first = tx("alice", 0)
    assert codes(mempool, [first]) == ["ok"]
    assert codes(mempool, [first, tx("alice", 0, amount=2)]) == ["duplicate", "nonce_taken"]
    # Within one submission too.
    assert codes(mempool, [tx("carol", 0), tx("carol", 0, amount=3)]) == ["ok", "nonce_taken"]
    assert len(mempool) == 2


def test_bounds_answer_mempool_full_and_sender_limit() -> None:
    mempool = pool(transactions_max=3, per_sender_max=2)
    answers = codes(mempool, [tx("alice", 0), tx("alice", 1), tx("bob", 3), tx("carol", 0)])
    assert answers == ["ok", "ok", "ok", "mempool_full"]
    sender = pool(per_sender_max=2)
    assert codes(sender, [tx("alice", 0), tx("alice", 1)]) == ["ok", "ok"]
    assert codes(sender, [tx("alice", 2)]) == ["nonce_too_far"]


def test_batches_follow_nonces_take_senders_in_turn_and_never_leave_a_gap() -> None:
    mempool = pool()
    raws = [tx("alice", 1), tx("alice", 0), tx("bob", 3), tx("alice", 2), tx("carol", 1)]
    assert codes(mempool, raws) == ["ok"] * 5
    batch = mempool.batch(next_nonce=next_nonce)
    order = [(b.body.sender, b.body.nonce) for b in (decode(r, Transaction) for r in batch)]
    # carol's nonce 1 waits for her nonce 0; alice and bob take turns.
    assert order == [("alice", 0), ("bob", 3), ("alice", 1), ("alice", 2)]
    assert len(mempool.batch(next_nonce=next_nonce, items_max=2)) == 2


def test_a_commit_removes_its_transactions_and_spent_or_expired_ones() -> None:
    mempool = pool()
    included, spent = tx("alice", 0), tx("bob", 3)
    expiring, later = tx("carol", 0, expiry=5), tx("alice", 1)
    assert codes(mempool, [included, spent, expiring, later]) == ["ok"] * 4
    # bob's nonce 3 was spent by another body he sent elsewhere.
    elsewhere = tx("bob", 3, amount=7)
    after = {"alice": 1, "bob": 4, "carol": 0}
    mempool.committed([included, elsewhere, b"junk"], height=5, next_nonce=after.get)
    remaining = {decode(r, Transaction).body.sender for r in mempool.batch(next_nonce=after.get)}
    assert remaining == {"alice"}
    assert len(mempool) == 1


def test_expired_transactions_go_at_their_height_whoever_the_block_touched() -> None:
    mempool = pool()
    carol, alice, bob = tx("carol", 0, expiry=5), tx("alice", 0, expiry=8), tx("bob", 3)
    assert codes(mempool, [carol, alice, bob]) == ["ok"] * 3

    def waiting() -> list[str]:
        return sorted(decode(raw, Transaction).body.sender for raw in mempool.transactions())

    mempool.committed([], height=4, next_nonce=next_nonce)
    assert waiting() == ["alice", "bob", "carol"]
    mempool.committed([], height=5, next_nonce=next_nonce)
    assert waiting() == ["alice", "bob"]
    assert codes(mempool, [tx("carol", 0, expiry=7)], height=5) == ["ok"]  # lower than alice's
    mempool.committed([], height=7, next_nonce=next_nonce)
    assert waiting() == ["alice", "bob"]
    mempool.committed([bob], height=8, next_nonce={**NONCES, "bob": 4}.get)
    assert waiting() == []


@settings(max_examples=40, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["alice", "bob", "carol"]),
            st.integers(0, 3),  # nonce offset
            st.integers(2, 12),  # expiry height
            st.booleans(),  # commit it in the next block
            st.integers(0, 3),  # heights the next block moves on
        ),
        max_size=20,
    )
)
def test_commits_remove_what_a_scan_of_every_waiting_transaction_removes(
    steps: list[tuple[str, int, int, bool, int]],
) -> None:
    """The expiry floor only spares looking: the pool that scans every waiting transaction
    at every commit (its floor forced to 0) ends every step holding the same ones."""
    fast, scanning = pool(), pool()
    nonces = dict(NONCES)
    height = 1
    for sender, offset, expiry, include, advance in steps:
        raw = tx(sender, nonces[sender] + offset, expiry=expiry)
        for mempool in (fast, scanning):
            mempool.admit(raw, height=height, next_nonce=nonces.get)
        payload = [raw] if include and offset == 0 and expiry > height + advance else []
        if payload:
            nonces[sender] += 1
        height += advance
        for mempool in (fast, scanning):
            scanning._expiry_floor = 0
            mempool.committed(payload, height=height, next_nonce=nonces.get)
        assert fast.transactions() == scanning.transactions()
        assert len(fast) == len(scanning) and fast.size_bytes == scanning.size_bytes


def _batch_asking_everyone(
    mempool: Mempool, next_nonce: Callable[[str], int | None], items_max: int, bytes_max: int
) -> list[bytes]:
    """`Mempool.batch` as it was written before it asked each sender's nonce at its turn:
    every waiting sender's next nonce asked first, every sender's turn taken every round."""
    cursors = {sender: next_nonce(sender) for sender in mempool._by_sender}
    chosen: list[bytes] = []
    size, progress = 0, True
    while progress and len(chosen) < items_max:
        progress = False
        for sender, waiting in mempool._by_sender.items():
            nonce = cursors[sender]
            entry = waiting.get(nonce) if nonce is not None else None
            if entry is None or len(chosen) >= items_max:
                continue
            if size + len(entry.raw) > bytes_max:
                return chosen
            chosen.append(entry.raw)
            size += len(entry.raw)
            cursors[sender] = nonce + 1 if nonce is not None else None
            progress = True
    return chosen


@settings(max_examples=40, deadline=None)
@given(
    waiting=st.lists(
        st.tuples(st.sampled_from(["alice", "bob", "carol"]), st.integers(0, 4)), max_size=12
    ),
    items_max=st.integers(1, 8),
    transactions_bytes=st.integers(1, 8),
    proposed=st.dictionaries(st.sampled_from(["alice", "bob", "carol"]), st.integers(0, 2)),
)
def test_a_batch_is_the_one_asking_every_sender_first_would_make(
    waiting: list[tuple[str, int]],
    items_max: int,
    transactions_bytes: int,
    proposed: dict[str, int],
) -> None:
    mempool = pool()
    for sender, offset in waiting:
        mempool.admit(tx(sender, NONCES[sender] + offset), height=1, next_nonce=next_nonce)
    asked: list[str] = []

    def nonce_after_proposals(sender: str) -> int | None:  # as a proposer's is
        asked.append(sender)
        return NONCES[sender] + proposed.get(sender, 0)

    bytes_max = transactions_bytes * len(tx("alice", 0))
    batch = mempool.batch(
        next_nonce=nonce_after_proposals, items_max=items_max, bytes_max=bytes_max
    )
    assert len(asked) == len(set(asked))  # each sender asked at most once
    assert batch == _batch_asking_everyone(mempool, nonce_after_proposals, items_max, bytes_max)


def test_the_engine_skips_a_signature_the_mempool_checked() -> None:
    mempool = pool()
    good = tx("alice", 0)
    assert mempool.known(good) is None
    assert codes(mempool, [good]) == ["ok"]
    known = mempool.known(good)
    assert known is not None
    assert known[1] == decode(good, Transaction)
    assert known[0] == transaction_id(mempool.suite, known[1].body)
    forged = encode(msgspec.structs.replace(decode(good, Transaction), signature=bytes(64)))
    assert mempool.known(forged) is None
    assert codes(pool(), [forged]) == ["bad_signature"]


@settings(max_examples=60, deadline=None)
@given(
    operations=st.lists(
        st.tuples(st.sampled_from(["alice", "bob", "carol"]), st.integers(0, 8)), max_size=30
    )
)
def test_bounds_and_bookkeeping_hold_under_any_submissions(
    operations: list[tuple[str, int]],
) -> None:
    mempool = pool(transactions_max=10, per_sender_max=4)
    admitted = 0
    for sender, offset in operations:
        raw = tx(sender, NONCES[sender] + offset)
        if mempool.admit(raw, height=1, next_nonce=next_nonce).ok:
            admitted += len(raw)
        assert len(mempool) <= 10
        assert mempool.size_bytes == admitted
    batch = mempool.batch(next_nonce=next_nonce)
    senders: dict[str, int] = {}
    for raw in batch:
        body = decode(raw, Transaction).body
        expected = senders.get(body.sender, NONCES[body.sender])
        assert body.nonce == expected  # contiguous per sender
        senders[body.sender] = expected + 1


@pytest.mark.parametrize("limit", ["transactions_max", "bytes_max", "per_sender_max"])
def test_limits_must_be_positive(limit: str) -> None:
    with pytest.raises(AssertionError):
        MempoolLimits(**{limit: 0})
