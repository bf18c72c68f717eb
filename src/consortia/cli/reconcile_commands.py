"""`consortia reconcile`: an institution's postings table in PostgreSQL against what the chain
proves for its accounts (docs/reconcile.md).

    reconcile --home DIR --dsn DSN --table T [--account A ...] [--node I]
              [--api URL] [--column NAME=COLUMN ...] [--from-height H] [--to-height H]
              [--posted-from TIME] [--posted-to TIME] [--require-complete] [--proofs] [--json]

`--home` is a node's folder or a consortium's (as for `consortia mirror`): the genesis the
light client starts from, and the node to ask. Without `--account`, the accounts compared
are those the postings (in the `--posted-from/--posted-to` window) name. Exit status 0 when
the books and the chain agree, 1 when there are breaks (listed), 2 when it could not run, 3
when a node's answer failed verification (or, with `--require-complete`, a balance could not
be proven); every failure is one line `error: <code>: <message>`.

Must never print or log the DSN as given, nor a password; never write to the database.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, Final

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from consortia.cli.mirror_commands import _target
from consortia.cli.options import NodeOrConsortiumHome, PgDsn
from consortia.cli.output import err, out
from consortia.client import Client, LightClient
from consortia.errors import InvalidArgumentError
from consortia.mirror.dsn import checked, describe
from consortia.reconcile import balances, chain
from consortia.reconcile.books import (
    BooksQuery,
    book_accounts,
    checked_accounts,
    column_map,
    read_postings,
    table_name,
)
from consortia.reconcile.errors import ReconcileError
from consortia.reconcile.match import reconcile
from consortia.reconcile.report import Scope, exit_status, report

ACCOUNTS_MAX: Final = 1024
HASH_SHOWN: Final = 16
TABLE_WIDTH_PIPED: Final = 200


def register(app: typer.Typer) -> None:
    app.command("reconcile")(reconcile_command)


def reconcile_command(
    home: NodeOrConsortiumHome,
    dsn: PgDsn,
    table: Annotated[str, typer.Option("--table", help="The postings table: name or schema.name.")],
    account: Annotated[
        list[str] | None,
        typer.Option(
            "--account",
            help="An account of the institution; repeatable (default: those the postings name).",
        ),
    ] = None,
    node: Annotated[
        int | None, typer.Option("--node", help="In a consortium's folder: the node.", min=0)
    ] = None,
    api: Annotated[
        str | None, typer.Option("--api", help="Ask this API instead of the config's.")
    ] = None,
    column: Annotated[
        list[str] | None,
        typer.Option("--column", help="NAME=COLUMN when the table names a column otherwise."),
    ] = None,
    from_height: Annotated[
        int | None, typer.Option("--from-height", help="First height (default 1).", min=1)
    ] = None,
    to_height: Annotated[
        int | None,
        typer.Option("--to-height", help="Last height (default: the latest certified).", min=0),
    ] = None,
    posted_from: Annotated[
        str | None,
        typer.Option("--posted-from", help="Postings at or after this time (ISO 8601; UTC)."),
    ] = None,
    posted_to: Annotated[
        str | None, typer.Option("--posted-to", help="Postings before this time (ISO 8601).")
    ] = None,
    require_complete: Annotated[
        bool,
        typer.Option(
            "--require-complete",
            help="Exit 3 unless every balance was proven to add up (not only none failed).",
        ),
    ] = False,
    proofs: Annotated[
        bool, typer.Option("--proofs", help="Put each on-chain item's proof in --json.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Compare the institution's postings with the transfers the chain proves for its
    accounts; list the breaks (exit 1 when there are)."""
    parameters = checked(dsn)
    if account is not None and len(account) > ACCOUNTS_MAX:
        raise InvalidArgumentError(f"at most {ACCOUNTS_MAX} --account options")
    named = None if not account else checked_accounts(account)
    tables, columns = table_name(table), column_map(column or [])
    start, end = _instant("--posted-from", posted_from), _instant("--posted-to", posted_to)
    genesis, url = _target(home, node, api)
    try:
        # The books first: a wrong table fails before the walk.
        accounts = named or book_accounts(dsn, tables, columns, posted_from=start, posted_to=end)
        query = BooksQuery(tables, columns, accounts, start, end)
        postings = read_postings(dsn, query)
        with Client(url, light=LightClient(genesis)) as client:
            heights = chain.window(client, from_height, to_height)
            with _progress() as progress:
                busy = chain.busy_heights(url, heights, progress)
                legs = chain.collect(
                    client, frozenset(accounts), busy, keep_proofs=proofs, progress=progress
                )
            checks = balances.check(client, genesis, accounts, heights, legs)
    except ReconcileError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(error.exit_status) from None
    result = reconcile(postings, legs)
    scope = Scope(
        genesis.chain_id, heights.first, heights.last, accounts, table, describe(parameters)
    )
    document = report(scope, postings, legs, result, checks, proofs=proofs)
    if as_json:
        typer.echo(json.dumps(document, separators=(",", ":")))
    else:
        _print(document)
    raise typer.Exit(exit_status(result, checks, require_complete=require_complete))


