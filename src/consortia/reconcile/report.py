"""A reconciliation's report: one JSON object (what `consortia reconcile --json` prints) and the
exit status it ends with.

Owns the report's fields (docs/reconcile.md, *The report*). Must never put a DSN or a password
in it (the database is named by its safe description only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from consortia.reconcile.balances import BalanceCheck
from consortia.reconcile.errors import EXIT_AGREE, EXIT_BREAKS, EXIT_VERIFICATION
from consortia.reconcile.match import Leg, Posting, Reconciliation


@dataclass(frozen=True, slots=True)
class Scope:
    """What was compared: the chain, the heights, the accounts, the table and the database."""

    chain_id: str
    first_height: int
    last_height: int
    accounts: tuple[str, ...]
    table: str
    database: str


def report(
    scope: Scope,
    postings: list[Posting],
    legs: list[Leg],
    result: Reconciliation,
    balances: list[BalanceCheck],
    *,
    proofs: bool = False,
) -> dict[str, Any]:
    """The report as one JSON-ready object."""
    counts = result.counts()
    return {
        "chain_id": scope.chain_id,
        "heights": {"from": scope.first_height, "to": scope.last_height},
        "accounts": list(scope.accounts),
        "books": {"table": scope.table, "database": scope.database, "postings": len(postings)},
        "chain": {"legs": len(legs), "transactions": len({leg.tx_hash for leg in legs})},
        "verified": True,
        "complete": _complete(balances),
        "balances": [check.view() for check in balances],
        "matched": len(result.matches),
        "matched_by_fallback": sum(1 for match in result.matches if match.how == "fallback"),
        "break_counts": counts,
        "breaks": [item.view(proofs=proofs) for item in result.breaks],
        "agree": not result.breaks,
    }


def exit_status(
    result: Reconciliation, balances: list[BalanceCheck], *, require_complete: bool = False
) -> int:
    """3 when the legs found do not account for a proven balance (the node left some out),
    or, with `require_complete`, when a balance could not be proven (the node's word that it
    no longer keeps a height is no proof that it hid nothing); else 1 when there are breaks,
    else 0."""
    complete = _complete(balances)
    if complete is False or (require_complete and complete is None):
        return EXIT_VERIFICATION
    return EXIT_AGREE if not result.breaks else EXIT_BREAKS


def _complete(balances: list[BalanceCheck]) -> bool | None:
    """False when a proven balance change is not the sum of its legs; None when some could
    not be checked (and none failed); True when every one was checked and adds up."""
    results = [check.complete for check in balances]
    if False in results:
        return False
    return None if None in results else True
