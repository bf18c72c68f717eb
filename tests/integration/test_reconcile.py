"""Interbank reconciliation against a live 4-validator consortium and a real PostgreSQL
(docs/consistency.md, *Reconciliation: two banks and their correspondent payments*).

Setup: one cluster (`consortia cluster up`); bank-0 and bank-1 settle correspondent payments
between their treasuries on the chain, and their customers alice and bob pay each other. Each
bank keeps its own books in PostgreSQL (a throwaway server, tests/pg_helpers.py, its password
only in a libpq password file), written from what it sent and received. Bank-0's books are
then damaged three ways: one posting's amount corrupted, one posting missing, one posting the
chain never saw. `consortia reconcile` finds exactly those three breaks, each on-chain side
proven (its proof checks again, offline, with the light client), and finds none in bank-1's
books, one of whose postings carries only a business reference (matched by the fallback).
In process: a node whose receipt proofs were altered is refused, and a transfer left out of
the legs shows as proven balances that do not add up.

Run alone: .venv/bin/pytest tests/integration/test_reconcile.py
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import psycopg
import pytest

from consortia.client import Client, ClientError, LightClient
from consortia.identity import layout
from consortia.identity.genesis import load_genesis
from consortia.reconcile import balances, chain
from consortia.reconcile.errors import ChainVerificationError
from tests.cli_helpers import run
from tests.cluster_helpers import WAIT_S, LiveCluster, live_cluster, wait_for
from tests.pg_helpers import PgServer, pg_server

pytestmark = pytest.mark.xdist_group("cluster")
__all__ = ["pg_server"]  # the session's PostgreSQL, a fixture

CORRESPONDENT = 1_250_000
CORRUPTED = 1_205_000  # two digits swapped by hand
TABLE = """CREATE TABLE postings (
    id bigserial PRIMARY KEY,
    account text NOT NULL,
    amount bigint NOT NULL,
    currency text NOT NULL,
    counterparty text,
    reference text NOT NULL,
    posted_at timestamptz NOT NULL
)"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveCluster]:
    with live_cluster(tmp_path_factory.mktemp("reconcile") / "net", "--nodes", "4") as cluster:
        yield cluster


def _commit(cluster: LiveCluster, payments: list[tuple[str, str, int]]) -> list[str]:
    """Sign every transfer (sender, to, amount in fen) with the senders' next nonces, submit
    them at once, wait for each to commit and for its block to be certified; their hashes."""
    with cluster.client(0) as client:
        height = int(client.status()["height"])
        nonces: dict[str, int] = {}
        hashes = []
        for sender, to, amount in payments:
            signer = cluster.signer(sender)
            if signer.account not in nonces:
                nonces[signer.account] = int(client.account(signer.account)["nonce"])
            args = {"to": to, "amount": amount, "currency": "CNY"}
            raw, tx_hash = signer.signed(
                "asset", "transfer", args, nonce=nonces[signer.account], expiry_height=height + 500
            )
            nonces[signer.account] += 1
            assert client.submit(raw) == tx_hash
            hashes.append(tx_hash)
        heights = [int(client.wait(tx_hash, WAIT_S)["height"]) for tx_hash in hashes]

        def certified() -> bool:
            try:
                client.certificate(max(heights))
            except ClientError:
                return False
            return True

        wait_for(certified, "the payments' blocks to be certified")
    return hashes


def _books(
    accounts: set[str], payments: list[tuple[str, str, int]], hashes: list[str]
) -> list[tuple[str, int, str, str, str]]:
    """A bank's postings for the payments touching its accounts: (account, signed amount,
    currency, counterparty, reference), each referenced by its transaction hash."""
    rows = []
    for (sender, to, amount), tx_hash in zip(payments, hashes, strict=True):
        if sender in accounts:
            rows.append((sender, -amount, "CNY", to, tx_hash))
        if to in accounts:
            rows.append((to, amount, "CNY", sender, tx_hash))
    return rows


def _write(dsn: str, rows: list[tuple[str, int, str, str, str]]) -> None:
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(TABLE)
        with connection.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO postings (account, amount, currency, counterparty, reference,"
                " posted_at) VALUES (%s, %s, %s, %s, %s, %s)",
                [(*row, datetime.now(UTC)) for row in rows],
            )


