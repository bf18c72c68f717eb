"""Reconciliation read as an attacker would: books that lie or hold garbage, a node that lies,
accounts not listed. Each bad input is one clear, machine-readable error that reports nothing;
each lie is caught or leaves the run unable to call the books reconciled.

Setup: a real PostgreSQL (tests/pg_helpers.py) for the books; a fake client (the SDK's method
names) for the node, answering what the test tells it to.

Test: a currency no posting and no leg mentions is still balance-checked (a node hiding every
transfer of it cannot pass); junk currencies in the books do not stop the run; garbage from the
node's unproven answers (receipts, records, events) is `verification_failed`, never a
traceback; an account id the chain could not hold is `invalid_argument`; a posting without a
currency or with an amount beyond the chain's is `books_invalid`; without `--account`, the
accounts are the books' own (distinct, bounded, checked); a completeness check left undone
fails the run with `--require-complete`.

Run alone: .venv/bin/pytest tests/unit/test_reconcile_attacks.py
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import msgspec
import psycopg
import pytest

from consortia.cli.reconcile_commands import _print
from consortia.errors import InvalidArgumentError
from consortia.reconcile import balances, chain
from consortia.reconcile.balances import BalanceCheck
from consortia.reconcile.books import (
    BooksQuery,
    book_accounts,
    checked_accounts,
    column_map,
    read_postings,
    table_name,
)
from consortia.reconcile.errors import (
    EXIT_AGREE,
    EXIT_VERIFICATION,
    BooksError,
    ChainVerificationError,
)
from consortia.reconcile.match import Leg, Posting, reconcile
from consortia.reconcile.report import Scope, exit_status, report
from consortia.types.genesis import GenesisAccount
from tests.node_helpers import make_genesis
from tests.pg_helpers import PgServer, pg_server

__all__ = ["pg_server"]  # the session's PostgreSQL, a fixture

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


# ---------------------------------------------------------------------- the completeness check


def test_every_currency_that_can_hold_money_is_checked_not_only_those_mentioned() -> None:
    """Bob holds USD at genesis; alice held only CNY. A USD transfer to alice that the node
    hides, and the books never booked, must still be caught by alice's USD balance."""
    genesis = make_genesis(4)
    usd = GenesisAccount(
        id="bob", sponsor="bank-0", public_key="00" * 32, balance=9, currency="USD"
    )
    genesis = msgspec.structs.replace(genesis, accounts=[*genesis.accounts, usd])
    assert "USD" in balances.currencies(genesis, [])


def test_the_currencies_checked_come_from_the_chain_never_from_the_books() -> None:
    genesis = make_genesis(4)
    assert balances.currencies(genesis, []) == ["CNY"]


# ---------------------------------------------------------------------- a lying node


class _Node:
    """The SDK calls `chain.collect` makes, answering what a lying node says."""

    def __init__(self, receipts: Any, record: Any) -> None:
        self.receipts, self.record = receipts, record

    def block_receipts(self, height: int) -> Any:
        return self.receipts

    def transaction(self, tx_hash: str) -> Any:
        return self.record


GOOD_HASH = "ab" * 32


@pytest.mark.parametrize(
    ("receipts", "record"),
    [
        ("not an object", {}),
        ({"receipts": "no list"}, {}),
        ({"receipts": ["no object"]}, {}),
        ({"receipts": [{"tx_hash": GOOD_HASH, "ok": True}]}, "no object"),
        ({"receipts": [{"tx_hash": GOOD_HASH, "ok": True}]}, {"receipt": "no object"}),
        ({"receipts": [{"tx_hash": GOOD_HASH, "ok": True}]}, {"receipt": {"events": 7}}),
        (
            {"receipts": [{"tx_hash": GOOD_HASH, "ok": True}]},
            {
                "receipt": {
                    "events": [
                        {
                            "contract": "asset",
                            "name": "transferred",
                            "fields": {"amount": "lots", "source": "alice", "target": "bob"},
                        }
                    ]
                }
            },
        ),
    ],
)
def test_garbage_from_the_nodes_unproven_answers_is_a_verification_failure(
    receipts: Any, record: Any
) -> None:
    node = _Node(receipts, record)
    with pytest.raises(ChainVerificationError) as refused:
        chain.collect(node, frozenset({"alice"}), [5])  # type: ignore[arg-type]
    assert refused.value.code == "verification_failed"


def test_a_completeness_check_left_undone_fails_the_run_when_required() -> None:
    """The node says it no longer keeps a height: the check is undone (`complete: null`).
    That is the node's word; with --require-complete the run cannot pass on it."""
    unchecked = [BalanceCheck("alice", "CNY", None, 95, -5)]
    agreed = reconcile([], [])
    assert exit_status(agreed, unchecked) == EXIT_AGREE
    assert exit_status(agreed, unchecked, require_complete=True) == EXIT_VERIFICATION


# ---------------------------------------------------------------------- accounts


@pytest.mark.parametrize("account", ["", "a/../../v1/status", "x" * 65, "alice bob", "é"])
def test_an_account_the_chain_could_not_hold_is_refused(account: str) -> None:
    with pytest.raises(InvalidArgumentError):
        checked_accounts(["alice", account])


def _books(pg: PgServer, schema: str, rows: list[tuple[Any, ...]]) -> str:
    dsn = pg.schema(schema)
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(
            "CREATE TABLE postings (account text, amount numeric, currency text,"
            " counterparty text, reference text, posted_at timestamptz)"
        )
        with connection.cursor() as cursor:
            cursor.executemany("INSERT INTO postings VALUES (%s, %s, %s, %s, %s, %s)", rows)
    return dsn


