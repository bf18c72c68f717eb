"""A fifth validator joins a running 4-validator cluster of real processes, as an operator
adds one: the new institution makes its keys, the CA issues its certificate, `node configure
--join` writes its config, governance adds the member and then the validator, and `cluster
start` runs it. It syncs across the epoch change and votes: with a founder killed, 4 of the
5 validators are a quorum only with the newcomer, and commits go on with its signature.

Setup: its own cluster (`cluster up` in a temporary folder), in the same xdist group as
test_cluster.py so that two clusters never share the two cores. Every wait polls a condition.

Run alone: .venv/bin/pytest tests/integration/test_cluster_join.py
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from consortia.cluster.home import ClusterHome, demo_passphrase
from consortia.identity.addresses import free_ports
from tests.cli_helpers import assert_ok, run
from tests.cluster_helpers import WAIT_S, LiveCluster, live_cluster, wait_for

pytestmark = pytest.mark.xdist_group("cluster")
FOUNDERS = 4
NEW = FOUNDERS  # the newcomer's index in `cluster status` (listed after the genesis nodes)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveCluster]:
    with live_cluster(tmp_path_factory.mktemp("join") / "net", "--nodes", str(FOUNDERS)) as cluster:
        yield cluster


def _pass(cluster: LiveCluster, kind: str, args: dict[str, Any]) -> dict[str, Any]:
    """Propose `kind` from bank-0's treasury and vote it through with every bank's seat (the
    regulator's seat abstains: 4 of 5 seats pass the demo's 67% thresholds). The record of
    the vote that executed it."""
    proposal_args = {"kind": kind, **args}
    proposed = cluster.call("bank-0.treasury", "governance", "propose", proposal_args)
    assert proposed["status"] == "committed", proposed
    number = proposed["receipt"]["result"]
    voters = [f"bank-{index}.treasury" for index in range(FOUNDERS)]
    vote = {"proposal": number, "approve": True}
    # Every seat's vote in the mempool at once, then each one's record.
    pending = [cluster.call(v, "governance", "vote", vote, wait=False) for v in voters]
    with cluster.client() as client:
        records = [client.wait(p["tx_hash"], WAIT_S) for p in pending]
    assert all(record["status"] == "committed" for record in records), records
    executed = [r for r in records if _event(r, "intervention_executed") is not None]
    assert len(executed) == 1, records
    return executed[0]


def _event(record: dict[str, Any], name: str) -> dict[str, Any] | None:
    for _contract, event, fields in record["receipt"]["events"]:  # as the API lists them
        if event == name:
            assert isinstance(fields, dict)
            return fields
    return None


def test_a_validator_added_by_governance_joins_and_votes(cluster: LiveCluster) -> None:
    root = cluster.root
    passphrase = demo_passphrase(cluster.home)
    institution = root / "bank-4"
    generated = run(
        "keys", "generate", "--suite", cluster.home.suite, "--institution", institution,
        "--member", "bank-4", "--node", "node4", "--address", f"127.0.0.1:{free_ports(1)[0]}",
        passphrase=passphrase,
    )  # fmt: skip
    assert_ok(generated)
    request = institution / "public" / "node4.node.json"
    assert_ok(run("ca", "issue", "--ca", root / "ca", "--request", request, passphrase=passphrase))
    configure = (
        "node", "configure", "--node-dir", institution / "node4",
        "--genesis", root / "genesis.json", "--ca-certificate", root / "ca.crt",
        "--certificate", institution / "public" / "node4.crt", "--join",
    )  # fmt: skip
    configured = assert_ok(run(*configure)).stdout
    # The config prints the add_validator arguments governance needs.
    printed = re.search(r"governance adds it with: kind=add_validator (.*)", configured)
    assert printed is not None, configured
    arguments = dict(pair.split("=", 1) for pair in printed.group(1).split())
    assert arguments["member"] == "bank-4"
    new_id = arguments["node_id"]
    # Not yet a validator: no node links to it, and it is listed but stopped.
    home = ClusterHome.open(root)
    assert len(home.nodes) == FOUNDERS + 1 and home.nodes[NEW].node_id == new_id

    member = {"name": "bank-4", "roles": ["validator_operator", "member"]}
    added = _pass(cluster, "add_member", member)
    assert _event(added, "member_added") is not None
    validator = {
        "node_id": new_id,
        "public_key": arguments["public_key"],
        "voting_power": int(arguments["voting_power"]),
        "member": "bank-4",
    }
    executed = _pass(cluster, "add_validator", validator)
    epoch_change_height = int(executed["height"])

    cluster.home = home
    cluster.start(NEW)
    # It syncs from genesis across the epoch change and links to every founder.
    wait_for(
        lambda: (s := cluster.status(NEW)) and s["epoch"] == 1 and len(s["peers"]) == FOUNDERS,
        "the new validator to reach epoch 1 linked to every founder",
    )
    cluster.wait_height(NEW, epoch_change_height + 3)
    for index in range(FOUNDERS):
        status = cluster.status(index)
        assert status is not None and status["epoch"] == 1 and len(status["validators"]) == 5
    # A founder dies: 4 of 5 is a quorum only with the newcomer's vote.
    cluster.stop(3, kill=True)
    record = cluster.transfer("alice", "bob", 3, node=NEW)
    assert record["status"] == "committed"
    after = int(record["height"])
    target = after + 3
    for index in (0, 1, 2, NEW):
        cluster.wait_height(index, target)
    assert cluster.common_tip(0, NEW) >= target
    validators = cluster.status(0)["validators"]  # type: ignore[index]
    position = [entry["node_id"] for entry in validators].index(new_id)
    for height in range(after + 1, target + 1):
        block = cluster.block(NEW, height)
        assert block is not None and block["epoch"] == 1
        assert position in block["justify"]["signers"], (height, block["justify"])
        founder_copy = cluster.block(0, height)
        assert founder_copy is not None and founder_copy["hash"] == block["hash"]
    cluster.start(3)
    wait_for(
        lambda: (s := cluster.status(3)) and len(s["peers"]) == FOUNDERS,
        "node 3 back, linked to all four others",
        WAIT_S,
    )
