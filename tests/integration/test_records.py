"""Confidential records end to end, on both suites: a live 4-validator consortium, the
`consortia record`, `escrow` and `keys` commands as an operator runs them, the verified
mirror in a real PostgreSQL, and a search for the plaintext everywhere it must not be.

Setup per suite (module fixture): `cluster up --suite S`; the regulator's escrow key made with
`keys generate --purpose encryption`, registered by a governance proposal every bank votes
for, and split 2 of 3 among its officers (`escrow split`); encryption keys registered for
alice, bank-1 and carol (`record key`).

Test: alice seals trade terms holding a planted marker to herself and bank-1; bank-1 opens
them (verified); carol, not a reader, cannot; the regulator opens them with the escrow key
recovered by two officers; bank-1 rotates its key and rewraps, and opens with the new key
only; bank-1 shares with carol, who then opens them. Until the plaintext is revealed on
purpose, the marker (as text and as hex) is in no node API answer (the vault record, every
block's transactions and receipts), no node log and no mirrored table; after `record reveal`
the same search finds it in the chain, so the search itself is shown to work. Tests share the
cluster in file order (one xdist group).

Run alone: .venv/bin/pytest tests/integration/test_records.py
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from consortia.cluster.home import demo_passphrase
from consortia.identity.keystore import read_key_header
from tests.cli_helpers import assert_ok, assert_user_error, cli_env, run
from tests.cluster_helpers import WAIT_S, LiveCluster, live_cluster
from tests.pg_helpers import PgServer, pg_server

pytestmark = pytest.mark.xdist_group("cluster")
__all__ = ["pg_server"]  # the session's PostgreSQL, a fixture

MARKER = "MARKER-confidential-terms-7f3a"
TERMS = {"goods": f"{MARKER} 400 t of rolled steel", "unit_price": 512_000, "discount_bp": 350}
OFFICERS = {f"officer-{i}": f"officer {i}'s own passphrase, long" for i in (1, 2, 3)}
ESCROW_PASSPHRASE = "the escrow ceremony passphrase"
RECORD = "terms-1"


class Records:
    """One suite's consortium, the regulator's files, and the CLI bound to them."""

    def __init__(self, cluster: LiveCluster, root: Path) -> None:
        self.cluster, self.root = cluster, root
        self.passphrase = demo_passphrase(cluster.home)

    def cli(
        self, *args: str | Path, passphrase: str | None = None, stdin: str = ""
    ) -> subprocess.CompletedProcess[str]:
        env_passphrase = self.passphrase if passphrase is None else passphrase
        return subprocess.run(
            [str(Path(sys.executable).with_name("consortia")), *(str(a) for a in args)],
            env=cli_env(env_passphrase),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=WAIT_S,
            check=False,
        )

    def value_file(self, value: Any) -> Path:
        """`value` as JSON in a file only its owner reads (never on a command line)."""
        path = self.root / f"value-{len(list(self.root.glob('value-*')))}.json"
        path.touch(mode=0o600)
        path.write_text(json.dumps(value))
        return path

    def record(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        return self.cli("record", *args[:1], "--home", self.cluster.root, *args[1:])

    def opened(self, *args: str | Path) -> dict[str, Any]:
        result = assert_ok(self.record("open", "--id", RECORD, "--json", *args))
        answer: dict[str, Any] = json.loads(result.stdout)
        return answer


def _pass_escrow_key(cluster: LiveCluster, public_key: str) -> None:
    """Propose the escrow key from bank-0 and vote it through with every bank's seat."""
    proposed = cluster.call(
        "bank-0.treasury",
        "governance",
        "propose",
        {"kind": "set_escrow_key", "public_key": public_key},
    )
    assert proposed["status"] == "committed", proposed
    number = proposed["receipt"]["result"]
    banks = [f"bank-{index}.treasury" for index in range(len(cluster.nodes))]
    pending = [
        cluster.call(bank, "governance", "vote", {"proposal": number, "approve": True}, wait=False)
        for bank in banks
    ]
    with cluster.client() as client:
        records = [client.wait(p["tx_hash"], WAIT_S) for p in pending]
    assert all(record["status"] == "committed" for record in records), records
    with cluster.client() as client:
        escrow = client.state("regulator", "escrow_key")
    assert escrow["keys"][-1]["public_key"] == public_key