def _reconcile(
    cluster: LiveCluster, dsn: str, accounts: list[str], *extra: str
) -> tuple[int, str, str]:
    options = [item for account in accounts for item in ("--account", account)]
    result = run(
        "reconcile",
        "--home",
        cluster.root,
        "--dsn",
        dsn,
        "--table",
        "postings",
        *options,
        *extra,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout, result.stderr


@dataclass(frozen=True)
class Settled:
    """What the module's setup committed: the two treasuries, the payments and their hashes."""

    banks: list[str]
    payments: list[tuple[str, str, int]]
    hashes: list[str]


@pytest.fixture(scope="module")
def settled(cluster: LiveCluster) -> Settled:
    banks = [f"{node.member}.treasury" for node in cluster.nodes[:2]]
    payments = [
        (banks[0], banks[1], CORRESPONDENT),  # correspondent payments between the treasuries
        (banks[1], banks[0], 400_000),
        (banks[0], banks[1], 310_000),
        ("alice", "bob", 12_345),  # customers paying across the two banks
        ("bob", "alice", 2_000),
        ("alice", banks[0], 500),  # within bank-0: two legs, two postings
    ]
    return Settled(banks, payments, _commit(cluster, payments))


def test_two_banks_reconcile_their_books_and_the_corrupted_posting_is_found(
    cluster: LiveCluster, pg_server: PgServer, settled: Settled
) -> None:
    banks, payments, hashes = settled.banks, settled.payments, settled.hashes
    bank0 = [banks[0], "alice"]  # bank-0's nostro account and its customer
    bank1 = [banks[1], "bob"]

    # Bank-1's books agree with the chain; one posting carries a business reference only.
    books1 = _books(set(bank1), payments, hashes)
    books1 = [
        (*row[:4], "CORR-0001") if row[4] == hashes[4] else row  # bob -> alice, by its own ref
        for row in books1
    ]
    dsn1 = pg_server.schema("reconcile_bank1")
    _write(dsn1, books1)
    window = ("--posted-from", "2026-01-01T00:00:00+08:00", "--posted-to", "2100-01-01")
    status, stdout, stderr = _reconcile(cluster, dsn1, bank1, "--json", *window)
    assert status == 0, stdout + stderr
    report = json.loads(stdout)
    assert report["agree"] and report["breaks"] == []
    assert report["matched"] == len(books1) and report["matched_by_fallback"] == 1
    assert report["verified"] and report["chain"]["transactions"] == 5
    assert report["complete"] is True  # the proven balances add up to the legs found
    assert {(b["account"], b["currency"]) for b in report["balances"]} == {
        (banks[1], "CNY"),
        ("bob", "CNY"),
    }

    # Bank-0's books: the first correspondent payment's amount corrupted, bob's payment to
    # alice never booked, and a posting the chain never saw.
    books0 = _books(set(bank0), payments, hashes)
    assert len(books0) == 7
    books0 = [
        (row[0], -CORRUPTED, *row[2:]) if (row[4], row[0]) == (hashes[0], banks[0]) else row
        for row in books0
        if (row[4], row[0]) != (hashes[4], "alice")
    ]
    invented = "f" * 64
    books0.append((banks[0], -99_000, "CNY", banks[1], invented))
    dsn0 = pg_server.schema("reconcile_bank0")
    _write(dsn0, books0)
    status, stdout, stderr = _reconcile(cluster, dsn0, bank0, "--json", "--proofs")
    assert status == 1, stderr
    report = json.loads(stdout)
    found = {(item["kind"], item["account"]) for item in report["breaks"]}
    assert found == {
        ("amount_differs", banks[0]),
        ("missing_in_books", "alice"),
        ("not_on_chain", banks[0]),
    }
    assert len(report["breaks"]) == 3
    assert report["break_counts"]["amount_differs"] == 1
    by_kind = {item["kind"]: item for item in report["breaks"]}
    corrupted = by_kind["amount_differs"]
    assert corrupted["chain"]["tx_hash"] == hashes[0]
    assert corrupted["chain"]["amount"] == -CORRESPONDENT
    assert corrupted["books"]["amount"] == -CORRUPTED
    missing = by_kind["missing_in_books"]["chain"]
    assert (missing["tx_hash"], missing["amount"], missing["counterparty"]) == (
        hashes[4],
        2_000,
        "bob",
    )
    assert by_kind["not_on_chain"]["chain"] is None
    assert by_kind["not_on_chain"]["books"]["reference"] == invented
    assert report["matched"] == len(books0) - 1  # all but the invented one

    # Each on-chain side is proven, and its proof checks again offline.
    light = LightClient.from_genesis_json((cluster.root / layout.GENESIS_FILE).read_bytes())
    for side in (corrupted["chain"], missing):
        assert side["verified"] is True and side["header"]["height"] == side["height"]
        receipt, header = light.verify_receipt({"proof": side["proof"]}, side["tx_hash"])
        assert header.height == side["height"] and receipt.ok

    # The people's form: a table of the same breaks, the same exit status.
    status, stdout, _ = _reconcile(cluster, dsn0, bank0)
    assert status == 1
    for kind in ("amount_differs", "missing_in_books", "not_on_chain"):
        assert kind in stdout
    assert "each proven against a certified header" in stdout


def test_mistakes_are_one_line_errors(cluster: LiveCluster, pg_server: PgServer) -> None:
    dsn = pg_server.schema("reconcile_mistakes")
    _write(dsn, [])
    cases: list[tuple[str, str, list[str], str]] = [
        (f"{dsn} password=secret", "postings", [], "password_in_dsn"),
        (dsn, "nowhere", [], "books_invalid"),
        (dsn, "postings", ["--column", "amount=amount_fen"], "books_invalid"),
        (dsn, "postings", ["--column", "colour=red"], "invalid_argument"),
        (dsn, "postings; DROP TABLE postings", [], "invalid_argument"),
        (dsn, "postings", ["--to-height", "999999999"], "invalid_argument"),
        (dsn, "postings", ["--posted-from", "yesterday"], "invalid_argument"),
    ]
    for given, table, extra, code in cases:
        result = run(
            "reconcile",
            "--home",
            cluster.root,
            "--dsn",
            given,
            "--table",
            table,
            "--account",
            "alice",
            *extra,
        )
        assert result.returncode == 2, (table, extra, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {code}: "), lines
        assert "secret" not in result.stderr


class _Tampering(httpx.BaseTransport):
    """Passes requests to the node; changes one byte of every receipt proven to the client."""

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        if request.url.path.startswith("/v1/tx/") and "proof=true" in str(request.url.query):
            response.read()
            answer = json.loads(response.content)
            receipt = bytearray(bytes.fromhex(answer["proof"]["receipt"]))
            receipt[-1] ^= 1
            answer["proof"]["receipt"] = receipt.hex()
            return httpx.Response(response.status_code, json=answer)
        return response

    def close(self) -> None:
        self._inner.close()


def test_a_tampered_proof_stops_the_walk_and_a_hidden_transfer_breaks_the_balances(
    cluster: LiveCluster, settled: Settled
) -> None:
    """In process: a node whose receipt proofs were altered is refused (verification_failed,
    exit status 3); a transfer the node left out shows as balances that do not add up."""
    genesis = load_genesis(cluster.root / layout.GENESIS_FILE, None)[0]
    url = cluster.nodes[0].api_url
    accounts = (settled.banks[0], "alice")
    with Client(url, light=LightClient(genesis)) as client:
        heights = chain.window(client, None, None)
        busy = chain.busy_heights(url, heights)
        legs = chain.collect(client, frozenset(accounts), busy)
        assert {leg.tx_hash for leg in legs} == set(settled.hashes)
        checks = balances.check(client, genesis, accounts, heights, legs)
        assert [check.complete for check in checks] == [True, True]
        hidden = [leg for leg in legs if leg.tx_hash != settled.hashes[4]]  # bob -> alice
        checks = balances.check(client, genesis, accounts, heights, hidden)
        assert {check.account: check.complete for check in checks} == {
            settled.banks[0]: True,
            "alice": False,
        }
    with Client(url, light=LightClient(genesis), transport=_Tampering()) as lying:
        with pytest.raises(ChainVerificationError) as refused:
            chain.collect(lying, frozenset(accounts), busy)
        assert refused.value.exit_status == 3
