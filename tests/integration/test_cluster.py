"""A real 4-validator cluster on loopback: one process per node, made and driven by the
`consortia cluster`, `tx` and `account` commands and the HTTP API.

Setup: one cluster for the module (`consortia cluster up` in a temporary folder, with a
generated demo passphrase), shared by the tests in file order: they run in one xdist group
(`make test` passes --dist loadgroup), and each test leaves every node running. Test: the
commands, commits, crashes of one and of two validators, refused peers, refused transactions,
and last `cluster demo`, which stops every node. No test passes because it slept: each waits
for a condition with a generous deadline, since the machine may be busy.

Run alone: .venv/bin/pytest tests/integration/test_cluster.py
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from consortia.client import ChainInfo, Signer
from consortia.client.codec import transaction_to_json
from consortia.cluster.accounts import open_signer
from consortia.cluster.home import demo_passphrase
from consortia.identity.tls import load_node_identity
from consortia.net.tls import build_contexts, contexts_from_pem
from tests.cli_helpers import CONSORTIA, assert_ok, assert_user_error, cli_env, run
from tests.cluster_helpers import WAIT_S, LiveCluster, live_cluster, wait_for
from tests.unit.test_net_support import issue, make_authority

pytestmark = pytest.mark.xdist_group("cluster")
# Round timeouts start at 1 s: a window of 5 s holds several, so a quorum-less network that
# could still commit would show it.
OBSERVE_S = 5.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveCluster]:
    with live_cluster(tmp_path_factory.mktemp("cluster") / "net", "--nodes", "4") as cluster:
        yield cluster


def _status_json(cluster: LiveCluster) -> list[dict[str, Any]]:
    output = cluster.cli("cluster", "status", "--home", cluster.root, "--json")
    nodes: list[dict[str, Any]] = json.loads(output)["nodes"]
    return nodes


def test_up_starts_every_node_and_status_reports_each(cluster: LiveCluster) -> None:
    """cluster up prints every API URL, keeps the generated passphrase in a 0600 file (never
    printed), and status --json gives each node's index, id, API, pid, liveness and height."""
    for entry in cluster.nodes:
        assert entry.api_url in cluster.up_output
    passphrase_file = cluster.root / ".demo-passphrase"
    assert passphrase_file.stat().st_mode & 0o777 == 0o600
    assert passphrase_file.read_text().strip() not in cluster.up_output
    assert "demo custody" in cluster.up_output
    nodes = _status_json(cluster)
    assert [set(node) for node in nodes] == [
        {"index", "node_id", "api", "pid", "alive", "height"}
    ] * 4
    for index, shown in enumerate(nodes):
        entry = cluster.nodes[index]
        assert (shown["index"], shown["node_id"], shown["api"]) == (
            index,
            entry.node_id,
            entry.api_url,
        )
        assert shown["alive"] is True and isinstance(shown["height"], int)
        assert (cluster.root / "run" / f"node{index}.pid").read_text().strip() == str(shown["pid"])
        assert (cluster.root / "logs" / f"node{index}.log").stat().st_size > 0
    again = cluster.cli("cluster", "up", "--home", cluster.root)  # already up: nothing restarts
    assert [node["pid"] for node in _status_json(cluster)] == [node["pid"] for node in nodes]
    assert "All 4 nodes serve" in again
    for index in range(4):
        wait_for(lambda i=index: (s := cluster.status(i)) and len(s["peers"]) == 3, "a full mesh")


