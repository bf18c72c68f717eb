"""The outbox: a business system's intents, written into its own PostgreSQL database in the
same transaction as its business change, put on chain exactly once by a relay, their outcome
recorded back (docs/outbox.md).

    from consortia.client.outbox import Intent, enqueue, migrate
    migrate(conn)                      # once, at deployment (the relay does it too)
    with conn.transaction():
        conn.execute("UPDATE invoices SET state = 'paid' WHERE id = %s", (42,))
        enqueue(conn, Intent("invoice-42", "acme.treasury", "asset", "transfer",
                             {"to": "bob", "amount": 12_500, "currency": "CNY"}))

`consortia relay --dsn ... --home DIR` (cli/relay_commands.py) runs `Relay`.

The one exception to client/'s imports (crypto and types, and the SDK beside it): this
package also imports psycopg (the business system's database). Must never send a private key
or a passphrase anywhere, log one, or log a DSN.
"""

from consortia.client.outbox.errors import (
    AbsenceUnprovenError,
    DuplicateIntentError,
    InvalidIntentError,
    OutboxDatabaseError,
    OutboxDatabaseUnavailableError,
    OutboxError,
    RelayVerificationError,
)
from consortia.client.outbox.intents import Intent, enqueue
from consortia.client.outbox.proofs import ChainChecks, ProvenAccount, ProvenReceipt
from consortia.client.outbox.relay import Relay
from consortia.client.outbox.schema import migrate
from consortia.client.outbox.settings import RelayCounters, RelaySettings
from consortia.client.outbox.store import APPLICATION_NAME, OutboxStore

__all__ = [
    "APPLICATION_NAME",
    "AbsenceUnprovenError",
    "ChainChecks",
    "DuplicateIntentError",
    "Intent",
    "InvalidIntentError",
    "OutboxDatabaseError",
    "OutboxDatabaseUnavailableError",
    "OutboxError",
    "OutboxStore",
    "ProvenAccount",
    "ProvenReceipt",
    "Relay",
    "RelayCounters",
    "RelaySettings",
    "RelayVerificationError",
    "enqueue",
    "migrate",
]
