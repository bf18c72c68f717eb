"""Reading a bank's postings table from a real PostgreSQL (tests/pg_helpers.py): mapped column
names, numeric amounts, the account filter and the posted_at window, a read-only session, and
one clear error for a missing table, a missing column or an amount with a fraction.
"""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

from consortia.errors import InvalidArgumentError
from consortia.reconcile.books import BooksQuery, column_map, read_postings, table_name
from consortia.reconcile.errors import BooksError
from tests.pg_helpers import PgServer, pg_server

__all__ = ["pg_server"]  # the session's PostgreSQL, a fixture

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _ledger(pg: PgServer, schema: str, amount_type: str = "numeric(20, 0)") -> str:
    dsn = pg.schema(schema)
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(
            f"CREATE TABLE gl (acct text, amount_fen {amount_type}, ccy text, cpty text,"
            " ref text, value_time timestamptz)"
        )
        rows = [
            ("nostro", -500, "CNY", "bank-1.treasury", "a" * 64, T0),
            ("nostro", 700, "CNY", "bank-1.treasury", "PAY-7", T0.replace(hour=10)),
            ("alice", -20, "CNY", None, "b" * 64, T0.replace(hour=11)),
            ("other", 1, "CNY", "x", "c" * 64, T0),
        ]
        with connection.cursor() as cursor:
            cursor.executemany("INSERT INTO gl VALUES (%s, %s, %s, %s, %s, %s)", rows)
    return dsn


MAPPING = [
    "account=acct",
    "amount=amount_fen",
    "currency=ccy",
    "counterparty=cpty",
    "reference=ref",
    "posted_at=value_time",
]


def test_postings_are_read_through_the_column_mapping_and_filters(pg_server: PgServer) -> None:
    dsn = _ledger(pg_server, "books_read")
    query = BooksQuery(table_name("books_read.gl"), column_map(MAPPING), ("nostro", "alice"))
    postings = read_postings(dsn, query)
    assert [(p.account, p.amount, p.counterparty, p.reference) for p in postings] == [
        ("nostro", -500, "bank-1.treasury", "a" * 64),
        ("nostro", 700, "bank-1.treasury", "PAY-7"),
        ("alice", -20, None, "b" * 64),
    ]
    assert all(isinstance(p.amount, int) for p in postings)
    window = BooksQuery(
        table_name("gl"),
        column_map(MAPPING),
        ("nostro", "alice"),
        posted_from=T0.replace(hour=10),
        posted_to=T0.replace(hour=11),
    )
    assert [p.reference for p in read_postings(dsn, window)] == ["PAY-7"]


def test_the_session_is_read_only(pg_server: PgServer) -> None:
    dsn = _ledger(pg_server, "books_read_only")
    query = BooksQuery(table_name("gl"), column_map(MAPPING), ("nostro",))
    assert len(read_postings(dsn, query)) == 2
    with psycopg.connect(dsn) as connection:
        connection.read_only = True  # what read_postings sets: PostgreSQL refuses writes
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            connection.execute("DELETE FROM gl")


def test_a_missing_table_column_or_fractional_amount_is_one_clear_error(
    pg_server: PgServer,
) -> None:
    dsn = _ledger(pg_server, "books_errors", amount_type="numeric(20, 2)")
    with pytest.raises(BooksError, match="no table"):
        read_postings(dsn, BooksQuery(("nowhere",), column_map(MAPPING), ("nostro",)))
    with pytest.raises(BooksError, match="--column"):
        read_postings(dsn, BooksQuery(("gl",), column_map([]), ("nostro",)))
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("UPDATE gl SET amount_fen = 0.5 WHERE ref = 'PAY-7'")
    with pytest.raises(BooksError, match="whole minor units"):
        read_postings(dsn, BooksQuery(("gl",), column_map(MAPPING), ("nostro",)))


@pytest.mark.parametrize(
    ("mapping", "table"),
    [
        (["amount"], "gl"),
        (["balance=amt"], "gl"),
        (['amount=amt"; DROP TABLE gl; --'], "gl"),
        ([], "a.b.c"),
        ([], "gl; DROP TABLE gl"),
    ],
)
def test_names_that_are_not_plain_identifiers_are_refused(mapping: list[str], table: str) -> None:
    with pytest.raises(InvalidArgumentError):
        column_map(mapping)
        table_name(table)