def test_transfers_commit_and_accounts_show_them(cluster: LiveCluster) -> None:
    before = cluster.account("bob")["balance"]
    output = cluster.cli(
        "tx",
        "transfer",
        "--home",
        cluster.root,
        "--from",
        "alice",
        "--to",
        "bob",
        "--amount",
        "5",
        "--wait",
        "--json",
    )
    record = json.loads(output)
    assert record["status"] == "committed" and record["receipt"]["code"] == "ok"
    shown = json.loads(cluster.cli("account", "show", "--home", cluster.root, "bob", "--json"))
    assert shown["balance"] == before + 5 and shown["id"] == "bob"
    assert {"nonce", "status", "roles"} <= set(shown)
    text = cluster.cli("account", "show", "--home", cluster.root, "alice", "--node", "2")
    assert "account   alice" in text and "fen" in text and "nonce" in text
    treasury = json.loads(
        cluster.cli("account", "show", "--home", cluster.root, "bank-1", "--json")
    )
    assert treasury["id"] == "bank-1.treasury"
    # Several senders at once, through different nodes.
    records = [
        cluster.transfer(sender, "dave", 100 + index, node=index % 4)
        for index, sender in enumerate(["alice", "bob", "carol", "bank-0.treasury"])
    ]
    assert all(record["status"] == "committed" for record in records)


def test_tx_call_reaches_any_contract_method(cluster: LiveCluster) -> None:
    """The receivable flow of docs/contracts.md through `tx call` and --arg values."""
    height = cluster.height(0) or 0
    base = ["tx", "call", "--home", cluster.root, "--wait", "--contract", "receivable"]
    digest = "5d" * 32
    cluster.cli(
        *base,
        "--from",
        "carol",
        "--method",
        "issue",
        "--arg",
        "receivable_id=CLI-1",
        "--arg",
        "holder=alice",
        "--arg",
        "amount=1000000",
        "--arg",
        f"maturity_height={height + 100_000}",
        "--arg",
        f"documents:={json.dumps([f'invoice:{digest}'])}",
    )
    accepted = cluster.cli(
        *base, "--from", "alice", "--method", "accept", "--arg", "receivable_id=CLI-1"
    )
    assert 'result: "CLI-1#0"' in accepted
    cluster.cli(
        *base,
        "--from",
        "alice",
        "--method",
        "split_transfer",
        "--arg",
        "part_id=CLI-1#0",
        "--arg",
        "to=bob",
        "--arg",
        "amount=300000",
    )

    def split_on_node_1() -> tuple[Any, Any] | None:
        """`--wait` saw the commit on node 0; node 1 may execute that block a moment later."""
        with cluster.client(1) as client:  # the part first: once it is there, so is the split
            part = client.state("receivable", "part/CLI-1#1")
            record = client.state("receivable", "receivable/CLI-1")
        return None if part is None else (record, part)

    record, part = wait_for(split_on_node_1, "node 1 to execute the split")
    assert record["status"] == "accepted" and record["parts"] == ["CLI-1#0", "CLI-1#1"]
    assert (part["holder"], part["amount"], part["status"]) == ("bob", 300_000, "held")
    failed = run(*base, "--from", "alice", "--method", "accept", "--arg", "receivable_id=CLI-1")
    assert_user_error(failed, "not_pending")


