"""Pairing an institution's postings with the chain's transfer legs, and naming the breaks.

A leg is one side of one on-chain transfer as one of the institution's accounts sees it:
`amount` is signed from that account's point of view (positive: received; negative: sent),
`counterparty` is the other account (none for an issue or a redemption of money by its
issuer). A transfer between two of the institution's own accounts
is two legs, as it is two postings in its books.

Matching, in order (docs/reconcile.md, *Matching*):

1. by reference: a posting whose `reference` is a transaction hash (64 hex digits, any case)
   is paired with the legs of that transaction on the same account; within such a group, exact
   pairs (same amount, currency and counterparty) first, then the rest in order, each pair
   compared field by field (`amount_differs`, `currency_differs`, `counterparty_differs`);
2. fallback, for the postings left whose reference names no leg of their account (a business
   reference the chain does not carry): the earliest unpaired leg of the same account with
   exactly the same amount, currency and counterparty;
3. whatever is left: legs are `missing_in_books` (on chain, not in the books), postings are
   `not_on_chain` (in the books, not on chain).

Owns these rules and their result; pure (no I/O, no clock). Must never pair a posting with a
leg of another account, nor use one posting or one leg twice.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from consortia.types.primitives import HASH_HEX_PATTERN

# A posting's reference that is a transaction hash, in either case as a banker may write it;
# normal_reference turns it into the chain's lowercase (types.primitives.HASH_HEX_PATTERN).
TX_HASH: Final = re.compile(HASH_HEX_PATTERN, re.IGNORECASE)

# Kinds of break, in the order a report lists them.
MISSING_IN_BOOKS: Final = "missing_in_books"
NOT_ON_CHAIN: Final = "not_on_chain"
AMOUNT_DIFFERS: Final = "amount_differs"
CURRENCY_DIFFERS: Final = "currency_differs"
COUNTERPARTY_DIFFERS: Final = "counterparty_differs"
KINDS: Final = (
    MISSING_IN_BOOKS,
    NOT_ON_CHAIN,
    AMOUNT_DIFFERS,
    CURRENCY_DIFFERS,
    COUNTERPARTY_DIFFERS,
)
_COMPARED: Final = (
    ("amount", AMOUNT_DIFFERS),
    ("currency", CURRENCY_DIFFERS),
    ("counterparty", COUNTERPARTY_DIFFERS),
)


@dataclass(frozen=True, slots=True)
class Posting:
    """One row of the institution's postings table (`row`: its place in the rows read)."""

    row: int
    account: str
    amount: int
    currency: str
    counterparty: str | None
    reference: str
    posted_at: datetime | None = None

    def view(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "account": self.account,
            "amount": self.amount,
            "currency": self.currency,
            "counterparty": self.counterparty,
            "reference": self.reference,
            "posted_at": None if self.posted_at is None else self.posted_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class Leg:
    """One side of a proven on-chain transfer: the transaction, its place, the account's side.
    `header` is the certified execution header the receipt was proven against; `proof` the
    proof's canonical encodings (hex), kept when asked for."""

    tx_hash: str
    height: int
    tx_index: int
    event_index: int
    account: str
    amount: int
    currency: str
    counterparty: str | None
    timestamp_ms: int | None = None
    header: dict[str, Any] = field(default_factory=dict)
    proof: dict[str, Any] | None = None

    def view(self, *, proofs: bool = False) -> dict[str, Any]:
        view: dict[str, Any] = {
            "tx_hash": self.tx_hash,
            "height": self.height,
            "tx_index": self.tx_index,
            "event_index": self.event_index,
            "account": self.account,
            "amount": self.amount,
            "currency": self.currency,
            "counterparty": self.counterparty,
            "timestamp_ms": self.timestamp_ms,
            "verified": True,
            "header": self.header,
        }
        if proofs and self.proof is not None:
            view["proof"] = self.proof
        return view


@dataclass(frozen=True, slots=True)
class Break:
    """A difference between the books and the chain: what kind, and the two sides (one may be
    missing)."""

    kind: str
    account: str
    leg: Leg | None
    posting: Posting | None

    def view(self, *, proofs: bool = False) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "account": self.account,
            "chain": None if self.leg is None else self.leg.view(proofs=proofs),
            "books": None if self.posting is None else self.posting.view(),
        }


