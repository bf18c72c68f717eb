"""The institution's books: its postings table in PostgreSQL, read in one read-only transaction.

The table holds one row per posting (docs/reconcile.md, *The postings table*): `account`,
`amount` (integer minor units, signed from the account's side: positive received, negative
sent; bigint or numeric with no fraction), `currency`, `counterparty`, `reference` (the chain
transaction's hash, or a business reference) and `posted_at`. A bank whose columns are named
otherwise maps them (`--column amount=amount_fen`). Only the rows of the accounts asked
about are read, optionally within a `posted_at` window; without accounts named, they are the
books' own (`book_accounts`: the distinct accounts of the window's postings).

Every row is checked before anything is compared: an account id the chain could not hold, a
posting without a currency, an amount that is not whole minor units or is beyond any amount
the chain can hold, is one `BooksError` (code `books_invalid`) naming the row; nothing is
reported from books that do not read.

Owns the query (identifiers quoted by psycopg, values passed as parameters) and turning rows
into `Posting`s. Must never write to the database (the session is read-only), never build SQL
from text it did not quote, never log the DSN or a password.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

import psycopg
from psycopg import sql

from consortia.errors import InvalidArgumentError
from consortia.postgres import error_message
from consortia.reconcile.errors import BooksError, DatabaseError
from consortia.reconcile.match import Posting
from consortia.types.primitives import ACCOUNT_ID_PATTERN

COLUMNS: Final = ("account", "amount", "currency", "counterparty", "reference", "posted_at")
POSTINGS_MAX: Final = 1_000_000  # rows one reconciliation reads (beyond: narrow the window)
ACCOUNTS_MAX: Final = 1024
# An account id as the chain spells one.
ACCOUNT_ID: Final = re.compile(ACCOUNT_ID_PATTERN)
# The largest amount a posting may carry: a signed 64-bit integer (the chain's amounts and
# balances are far below it), so a posting beyond it is garbage, not a break.
AMOUNT_BOUND: Final = 2**63 - 1
IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}\Z")
APPLICATION_NAME: Final = "consortia-reconcile"
STATEMENT_TIMEOUT_MS: Final = 120_000
CONNECT_TIMEOUT_S: Final = 10


@dataclass(frozen=True, slots=True)
class BooksQuery:
    """Which table, how its columns are named, and which rows."""

    table: tuple[str, ...]
    columns: dict[str, str]
    accounts: tuple[str, ...]
    posted_from: datetime | None = None
    posted_to: datetime | None = None


def table_name(text: str) -> tuple[str, ...]:
    """`name` or `schema.name`, each part a plain SQL identifier."""
    parts = tuple(text.split("."))
    if not 1 <= len(parts) <= 2 or not all(IDENTIFIER.match(part) for part in parts):
        raise InvalidArgumentError(f"--table {text!r} is not `name` or `schema.name`")
    return parts


def column_map(mappings: list[str]) -> dict[str, str]:
    """The documented column names, each replaced where `--column name=actual` says so."""
    columns = {name: name for name in COLUMNS}
    if len(mappings) > len(COLUMNS):
        raise InvalidArgumentError(f"at most {len(COLUMNS)} --column mappings")
    for mapping in mappings:
        name, equals, actual = mapping.partition("=")
        if not equals or name not in columns:
            raise InvalidArgumentError(
                f"--column {mapping!r}: expected NAME=COLUMN, NAME one of {', '.join(COLUMNS)}"
            )
        if not IDENTIFIER.match(actual):
            raise InvalidArgumentError(f"--column {mapping!r}: {actual!r} is not a column name")
        columns[name] = actual
    return columns


def checked_accounts(accounts: Iterable[str]) -> tuple[str, ...]:
    """The `--account` values, each once, in order: InvalidArgumentError for an id the chain
    could not hold, or for none or more than ACCOUNTS_MAX."""
    unique = tuple(dict.fromkeys(accounts))
    for account in unique:
        if not ACCOUNT_ID.match(account):
            raise InvalidArgumentError(
                f"--account {account!r} is not an account id (1 to 64 of A-Z a-z 0-9 _ . -)"
            )
    if not 1 <= len(unique) <= ACCOUNTS_MAX:
        raise InvalidArgumentError(f"give between 1 and {ACCOUNTS_MAX} accounts")
    return unique


def _window(
    columns: dict[str, str], posted_from: datetime | None, posted_to: datetime | None
) -> tuple[list[sql.Composable], list[Any]]:
    """The `posted_at` window's conditions and their parameters."""
    posted = sql.Identifier(columns["posted_at"])
    where: list[sql.Composable] = []
    parameters: list[Any] = []
    if posted_from is not None:
        where.append(sql.SQL("{} >= %s").format(posted))
        parameters.append(posted_from)
    if posted_to is not None:
        where.append(sql.SQL("{} < %s").format(posted))
        parameters.append(posted_to)
    return where, parameters


