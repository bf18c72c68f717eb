"""The verified mirror against a live 4-validator consortium and a real PostgreSQL.

Setup: one cluster for the module (`consortia cluster up`), with transfers and two supply-chain
finance receivables (one of which a second bank then tries to finance again) committed
first; one throwaway PostgreSQL server (tests/pg_helpers.py), a schema per test. The mirror
runs as `consortia mirror` processes, its password only in a libpq password file.

Test: what it writes equals what the nodes say (every block's hash, every receipt, the
events, the balances, the certified state root); the regulator's three questions from
docs/mirror.md return the expected rows; a mirror killed with SIGKILL inside a write
transaction (its rows inserted, not committed) leaves nothing of that batch, and the restarted
mirror completes the chain with no gap and no duplicate; a tampered answer from the live node
stops the mirror before it writes the block. Tests share the cluster in file order (one xdist
group); no test passes because it slept.

Run alone: .venv/bin/pytest tests/integration/test_mirror.py
"""

from __future__ import annotations

import hashlib
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psycopg
import pytest

from consortia.mirror.database import APPLICATION_NAME
from consortia.types.consensus import Block
from consortia.types.encoding import decode, encode
from tests.cluster_helpers import WAIT_S, LiveCluster, live_cluster, wait_for
from tests.pg_helpers import PgServer, free_port, pg_server

pytestmark = pytest.mark.xdist_group("cluster")
__all__ = ["pg_server"]  # the session's PostgreSQL, a fixture

DOCS = Path(__file__).resolve().parents[2] / "docs" / "mirror.md"
FIRM = "alice"
LARGE = 60_000_000  # above the docs' threshold of 50,000,000
TABLES = ("blocks", "transactions", "receipts", "events", "state_changes")


@dataclass
class Activity:
    """What the module's setup committed, to check the mirror against."""

    tx_hashes: list[str]
    banks: tuple[str, str]
    prices: tuple[int, int]
    double_financing: str  # the hash of the second bank's attempt
    large_transfer: str
    height: int  # a height at or after every one of them


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveCluster]:
    with live_cluster(tmp_path_factory.mktemp("mirror") / "net", "--nodes", "4") as cluster:
        yield cluster


def _round(cluster: LiveCluster, calls: list[tuple[str, str, str, dict[str, Any]]]) -> list[str]:
    """Sign every call (sender, contract, method, args) with the sender's next nonces, in
    order, submit them all at once, and wait for each to commit; their hashes."""
    with cluster.client(0) as client:
        height = int(client.status()["height"])
        nonces: dict[str, int] = {}
        hashes = []
        for sender, contract, method, args in calls:
            signer = cluster.signer(sender)
            if signer.account not in nonces:
                nonces[signer.account] = int(client.account(signer.account)["nonce"])
            raw, tx_hash = signer.signed(
                contract, method, args, nonce=nonces[signer.account], expiry_height=height + 1000
            )
            nonces[signer.account] += 1
            assert client.submit(raw) == tx_hash
            hashes.append(tx_hash)
        for tx_hash in hashes:
            client.wait(tx_hash, WAIT_S)
    return hashes