def test_user_mistakes_are_one_line_errors(cluster: LiveCluster, tmp_path: Path) -> None:
    home = ["--home", cluster.root]
    transfer = ["tx", "transfer", *home, "--to", "bob", "--amount", "1"]
    assert_user_error(run(*transfer, "--from", "zoe"), "no_account_key")
    assert_user_error(run(*transfer, "--from", "../ca"), "invalid_argument")
    assert_user_error(run(*transfer, "--from", "alice", "--node", "9"), "invalid_argument")
    assert_user_error(run(*transfer, "--from", "alice", "--amount", "0"), "invalid_argument")
    call = ["tx", "call", *home, "--from", "alice", "--contract", "asset", "--method", "transfer"]
    assert_user_error(run(*call, "--arg", "no-equals"), "invalid_argument")
    assert_user_error(run(*call, "--arg", "to:={bad"), "invalid_argument")
    assert_user_error(
        run(*call, "--arg", "to=bob", "--arg", "amount=1", "--arg", "x:=1.5"), "invalid_argument"
    )
    assert_user_error(
        run(*call, "--arg", "to=nobody", "--arg", "amount=1", "--wait"), "unknown_account"
    )
    assert_user_error(run("account", "show", *home, "nobody"), "not_found")
    assert_user_error(run("cluster", "status", "--home", tmp_path), "no_consortium")
    assert_user_error(run("cluster", "up", *home, "--nodes", "7"), "invalid_argument")
    wrong = cli_env(None, {"CONSORTIA_PASSPHRASE": "not the passphrase of this demo"})
    result = subprocess.run(
        [str(CONSORTIA), *transfer, "--from", "alice"],
        env=wrong,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert_user_error(result, "wrong_passphrase")


def _post(cluster: LiveCluster, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{cluster.nodes[0].api_url}/v1/tx", timeout=30.0, **kwargs)


def _signed(signer: Signer, nonce: int, height: int, **args: Any) -> dict[str, Any]:
    raw = signer.transaction(
        "asset",
        "transfer",
        {"to": "bob", "amount": 1, **args},
        nonce=nonce,
        expiry_height=height + 1000,
    )
    return transaction_to_json(raw)


def test_bad_transactions_get_their_code_and_change_nothing(cluster: LiveCluster) -> None:
    """Over HTTP to a node: each refusal carries its code; alice's nonce and balance move
    only for the one good transfer that follows."""
    alice = cluster.signer("alice")
    height, nonce = cluster.height(0) or 0, int(cluster.account("alice")["nonce"])
    replayed = alice.transaction(
        "asset", "transfer", {"to": "bob", "amount": 1}, nonce=nonce, expiry_height=height + 1000
    )
    with cluster.client(0) as client:
        assert client.wait(client.submit(replayed), WAIT_S)["status"] == "committed"
    before = cluster.account("alice")
    nonce = int(before["nonce"])
    forged = _signed(alice, nonce, height)
    flipped = "01" if forged["signature"].startswith("00") else "00"
    forged["signature"] = flipped + forged["signature"][2:]
    other_chain = ChainInfo("another-chain", alice.chain.suite, alice.chain.genesis_hash)
    elsewhere = open_signer(cluster.root, "alice", other_chain, demo_passphrase(cluster.home))
    stranger = Signer.from_private_key("mallory", b"\x07" * 32, alice.chain)
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("bad signature", {"json": forged}, 400, "bad_signature"),
        ("replayed", {"json": transaction_to_json(replayed)}, 400, "stale_nonce"),
        ("spent nonce", {"json": _signed(alice, nonce - 1, height)}, 400, "stale_nonce"),
        ("wrong chain", {"json": _signed(elsewhere, nonce, height)}, 400, "wrong_chain"),
        ("unknown account", {"json": _signed(stranger, 0, height)}, 400, "unknown_account"),
        (
            "malformed JSON",
            {"content": b"{not json", "headers": _JSON},
            400,
            "malformed_transaction",
        ),
        (
            "not a transaction",
            {"json": {"body": {}, "signature": ""}},
            400,
            "malformed_transaction",
        ),
        (
            "over 64 KiB",
            {"json": _signed(alice, nonce, height, **_PADDING)},
            413,
            "too_large",
        ),
        ("over 128 KiB", {"content": b"x" * 200_000, "headers": _JSON}, 413, "too_large"),
    ]
    for name, request, status, code in cases:
        response = _post(cluster, **request)
        assert response.status_code == status, (name, response.text)
        assert response.json()["error"]["code"] == code, (name, response.text)
    after = cluster.transfer("alice", "bob", 1)
    assert after["status"] == "committed"
    account = cluster.account("alice")
    assert account["nonce"] == nonce + 1 and account["balance"] == before["balance"] - 1


_JSON = {"content-type": "application/json"}
# 17 arguments of 4,000 characters (each under the 4,096 limit): a transaction over 64 KiB.
_PADDING = {f"pad{index}": "x" * 4000 for index in range(17)}


def test_one_validator_killed_the_rest_commit_and_it_catches_up(cluster: LiveCluster) -> None:
    """Setup: node 3 dies by SIGKILL. Test: the other three commit a transfer and keep
    growing; restarted, node 3 catches up and reports the same block hash and state root as
    node 0 at the same height."""
    cluster.stop(3, kill=True)
    assert [node["alive"] for node in _status_json(cluster)] == [True, True, True, False]
    record = cluster.transfer("carol", "alice", 42, node=1)
    assert record["status"] == "committed"
    target = int(record["height"]) + 5
    for index in range(3):
        cluster.wait_height(index, target)
    cluster.start(3)
    cluster.wait_height(3, target)
    assert cluster.common_tip(0, 3) >= target  # same block hash and state root there
    committed_at = int(record["height"])
    block0, block3 = cluster.block(0, committed_at), cluster.block(3, committed_at)
    assert block0 is not None and block3 is not None and block0["hash"] == block3["hash"]
    with cluster.client(3) as client:
        assert client.transaction(record["tx_hash"])["height"] == committed_at
    assert cluster.account("alice", node=3) == cluster.account("alice", node=0)


def test_two_killed_nothing_commits_then_commits_resume_without_fork(
    cluster: LiveCluster,
) -> None:
    """Setup: nodes 2 and 3 die by SIGKILL (two of four: no quorum). Test: a transfer reaches
    both live nodes' mempools, yet their heights hold still over an observation window of
    several round timeouts and it stays pending; restarted, the transfer commits and all four
    nodes hold the same block at every height around the outage."""
    cluster.stop(2, 3, kill=True)
    pending = cluster.transfer("dave", "carol", 7, wait=False)
    wait_for(
        lambda: all((s := cluster.status(i)) and s["mempool"]["transactions"] for i in (0, 1)),
        "the transfer to reach both live nodes",
    )
    heights = wait_for(
        lambda: cluster.held_still((0, 1), OBSERVE_S), "nodes 0 and 1 to stop committing"
    )
    with cluster.client(0) as client:
        assert client.transaction(pending["tx_hash"])["status"] == "pending"
    cluster.start(2, 3)
    with cluster.client(0) as client:
        record = client.wait(pending["tx_hash"], WAIT_S)
    assert record["status"] == "committed" and int(record["height"]) > max(heights)
    top = int(record["height"]) + 2
    for index in range(4):
        cluster.wait_height(index, top)
    for height in range(max(1, min(heights) - 5), top + 1):
        blocks = [cluster.block(index, height) for index in range(4)]
        hashes = {(block or {}).get("hash") for block in blocks}
        assert len(hashes) == 1 and None not in hashes, f"height {height}: {hashes}"


def test_a_pending_answer_survives_its_nodes_sigkill(cluster: LiveCluster) -> None:
    """Setup: nodes 1, 2 and 3 stopped, so node 0 can pass a transaction on to nobody; node 0
    answers a transfer `202 pending`, then dies by SIGKILL (its mempool, in memory, gone).
    Test: restarted with the others, node 0 reads the transfer back from its journal and the
    network commits it; without the journal no node would ever have it."""
    cluster.stop(1, 2, 3, kill=True)
    pending = cluster.transfer("bob", "alice", 11, wait=False)
    assert pending["status"] == "pending"
    cluster.stop(0, kill=True)
    cluster.start(0, 1, 2, 3)
    with cluster.client(1) as client:
        record = client.wait(pending["tx_hash"], WAIT_S)
    assert record["status"] == "committed"


def _handshake(address: str, context: ssl.SSLContext) -> str:
    """Dial `address` with `context`; how the node ended it (a TLS alert or a closed link)."""
    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=30) as raw:
        try:
            with context.wrap_socket(raw) as tls:
                while tls.recv(4096):
                    pass
        except (ssl.SSLError, OSError) as error:
            return str(error)
    return "closed"


