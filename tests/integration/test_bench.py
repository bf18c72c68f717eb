"""`consortia bench` against a real 4-validator cluster made with benchmark accounts
(`cluster up --accounts`): a short fixed-rate run of each workload (transfer, smallbank,
receivable, query) settles everything it submitted, and the batch endpoint answers the
synchronous SDK. No timing is asserted: the machine may be busy.

Runs in the xdist group "cluster" (as test_cluster.py), so two clusters never run at once.

Run alone: .venv/bin/pytest tests/integration/test_bench.py
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from consortia.client import Client, ClientError, Signer
from consortia.client.light import LightClient
from consortia.cluster.home import demo_passphrase
from consortia.identity.bench_accounts import account_name, open_bench_accounts
from tests.cli_helpers import assert_ok, assert_user_error, run
from tests.cluster_helpers import LiveCluster, live_cluster, wait_for

pytestmark = pytest.mark.xdist_group("cluster")
ACCOUNTS = 40


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveCluster]:
    with live_cluster(
        tmp_path_factory.mktemp("bench") / "net", "--nodes", "4", "--accounts", str(ACCOUNTS)
    ) as cluster:
        yield cluster


def test_benchmark_accounts_are_funded_and_fixed_at_creation(cluster: LiveCluster) -> None:
    assert "bench-000000" in cluster.up_output
    last = cluster.account(account_name(ACCOUNTS - 1))
    assert last["balance"] == 100_000_000 and last["nonce"] == 0
    assert (cluster.root / "bench" / "master.key").stat().st_mode & 0o777 == 0o600
    again = run("cluster", "up", "--home", cluster.root, "--accounts", "10")
    assert_user_error(again, "invalid_argument")
    assert "--accounts applies to a new one" in again.stderr


def test_a_short_fixed_rate_run_settles_everything_it_submitted(cluster: LiveCluster) -> None:
    out_file = cluster.root / "bench.json"
    result = run(
        "bench",
        "--home",
        cluster.root,
        "--workload",
        "transfer",
        "--duration",
        "3",
        "--rate",
        "50",
        "--json",
        "--out",
        out_file,
    )
    assert_ok(result)
    report = json.loads(result.stdout)
    assert report == json.loads(out_file.read_text())
    assert report["submitted"] == 150
    assert report["committed"] == report["submitted"]
    assert report["failed"] == 0 and report["failed_by_code"] == {}
    assert report["lost"] == 0
    assert set(report["latency_ms"]) >= {"p50", "p95", "p99"}
    assert report["tps"] > 0
    # Second by second: every committed transaction once, the window's seconds first.
    timeline = report["timeline"]
    assert [second["second"] for second in timeline] == list(range(len(timeline)))
    assert sum(second["committed"] for second in timeline) == report["committed"]
    assert sum(second["committed"] for second in timeline[:3]) >= 1
    assert max(second["p99_ms"] for second in timeline) <= report["latency_ms"]["max"]
    assert report["clients"] == 1  # the default, but for reads
    nodes = report["nodes_resources"]
    assert [node["name"] for node in nodes] == ["node0", "node1", "node2", "node3"]
    assert all(node["cpu_percent"] is not None and node["rss_mib"] > 0 for node in nodes)
    # Each sender's nonces were consecutive: 150 transfers from 40 accounts.
    nonces = [cluster.account(account_name(index))["nonce"] for index in range(ACCOUNTS)]
    assert sum(nonces) == 150


def bench_json(cluster: LiveCluster, workload: str, *options: str) -> dict[str, Any]:
    result = run("bench", "--home", cluster.root, "--workload", workload, "--json", *options)
    assert_ok(result)
    report: dict[str, Any] = json.loads(result.stdout)
    assert report["workload"] == workload
    return report


def test_a_short_smallbank_run_commits_everything_and_counts_rejections_apart(
    cluster: LiveCluster,
) -> None:
    report = bench_json(cluster, "smallbank", "--duration", "3", "--rate", "40", "--seed", "5")
    assert report["submitted"] == 120 and report["seed"] == 5
    assert report["committed"] == report["submitted"]
    assert report["failed"] == 0 and report["lost"] == 0
    kinds = report["by_kind"]
    assert set(kinds) <= {
        "amalgamate",
        "get_balance",
        "deposit_checking",
        "send_payment",
        "transact_savings",
        "write_check",
    }
    assert sum(counts["committed"] for counts in kinds.values()) == report["committed"]
    # A business rule's refusal is a committed transaction with a failed receipt.
    assert set(report["rejected_by_code"]) <= {"insufficient_funds"}
    assert report["rejected"] == sum(counts.get("rejected", 0) for counts in kinds.values())
    with cluster.client() as client:
        customer = client.state("smallbank", "customer/bench-000000")
    assert set(customer) == {"checking", "savings"}


def test_a_short_receivable_run_commits_every_step_it_sends(cluster: LiveCluster) -> None:
    # A flow's steps race the chain to its receivable's maturity, and a lightly loaded
    # cluster makes tens of blocks a second: 150 blocks leave its five steps seconds, where 60
    # left some flows refused "matured" (the repayment itself: tests/unit/test_bench_workloads).
    report = bench_json(
        cluster, "receivable", "--duration", "4", "--rate", "30", "--maturity-blocks", "150"
    )
    assert report["submitted"] == 120
    assert report["committed"] == report["submitted"]
    assert report["failed"] == 0 and report["lost"] == 0 and report["rejected"] == 0
    kinds = report["by_kind"]
    assert kinds["issue"]["committed"] == report["flows"]["started"] > 0
    assert kinds["accept"]["committed"] > 0
    assert report["flows"]["abandoned"] == 0


def test_a_short_query_run_answers_every_read(cluster: LiveCluster) -> None:
    report = bench_json(cluster, "query", "--duration", "2", "--rate", "50")
    assert report["clients"] == 2  # each checks its reads' proofs: two by default
    reads = report["reads"]
    assert reads["sent"] == 100 and reads["answered"] == 100 and reads["failed"] == 0
    assert report["submitted"] == report["committed"] == 0
    assert report["latency_ms"]["p99"] > 0


def test_the_sync_sdk_submits_a_batch_with_a_bad_transaction(cluster: LiveCluster) -> None:
    accounts = open_bench_accounts(cluster.root, demo_passphrase(cluster.home))
    assert accounts is not None
    with cluster.client(1) as client:
        chain = client.chain()
        status = client.status()
        sender = account_name(ACCOUNTS - 1)
        nonce = int(client.account(sender)["nonce"])
        signer = Signer(sender, accounts.private_key(ACCOUNTS - 1), chain)
        raws = [
            signer.transaction(
                "asset",
                "transfer",
                {"to": "alice", "amount": 3, "currency": "CNY"},
                nonce=nonce + offset,
                expiry_height=int(status["height"]) + 1000,
            )
            for offset in range(3)
        ]
        results = client.submit_many([raws[0], b"garbage", raws[1], raws[0], raws[2]])
        codes = [result.get("error", {}).get("code") for result in results]
        assert codes == [None, "malformed_transaction", None, "duplicate", None]
        record = client.wait(results[4]["tx_hash"], timeout_s=120)
        assert record["status"] == "committed"
        assert int(client.account(sender)["nonce"]) == nonce + 3


def test_bench_refuses_a_consortium_without_benchmark_accounts(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    folder = tmp_path_factory.mktemp("nobench") / "net"
    passphrase = "a demo passphrase for the test"
    assert_ok(run("init", "--nodes", "1", "--out", folder, "--demo", passphrase=passphrase))
    result = run(
        "bench", "--home", folder, "--duration", "1", "--rate", "max", passphrase=passphrase
    )
    assert_user_error(result, "no_account_key")
    assert "cluster up --home NEW_DIR --accounts" in result.stderr
    bad_rate = run("bench", "--home", folder, "--duration", "1", "--rate", "fast")
    assert_user_error(bad_rate, "invalid_argument")


def test_after_load_every_node_certifies_one_state_and_a_restart_reopens_it(
    cluster: LiveCluster,
) -> None:
    """After the load runs above: at a height every node has committed, all four serve the
    same execution certificate (one state root, signed by a quorum) and each verifies against
    the genesis validator set; node 3, stopped and started again, serves that same root
    again at once (its store reopened, nothing executed: it committed no transaction since it
    started)."""
    tip = min(cluster.wait_height(index, 1) for index in range(4))
    light = LightClient.from_genesis_json((cluster.root / "genesis.json").read_bytes())

    def certified(index: int) -> dict[str, Any] | None:
        try:
            with Client(cluster.nodes[index].api_url, timeout_s=10.0, light=light) as client:
                return client.certificate(tip, verify=True)
        except ClientError:
            return None  # not certified there yet

    headers = [wait_for(lambda i=i: certified(i), f"node {i} to certify {tip}") for i in range(4)]
    assert all(header == headers[0] for header in headers)
    cluster.stop(3, kill=False)
    cluster.start(3)
    status = wait_for(lambda: cluster.status(3), "node 3 to serve again")
    assert int(status["height"]) >= tip
    assert cluster.committed_transactions(3) == 0
    again = wait_for(lambda: certified(3), "node 3 to serve its certificate again")
    assert again == headers[0]