@pytest.fixture(scope="module")
def activity(cluster: LiveCluster) -> Activity:
    """Transfers, and two receivables `FIRM` owes: inv-1 to bob, financed by the first bank,
    then financed again by the second (refused, already_financed); inv-2 to carol, financed
    by the second bank. Three rounds of transactions, each submitted at once."""
    members = [node.member for node in cluster.nodes[:2]]
    banks = (f"{members[0]}.treasury", f"{members[1]}.treasury")
    prices = (9_800_000, 4_900_000)
    status = cluster.status(0)
    assert status is not None
    maturity = int(status["height"]) + 90_000

    def issue(receivable: str, holder: str, amount: int) -> tuple[str, str, str, dict[str, Any]]:
        digest = hashlib.sha256(receivable.encode()).hexdigest()
        args = {
            "receivable_id": receivable,
            "holder": holder,
            "amount": amount,
            "currency": "CNY",
            "maturity_height": maturity,
            "documents_digest": digest,
        }
        return FIRM, "receivable", "issue", args

    def offer(holder: str, part: str, bank: str, price: int) -> list[Any]:
        args = {"part_id": part, "bank": bank, "price": price}
        return [
            (holder, "receivable", "accept", {"receivable_id": part.partition("#")[0]}),
            (holder, "receivable", "offer_finance", args),
        ]

    def finance(bank: str, part: str, price: int) -> tuple[str, str, str, dict[str, Any]]:
        args = {"part_id": part, "bank": bank, "price": price}
        return bank.removesuffix(".treasury"), "receivable", "finance", args

    first = _round(
        cluster,
        [
            ("bob", "asset", "transfer", {"to": "carol", "amount": 12_345, "currency": "CNY"}),
            (FIRM, "asset", "transfer", {"to": "dave", "amount": LARGE, "currency": "CNY"}),
            issue("inv-1", "bob", 10_000_000),
            issue("inv-2", "carol", 5_000_000),
        ],
    )
    second = _round(
        cluster,
        [
            *offer("bob", "inv-1#0", banks[0], prices[0]),
            *offer("carol", "inv-2#0", banks[1], prices[1]),
        ],
    )
    third = _round(
        cluster,
        [
            finance(banks[0], "inv-1#0", prices[0]),
            finance(banks[1], "inv-2#0", prices[1]),
        ],
    )
    (double,) = _round(cluster, [finance(banks[1], "inv-1#0", prices[0])])
    hashes = [*first, *second, *third, double]
    with cluster.client(0) as client:
        records = [client.transaction(h) for h in hashes]
    assert [r["receipt"]["code"] for r in records] == ["ok"] * 10 + ["already_financed"]
    height = max(int(r["height"]) for r in records)
    return Activity(hashes, banks, prices, double, first[1], height)


