"""The relay's proofs against a live 4-validator consortium and a real PostgreSQL: the API
paths the relay's checks use (receipt proofs, proven account reads at past heights, a block's
receipts) as real nodes serve them.

Setup: one cluster for the module (`consortia cluster up`), a throwaway PostgreSQL server
(tests/pg_helpers.py), a schema per test; the relay runs as `consortia relay` processes.

Test: a relay killed right after signing (nothing sent) while another signer of the account
takes the nonce: the next relay proves, from the block that spent the nonce with every receipt
proven, that the stored transaction never ran, signs the intent again, and records the
commit; the outcome recorded carries its certified header and proof, which the light client
checks again from the genesis file alone; the dead transaction is on no node.

Run alone: .venv/bin/pytest tests/integration/test_outbox_proofs.py
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from consortia.client import ClientError, LightClient
from consortia.client.outbox import Intent, enqueue, migrate
from consortia.identity import layout
from tests.cluster_helpers import WAIT_S, LiveCluster, live_cluster
from tests.pg_helpers import PgServer, pg_server

pytestmark = pytest.mark.xdist_group("cluster")
__all__ = ["pg_server"]  # the session's PostgreSQL, a fixture

SENDER = "carol"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveCluster]:
    with live_cluster(tmp_path_factory.mktemp("outbox-proofs") / "net", "--nodes", "4") as cluster:
        yield cluster


def _relay(
    cluster: LiveCluster, pg: PgServer, dsn: str, *extra: str, crash_at: str | None = None
) -> tuple[int, str]:
    argv = [sys.executable, "-m", "consortia.cli", "relay", "--home", str(cluster.root)]
    argv += ["--dsn", pg.without_passfile(dsn), "--until-idle", *extra]
    env = pg.env()
    env.pop("CONSORTIA_RELAY_CRASH_AT", None)
    if crash_at is not None:
        env["CONSORTIA_RELAY_CRASH_AT"] = crash_at
    done = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=WAIT_S, check=False
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout + done.stderr


def _rows(dsn: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as connection:
        return connection.execute(query, params).fetchall()


def test_a_nonce_taken_by_another_signer_is_proven_by_its_block_and_signed_again(
    cluster: LiveCluster, pg_server: PgServer
) -> None:
    dsn = pg_server.schema("outbox_proofs_stolen")
    with psycopg.connect(dsn, autocommit=True) as connection:
        migrate(connection)
    nonce = int(cluster.account(SENDER)["nonce"])
    with psycopg.connect(dsn) as connection:
        args = {"to": "dave", "amount": 41, "currency": "CNY"}
        enqueue(connection, Intent("stolen-1", SENDER, "asset", "transfer", args))
    status, _ = _relay(cluster, pg_server, dsn, crash_at="after_sign")
    assert status == -signal.SIGKILL
    ((first, stored_nonce),) = _rows(dsn, "SELECT tx_hash, nonce FROM outbox_intents")
    assert stored_nonce == nonce
    cluster.transfer(SENDER, "bob", 3)  # another signer of carol's takes that nonce
    status, output = _relay(cluster, pg_server, dsn)
    assert status == 0, output
    assert "nonce" in output and "spent by another transaction" in output
    ((state, code, signings, tx_hash, height, receipt),) = _rows(
        dsn, "SELECT state, code, signings, tx_hash, height, receipt FROM outbox_intents"
    )
    assert (state, code, signings) == ("committed", "ok", 2)
    fates = dict(_rows(dsn, "SELECT tx_hash, fate FROM outbox_transactions"))
    assert fates == {first: "dead", tx_hash: "committed"}
    with cluster.client(0) as client:
        with pytest.raises(ClientError) as missing:
            client.transaction(first)
        assert missing.value.code == "not_found"
    # The recorded outcome is checked again from the genesis file alone.
    light = LightClient.from_genesis_json((cluster.root / layout.GENESIS_FILE).read_bytes())
    proven, header = light.verify_receipt({"proof": receipt["proof"]}, tx_hash)
    assert (proven.ok, header.height, receipt["header"]["height"]) == (True, height, height)