@pytest.fixture(scope="module", params=["intl", "gm"])
def records(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Records]:
    root = tmp_path_factory.mktemp(f"records-{request.param}")
    with live_cluster(root / "net", "--nodes", "4", "--suite", request.param) as cluster:
        setup = Records(cluster, root)
        escrow_key = root / "regulator" / "escrow.key"
        escrow_key.parent.mkdir()
        assert_ok(
            run("keys", "generate", "--suite", request.param, "--purpose", "encryption", "--out",
                escrow_key, passphrase=ESCROW_PASSPHRASE)
        )  # fmt: skip
        _pass_escrow_key(cluster, read_key_header(escrow_key).public_key)
        officers = root / "officers"
        officers.mkdir(mode=0o700)
        for name, secret in OFFICERS.items():
            (officers / f"{name}.passphrase").write_text(secret)
            (officers / f"{name}.passphrase").chmod(0o600)
        assert_ok(
            setup.cli("escrow", "split", escrow_key, "--threshold", "2", "--officers", "3",
                      "--out", root / "shares", "--officer-passphrases", officers,
                      passphrase=ESCROW_PASSPHRASE)
        )  # fmt: skip
        for account in ("alice", "bank-1", "carol"):
            assert (
                "encryption key version 1"
                in assert_ok(setup.record("key", "--account", account)).stdout
            )
        yield setup


def test_readers_and_the_escrow_open_a_record_nobody_else_can(records: Records) -> None:
    stored = assert_ok(
        records.record(
            "put", "--from", "alice", "--id", RECORD, "--reader", "alice", "--reader",
            "bank-1.treasury", "--value-file", records.value_file(TERMS), "--label", "trade.terms",
        )
    )  # fmt: skip
    assert MARKER not in stored.stdout + stored.stderr
    assert records.opened("--as", "bank-1") == {"record": RECORD, "value": TERMS, "verified": True}
    assert records.opened("--as", "alice")["value"] == TERMS
    assert_user_error(records.record("open", "--id", RECORD, "--as", "carol"), "not_a_reader")
    # Another id taken (the value from standard input): the vault refuses, nothing changes.
    assert_user_error(
        records.cli("record", "put", "--home", records.cluster.root, "--from", "carol", "--id",
                    RECORD, "--reader", "carol", "--value-file", "-", stdin='{"n": 1}'),
        "record_exists",
    )  # fmt: skip
    assert_user_error(
        records.cli("record", "put", "--home", records.cluster.root, "--from", "carol", "--id",
                    "terms-2", "--reader", "carol", "--value-file", "-", stdin='{"n": 1.5}'),
        "invalid_argument",
    )  # fmt: skip
    # The regulator: two officers recover the escrow key; it opens the record.
    recovered = records.root / "regulator" / "recovered.key"
    shares = records.root / "shares"
    assert_ok(
        records.cli("escrow", "recover", shares / "officer-2.share", shares / "officer-3.share",
                    "--out", recovered, "--share-passphrases", records.root / "officers",
                    passphrase=ESCROW_PASSPHRASE)
    )  # fmt: skip
    escrow = assert_ok(
        records.cli("record", "open", "--home", records.cluster.root, "--id", RECORD,
                    "--escrow-key", recovered, "--json", passphrase=ESCROW_PASSPHRASE)
    )  # fmt: skip
    assert json.loads(escrow.stdout)["value"] == TERMS