def _mirror(cluster: LiveCluster, pg: PgServer, dsn: str, *extra: str) -> subprocess.Popen[str]:
    """`consortia mirror` following node 0; the DSN carries no password (PGPASSFILE)."""
    argv = [sys.executable, "-m", "consortia.cli", "mirror", "--home", str(cluster.root)]
    argv += ["--dsn", pg.without_passfile(dsn), *extra]
    return subprocess.Popen(
        argv, env=pg.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _finished(process: subprocess.Popen[str]) -> str:
    out, err = process.communicate(timeout=WAIT_S)
    assert process.returncode == 0, err
    return out + err


def _rows(dsn: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as connection:
        return connection.execute(query, params).fetchall()


@pytest.fixture(scope="module")
def node(cluster: LiveCluster) -> Iterator[httpx.Client]:
    """Node 0's API, one connection for the many reads."""
    with httpx.Client(base_url=cluster.nodes[0].api_url, timeout=10.0) as client:
        yield client


def _node_json(node: httpx.Client, path: str) -> dict[str, Any]:
    answer: dict[str, Any] = node.get(path).json()
    return answer


def _matches_the_node(node: httpx.Client, dsn: str, height: int) -> None:
    """Every block up to `height`: the node's hash and receipts; the certified root there."""
    blocks = _rows(
        dsn, "SELECT height, block_hash FROM blocks WHERE height <= %s ORDER BY 1", (height,)
    )
    assert [h for h, _ in blocks] == list(range(1, height + 1))
    receipts: dict[int, list[tuple[str, bool, str]]] = {}
    for h, tx_hash, ok, code in _rows(
        dsn, "SELECT height, tx_hash, ok, code FROM receipts ORDER BY height, tx_index"
    ):
        receipts.setdefault(h, []).append((tx_hash, ok, code))
    for h, block_hash in blocks:
        assert _node_json(node, f"/v1/blocks/{h}")["hash"] == block_hash, h
        node_receipts = _node_json(node, f"/v1/blocks/{h}/receipts")["receipts"]
        assert [(r["tx_hash"], r["ok"], r["code"]) for r in node_receipts] == receipts.get(h, []), h
    certified = wait_for(
        lambda: _node_json(node, f"/v1/blocks/{height}/certificate").get("header"),
        f"a certificate of height {height}",
    )
    assert _rows(dsn, "SELECT state_root FROM blocks WHERE height = %s", (height,)) == [
        (certified["state_root"],)
    ]


@pytest.fixture(scope="module")
def mirrored(pg_server: PgServer) -> str:
    """The schema the first tests mirror the activity into."""
    return pg_server.schema("mirrored")


def test_the_mirror_writes_what_the_nodes_certified(
    cluster: LiveCluster, activity: Activity, pg_server: PgServer, mirrored: str, node: httpx.Client
) -> None:
    dsn = mirrored
    output = _finished(_mirror(cluster, pg_server, dsn, "--until", str(activity.height)))
    assert "mirror stopped" in output and "passfile" not in output
    assert _rows(dsn, "SELECT height FROM mirror_progress") == [(activity.height,)]
    _matches_the_node(node, dsn, activity.height)
    # Events: each of the activity's transactions as the node recorded it.
    for tx_hash in activity.tx_hashes:
        receipt = _node_json(node, f"/v1/tx/{tx_hash}")["receipt"]
        events = _rows(
            dsn,
            "SELECT e.contract, e.name, e.attributes FROM events e JOIN receipts r USING"
            " (height, tx_index) WHERE r.tx_hash = %s ORDER BY e.event_index",
            (tx_hash,),
        )
        assert [tuple(e) for e in receipt["events"]] == events  # [contract, name, fields]
    # State: balances and a receivable part equal the node's at the mirrored height.
    for account in ("alice", "bob", "carol", "dave", *activity.banks):
        at = _node_json(node, f"/v1/state/asset/balance/CNY/{account}?height={activity.height}")
        assert _rows(
            dsn,
            "SELECT value FROM state_changes WHERE contract = 'asset' AND key = %s"
            " AND height <= %s ORDER BY height DESC LIMIT 1",
            (f"balance/CNY/{account}", activity.height),
        ) == [(at["value"],)]
    part = _node_json(node, f"/v1/state/receivable/part/inv-1%230?height={activity.height}")
    assert _rows(dsn, "SELECT value FROM state_current WHERE key = 'part/inv-1#0'") == [
        (part["value"],)
    ]


def _question(name: str) -> tuple[str, dict[str, str]]:
    """The SQL of a question in docs/mirror.md, psql variables as psycopg parameters, and the
    values its `\\set` lines give them."""
    blocks = re.findall(r"```sql\n(.*?)```", DOCS.read_text(), re.S)
    (text,) = [b for b in blocks if b.startswith(f"-- question: {name}\n")]
    defaults: dict[str, str] = {}
    lines = []
    for line in text.splitlines():
        if line.startswith("\\set "):
            _, variable, value = line.split(" ", 2)
            defaults[variable] = value.strip("'")
        else:
            lines.append(line)
    sql = "\n".join(lines)
    sql = re.sub(r"(?<![:\w]):'(\w+)'", r"%(\1)s", sql)
    sql = re.sub(r"(?<![:\w]):(\w+)", r"%(\1)s", sql)
    return sql, defaults


def test_the_regulators_questions_in_the_docs_answer(
    cluster: LiveCluster, activity: Activity, pg_server: PgServer, mirrored: str
) -> None:
    dsn = mirrored  # the previous test's mirror (which resumes and finds nothing to do)
    assert "resumed=True" in _finished(
        _mirror(cluster, pg_server, dsn, "--until", str(activity.height))
    )
    sql, defaults = _question("exposure")
    assert defaults == {"firm": "acme"}
    exposure = _rows(dsn, sql, {"firm": FIRM})
    assert exposure == [
        (activity.banks[0], "CNY", 1, 10_000_000, activity.prices[0]),
        (activity.banks[1], "CNY", 1, 5_000_000, activity.prices[1]),
    ]
    assert _rows(dsn, sql, {"firm": "nobody"}) == []
    sql, _ = _question("double_financing")
    (attempt,) = _rows(dsn, sql)
    assert attempt[2:6] == (activity.double_financing, activity.banks[1], "finance", "inv-1#0")
    assert attempt[7] == activity.banks[0] and attempt[6] < attempt[0]
    sql, defaults = _question("large_transfers")
    assert defaults["threshold"] == "50000000"
    now = datetime.now(UTC)
    defaults["from"] = (now - timedelta(days=1)).isoformat()
    defaults["to"] = (now + timedelta(days=1)).isoformat()
    large = _rows(dsn, sql, {**defaults, "threshold": int(defaults["threshold"])})
    assert [(row[2], row[3], row[4], row[6]) for row in large] == [
        (activity.large_transfer, FIRM, "dave", LARGE)
    ]
    assert _rows(dsn, sql, {**defaults, "threshold": LARGE}) == []
    assert _rows(dsn, sql, {**defaults, "threshold": 0, "to": "2000-01-01T00:00:00Z"}) == []


def _mirror_backend(dsn: str) -> tuple[int, str] | None:
    rows = _rows(
        dsn,
        "SELECT pid, coalesce(wait_event_type, '') FROM pg_stat_activity"
        " WHERE application_name = %s",
        (APPLICATION_NAME,),
    )
    return rows[0] if rows else None


def test_a_mirror_killed_inside_its_write_transaction_resumes_without_gap_or_duplicate(
    cluster: LiveCluster, activity: Activity, pg_server: PgServer, node: httpx.Client
) -> None:
    dsn = pg_server.schema("killed")
    process = _mirror(cluster, pg_server, dsn)
    try:
        wait_for(
            lambda: (
                _rows(dsn, "SELECT to_regclass('mirror_progress')") != [(None,)]
                and (_rows(dsn, "SELECT height FROM mirror_progress") or [(0,)])[0][0] >= 5
            ),
            "the mirror to write a few blocks",
        )
        with psycopg.connect(dsn) as holder:
            # The mirror's write of the next block that changes state (this transfer's)
            # inserts its rows, then stops at the current state: the table held here.
            holder.execute("LOCK TABLE state_current IN SHARE MODE")
            cluster.transfer("carol", "bob", 1, wait=False)
            pid = wait_for(
                lambda: (b := _mirror_backend(dsn)) is not None and b[1] == "Lock" and b[0],
                "the mirror to wait inside its write transaction",
            )
            inserted = _rows(
                dsn,
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                " WHERE l.pid = %s AND c.relname = 'blocks' AND l.mode = 'RowExclusiveLock'"
                " AND l.granted",
                (pid,),
            )
            assert inserted == [(1,)]  # its uncommitted transaction wrote blocks rows
            process.kill()  # SIGKILL, inside the transaction
            process.wait(timeout=WAIT_S)
            ((written,),) = holder.execute("SELECT height FROM mirror_progress").fetchall()
            holder.rollback()
        wait_for(lambda: _mirror_backend(dsn) is None, "the killed mirror's connection to end")
        assert _rows(dsn, "SELECT max(height) FROM blocks") == [(written,)]
        for table in TABLES:
            assert _rows(dsn, f"SELECT count(*) FROM {table} WHERE height > %s", (written,)) == [
                (0,)
            ]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    tip = int(_node_json(node, "/v1/status")["height"])
    output = _finished(_mirror(cluster, pg_server, dsn, "--until", str(tip)))
    assert "resumed=True" in output
    _matches_the_node(node, dsn, tip)
    for table, key in (
        ("blocks", "height"),
        ("transactions", "height, tx_index"),
        ("events", "height, event_index"),
    ):
        total, distinct = _rows(dsn, f"SELECT count(*), count(DISTINCT ({key})) FROM {table}")[0]
        assert total == distinct, table
    assert _rows(dsn, "SELECT count(*) FROM receipts") == _rows(
        dsn, "SELECT count(*) FROM transactions"
    )


def test_a_mirror_killed_at_seeded_random_moments_ends_equal_to_the_chain(
    cluster: LiveCluster, activity: Activity, pg_server: PgServer, node: httpx.Client
) -> None:
    """SIGKILL at moments drawn from a seeded generator (starting, catching up, writing,
    waiting), the chain moving on between kills: after each kill the mirror holds whole
    blocks only, with no gap; resumed, it ends equal to the node: blocks, receipts, the
    certified state root, and every balance."""
    dsn = pg_server.schema("random_kills")
    rng = random.Random(20261201)
    first_nonce = int(cluster.account("carol")["nonce"])
    for kill in range(5):
        # The previous transfer committed first (the next one's nonce is read from committed
        # state); this one may still be in flight when the mirror is killed.
        wait_for(
            lambda k=kill: int(cluster.account("carol")["nonce"]) >= first_nonce + k,
            "carol's previous transfer to commit",
        )
        cluster.transfer("carol", "bob", kill + 1, wait=False)
        process = _mirror(cluster, pg_server, dsn)
        try:
            time.sleep(rng.uniform(0.1, 3.0))  # the moment to kill at: any must do
        finally:
            process.kill()
            process.wait(timeout=WAIT_S)
        wait_for(lambda: _mirror_backend(dsn) is None, "the killed mirror's connection to end")
        if _rows(dsn, "SELECT to_regclass('mirror_progress')") == [(None,)]:
            continue  # killed before its schema was made
        progress = _rows(dsn, "SELECT height FROM mirror_progress")
        written = progress[0][0] if progress else 0
        blocks = _rows(dsn, "SELECT count(*), coalesce(max(height), 0) FROM blocks")
        assert blocks == [(written, written)], kill  # whole blocks from 1, none past it
        for table, key in (("transactions", "height, tx_index"), ("events", "height, event_index")):
            total, distinct = _rows(dsn, f"SELECT count(*), count(DISTINCT ({key})) FROM {table}")[
                0
            ]
            assert total == distinct, (kill, table)
    tip = int(_node_json(node, "/v1/status")["height"])
    _finished(_mirror(cluster, pg_server, dsn, "--until", str(tip)))
    _matches_the_node(node, dsn, tip)
    mirrored = dict(_rows(dsn, "SELECT account, balance FROM balances WHERE currency = 'CNY'"))
    for account in ("alice", "bob", "carol", "dave"):
        at = _node_json(node, f"/v1/state/asset/balance/CNY/{account}?height={tip}")
        assert int(mirrored[account]) == int(at["value"]), account


class _TamperingProxy(ThreadingHTTPServer):
    """An HTTP server on loopback passing GETs to the live node, with one transaction of
    block `height` replaced in its encoding: a lying node as the mirror process sees it."""

    def __init__(self, node_url: str, height: int) -> None:
        self.node_url, self.height = node_url, height
        self.http = httpx.Client(timeout=10.0)
        super().__init__(("127.0.0.1", 0), _ProxyHandler)

    def answer(self, path: str) -> tuple[int, bytes]:
        response = self.http.get(self.node_url + path)
        if path != f"/v1/blocks/{self.height}?encoded=true":
            return response.status_code, response.content
        answer = response.json()
        block = decode(bytes.fromhex(answer["encoded"]), Block)
        # Flip a bit of the last byte (setting it to a fixed value left it unchanged whenever
        # it already was that value: one run in 256 then mirrored an untampered block).
        last = block.payload[-1]
        payload = [*block.payload[:-1], last[:-1] + bytes([last[-1] ^ 0x01])]
        answer["encoded"] = encode(msgspec.structs.replace(block, payload=payload)).hex()
        return 200, msgspec.json.encode(answer)


class _ProxyHandler(BaseHTTPRequestHandler):
    server: _TamperingProxy

    def do_GET(self) -> None:
        status, body = self.server.answer(self.path)
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


def test_a_lying_node_stops_the_mirror_process_before_it_writes_the_block(
    cluster: LiveCluster, activity: Activity, pg_server: PgServer
) -> None:
    dsn = pg_server.schema("tampered")
    height = activity.height  # holds the activity's last transaction
    proxy = _TamperingProxy(cluster.nodes[0].api_url, height)
    serving = threading.Thread(target=proxy.serve_forever, daemon=True)
    serving.start()
    try:
        api = f"http://127.0.0.1:{proxy.server_address[1]}"
        process = _mirror(cluster, pg_server, dsn, "--api", api, "--until", str(height))
        _, err = process.communicate(timeout=WAIT_S)
    finally:
        proxy.shutdown()
        proxy.http.close()
        proxy.server_close()
    assert process.returncode == 1, err
    assert f"error: verification_failed: payload at height {height}:" in err
    assert _rows(dsn, "SELECT height FROM mirror_progress") == [(height - 1,)]
    for table in TABLES:
        assert _rows(dsn, f"SELECT count(*) FROM {table} WHERE height >= %s", (height,)) == [(0,)]


def test_the_mirror_says_how_far_behind_it_is_and_stops_on_sigterm(
    cluster: LiveCluster, activity: Activity, pg_server: PgServer
) -> None:
    dsn = pg_server.schema("followed")
    port = free_port()
    process = _mirror(cluster, pg_server, dsn, "--metrics-port", str(port), "--log-every", "0.5")
    try:

        def metrics() -> dict[str, float] | None:
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5.0).text
            except httpx.HTTPError:
                return None
            values = dict(
                line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("consortia_")
            )
            height = float(values.get("consortia_mirror_height", 0))
            return {k: float(v) for k, v in values.items()} if height > activity.height else None

        values = wait_for(metrics, "the mirror to pass the activity's height")
        assert values["consortia_mirror_node_height"] >= values["consortia_mirror_height"]
        assert values["consortia_mirror_behind_blocks"] == (
            values["consortia_mirror_node_height"] - values["consortia_mirror_height"]
        )
        assert values["consortia_mirror_transactions_total"] >= len(activity.tx_hashes)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=WAIT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    progress = [line for line in err.splitlines() if "mirror progress" in line]
    assert progress and all(
        re.search(r"behind=\d+ .*height=\d+ .*node_height=\d+", line) for line in progress
    )
    assert "mirror stopped" in err.splitlines()[-1]
    ((written,),) = _rows(dsn, "SELECT height FROM mirror_progress")
    assert (
        _rows(dsn, "SELECT max(height) FROM blocks") == [(written,)] and written > activity.height
    )