def test_a_certificate_from_another_ca_is_refused_at_the_handshake(cluster: LiveCluster) -> None:
    """A client that trusts the consortium CA (public) but presents a certificate from
    another CA, claiming node 1's id: node 0 refuses it (unknown_ca), counts and logs it."""
    other = make_authority("another-consortium")
    identity = issue(other, bytes.fromhex(cluster.nodes[1].node_id))
    ca_pem = (cluster.root / "ca.crt").read_bytes()
    client = contexts_from_pem(ca_pem, identity.pem, identity.key).client
    before = cluster.refusals(0, "unknown_ca")
    ended = _handshake(cluster.nodes[0].listen, client)
    assert "unknown ca" in ended.lower() or ended == "closed" or "reset" in ended.lower()
    wait_for(lambda: cluster.refusals(0, "unknown_ca") > before, "node 0 to count the refusal")
    log = (cluster.root / "logs" / "node0.log").read_text()
    assert "handshake refused" in log and "reason=unknown_ca" in log


def test_a_valid_certificate_claiming_another_nodes_id_is_refused(cluster: LiveCluster) -> None:
    """Setup: node 3 stops; an impostor listens at node 3's address with node 1's real
    certificate and key. Test: node 0 dials node 3 and refuses the impostor (wrong_node_id)."""
    cluster.stop(3, kill=False)
    node1, node3 = cluster.nodes[1], cluster.nodes[3]
    passphrase = demo_passphrase(cluster.home)

    def node1_identity(context: ssl.SSLContext) -> None:
        load_node_identity(context, node1.home / "tls.crt", node1.home / "tls.key", passphrase)

    server = build_contexts((cluster.root / "ca.crt").read_bytes(), node1_identity).server
    before = cluster.refusals(0, "wrong_node_id")
    host, _, port = node3.listen.rpartition(":")
    listener = socket.create_server((host, int(port)), reuse_port=False)
    stop = threading.Event()
    thread = threading.Thread(target=_impostor, args=(listener, server, stop), daemon=True)
    thread.start()
    try:
        wait_for(
            lambda: cluster.refusals(0, "wrong_node_id") > before,
            "node 0 to refuse the impostor",
        )
    finally:
        stop.set()
        listener.close()
        thread.join(timeout=30)
    cluster.start(3)
    wait_for(lambda: (s := cluster.status(3)) and len(s["peers"]) == 3, "node 3 back in the mesh")


