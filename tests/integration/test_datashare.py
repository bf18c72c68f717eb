"""Two banks share a firm's credit data with the firm's consent, against a live 4-validator
consortium, a real throwaway PostgreSQL and the gateway running as `consortia gateway`
(docs/datashare.md, *Worked example*).

Setup: one cluster (`consortia cluster up`). Bank-0 owns the credit file of its customer
firm-7 (a table in PostgreSQL whose password reaches the gateway only through PGPASSFILE; one
row holds a planted marker), registers it on chain with its gateway account, and grants bank-1
and bank-2 access for stated purposes, each needing firm-7's consent, which firm-7 signs.
Test: a fetch works under a live, consented grant and only the consumer opens the answer; it
is refused without consent, after revocation and after expiry; every fetch served is one
access record on chain, proven; the supervisor lists every grant and access with certified
reads; the marker is in no file of the consortium (its nodes' stores), in no block or
receipt the node API serves, and in no line the gateway logged.

Run alone: .venv/bin/pytest tests/integration/test_datashare.py
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from consortia.client import Client, ClientError, LightClient
from consortia.gateway import audit
from consortia.gateway.consumer import DataConsumer, Fetched
from consortia.identity import layout
from consortia.identity.addresses import free_ports
from consortia.identity.genesis import load_genesis
from consortia.identity.keystore import load_key, read_key_header
from tests.cli_helpers import CONSORTIA, assert_user_error, cli_env, run
from tests.cluster_helpers import LiveCluster, live_cluster, wait_for
from tests.pg_helpers import PgServer, pg_server

pytestmark = pytest.mark.xdist_group("cluster")
__all__ = ["pg_server"]  # the session's PostgreSQL, a fixture

MARKER = "PLANTED-CREDIT-MARKER-5e1d"
GATEWAY = "bank-0.gateway"
FIRM = "firm-7"
BANKS = ("bank-1", "bank-2")
DATASET = "firm-7-credit"
TABLE = """CREATE TABLE credit_file (
    firm text NOT NULL,
    facility text NOT NULL,
    limit_fen bigint NOT NULL,
    rating text NOT NULL,
    note text NOT NULL
)"""
ROWS = [
    (FIRM, "working capital", 500_000_000, "BBB+", "repaid on time since 2019"),
    (FIRM, "trade finance", 120_000_000, "BBB", MARKER),
    ("firm-8", "overdraft", 1_000_000, "B", "not firm-7's"),
]
QUERIES = {
    DATASET: {
        "sql": "SELECT facility, limit_fen, rating, note FROM credit_file"
        " WHERE firm = %(firm)s ORDER BY facility",
        "parameters": ["firm"],
        "rows_max": 100,
    }
}


@dataclass
class Sharing:
    cluster: LiveCluster
    gateway_url: str
    gateway_log: Path
    consumers: dict[str, DataConsumer]

    def call(self, sender: str, method: str, *args: str) -> Any:
        """`consortia tx call` of `datashare.method` as in docs/datashare.md, signed by
        `sender` (a name whose key lies in the consortium's folder); the receipt's result."""
        return tx_call(self.cluster, sender, "datashare", method, *args)

    def fetch(self, bank: str, grant: int) -> Any:
        return self.consumers[bank].fetch(DATASET, grant, {"firm": FIRM})

    def fetch_command(self, bank: str, grant: int) -> list[str | Path]:
        return [
            "datashare", "fetch", "--home", self.cluster.root, "--from", bank,
            "--gateway", self.gateway_url, "--dataset", DATASET, "--grant", str(grant),
            "--param", f"firm={FIRM}", "--json",
        ]  # fmt: skip

    def cli_fetch(self, bank: str, grant: int) -> Fetched:
        answer = json.loads(self.cluster.cli(*self.fetch_command(bank, grant)))
        return Fetched(
            answer["rows"],
            answer["access"],
            answer["height"],
            answer["tx_hash"],
            answer["query_digest"],
            answer["answer_digest"],
        )

    def refused(self, bank: str, grant: int) -> str:
        with pytest.raises(ClientError) as refusal:
            self.fetch(bank, grant)
        return refusal.value.code


def tx_call(cluster: LiveCluster, sender: str, contract: str, method: str, *args: str) -> Any:
    arguments = [item for arg in args for item in ("--arg", arg)]
    output = cluster.cli(
        "tx", "call", "--home", cluster.root, "--from", sender, "--contract", contract,
        "--method", method, *arguments, "--wait", "--json",
    )  # fmt: skip
    record = json.loads(output.splitlines()[0])
    assert record["status"] == "committed", record
    return record["receipt"]["result"]


def _new_account(cluster: LiveCluster, key_file: Path, account: str, kind: str) -> None:
    """A key made by `consortia keys generate` and its account opened by bank-0's treasury,
    as in docs/datashare.md step 1."""
    passphrase_file = cluster.root / layout.DEMO_PASSPHRASE_FILE
    generated = cluster.cli(
        "keys", "generate", "--suite", "intl", "--purpose", "account", "--out", key_file,
        "--passphrase-file", passphrase_file,
    )  # fmt: skip
    public_key = read_key_header(key_file).public_key
    assert f"public key: {public_key}" in generated
    tx_call(
        cluster, "bank-0", "identity", "open_account", f"id={account}",
        f'public_key:="{public_key}"', f'kyc_digest:="{"4b" * 32}"', f"kind={kind}",
    )  # fmt: skip


@pytest.fixture(scope="module")
def sharing(tmp_path_factory: pytest.TempPathFactory, pg_server: PgServer) -> Iterator[Sharing]:
    work = tmp_path_factory.mktemp("datashare")
    with live_cluster(work / "net", "--nodes", "4") as cluster:
        yield from _set_up(cluster, work, pg_server)


def _set_up(cluster: LiveCluster, work: Path, pg_server: PgServer) -> Iterator[Sharing]:
    passphrase = (cluster.root / layout.DEMO_PASSPHRASE_FILE).read_text().strip()
    _new_account(
        cluster, cluster.root / "bank-0" / "accounts" / "gateway.key", GATEWAY, "institution"
    )
    _new_account(cluster, cluster.root / "accounts" / f"{FIRM}.key", FIRM, "customer")

    # Encryption keys on chain (docs/datashare.md step 3): each consumer makes and registers
    # its own (`consortia record key`); the committee sets the regulator's escrow key, made as
    # a key file of purpose `encryption`.
    passphrase_file = cluster.root / layout.DEMO_PASSPHRASE_FILE
    for bank in BANKS:
        cluster.cli("record", "key", "--home", cluster.root, "--account", bank)
    escrow_key = work / "escrow.key"
    cluster.cli(
        "keys", "generate", "--suite", "intl", "--purpose", "encryption", "--out", escrow_key,
        "--passphrase-file", passphrase_file,
    )  # fmt: skip
    proposal = tx_call(
        cluster, "bank-0", "governance", "propose", "kind=set_escrow_key",
        f'public_key:="{read_key_header(escrow_key).public_key}"',
    )  # fmt: skip
    votes = [
        tx_call(cluster, f"bank-{i}", "governance", "vote", f"proposal={proposal}", "approve=true")
        for i in range(4)
    ]
    assert votes[-1]["status"] == "executed", votes
    (work / "queries.json").write_text(json.dumps(QUERIES))

    dsn = pg_server.schema("datashare_bank0")
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(TABLE)
        with connection.cursor() as cursor:
            cursor.executemany("INSERT INTO credit_file VALUES (%s, %s, %s, %s, %s)", ROWS)

    nodes: list[Client] = []  # each consumer's node, to check its access records
    port = free_ports(1)[0]
    gateway_log = work / "gateway.log"
    command = [
        str(CONSORTIA), "gateway", "--home", str(cluster.root),
        "--dsn", pg_server.without_passfile(dsn), "--dataset", DATASET,
        "--queries", str(work / "queries.json"), "--account", GATEWAY, "--port", str(port),
    ]  # fmt: skip
    env = cli_env(None, {"PGPASSFILE": str(pg_server.passfile)})
    with gateway_log.open("w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _healthy(url, process), "the gateway to serve")
        chain = cluster.chain()
        genesis, _ = load_genesis(cluster.root / layout.GENESIS_FILE, None)
        nodes.extend(Client(cluster.nodes[2].api_url, light=LightClient(genesis)) for _ in BANKS)
        consumers = {
            bank: DataConsumer(
                url,
                f"{bank}.treasury",
                _key(cluster.root / bank / "accounts" / "treasury.key", passphrase),
                chain,
                _key(encryption_folder(cluster, bank) / f"{bank}.treasury.v1.key", passphrase),
                node=nodes[index],
            )
            for index, bank in enumerate(BANKS)
        }
        yield Sharing(cluster, url, gateway_log, consumers)
    finally:
        process.terminate()
        process.wait(timeout=30)
        for client in nodes:
            client.close()


def _healthy(url: str, process: subprocess.Popen[bytes]) -> bool:
    assert process.poll() is None, "the gateway exited"
    try:
        return httpx.get(f"{url}/v1/health", timeout=5.0).status_code == 200
    except httpx.HTTPError:
        return False


def _key(path: Path, passphrase: str) -> bytes:
    return load_key(path, passphrase).private_key


def encryption_folder(cluster: LiveCluster, bank: str) -> Path:
    """Where `consortia record key` keeps the bank treasury's encryption key files."""
    return cluster.root / bank / "accounts" / "encryption"


def test_two_banks_share_a_firms_credit_data_with_its_consent(sharing: Sharing) -> None:
    cluster = sharing.cluster
    sharing.call(
        "bank-0", "register_dataset", f"dataset={DATASET}", "name=Credit file of firm-7",
        f'schema_digest:="{"5c" * 32}"', "location=bank-0 credit warehouse",
        "classification=confidential", f"gateways={GATEWAY},", f"subject={FIRM}",
    )  # fmt: skip
    until = (cluster.height(0) or 0) + 5000
    terms = [f"dataset={DATASET}", f"until_height={until}", "consent_required=true"]
    loan = sharing.call("bank-0", "grant", *terms, "consumer=bank-1", "purpose=syndicated loan")[
        "n"
    ]
    kyc = sharing.call("bank-0", "grant", *terms, "consumer=bank-2", "purpose=KYC refresh")["n"]

    # Without the firm's consent: refused, nothing logged.
    assert sharing.refused("bank-1", loan) == "consent_missing"
    sharing.call(FIRM, "consent", f"grant={loan}")
    fetched = sharing.fetch("bank-1", loan)
    assert [row["facility"] for row in fetched.rows] == ["trade finance", "working capital"]
    assert {row["note"] for row in fetched.rows} >= {MARKER}  # the consumer reads it all
    assert all("firm-8" not in json.dumps(row) for row in fetched.rows)
    # Bank-2 waits for its own consent, and bank-1's grant is not bank-2's.
    assert sharing.refused("bank-2", kyc) == "consent_missing"
    assert sharing.refused("bank-2", loan) == "not_consumer"
    sharing.call(FIRM, "consent", f"grant={kyc}")
    second = sharing.cli_fetch("bank-2", kyc)  # `consortia datashare fetch`, as in the docs
    assert [row["facility"] for row in second.rows] == ["trade finance", "working capital"]
    refused = run(*sharing.fetch_command("bank-2", loan))
    assert_user_error(refused, "not_consumer")
    assert MARKER not in refused.stdout + refused.stderr

    # Revocation: refused from the next block on.
    sharing.call("bank-0", "revoke", f"grant={loan}")
    assert sharing.refused("bank-1", loan) == "grant_revoked"

    # Expiry: a grant of a few blocks works, then lapses by itself.
    now = cluster.height(0) or 0
    short = sharing.call(
        "bank-0", "grant", f"dataset={DATASET}", f"until_height={now + 60}",
        "consent_required=true", "consumer=bank-2", "purpose=one-off check",
    )["n"]  # fmt: skip
    sharing.call(FIRM, "consent", f"grant={short}")
    third = sharing.fetch("bank-2", short)
    cluster.wait_height(0, now + 62)
    assert sharing.refused("bank-2", short) == "grant_expired"

    # Consent withdrawn: refused.
    sharing.call(FIRM, "withdraw_consent", f"grant={kyc}")
    assert sharing.refused("bank-2", kyc) == "consent_withdrawn"

    # Every fetch served is one access record, proven; the supervisor lists them all.
    genesis, _ = load_genesis(cluster.root / layout.GENESIS_FILE, None)
    with Client(cluster.nodes[1].api_url, light=LightClient(genesis)) as client:
        accesses = audit.accesses(client)
        grants = audit.grants(client)
        for served in (fetched, second, third):
            record = client.transaction(served.tx_hash, verify=True)
            assert record["receipt"]["result"]["n"] == served.access
    assert [(a["grant"], a["consumer_account"], a["query_digest"]) for a in accesses] == [
        (loan, "bank-1.treasury", fetched.query_digest),
        (kyc, "bank-2.treasury", second.query_digest),
        (short, "bank-2.treasury", third.query_digest),
    ]
    assert [a["rows"] for a in accesses] == [2, 2, 2]
    assert [(g["n"], g["consumer"], g["purpose"]) for g in grants] == [
        (loan, "bank-1", "syndicated loan"),
        (kyc, "bank-2", "KYC refresh"),
        (short, "bank-2", "one-off check"),
    ]
    assert grants[0]["status"] == "revoked" and grants[1]["consent"] is None
    listed = json.loads(cluster.cli("datashare", "audit", "--home", cluster.root, "--json"))
    assert listed == {"grants": grants, "accesses": accesses}

    # A regulator account lists the same with the regulator's methods. The local consortium's
    # regulator member holds no account, so the committee gives bank-3 the regulator role.
    _regulator_role(cluster, "bank-3")
    assert _regulator_view(cluster, "bank-3", "list_data_grants")["grants"] == grants
    assert _regulator_view(cluster, "bank-3", "list_data_accesses")["accesses"] == accesses
    with pytest.raises(AssertionError, match="not_authorised"):
        _regulator_view(cluster, "bank-1", "list_data_accesses")

    _assert_marker_nowhere(sharing)


def _regulator_role(cluster: LiveCluster, member: str) -> None:
    """A passed `set_roles` proposal adding `regulator` to `member`'s roles (4 of 5 seats)."""
    roles = ["validator_operator", "member", "regulator"]
    args = {"kind": "set_roles", "member": member, "roles": roles}
    number = cluster.call("bank-0.treasury", "governance", "propose", args)["receipt"]["result"]
    results = [
        cluster.call(
            f"bank-{i}.treasury", "governance", "vote", {"proposal": number, "approve": True}
        )
        for i in range(4)
    ]
    assert results[-1]["receipt"]["result"]["status"] == "executed", results


def _regulator_view(cluster: LiveCluster, member: str, method: str) -> dict[str, Any]:
    """`regulator.method` as a signed read (`POST /v1/views`) by `member`'s treasury."""
    signer = cluster.signer(f"{member}.treasury")
    with cluster.client() as client:
        nonce = int(client.account(signer.account)["nonce"])
        height = int(client.status()["height"])
        raw = signer.transaction("regulator", method, {}, nonce=nonce, expiry_height=height + 100)
        outcome = client.view(raw)
    assert outcome["ok"], outcome["code"]
    result: dict[str, Any] = outcome["result"]
    return result


def _assert_marker_nowhere(sharing: Sharing) -> None:
    """The marker is in no file of the consortium (its nodes' stores and logs), in no block
    or receipt the API serves, and in nothing the gateway logged."""
    marker = MARKER.encode()
    for path in sharing.cluster.root.rglob("*"):
        if path.is_file():
            assert marker not in path.read_bytes(), path
    tip = sharing.cluster.height(0) or 0
    with httpx.Client(base_url=sharing.cluster.nodes[0].api_url, timeout=10.0) as http:
        for height in range(1, tip + 1):
            for suffix in ("", "/receipts"):
                response = http.get(f"/v1/blocks/{height}{suffix}")
                assert response.status_code == 200
                assert marker not in response.content
    logged = sharing.gateway_log.read_text()
    assert "access logged" in logged and "fetch refused" in logged
    assert MARKER not in logged
    assert "password" not in logged.lower()
    assert os.environ.get("PGPASSWORD") is None