def test_without_accounts_listed_they_are_the_books_own(pg_server: PgServer) -> None:
    dsn = _books(
        pg_server,
        "recon_derive",
        [
            ("bank-0.treasury", -5, "CNY", "bob", "r1", T0),
            ("alice", 5, "CNY", None, "r2", T0),
            ("alice", 7, "CNY", None, "r3", T0.replace(hour=12)),
            (None, 1, "CNY", None, "r4", T0),
        ],
    )
    columns = column_map([])
    assert book_accounts(dsn, ("postings",), columns) == ("alice", "bank-0.treasury")
    late = book_accounts(dsn, ("postings",), columns, posted_from=T0.replace(hour=11))
    assert late == ("alice",)


def test_accounts_read_from_the_books_are_checked_and_bounded(
    pg_server: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn = _books(pg_server, "recon_bad_account", [("no such/account", 1, "CNY", None, "r", T0)])
    with pytest.raises(BooksError, match="not an account id"):
        book_accounts(dsn, ("postings",), column_map([]))
    many = [(f"acct-{i}", 1, "CNY", None, "r", T0) for i in range(6)]
    dsn = _books(pg_server, "recon_many_accounts", many)
    monkeypatch.setattr("consortia.reconcile.books.ACCOUNTS_MAX", 5)
    with pytest.raises(BooksError, match="--account"):
        book_accounts(dsn, ("postings",), column_map([]))


# ---------------------------------------------------------------------- garbage in the books


@pytest.mark.parametrize(
    ("amount", "currency", "message"),
    [
        (5, None, "no currency"),
        (None, "CNY", "not an integer"),
        (2**70, "CNY", "beyond"),
        (-(2**70), "CNY", "beyond"),
    ],
)
def test_a_posting_without_currency_or_amount_in_range_is_one_clear_error(
    pg_server: PgServer, amount: Any, currency: Any, message: str
) -> None:
    schema = "recon_garbage_" + re.sub(r"[^a-z0-9]", "_", f"{amount}_{currency}".lower())[:40]
    dsn = _books(pg_server, schema, [("alice", amount, currency, None, "r", T0)])
    with pytest.raises(BooksError, match=message) as refused:
        read_postings(dsn, BooksQuery(table_name("postings"), column_map([]), ("alice",)))
    assert refused.value.code == "books_invalid"


# ---------------------------------------------------------------------- the human report


def test_the_breaks_table_piped_to_a_log_keeps_the_books_side(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A daily job's log is no terminal: the table must not be cut at 80 columns."""
    leg = Leg("ab" * 32, 7, 0, 0, "bank-0.treasury", -1250000, "CNY", "bank-1.treasury")
    posting = Posting(0, "bank-0.treasury", -1205000, "CNY", "bank-1.treasury", "ab" * 32)
    scope = Scope("c", 1, 9, ("bank-0.treasury",), "postings", "host=h")
    _print(report(scope, [posting], [leg], reconcile([posting], [leg]), []))
    printed = capsys.readouterr().out
    assert "-1205000 CNY with bank-1.treasury" in printed
    assert "-1250000 CNY with bank-1.treasury" in printed


@pytest.mark.parametrize("block", [{"height": 5}, {"height": 4}, {"height": "x"}, "junk"])
def test_a_block_stream_that_repeats_goes_back_or_is_junk_is_refused(block: Any) -> None:
    """Heights must rise, or a lying node's stream would keep the walk going for ever."""
    with pytest.raises(ChainVerificationError):
        chain._summary(block, 5)
    assert chain._summary({"height": 6, "tx_count": 2}, 5) == (6, 2)


def test_a_block_said_to_hold_more_receipts_than_any_block_can_is_refused() -> None:
    receipts = [{"tx_hash": GOOD_HASH, "ok": False}] * 20_001
    with pytest.raises(ChainVerificationError):
        chain.collect(_Node({"receipts": receipts}, {}), frozenset({"alice"}), [5])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("column_type", "value"),
    [("double precision", 12.0), ("real", 12.5), ("text", "12"), ("text", "1e3")],
)
def test_an_amount_kept_as_a_float_or_a_string_is_one_clear_error(
    pg_server: PgServer, column_type: str, value: Any
) -> None:
    """Money is integers: a float (even a whole one) or a string is refused, not guessed."""
    schema = "recon_types_" + re.sub(r"[^a-z0-9]", "_", f"{column_type}_{value}")
    dsn = pg_server.schema(schema)
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(
            f"CREATE TABLE postings (account text, amount {column_type}, currency text,"
            " counterparty text, reference text, posted_at timestamptz)"
        )
        connection.execute(
            "INSERT INTO postings VALUES ('alice', %s, 'CNY', NULL, 'r', now())", (value,)
        )
    with pytest.raises(BooksError, match="not an integer") as refused:
        read_postings(dsn, BooksQuery(table_name("postings"), column_map([]), ("alice",)))
    assert refused.value.code == "books_invalid"


def test_a_posting_booked_twice_is_one_match_and_one_break() -> None:
    """Duplicate entries: the second copy of a posting is `not_on_chain`, never a second
    match of the same leg."""
    leg = Leg("ab" * 32, 7, 0, 0, "alice", -5, "CNY", "bob")
    twice = [Posting(i, "alice", -5, "CNY", "bob", "ab" * 32) for i in range(2)]
    result = reconcile(twice, [leg])
    assert len(result.matches) == 1
    assert [b.kind for b in result.breaks] == ["not_on_chain"]