def book_accounts(
    dsn: str,
    table: tuple[str, ...],
    columns: dict[str, str],
    *,
    posted_from: datetime | None = None,
    posted_to: datetime | None = None,
) -> tuple[str, ...]:
    """The distinct accounts of the postings in the window, sorted: what reconciliation
    compares when no `--account` is given. BooksError for none, more than ACCOUNTS_MAX, or
    one that is not an account id."""
    account = sql.Identifier(columns["account"])
    where, parameters = _window(columns, posted_from, posted_to)
    text = sql.SQL("SELECT DISTINCT {} FROM {} WHERE {} ORDER BY 1 LIMIT %s").format(
        account,
        sql.Identifier(*table),
        sql.SQL(" AND ").join([sql.SQL("{} IS NOT NULL").format(account), *where]),
    )
    rows = _read(dsn, table, text, [*parameters, ACCOUNTS_MAX + 1])
    if len(rows) > ACCOUNTS_MAX:
        raise BooksError(
            f"the postings name more than {ACCOUNTS_MAX} accounts: name the ones to reconcile"
            " with --account, or narrow the window (--posted-from/--posted-to)"
        )
    if not rows:
        raise BooksError("the postings name no account (in this window): nothing to reconcile")
    accounts = tuple(str(value) for (value,) in rows)
    for value in accounts:
        if not ACCOUNT_ID.match(value):
            raise BooksError(f"the postings name {value[:80]!r}, which is not an account id")
    return accounts


def statement(query: BooksQuery) -> tuple[sql.Composed, list[Any]]:
    """The SELECT and its parameters (identifiers quoted; values as parameters)."""
    fields = sql.SQL(", ").join(sql.Identifier(query.columns[name]) for name in COLUMNS)
    window, bounds = _window(query.columns, query.posted_from, query.posted_to)
    where = [sql.SQL("{} = ANY(%s)").format(sql.Identifier(query.columns["account"])), *window]
    parameters: list[Any] = [list(query.accounts), *bounds]
    posted = sql.Identifier(query.columns["posted_at"])
    text = sql.SQL("SELECT {} FROM {} WHERE {} ORDER BY {}, {} LIMIT %s").format(
        fields,
        sql.Identifier(*query.table),
        sql.SQL(" AND ").join(where),
        posted,
        sql.Identifier(query.columns["reference"]),
    )
    parameters.append(POSTINGS_MAX + 1)
    return text, parameters


def read_postings(dsn: str, query: BooksQuery) -> list[Posting]:
    """The postings of `query.accounts`, read in one read-only transaction."""
    if not 1 <= len(query.accounts) <= ACCOUNTS_MAX:
        raise InvalidArgumentError(f"give between 1 and {ACCOUNTS_MAX} accounts")
    text, parameters = statement(query)
    rows = _read(dsn, query.table, text, parameters)
    if len(rows) > POSTINGS_MAX:
        raise BooksError(
            f"more than {POSTINGS_MAX} postings: narrow the window (--posted-from/--posted-to)"
        )
    return [posting(index, row) for index, row in enumerate(rows)]


def _read(
    dsn: str, table: tuple[str, ...], text: sql.Composed, parameters: list[Any]
) -> list[tuple[Any, ...]]:
    """The rows of one query, in one read-only transaction with a statement timeout."""
    try:
        with psycopg.connect(
            dsn,
            application_name=APPLICATION_NAME,
            connect_timeout=CONNECT_TIMEOUT_S,
        ) as connection:
            connection.read_only = True
            with connection.transaction(), connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}")
                return cursor.execute(text, parameters).fetchall()
    except psycopg.errors.UndefinedTable:
        raise BooksError(f"no table {'.'.join(table)} (is --table right?)") from None
    except psycopg.errors.UndefinedColumn as error:
        raise BooksError(
            f"{error_message(error)} (map a column with --column NAME=COLUMN)"
        ) from None
    except psycopg.Error as error:
        raise DatabaseError(error_message(error)) from None


def posting(index: int, row: tuple[Any, ...]) -> Posting:
    """A row as a `Posting`; BooksError for an amount that is not an integer in range, or a
    posting without an account or a currency."""
    account, amount, currency, counterparty, reference, posted_at = row
    if account is None or currency is None:
        raise BooksError(f"posting {index}: no {'account' if account is None else 'currency'}")
    return Posting(
        row=index,
        account=str(account),
        amount=_minor_units(amount, index),
        currency=str(currency),
        counterparty=None if counterparty is None else str(counterparty),
        reference="" if reference is None else str(reference),
        posted_at=posted_at if isinstance(posted_at, datetime) else None,
    )


def _minor_units(value: Any, index: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise BooksError(f"posting {index}: the amount {value!r} is not an integer")
    if isinstance(value, Decimal) and (not value.is_finite() or value != value.to_integral_value()):
        raise BooksError(f"posting {index}: the amount {value} is not in whole minor units")
    if not -AMOUNT_BOUND <= value <= AMOUNT_BOUND:
        raise BooksError(f"posting {index}: the amount {value} is beyond any amount on chain")
    return int(value)
