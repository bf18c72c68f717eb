"""The relay's side of the outbox tables: claiming and signing intents, and recording what
became of each signed transaction, every change one short transaction.

Signing (`sign_pending`) holds a transaction-level advisory lock on the account (so two
relays never give out the same nonce), claims the account's oldest pending intents with
`FOR UPDATE SKIP LOCKED`, gives each the lowest nonce at or above the chain's next nonce that
no live signed transaction (nor a decided one whose nonce the chain spent) of this account
holds, signs, and stores the signed bytes and their hash with the intent and in
`outbox_transactions`, all committed BEFORE the relay sends anything. Every later change to
a signed intent is a compare-and-set on (id, state 'signed', tx_hash): a second relay, or a
relay that lost its connection half way, can only repeat an outcome already recorded, never
overwrite one.

Owns this SQL. Must never send anything to a node, hold a transaction open across a network
call, or record an outcome the caller did not prove.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import psycopg
from psycopg.types.json import Jsonb

from consortia.client.outbox.errors import OutboxDatabaseError, database_errors
from consortia.client.outbox.schema import migrate

# The advisory lock an account's nonce assignment runs under, with hashtext(account) ("cnon").
NONCE_LOCK: Final = 0x636E6F6E
CONNECT_TIMEOUT_S: Final = 10
APPLICATION_NAME: Final = "consortia-relay"
ACCOUNTS_PER_PASS: Final = 1000  # accounts signed for in one pass (one POST /v1/nonces)
UNIQUE_TRIES: Final = 64  # expiry heights tried for a transaction hash not used before


class Sign(Protocol):
    """Signs `contract.method(args)` at a nonce and expiry height (`Signer.signed`): the
    transaction's bytes and hash."""

    def __call__(
        self, contract: str, method: str, args: dict[str, Any], *, nonce: int, expiry_height: int
    ) -> tuple[bytes, str]: ...