def test_a_rotated_key_opens_after_rewrap_and_a_share_adds_a_reader(records: Records) -> None:
    rotated = assert_ok(records.record("key", "--account", "bank-1", "--rewrap", RECORD))
    assert "encryption key version 2" in rotated.stdout and f"rewrapped {RECORD}" in rotated.stdout
    assert records.opened("--as", "bank-1")["value"] == TERMS  # with the version 2 key
    old = records.cluster.root / "bank-1" / "accounts" / "encryption" / "bank-1.treasury.v1.key"
    old.rename(old.with_suffix(".retired"))
    try:
        assert records.opened("--as", "bank-1")["value"] == TERMS  # v1 is not needed
    finally:
        old.with_suffix(".retired").rename(old)
    assert_ok(records.record("share", "--from", "bank-1", "--id", RECORD, "--with", "carol"))
    assert records.opened("--as", "carol")["value"] == TERMS


def _node_texts(records: Records) -> list[str]:
    """Everything a curious member reads from a node about the records: the vault record,
    every block (encoded), its receipts and each of its transactions."""
    cluster = records.cluster
    url = cluster.nodes[0].api_url
    texts = [httpx.get(f"{url}/v1/state/vault/record/{RECORD}", timeout=10.0).text]
    height = int(httpx.get(f"{url}/v1/status", timeout=10.0).json()["height"])
    with httpx.Client(base_url=url, timeout=10.0) as client:
        for h in range(1, height + 1):
            texts.append(client.get(f"/v1/blocks/{h}?encoded=true").text)
            receipts = client.get(f"/v1/blocks/{h}/receipts")
            texts.append(receipts.text)
            for receipt in receipts.json()["receipts"]:
                texts.append(client.get(f"/v1/tx/{receipt['tx_hash']}").text)
    return texts


def _mirrored_text(records: Records, pg: PgServer, schema: str) -> str:
    dsn = pg.schema(schema)
    height = int(
        httpx.get(f"{records.cluster.nodes[0].api_url}/v1/status", timeout=10.0).json()["height"]
    )
    process = subprocess.run(
        [sys.executable, "-m", "consortia.cli", "mirror", "--home", str(records.cluster.root),
         "--dsn", pg.without_passfile(dsn), "--until", str(height)],
        env=pg.env(), capture_output=True, text=True, timeout=WAIT_S, check=False,
    )  # fmt: skip
    assert process.returncode == 0, process.stderr
    texts = [process.stdout, process.stderr]
    with psycopg.connect(dsn) as connection:
        tables = [
            row[0]
            for row in connection.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (schema,),
            ).fetchall()
        ]
        assert {"blocks", "transactions", "state_changes"} <= set(tables)
        for table in tables:
            rows = connection.execute(f'SELECT t::text FROM "{table}" t').fetchall()
            texts.extend(row[0] for row in rows)
    return "\n".join(texts)


def _holds_marker(text: str) -> bool:
    """The marker as text, as hex, or as the hex of its hex (an encoded block's hex)."""
    as_hex = MARKER.encode().hex()
    return MARKER in text or as_hex in text or as_hex.encode().hex() in text


def test_the_plaintext_is_nowhere_until_revealed(records: Records, pg_server: PgServer) -> None:
    suite = records.cluster.home.suite
    assert not any(_holds_marker(text) for text in _node_texts(records))
    logs = sorted((records.cluster.root / "logs").glob("*.log"))
    assert logs and not any(_holds_marker(log.read_text(errors="replace")) for log in logs)
    assert not _holds_marker(_mirrored_text(records, pg_server, f"records_{suite}_before"))
    # Disclosure on purpose: alice reveals; the vault checks the commitment, and now the very
    # same searches find the plaintext (in the reveal transaction's arguments).
    assert_ok(records.record("reveal", "--from", "alice", "--id", RECORD))
    assert any(_holds_marker(text) for text in _node_texts(records))
    assert _holds_marker(_mirrored_text(records, pg_server, f"records_{suite}_after"))
