"""A verified mirror of the chain in PostgreSQL: `consortia mirror` (docs/mirror.md).

The mirror follows one node as a light client: it checks every block against the execution
certificate of its epoch's validators (learnt from the genesis through epoch proofs),
re-executes it with the project's own engine from the genesis on, and writes only blocks
whose state root and receipts root it reached itself and the validators certified.
Blocks, transactions, receipts, events and state changes go into documented tables, each
batch in one database transaction with the mirror's progress, so a mirror killed at any
moment resumes without a gap or a duplicate.

Modules: `replay.py` (checks and re-execution; pure), `source.py` (the node's HTTP API),
`rows.py` (a block as table rows), `database.py` (the write path, exactly once),
`schema.py` and `migrations/` (versioned SQL), `follow.py` (the loop, pacing, retries, lag
logs), `metrics.py` (Prometheus), `dsn.py` (no password in a DSN), `errors.py`.

An edge package: it imports client, consensus (the genesis block), crypto, errors,
execution (the engine, to re-execute), types; nothing imports it but cli.
"""