Connection = psycopg.Connection[tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class SignedIntent:
    """An intent in state 'signed': what the relay submits and follows."""

    id: int
    business_key: str
    account: str
    nonce: int
    expiry_height: int
    tx_hash: str
    signed_tx: bytes
    signings: int


@dataclass(frozen=True, slots=True)
class Decision:
    """An outcome to record: `state` 'committed' or 'failed'."""

    state: str
    code: str
    message: str
    nonce_spent: bool
    height: int | None = None
    tx_index: int | None = None
    receipt: dict[str, Any] | None = None


class OutboxStore:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    @classmethod
    def connect(cls, dsn: str) -> OutboxStore:
        """Connected in autocommit mode (every change opens its own transaction)."""
        with database_errors():
            connection: Connection = psycopg.connect(
                dsn,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT_S,
                application_name=APPLICATION_NAME,
            )
        return cls(connection)

    def close(self) -> None:
        self._connection.close()

    def prepare(self) -> list[int]:
        return migrate(self._connection)

    # ------------------------------------------------------------------ reads

    def accounts_with_pending(self, accounts: Sequence[str] | None) -> list[str]:
        """Up to ACCOUNTS_PER_PASS accounts with pending intents, the oldest intent first."""
        with database_errors():
            rows = self._connection.execute(
                "SELECT account FROM outbox_intents WHERE state = 'pending'"
                " AND (%s::text[] IS NULL OR account = ANY(%s::text[]))"
                " GROUP BY account ORDER BY min(id) LIMIT %s",
                (_list(accounts), _list(accounts), ACCOUNTS_PER_PASS),
            ).fetchall()
        return [str(account) for (account,) in rows]

    def signed(
        self, accounts: Sequence[str] | None, limit: int, after: tuple[str, int] | None = None
    ) -> list[SignedIntent]:
        """Up to `limit` signed intents after (account, nonce) `after`, by account and nonce
        (the order a node admits them in)."""
        account_after, nonce_after = after if after is not None else ("", -1)
        with database_errors():
            rows = self._connection.execute(
                "SELECT id, business_key, account, nonce, expiry_height, tx_hash, signed_tx,"
                " signings FROM outbox_intents WHERE state = 'signed'"
                " AND (%s::text[] IS NULL OR account = ANY(%s::text[]))"
                " AND (account, nonce) > (%s, %s) ORDER BY account, nonce LIMIT %s",
                (_list(accounts), _list(accounts), account_after, nonce_after, limit),
            ).fetchall()
        return [
            SignedIntent(int(i), str(k), str(a), int(n), int(e), str(h), bytes(raw), int(s))
            for i, k, a, n, e, h, raw, s in rows
        ]

    def counts(self) -> dict[str, int]:
        """How many intents wait to be signed (`pending`) and wait for the chain (`signed`)."""
        with database_errors():
            rows = self._connection.execute(
                "SELECT state, count(*) FROM outbox_intents"
                " WHERE state IN ('pending', 'signed') GROUP BY state"
            ).fetchall()
        found = {str(state): int(count) for state, count in rows}
        return {"pending": found.get("pending", 0), "signed": found.get("signed", 0)}

    # ------------------------------------------------------------------ signing

    def sign_pending(
        self,
        account: str,
        chain_next: int,
        expiry_height: int,
        sign: Sign,
        *,
        batch_max: int,
        in_flight_max: int,
    ) -> list[tuple[str, str]]:
        """Sign up to `batch_max` of `account`'s pending intents (fewer when the account has
        `in_flight_max` signed intents waiting), in one transaction; (business key, tx hash)
        of each one signed."""
        signed: list[tuple[str, str]] = []
        connection = self._connection
        with database_errors(), connection.transaction():
            connection.execute(
                "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (NONCE_LOCK, account)
            )
            ((waiting,),) = connection.execute(
                "SELECT count(*) FROM outbox_intents WHERE account = %s AND state = 'signed'",
                (account,),
            ).fetchall()
            room = min(batch_max, in_flight_max - int(waiting))
            if room <= 0:
                return []
            claimed = connection.execute(
                "SELECT id, business_key, contract, method, args FROM outbox_intents"
                " WHERE account = %s AND state = 'pending' ORDER BY id LIMIT %s"
                " FOR UPDATE SKIP LOCKED",
                (account, room),
            ).fetchall()
            if not claimed:
                return []
            held = {
                int(nonce)
                for (nonce,) in connection.execute(
                    "SELECT nonce FROM outbox_intents WHERE account = %s AND nonce >= %s"
                    " AND (state = 'signed' OR (state IN ('committed', 'failed') AND nonce_spent))",
                    (account, chain_next),
                ).fetchall()
            }
            nonce = chain_next
            for intent_id, business_key, contract, method, args in claimed:
                while nonce in held:
                    nonce += 1
                raw, tx_hash, expiry = self._sign_unique(
                    sign, (str(contract), str(method), dict(args)), nonce, expiry_height
                )
                connection.execute(
                    "UPDATE outbox_intents SET state = 'signed', signings = signings + 1,"
                    " nonce = %s, expiry_height = %s, tx_hash = %s, signed_tx = %s,"
                    " signed_at = now(), last_error = NULL WHERE id = %s AND state = 'pending'",
                    (nonce, expiry, tx_hash, raw, intent_id),
                )
                connection.execute(
                    "INSERT INTO outbox_transactions (tx_hash, intent_id, account, nonce,"
                    " expiry_height, signed_tx) VALUES (%s, %s, %s, %s, %s, %s)",
                    (tx_hash, intent_id, account, nonce, expiry, raw),
                )
                held.add(nonce)
                signed.append((str(business_key), tx_hash))
        return signed

    def _sign_unique(
        self, sign: Sign, call: tuple[str, str, dict[str, Any]], nonce: int, expiry_height: int
    ) -> tuple[bytes, str, int]:
        """Signed bytes whose hash no transaction of this outbox has had: the same call with
        the same nonce and expiry (a nonce freed by a refusal, given to an identical call)
        would be the very same transaction, so the expiry moves up a block until it differs."""
        for expiry in range(expiry_height, expiry_height + UNIQUE_TRIES):
            raw, tx_hash = sign(*call, nonce=nonce, expiry_height=expiry)
            if not self._connection.execute(
                "SELECT 1 FROM outbox_transactions WHERE tx_hash = %s", (tx_hash,)
            ).fetchone():
                return raw, tx_hash, expiry
        raise OutboxDatabaseError(f"no unused transaction hash in {UNIQUE_TRIES} expiry heights")

    def fail_pending(self, account: str, code: str, message: str) -> int:
        """Every pending intent of `account` failed with `code` before any signing (no such
        account on chain, no key for it); how many."""
        with database_errors(), self._connection.transaction():
            cursor = self._connection.execute(
                "UPDATE outbox_intents SET state = 'failed', code = %s, message = %s,"
                " nonce_spent = false, decided_at = now()"
                " WHERE account = %s AND state = 'pending'",
                (code, message, account),
            )
            return cursor.rowcount

    # ------------------------------------------------------------------ outcomes

    def note_submitted(self, ids: Sequence[int], error: str | None = None) -> None:
        with database_errors():
            self._connection.execute(
                "UPDATE outbox_intents SET submissions = submissions + 1, last_error = %s"
                " WHERE id = ANY(%s) AND state = 'signed'",
                (error, list(ids)),
            )

    def decide(self, intent: SignedIntent, decision: Decision) -> bool:
        """Record the outcome of the intent's signed transaction (if it is still the one
        signed); whether this call recorded it."""
        fate = (
            "committed"
            if decision.state == "committed"
            else ("failed" if decision.receipt is not None else "refused")
        )
        with database_errors(), self._connection.transaction():
            cursor = self._connection.execute(
                "UPDATE outbox_intents SET state = %s, code = %s, message = %s,"
                " nonce_spent = %s, height = %s, tx_index = %s, receipt = %s,"
                " decided_at = now() WHERE id = %s AND state = 'signed' AND tx_hash = %s",
                (
                    decision.state,
                    decision.code,
                    decision.message,
                    decision.nonce_spent,
                    decision.height,
                    decision.tx_index,
                    None if decision.receipt is None else Jsonb(decision.receipt),
                    intent.id,
                    intent.tx_hash,
                ),
            )
            if cursor.rowcount != 1:
                return False
            self._connection.execute(
                "UPDATE outbox_transactions SET fate = %s, reason = %s, decided_at = now()"
                " WHERE tx_hash = %s",
                (fate, decision.code, intent.tx_hash),
            )
        return True

    def release(self, intent: SignedIntent, reason: str, signings_max: int) -> str | None:
        """The intent's signed transaction is provably never executed: back to 'pending' to
        be signed again (or 'failed' with `relay_gave_up` after `signings_max` signings);
        the new state, None if the intent had moved on already."""
        gave_up = intent.signings >= signings_max
        with database_errors(), self._connection.transaction():
            if gave_up:
                cursor = self._connection.execute(
                    "UPDATE outbox_intents SET state = 'failed', code = 'relay_gave_up',"
                    " message = %s, nonce_spent = false, decided_at = now()"
                    " WHERE id = %s AND state = 'signed' AND tx_hash = %s",
                    (
                        f"signed {intent.signings} times, never executed: {reason}",
                        intent.id,
                        intent.tx_hash,
                    ),
                )
            else:
                cursor = self._connection.execute(
                    "UPDATE outbox_intents SET state = 'pending', nonce = NULL,"
                    " expiry_height = NULL, tx_hash = NULL, signed_tx = NULL, last_error = %s"
                    " WHERE id = %s AND state = 'signed' AND tx_hash = %s",
                    (reason, intent.id, intent.tx_hash),
                )
            if cursor.rowcount != 1:
                return None
            self._connection.execute(
                "UPDATE outbox_transactions SET fate = 'dead', reason = %s, decided_at = now()"
                " WHERE tx_hash = %s",
                (reason, intent.tx_hash),
            )
        return "failed" if gave_up else "pending"


def _list(accounts: Sequence[str] | None) -> list[str] | None:
    return None if accounts is None else list(accounts)