def _impostor(listener: socket.socket, context: ssl.SSLContext, stop: threading.Event) -> None:
    listener.settimeout(0.2)
    while not stop.is_set():
        try:
            connection, _ = listener.accept()
        except OSError:
            continue
        with connection:
            connection.settimeout(5)
            try:
                with context.wrap_socket(connection, server_side=True) as tls:
                    while tls.recv(4096):
                        pass
            except (ssl.SSLError, OSError):
                pass


def test_cluster_demo_runs_the_workload_then_stops_every_node(cluster: LiveCluster) -> None:
    """`cluster demo` (make run) on the running cluster: the workload takes a receivable
    through issue, split, finance and repayment; then every node stops cleanly, and cluster
    up resumes the chain where it stopped. Runs last: it stops the cluster."""
    result = subprocess.run(
        [
            str(CONSORTIA),
            "cluster",
            "demo",
            "--home",
            str(cluster.root),
            "--cycles",
            "1",
            "--rate",
            "5",
            "--timeout",
            str(int(WAIT_S)),
        ],
        env=cli_env(None),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert_ok(result)
    assert "receivable(s) repaid" in result.stdout
    assert "0 receivable(s) repaid" not in result.stdout
    for index in range(4):
        assert f"node{index}: stopped" in result.stdout
        said = (cluster.root / "logs" / f"node{index}.log").read_text().splitlines()
        assert "node stopped" in said[-1] and "asked to stop" in said[-1], said[-1]
    assert not any(node["alive"] for node in _status_json(cluster))
    last = max(
        int(line.split("height ", 1)[1].split(",", 1)[0])
        for line in result.stdout.splitlines()
        if line.startswith("Demo over: height ")
    )
    cluster.cli("cluster", "up", "--home", cluster.root)
    # `last` is the highest node's height when they stopped (a node may have been a block
    # behind): no node lost a committed block, and every node reaches `last` again (a
    # transfer brings a new block, so a node behind hears of the newer ones).
    assert max(cluster.height(index) or 0 for index in range(4)) >= last
    assert cluster.transfer("bob", "dave", 1)["status"] == "committed"
    wait_for(
        lambda: all((cluster.height(index) or 0) > last for index in range(4)),
        f"every node past height {last}",
    )
    assert_ok(run("cluster", "down", "--home", cluster.root))
    assert not any(node["alive"] for node in _status_json(cluster))
