"""The outbox and its relay against a live 4-validator consortium and a real PostgreSQL.

Setup: one cluster for the module (`consortia cluster up`), one throwaway PostgreSQL server
(tests/pg_helpers.py), a schema per test standing for a business system's database. The relay
runs as `consortia relay` processes, its password only in a libpq password file, its keys
opened from the cluster's folder with the demo passphrase.

Test: intents end on chain exactly once and their outcomes are recorded (a transfer beyond the
balance recorded failed with its code, not retried); a relay killed with SIGKILL right after
signing and storing (nothing sent), and right after submitting (nothing recorded), resumes
with the very same transactions and no duplicate; the node the relay talks to killed and
restarted; the relay's database connection terminated from another connection; a stored
transaction that expired before it was ever sent signed again exactly once. The kills are
aimed by the relay's own hook (`CONSORTIA_RELAY_CRASH_AT`) and the waits poll the database,
the chain or the relay's metrics: nothing passes because it slept. "Exactly once" is checked
on chain: every transaction the relay ever signed is looked up, the receivers' balances and the
sender's nonce moved by exactly what the intents say.

Run alone: .venv/bin/pytest tests/integration/test_outbox.py
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from consortia.client import ClientError
from consortia.client.outbox import APPLICATION_NAME, Intent, enqueue, migrate
from tests.cluster_helpers import WAIT_S, LiveCluster, live_cluster, wait_for
from tests.pg_helpers import PgServer, free_port, pg_server

pytestmark = pytest.mark.xdist_group("cluster")
__all__ = ["pg_server"]  # the session's PostgreSQL, a fixture

SENDER = "alice"
RECEIVER = "carol"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveCluster]:
    with live_cluster(tmp_path_factory.mktemp("outbox") / "net", "--nodes", "4") as cluster:
        yield cluster


def _business(dsn: str) -> None:
    """The business system's own table beside the outbox's."""
    with psycopg.connect(dsn, autocommit=True) as connection:
        migrate(connection)
        connection.execute(
            "CREATE TABLE IF NOT EXISTS payments (id text PRIMARY KEY, amount bigint NOT NULL)"
        )


def _pay(dsn: str, key: str, amount: int, sender: str = SENDER, to: str = RECEIVER) -> None:
    """A business change and its intent, in one transaction."""
    with psycopg.connect(dsn) as connection:
        connection.execute("INSERT INTO payments VALUES (%s, %s)", (key, amount))
        args = {"to": to, "amount": amount, "currency": "CNY"}
        enqueue(connection, Intent(key, sender, "asset", "transfer", args))


def _relay(
    cluster: LiveCluster, pg: PgServer, dsn: str, *extra: str, crash_at: str | None = None
) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "consortia.cli", "relay", "--home", str(cluster.root)]
    argv += ["--dsn", pg.without_passfile(dsn), *extra]
    env = pg.env()
    env.pop("CONSORTIA_RELAY_CRASH_AT", None)
    if crash_at is not None:
        env["CONSORTIA_RELAY_CRASH_AT"] = crash_at
    return subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _finished(process: subprocess.Popen[str], status: int = 0) -> str:
    out, err = process.communicate(timeout=WAIT_S)
    assert process.returncode == status, err
    assert "Traceback" not in err
    return out + err


def _rows(dsn: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as connection:
        return connection.execute(query, params).fetchall()


def _balance(cluster: LiveCluster, account: str) -> int:
    return int(cluster.account(account)["balance"])


def _nonce(cluster: LiveCluster, account: str) -> int:
    return int(cluster.account(account)["nonce"])


def _on_chain(cluster: LiveCluster, tx_hash: str) -> dict[str, Any] | None:
    try:
        with cluster.client(0) as client:
            return client.transaction(tx_hash)
    except ClientError as error:
        assert error.code == "not_found", error
        return None


def _exactly_once(cluster: LiveCluster, dsn: str) -> dict[str, tuple[str, str, int]]:
    """Every intent decided, and the chain holds exactly one transaction for each committed
    intent (every transaction the relay ever signed looked up); business key ->
    (state, tx hash, height)."""
    intents = _rows(dsn, "SELECT id, business_key, state, tx_hash, height FROM outbox_intents")
    decided: dict[str, tuple[str, str, int]] = {}
    for intent_id, key, state, tx_hash, height in intents:
        assert state in ("committed", "failed"), (key, state)
        signed = _rows(
            dsn, "SELECT tx_hash, fate FROM outbox_transactions WHERE intent_id = %s", (intent_id,)
        )
        in_blocks = [(h, fate) for h, fate in signed if _on_chain(cluster, h) is not None]
        if state == "committed":
            assert in_blocks == [(tx_hash, "committed")], key
            record = _on_chain(cluster, tx_hash)
            assert record is not None and record["status"] == "committed"
            assert int(record["height"]) == height
        decided[key] = (state, tx_hash, height)
    return decided


def test_intents_end_on_chain_exactly_once_and_outcomes_are_recorded(
    cluster: LiveCluster, pg_server: PgServer
) -> None:
    dsn = pg_server.schema("outbox_basic")
    _business(dsn)
    amounts = {f"pay-{i}": 1_000 + i for i in range(5)}
    for key, amount in amounts.items():
        _pay(dsn, key, amount)
    poor = _balance(cluster, "dave")
    _pay(dsn, "too-much", poor + 1, sender="dave", to="bob")
    before = _balance(cluster, RECEIVER), _nonce(cluster, SENDER), _nonce(cluster, "dave")
    output = _finished(_relay(cluster, pg_server, dsn, "--until-idle"))
    assert "relay stopped" in output and "passfile" not in output
    decided = _exactly_once(cluster, dsn)
    assert {k: v[0] for k, v in decided.items()} == {
        **dict.fromkeys(amounts, "committed"),
        "too-much": "failed",
    }
    assert _balance(cluster, RECEIVER) == before[0] + sum(amounts.values())
    assert _nonce(cluster, SENDER) == before[1] + len(amounts)
    # The failed transfer: in a block, its receipt's code recorded, its nonce spent.
    ((code, receipt, spent, signings),) = _rows(
        dsn,
        "SELECT code, receipt, nonce_spent, signings FROM outbox_intents"
        " WHERE business_key = 'too-much'",
    )
    assert (code, receipt["ok"], spent, signings) == ("insufficient_funds", False, True, 1)
    assert _nonce(cluster, "dave") == before[2] + 1
    # Committed rows carry the receipt, height and hash; the chain agrees.
    for key in amounts:
        ((receipt, height, tx_hash),) = _rows(
            dsn,
            "SELECT receipt, height, tx_hash FROM outbox_intents WHERE business_key = %s",
            (key,),
        )
        assert receipt["ok"] is True and (tx_hash, height) == decided[key][1:]
    # A second run finds nothing to do: nothing is sent again, the failure is not retried.
    _finished(_relay(cluster, pg_server, dsn, "--until-idle"))
    assert _rows(dsn, "SELECT sum(submissions), sum(signings) FROM outbox_intents") == [(0, 6)]
    assert _nonce(cluster, "dave") == before[2] + 1


@pytest.mark.parametrize("point", ["after_sign", "after_submit"])
def test_a_relay_killed_at_its_worst_moments_resumes_without_duplicate(
    cluster: LiveCluster, pg_server: PgServer, point: str
) -> None:
    dsn = pg_server.schema(f"outbox_{point}")
    _business(dsn)
    amounts = {f"{point}-{i}": 2_000 + i for i in range(3)}
    for key, amount in amounts.items():
        _pay(dsn, key, amount)
    before = _balance(cluster, RECEIVER), _nonce(cluster, SENDER)
    _finished(_relay(cluster, pg_server, dsn, "--until-idle", crash_at=point), -signal.SIGKILL)
    stored = dict(_rows(dsn, "SELECT business_key, tx_hash FROM outbox_intents"))
    assert _rows(dsn, "SELECT DISTINCT state FROM outbox_intents") == [("signed",)]
    assert all(stored.values())
    if point == "after_sign":  # stored, never sent: no node knows them
        assert all(_on_chain(cluster, h) is None for h in stored.values())
    _finished(_relay(cluster, pg_server, dsn, "--until-idle"))
    decided = _exactly_once(cluster, dsn)
    assert {k: (v[0], v[1]) for k, v in decided.items()} == {
        k: ("committed", h) for k, h in stored.items()
    }  # the very transactions stored before the kill
    assert _rows(dsn, "SELECT count(*) FROM outbox_transactions") == [(len(amounts),)]
    assert _balance(cluster, RECEIVER) == before[0] + sum(amounts.values())
    assert _nonce(cluster, SENDER) == before[1] + len(amounts)


def _metric(port: int, name: str) -> float:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10.0).text
    except httpx.HTTPError:
        return -1.0
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return -1.0


def _all_committed(dsn: str, count: int) -> bool:
    return _rows(dsn, "SELECT count(*) FROM outbox_intents WHERE state = 'committed'") == [(count,)]


def test_the_relays_node_killed_and_restarted(cluster: LiveCluster, pg_server: PgServer) -> None:
    dsn = pg_server.schema("outbox_node")
    _business(dsn)
    before = _balance(cluster, RECEIVER), _nonce(cluster, SENDER)
    port = free_port()
    relay = _relay(
        cluster, pg_server, dsn, "--node", "1", "--account", SENDER, "--metrics-port", str(port)
    )
    try:
        _pay(dsn, "node-0", 3_000)
        wait_for(lambda: _all_committed(dsn, 1), "the first intent to commit")
        cluster.stop(1, kill=True)
        for i in range(1, 4):
            _pay(dsn, f"node-{i}", 3_000 + i)
        wait_for(
            lambda: _metric(port, "consortia_relay_node_retries_total") >= 1,
            "the relay to find its node gone",
        )
        cluster.start(1)
        wait_for(lambda: _all_committed(dsn, 4), "every intent to commit")
        relay.send_signal(signal.SIGTERM)
        assert "relay stopped" in _finished(relay)
    finally:
        if relay.poll() is None:
            relay.kill()
            relay.wait()
    _exactly_once(cluster, dsn)
    assert _balance(cluster, RECEIVER) == before[0] + 3_000 * 4 + 6
    assert _nonce(cluster, SENDER) == before[1] + 4


def test_the_relays_database_connection_terminated(
    cluster: LiveCluster, pg_server: PgServer
) -> None:
    dsn = pg_server.schema("outbox_dbkill")
    _business(dsn)
    before = _balance(cluster, RECEIVER), _nonce(cluster, SENDER)
    port = free_port()
    relay = _relay(cluster, pg_server, dsn, "--metrics-port", str(port))
    try:
        _pay(dsn, "db-0", 4_000)
        wait_for(lambda: _all_committed(dsn, 1), "the first intent to commit")
        for i in range(1, 4):
            _pay(dsn, f"db-{i}", 4_000 + i)
        terminated = _rows(
            dsn,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (APPLICATION_NAME,),
        )
        assert terminated == [(True,)]
        wait_for(
            lambda: _metric(port, "consortia_relay_database_retries_total") >= 1,
            "the relay to find its connection gone",
        )
        wait_for(lambda: _all_committed(dsn, 4), "every intent to commit")
        relay.send_signal(signal.SIGTERM)
        _finished(relay)
    finally:
        if relay.poll() is None:
            relay.kill()
            relay.wait()
    _exactly_once(cluster, dsn)
    assert _balance(cluster, RECEIVER) == before[0] + 4_000 * 4 + 6
    assert _nonce(cluster, SENDER) == before[1] + 4


def test_a_transaction_that_expired_unsent_is_signed_again_exactly_once(
    cluster: LiveCluster, pg_server: PgServer
) -> None:
    dsn = pg_server.schema("outbox_expiry")
    _business(dsn)
    before = _balance(cluster, RECEIVER), _nonce(cluster, SENDER)
    _pay(dsn, "late", 5_000)
    short = ("--until-idle", "--expiry-blocks", "2")
    _finished(_relay(cluster, pg_server, dsn, *short, crash_at="after_sign"), -signal.SIGKILL)
    ((first, expiry),) = _rows(dsn, "SELECT tx_hash, expiry_height FROM outbox_intents")

    def past_expiry() -> bool:
        cluster.transfer("bob", "dave", 1)  # blocks come with transactions
        height = cluster.height(0)
        return height is not None and height >= expiry

    wait_for(past_expiry, f"the chain to pass height {expiry}")
    _finished(_relay(cluster, pg_server, dsn, "--until-idle"))
    ((state, second, signings),) = _rows(dsn, "SELECT state, tx_hash, signings FROM outbox_intents")
    assert (state, signings) == ("committed", 2) and second != first
    dead, alive = _rows(
        dsn, "SELECT tx_hash, fate, reason FROM outbox_transactions ORDER BY signed_at"
    )
    assert dead[:2] == (first, "dead") and alive == (second, "committed", "ok")
    # Declared dead only on the validators' word: the certified nonce at or past expiry.
    assert re.fullmatch(
        rf"expired at height {expiry}, never executed \(the account's nonce is \d+ at"
        r" certified height \d+\)",
        dead[2],
    ), dead[2]
    assert _on_chain(cluster, first) is None
    _exactly_once(cluster, dsn)
    assert _balance(cluster, RECEIVER) == before[0] + 5_000
    assert _nonce(cluster, SENDER) == before[1] + 1


def test_no_password_in_the_dsn_and_a_wrong_passphrase_stops_it_at_start(
    cluster: LiveCluster, pg_server: PgServer, tmp_path: Path
) -> None:
    process = _relay(cluster, pg_server, "host=127.0.0.1 password=hunter2 dbname=x")
    out, err = process.communicate(timeout=WAIT_S)
    assert process.returncode == 2 and "password_in_dsn" in err and "hunter2" not in out + err
    wrong = tmp_path / "passphrase"
    wrong.write_text("not the passphrase of these keys\n")
    wrong.chmod(0o600)
    dsn = pg_server.schema("outbox_wrong_passphrase")
    process = _relay(cluster, pg_server, dsn, "--account", SENDER, "--passphrase-file", str(wrong))
    out, err = process.communicate(timeout=WAIT_S)
    assert process.returncode == 2 and "error: wrong_passphrase: " in err, err
    assert "Traceback" not in err and "not the passphrase" not in out + err
