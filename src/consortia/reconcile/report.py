"""A reconciliation's report: one JSON object (what `consortia reconcile --json` prints) and the
exit status it ends with.

Owns the report's fields (docs/reconcile.md, *The report*). Must never put a DSN or a password
in it (the database is named by its safe description only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from consortia.reconcile.errors import EXIT_AGREE, EXIT_BREAKS
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
        "matched": len(result.matches),
        "matched_by_fallback": sum(1 for match in result.matches if match.how == "fallback"),
        "break_counts": counts,
        "breaks": [item.view(proofs=proofs) for item in result.breaks],
        "agree": not result.breaks,
    }


def exit_status(result: Reconciliation) -> int:
    return EXIT_AGREE if not result.breaks else EXIT_BREAKS