def _instant(option: str, text: str | None) -> datetime | None:
    """An ISO 8601 time; one without an offset is UTC."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArgumentError(f"{option} {text!r} is not an ISO 8601 time") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@contextmanager
def _progress() -> Iterator[chain.Progress]:
    """A progress bar (reading blocks, then proving transfers), on stderr when it is a
    terminal."""
    with Progress(
        TextColumn("{task.description:<20}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as bar:
        task = bar.add_task("starting", total=None)

        def step(what: str, done: int, total: int) -> None:
            bar.update(task, description=what, completed=done, total=total)

        yield step


def _short(value: Any) -> str:
    text = "" if value is None else str(value)
    return text[:HASH_SHOWN] + "…" if len(text) > HASH_SHOWN + 1 else text


def _print(document: dict[str, Any]) -> None:
    heights = document["heights"]
    books = document["books"]
    out.print(
        f"chain {document['chain_id']}, heights {heights['from']} to {heights['to']}:"
        f" {document['chain']['legs']} transfer legs in {document['chain']['transactions']}"
        f" transactions, each proven against a certified header; {_completeness(document)}",
        markup=False,
    )
    out.print(
        f"books {books['table']} ({books['database']}): {books['postings']} postings",
        markup=False,
    )
    out.print(
        f"matched {document['matched']} ({document['matched_by_fallback']} by the fallback)",
        markup=False,
    )
    for check in document["balances"]:
        if check["complete"] is False:
            out.print(
                f"INCOMPLETE: {check['account']} {check['currency']} moved"
                f" {check['after'] - check['before']:+} by its proven balances, but its legs"
                f" found sum to {check['moved']:+}: the node left transactions out;"
                " ask another node",
                markup=False,
            )
    if document["agree"]:
        out.print("no breaks: the books agree with the chain")
        return
    table = Table(title=f"{len(document['breaks'])} break(s)")
    for name in ("kind", "account", "tx / reference", "height", "chain", "books"):
        table.add_column(name, no_wrap=name != "books")
    for item in document["breaks"]:
        leg, posting = item["chain"], item["books"]
        reference = leg["tx_hash"] if leg is not None else posting["reference"]
        cells = (
            item["kind"],
            item["account"],
            _short(reference),
            "" if leg is None else str(leg["height"]),
            "" if leg is None else _side(leg["amount"], leg["currency"], leg["counterparty"]),
            ""
            if posting is None
            else _side(posting["amount"], posting["currency"], posting["counterparty"]),
        )
        table.add_row(*(Text(cell) for cell in cells))  # values as they are, never markup
    # Piped or redirected (a daily job's log), the table is printed whole: at a terminal's
    # default 80 columns it would cut the books' side off.
    console = out if out.is_terminal else Console(highlight=False, width=TABLE_WIDTH_PIPED)
    console.print(table)
    counts = ", ".join(f"{kind} {n}" for kind, n in document["break_counts"].items() if n)
    out.print(f"breaks: {counts}", markup=False)


def _completeness(document: dict[str, Any]) -> str:
    complete = document["complete"]
    if complete is None:
        return "some balances could not be proven (the node no longer keeps that height)"
    return "the proven balances add up" if complete else "the proven balances DO NOT add up"


def _side(amount: int, currency: str, counterparty: str | None) -> str:
    other = f"with {counterparty}" if counterparty else "(no counterparty)"
    return f"{amount:+} {currency} {other}"
