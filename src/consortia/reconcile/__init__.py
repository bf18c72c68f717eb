"""Reconciliation: an institution's own ledger (a PostgreSQL table of its postings) against
what the chain proves for its accounts (docs/reconcile.md).

`match.py` pairs postings with on-chain transfer legs and names the breaks (pure);
`books.py` reads the postings (one read-only transaction); `chain.py` finds the transfers
touching the accounts through a node's API and proves each with the SDK's light client;
`report.py` is the report's JSON form. Must never write the institution's database, and
never report an on-chain item it has not proven.
"""
