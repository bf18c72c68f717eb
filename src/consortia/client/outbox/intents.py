"""An intent, checked, and `enqueue`: what a business system calls inside its own transaction.

    with psycopg.connect(dsn) as conn:                  # one transaction
        conn.execute("UPDATE invoices SET state = 'paid' WHERE id = %s", (invoice_id,))
        enqueue(conn, Intent("invoice-42-payment", "acme.treasury", "asset", "transfer",
                             {"to": "bob", "amount": 12_500, "currency": "CNY"}))
    # committed together, or rolled back together

`enqueue` refuses an autocommit connection outside a transaction block: there the intent
would be committed on its own, apart from the business change.

An intent is checked against the chain's own limits on a transaction (account id, contract and
method names, at most 32 arguments, each an integer of 64 bits, a text of at most 4,096
bytes, a boolean, or a list of at most 256 integers and texts) before anything is written,
so a mistake is an `InvalidIntentError` in the business system's code rather than a failed
transaction later. The business key is the business system's own idempotency key (1 to 200
characters): the outbox holds one intent per key, so enqueueing twice is refused
(`DuplicateIntentError`), and the business system's transaction is left usable either way.

Owns the intent's checks and the one INSERT. Must never sign, send or read a key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
import psycopg
from psycopg.pq import TransactionStatus
from psycopg.types.json import Jsonb

from consortia.client.outbox.errors import (
    DuplicateIntentError,
    InvalidIntentError,
    database_errors,
)
from consortia.types.primitives import AccountId, Name
from consortia.types.transaction import ArgName, ArgValue

BUSINESS_KEY_MAX: Final = 200
ARGS_MAX: Final = 32


class _Call(msgspec.Struct, forbid_unknown_fields=True):
    """The parts of a transaction body an intent names, with the chain's own constraints."""

    account: AccountId
    contract: Name
    method: Name
    args: dict[ArgName, ArgValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Intent:
    """What a business system wants done on chain: `account` signs `contract.method(args)`;
    `business_key` is the business system's own idempotency key."""

    business_key: str
    account: str
    contract: str
    method: str
    args: dict[str, Any] = field(default_factory=dict)

    def checked(self) -> Intent:
        """This intent, or InvalidIntentError naming what is wrong."""
        key = self.business_key
        if not isinstance(key, str) or not 1 <= len(key) <= BUSINESS_KEY_MAX:
            raise InvalidIntentError(f"the business key must be 1 to {BUSINESS_KEY_MAX} characters")
        if not key.isprintable():
            raise InvalidIntentError("the business key must be printable text")
        if not isinstance(self.args, dict) or len(self.args) > ARGS_MAX:
            raise InvalidIntentError(f"args must be a mapping of at most {ARGS_MAX} arguments")
        call = {
            "account": self.account,
            "contract": self.contract,
            "method": self.method,
            "args": self.args,
        }
        try:
            msgspec.convert(call, _Call, strict=True)
        except (msgspec.ValidationError, TypeError) as error:
            raise InvalidIntentError(f"the intent is not a valid call: {error}") from None
        return self


def enqueue(connection: psycopg.Connection[Any], intent: Intent) -> int:
    """Insert `intent` (checked first) into the outbox, in the connection's current
    transaction (the business system's own): the intent's id. InvalidIntentError or
    DuplicateIntentError (nothing written, the transaction still usable)."""
    intent.checked()
    if connection.autocommit and connection.info.transaction_status == TransactionStatus.IDLE:
        raise InvalidIntentError(
            "enqueue outside a transaction would commit the intent on its own: call it inside"
            " the transaction of the business change (conn.transaction(), or autocommit off)"
        )
    with database_errors():
        row = connection.execute(
            "INSERT INTO outbox_intents (business_key, account, contract, method, args) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (business_key) DO NOTHING RETURNING id",
            (
                intent.business_key,
                intent.account,
                intent.contract,
                intent.method,
                Jsonb(intent.args),
            ),
        ).fetchone()
    if row is None:
        raise DuplicateIntentError(f"an intent with business key {intent.business_key!r} exists")
    return int(row[0])
