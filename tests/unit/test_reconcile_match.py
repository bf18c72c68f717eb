"""Reconciliation's matching: every planted break found, of its kind, and nothing else.

Seeded runs build a chain of transfer legs among a bank's accounts and others, books that
copy it exactly (each reference a transaction hash, some in capitals, some a business
reference that only the fallback can match), then plant breaks of every kind and check that
the breaks reported are exactly the planted ones. Also: a transfer between two of the bank's
own accounts is two legs; duplicates; legs are read from transfer events only.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from consortia.reconcile.balances import BalanceCheck
from consortia.reconcile.chain import legs_of
from consortia.reconcile.errors import EXIT_AGREE, EXIT_BREAKS, EXIT_VERIFICATION
from consortia.reconcile.match import (
    AMOUNT_DIFFERS,
    COUNTERPARTY_DIFFERS,
    CURRENCY_DIFFERS,
    MISSING_IN_BOOKS,
    NOT_ON_CHAIN,
    Leg,
    Posting,
    reconcile,
)
from consortia.reconcile.report import Scope, exit_status, report

ACCOUNTS = ("bank-0.treasury", "alice", "erin")
OTHERS = ("bank-1.treasury", "bob", "carol")
SEEDS = range(40)


def _hash(rng: random.Random) -> str:
    return rng.randbytes(32).hex()


def _chain(rng: random.Random, transactions: int) -> list[Leg]:
    legs = []
    for height in range(1, transactions + 1):
        tx_hash = _hash(rng)
        ours = rng.choice(ACCOUNTS)
        other = rng.choice([a for a in ACCOUNTS + OTHERS if a != ours])
        amount = rng.randint(1, 10**9)
        currency = rng.choice(("CNY", "CNY", "USD"))
        signed = -amount if rng.random() < 0.5 else amount
        legs.append(Leg(tx_hash, height, 0, 0, ours, signed, currency, other))
        if other in ACCOUNTS:  # both sides are the bank's: two legs
            legs.append(Leg(tx_hash, height, 0, 0, other, -signed, currency, ours))
    return legs


def _books(rng: random.Random, legs: list[Leg]) -> list[Posting]:
    postings = []
    for row, leg in enumerate(legs):
        reference = leg.tx_hash.upper() if rng.random() < 0.2 else leg.tx_hash
        if rng.random() < 0.1:
            reference = f"PAY-{row:06d}"  # a business reference: the fallback matches it
        postings.append(
            Posting(row, leg.account, leg.amount, leg.currency, leg.counterparty, reference)
        )
    return postings


@pytest.mark.parametrize("seed", SEEDS)
def test_every_planted_break_is_found_and_nothing_else(seed: int) -> None:
    rng = random.Random(seed)
    legs = _chain(rng, rng.randint(20, 60))
    postings = _books(rng, legs)
    assert reconcile(postings, legs).breaks == []  # clean books agree

    # Plant one break of every kind on distinct postings that carry the transaction hash.
    hashed = [i for i, p in enumerate(postings) if len(p.reference) == 64]
    chosen = rng.sample(hashed, 5)
    planted: set[tuple[str, str, str]] = set()
    removed, amount_row, currency_row, counterparty_row, extra_base = chosen
    leg_of = {p.row: legs[p.row] for p in postings}

    planted.add((MISSING_IN_BOOKS, legs[removed].tx_hash, legs[removed].account))
    p = postings[amount_row]
    postings[amount_row] = replace(p, amount=p.amount + rng.choice((-1, 1, 100, 10**6)))
    planted.add((AMOUNT_DIFFERS, leg_of[amount_row].tx_hash, p.account))
    p = postings[currency_row]
    postings[currency_row] = replace(p, currency="EUR")
    planted.add((CURRENCY_DIFFERS, leg_of[currency_row].tx_hash, p.account))
    p = postings[counterparty_row]
    postings[counterparty_row] = replace(p, counterparty="mallory")
    planted.add((COUNTERPARTY_DIFFERS, leg_of[counterparty_row].tx_hash, p.account))
    extra = replace(
        postings[extra_base], row=len(postings), reference=_hash(rng), amount=10**12 + seed
    )
    postings.append(extra)
    planted.add((NOT_ON_CHAIN, extra.reference, extra.account))
    duplicate = replace(postings[extra_base], row=len(postings))  # booked twice
    postings.append(duplicate)
    planted.add((NOT_ON_CHAIN, duplicate.reference.lower(), duplicate.account))
    del postings[removed]

    result = reconcile(postings, legs)
    found = {
        (
            item.kind,
            item.leg.tx_hash if item.leg is not None else item.posting.reference.lower(),  # type: ignore[union-attr]
            item.account,
        )
        for item in result.breaks
    }
    assert found == planted
    assert len(result.breaks) == len(planted)
    # Every posting and every leg is used exactly once: in a match or in a break.
    legs_used = [m.leg for m in result.matches] + [b.leg for b in result.breaks if b.leg]
    paired_rows = [m.posting.row for m in result.matches]
    unpaired_rows = [b.posting.row for b in result.breaks if b.posting and b.leg is None]
    assert sorted(paired_rows + unpaired_rows) == sorted(p.row for p in postings)
    assert len({id(leg) for leg in legs_used}) == len(legs)


def test_a_transfer_between_two_own_accounts_is_two_legs_and_two_postings() -> None:
    events = [
        {"contract": "asset", "name": "transferred", "fields": {}},  # malformed: no legs
        {
            "contract": "asset",
            "name": "transferred",
            "fields": {"source": "alice", "target": "erin", "amount": 7, "currency": "CNY"},
        },
        {"contract": "receivable", "name": "financed", "fields": {"bank": "alice"}},
    ]
    found = legs_of(events, frozenset({"alice", "erin"}))
    assert found == [(1, "alice", -7, "CNY", "erin"), (1, "erin", 7, "CNY", "alice")]
    assert legs_of(events, frozenset({"bob"})) == []
    # The node's plain transaction record shows each event as [contract, name, fields].
    as_lists = [[e["contract"], e["name"], e["fields"]] for e in events]
    assert legs_of(as_lists, frozenset({"alice", "erin"})) == found
    legs = [Leg("ab" * 32, 3, 0, i, a, n, c, cp) for i, a, n, c, cp in found]
    postings = [
        Posting(0, "alice", -7, "CNY", "erin", "AB" * 32),
        Posting(1, "erin", 7, "CNY", "alice", "ab" * 32),
    ]
    result = reconcile(postings, legs)
    assert result.breaks == [] and len(result.matches) == 2
    # A sign error in the books is an amount that differs.
    flipped = [postings[0], replace(postings[1], amount=-7)]
    assert [b.kind for b in reconcile(flipped, legs).breaks] == [AMOUNT_DIFFERS]


def test_the_fallback_never_crosses_accounts_and_a_null_counterparty_differs() -> None:
    leg = Leg("cd" * 32, 5, 0, 0, "alice", -100, "CNY", "bob")
    other_account = Posting(0, "erin", -100, "CNY", "bob", "PAY-1")
    result = reconcile([other_account], [leg])
    assert sorted(b.kind for b in result.breaks) == [MISSING_IN_BOOKS, NOT_ON_CHAIN]
    no_counterparty = Posting(0, "alice", -100, "CNY", None, "cd" * 32)
    assert [b.kind for b in reconcile([no_counterparty], [leg]).breaks] == [COUNTERPARTY_DIFFERS]
    by_business_reference = Posting(0, "alice", -100, "CNY", "bob", "PAY-1")
    result = reconcile([by_business_reference], [leg])
    assert result.breaks == [] and [m.how for m in result.matches] == ["fallback"]


def test_one_pair_differing_in_two_fields_is_one_break_for_each() -> None:
    leg = Leg("ef" * 32, 9, 1, 0, "alice", 250, "CNY", "bob")
    posting = Posting(0, "alice", 205, "USD", "bob", "ef" * 32)
    result = reconcile([posting], [leg])
    assert [b.kind for b in result.breaks] == [AMOUNT_DIFFERS, CURRENCY_DIFFERS]
    assert result.counts()[AMOUNT_DIFFERS] == 1 and len(result.matches) == 1


def test_issues_and_redemptions_are_legs_without_counterparty() -> None:
    events = [
        {
            "contract": "asset",
            "name": "issued",
            "fields": {"currency": "CNY", "amount": 9, "to": "b"},
        },
        {
            "contract": "asset",
            "name": "redeemed",
            "fields": {"currency": "CNY", "amount": 4, "by": "b"},
        },
        {
            "contract": "asset",
            "name": "issued",
            "fields": {"currency": "CNY", "amount": 1, "to": "c"},
        },
    ]
    assert legs_of(events, frozenset({"b"})) == [
        (0, "b", 9, "CNY", None),
        (1, "b", -4, "CNY", None),
    ]


def test_unbalanced_proven_balances_outrank_breaks_and_unchecked_ones_never_pass() -> None:
    leg = Leg("ab" * 32, 2, 0, 0, "alice", -5, "CNY", "bob")
    posting = Posting(0, "alice", -5, "CNY", "bob", "ab" * 32)
    agreed = reconcile([posting], [leg])
    broken = reconcile([], [leg])
    adds_up = BalanceCheck("alice", "CNY", 100, 95, -5)
    hidden = BalanceCheck("alice", "CNY", 100, 90, -5)  # 5 more left than the legs say
    unchecked = BalanceCheck("alice", "CNY", None, 95, -5)  # the node no longer keeps it
    assert (adds_up.complete, hidden.complete, unchecked.complete) == (True, False, None)
    assert exit_status(agreed, [adds_up]) == EXIT_AGREE
    assert exit_status(broken, [adds_up]) == EXIT_BREAKS
    assert exit_status(agreed, [adds_up, hidden]) == EXIT_VERIFICATION
    assert exit_status(broken, [unchecked, hidden]) == EXIT_VERIFICATION
    assert exit_status(agreed, [unchecked]) == EXIT_AGREE
    scope = Scope("c", 1, 2, ("alice",), "postings", "host=h")
    document = report(scope, [posting], [leg], agreed, [adds_up, unchecked])
    assert document["complete"] is None and document["agree"] is True
    assert report(scope, [], [leg], broken, [hidden])["complete"] is False
    assert report(scope, [], [leg], broken, [adds_up])["break_counts"][MISSING_IN_BOOKS] == 1