@dataclass(frozen=True, slots=True)
class Match:
    """A leg and a posting paired, `how`: `reference` or `fallback`."""

    leg: Leg
    posting: Posting
    how: str


@dataclass(frozen=True, slots=True)
class Reconciliation:
    matches: list[Match]
    breaks: list[Break]

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(KINDS, 0)
        for item in self.breaks:
            counts[item.kind] += 1
        return counts


def normal_reference(reference: str) -> str:
    """A transaction hash in the form the chain shows it (lowercase); any other reference as
    it is."""
    return reference.lower() if TX_HASH.match(reference) else reference


def _same(leg: Leg, posting: Posting) -> bool:
    return (leg.amount, leg.currency, leg.counterparty) == (
        posting.amount,
        posting.currency,
        posting.counterparty,
    )


def _differences(leg: Leg, posting: Posting) -> list[Break]:
    return [
        Break(kind, leg.account, leg, posting)
        for name, kind in _COMPARED
        if getattr(leg, name) != getattr(posting, name)
    ]


def _pair_group(legs: list[Leg], postings: list[Posting]) -> tuple[list[Match], list[Break]]:
    """One transaction's legs and the postings naming it, on one account: exact pairs first,
    then the rest in order, compared; leftovers on either side are breaks."""
    matches: list[Match] = []
    breaks: list[Break] = []
    legs_left = list(legs)
    postings_left: list[Posting] = []
    for posting in postings:
        exact = next((leg for leg in legs_left if _same(leg, posting)), None)
        if exact is None:
            postings_left.append(posting)
        else:
            legs_left.remove(exact)
            matches.append(Match(exact, posting, "reference"))
    for leg, posting in zip(legs_left, postings_left, strict=False):
        matches.append(Match(leg, posting, "reference"))
        breaks.extend(_differences(leg, posting))
    paired = min(len(legs_left), len(postings_left))
    breaks.extend(Break(MISSING_IN_BOOKS, leg.account, leg, None) for leg in legs_left[paired:])
    breaks.extend(Break(NOT_ON_CHAIN, p.account, None, p) for p in postings_left[paired:])
    return matches, breaks


def reconcile(postings: list[Posting], legs: list[Leg]) -> Reconciliation:
    """Pair `postings` with `legs` (the rules above); every posting and every leg ends in
    exactly one match or one break (a pair that differs in several fields is one break per
    field)."""
    legs_by_key: dict[tuple[str, str], list[Leg]] = defaultdict(list)
    for leg in sorted(legs, key=lambda leg: (leg.height, leg.tx_index, leg.event_index)):
        legs_by_key[(leg.tx_hash, leg.account)].append(leg)
    postings_by_key: dict[tuple[str, str], list[Posting]] = defaultdict(list)
    for posting in sorted(postings, key=lambda p: p.row):
        postings_by_key[(normal_reference(posting.reference), posting.account)].append(posting)

    matches: list[Match] = []
    breaks: list[Break] = []
    unpaired_legs: list[Leg] = []
    for key, group in legs_by_key.items():
        if key in postings_by_key:
            paired, differing = _pair_group(group, postings_by_key[key])
            matches.extend(paired)
            breaks.extend(differing)
        else:
            unpaired_legs.extend(group)
    unreferenced = [
        posting
        for key, group in postings_by_key.items()
        if key not in legs_by_key
        for posting in group
    ]

    unpaired_legs.sort(key=lambda leg: (leg.height, leg.tx_index, leg.event_index))
    for posting in sorted(unreferenced, key=lambda p: p.row):
        found = next(
            (
                leg
                for leg in unpaired_legs
                if leg.account == posting.account and _same(leg, posting)
            ),
            None,
        )
        if found is None:
            breaks.append(Break(NOT_ON_CHAIN, posting.account, None, posting))
        else:
            unpaired_legs.remove(found)
            matches.append(Match(found, posting, "fallback"))
    breaks.extend(Break(MISSING_IN_BOOKS, leg.account, leg, None) for leg in unpaired_legs)
    breaks.sort(key=_break_order)
    return Reconciliation(matches, breaks)


def _break_order(item: Break) -> tuple[int, str, int, int, int]:
    height = item.leg.height if item.leg is not None else 1 << 62
    event = item.leg.event_index if item.leg is not None else 0
    row = item.posting.row if item.posting is not None else -1
    return KINDS.index(item.kind), item.account, height, event, row
