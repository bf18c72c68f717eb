"""`consortia anchor`: `digest` of a file under either suite; and against a live
one-validator gm consortium, a receivable anchors an invoice's SM3 digest, `anchor verify`
finds the file (with --verify, proven under a certified state root) and answers "not
anchored" for a tampered copy.

Setup: `consortia cluster up --nodes 1 --suite gm` in a temporary folder; every node is killed
after. Each wait polls a condition with a generous deadline.

Run alone: .venv/bin/pytest tests/integration/test_cluster_anchor.py
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from consortia.client import LightClient
from consortia.client.anchors import RECEIVABLE, receivable_key, suite_digest
from consortia.crypto import suite as get_suite
from tests.cli_helpers import assert_ok, assert_user_error, run
from tests.cluster_helpers import live_cluster, wait_for

pytestmark = pytest.mark.xdist_group("cluster")
INVOICE = b"%PDF-1.7 invoice ANCHOR-1: 250,000.00 CNY owed by carol to alice, 40 pallets\n"


def test_anchor_verify_finds_the_anchored_file_and_refuses_a_tampered_one(
    tmp_path: Path,
) -> None:
    invoice = tmp_path / "invoice.pdf"
    invoice.write_bytes(INVOICE)
    tampered = tmp_path / "invoice-edited.pdf"
    tampered.write_bytes(INVOICE.replace(b"40 pallets", b"400 pallets"))
    with live_cluster(tmp_path / "net", "--nodes", "1", "--suite", "gm") as cluster:
        home = ["--home", cluster.root]
        digest = json.loads(cluster.cli("anchor", "digest", invoice, *home, "--json"))["digest"]
        assert digest == get_suite("gm").hash(INVOICE).hex()  # SM3 on a gm chain
        height = cluster.height(0) or 0
        issue = {
            "receivable_id": "ANCHOR-1",
            "holder": "alice",
            "amount": 25_000_000,
            "maturity_height": height + 100_000,
            "documents": [f"invoice:{digest}"],
        }
        assert cluster.call("carol", RECEIVABLE, "issue", issue)["status"] == "committed"
        # A proven read answers at the latest certified height: wait until it holds the issue.
        light = LightClient.from_genesis_json((cluster.root / "genesis.json").read_bytes())

        def proven() -> bool:
            with cluster.client() as client:
                client.light = light
                answer = client.state_answer(RECEIVABLE, receivable_key("ANCHOR-1"), verify=True)
            return answer["value"] is not None

        wait_for(proven, "the receivable to be certified")
        verify = ["anchor", "verify", "--receivable", "ANCHOR-1", *home]
        found = json.loads(cluster.cli(*verify, invoice, "--verify", "--json"))
        assert found["anchored"] and found["verified"] and found["suite"] == "gm"
        assert found["document"]["name"] == "invoice" and found["document"]["by"] == "carol"
        assert len(found["state_root"]) == 64
        text = cluster.cli(*verify, invoice, "--verify")
        assert "anchored    as 'invoice', by carol" in text and "verified: true" in text
        plain = cluster.cli(*verify, invoice)
        assert "anchored" in plain and "verified: true" not in plain
        refused = run(*verify, tampered, "--verify")
        assert refused.returncode == 1, refused.stderr
        assert "not anchored" in refused.stdout and "verified: true" in refused.stdout
        answer = json.loads(run(*verify, tampered, "--json").stdout)
        assert answer["anchored"] is False and answer["document"] is None
        missing = run("anchor", "verify", "--receivable", "NOPE", *home, invoice, "--verify")
        assert_user_error(missing, "unknown_receivable")


def test_anchor_digest_prints_the_suite_s_digest_of_a_file(tmp_path: Path) -> None:
    document = tmp_path / "invoice.pdf"
    document.write_bytes(INVOICE)
    for suite_name in ("intl", "gm"):
        result = assert_ok(run("anchor", "digest", document, "--suite", suite_name, "--json"))
        shown = json.loads(result.stdout)
        assert shown["digest"] == suite_digest(suite_name, INVOICE)
        assert shown["suite"] == suite_name
    assert_user_error(run("anchor", "digest", document), "invalid_argument")
    assert_user_error(run("anchor", "digest", document, "--suite", "rot13"), "unknown_suite")
