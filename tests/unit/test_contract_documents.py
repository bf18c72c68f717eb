"""Anchored documents: a receivable carries its documents' digests under the chain's suite
(SHA-256 for intl, SM3 for gm), more may be anchored later by the debtor or the first holder
and none is ever changed; the client's check (`consortia.client.anchors`, behind `consortia
anchor verify`) says whether a file is one of them."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from consortia.client import anchors
from consortia.crypto import suite as get_suite
from consortia.execution.contracts import receivable_state
from consortia.execution.contracts.asset import Asset
from consortia.execution.contracts.receivable import Receivable
from consortia.execution.engine import Receipt
from tests.execution_helpers import Ledger, make_ledger
from tests.unit.test_contract_receivable import EXAMPLE_ACCOUNTS, RECEIVABLE, call, ok, wait_until

INVOICE_FILE = b"%PDF-1.7 invoice INV-2024-0001: 1,000,000.00 CNY owed by carmaker to tier1\n"
CONTRACT_FILE = b"%PDF-1.7 supply contract 2024-17 between carmaker and tier1\n"
# SM3("abc"), the standard's own example (GB/T 32905-2016, appendix A.1).
SM3_ABC = "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"


def issue_args(documents: Any, **extra: Any) -> dict[str, Any]:
    return {
        "receivable_id": RECEIVABLE,
        "holder": "tier1",
        "amount": 100_000_000,
        "maturity_height": 20,
        "documents": documents,
        **extra,
    }


def record(chain: Ledger) -> dict[str, Any]:
    value = chain.engine.query("receivable", receivable_state.receivable_key(RECEIVABLE))
    assert isinstance(value, dict)
    return value


def add(chain: Ledger, signer: str, document: str) -> Receipt:
    return call(chain, signer, "add_document", {"receivable_id": RECEIVABLE, "document": document})


def ledger() -> Ledger:
    return make_ledger([Asset, Receivable], EXAMPLE_ACCOUNTS)


def test_the_suites_hash_documents_as_their_standards_say() -> None:
    assert anchors.document_digest(get_suite("intl"), b"abc") == hashlib.sha256(b"abc").hexdigest()
    assert anchors.document_digest(get_suite("gm"), b"abc") == SM3_ABC
    assert anchors.suite_digest("gm", INVOICE_FILE) != anchors.suite_digest("intl", INVOICE_FILE)


def test_the_client_spells_the_receivable_key_as_the_contract_does() -> None:
    assert anchors.RECEIVABLE == receivable_state.CONTRACT == Receivable.name
    assert anchors.receivable_key("INV-1#x") == receivable_state.receivable_key("INV-1#x")
    assert anchors.part_key("INV-1#x/2") == receivable_state.part_key("INV-1#x/2")


@pytest.mark.parametrize("suite_name", ["intl", "gm"])
def test_a_file_is_anchored_or_not_under_the_chain_s_suite(suite_name: str) -> None:
    invoice = anchors.suite_digest(suite_name, INVOICE_FILE)
    contract = anchors.suite_digest(suite_name, CONTRACT_FILE)
    chain = ledger()
    issued = ok(chain, "carmaker", "issue", issue_args([f"invoice:{invoice}"]))
    assert issued.events[0].fields["documents"] == [f"invoice:{invoice}"]
    added = add(chain, "tier1", f"contract:{contract}")
    assert added.ok and added.events[0].fields == {
        "receivable": RECEIVABLE,
        "document": "contract",
        "digest": contract,
        "by": "tier1",
    }
    stored = record(chain)
    assert stored["documents"] == [
        {"name": "invoice", "digest": invoice, "by": "carmaker", "height": 1},
        {"name": "contract", "digest": contract, "by": "tier1", "height": 2},
    ]
    answer = {"value": stored, "height": chain.height}
    for data, name in ((INVOICE_FILE, "invoice"), (CONTRACT_FILE, "contract")):
        digest = anchors.suite_digest(suite_name, data)
        found = anchors.anchor_check(RECEIVABLE, digest, suite_name, answer)
        assert found["anchored"] and found["document"]["name"] == name
        assert found["verified"] is False  # a plain read is not a proven one
    tampered = INVOICE_FILE.replace(b"1,000,000.00", b"9,000,000.00")
    digest = anchors.suite_digest(suite_name, tampered)
    refused = anchors.anchor_check(RECEIVABLE, digest, suite_name, answer)
    assert not refused["anchored"] and refused["document"] is None
    assert [d["name"] for d in refused["documents"]] == ["invoice", "contract"]
    # The other suite's digest of the very same file is not the anchored one.
    other = "gm" if suite_name == "intl" else "intl"
    digest = anchors.suite_digest(other, INVOICE_FILE)
    assert not anchors.anchor_check(RECEIVABLE, digest, suite_name, answer)["anchored"]


def test_issue_takes_one_document_as_text_and_the_older_single_digest() -> None:
    chain = ledger()
    digest = anchors.suite_digest("intl", INVOICE_FILE)
    ok(chain, "carmaker", "issue", issue_args(f"invoice:{digest}"))
    assert [d["name"] for d in record(chain)["documents"]] == ["invoice"]
    legacy = ledger()
    args = issue_args(None, documents_digest=digest)
    del args["documents"]
    ok(legacy, "carmaker", "issue", args)
    assert record(legacy)["documents"] == [
        {"name": "documents", "digest": digest, "by": "carmaker", "height": 1}
    ]


def test_who_anchors_more_documents_and_when() -> None:
    chain = ledger()
    ok(chain, "carmaker", "issue", issue_args([f"invoice:{'11' * 32}"]))
    assert add(chain, "tier2", f"note:{'22' * 32}").code == "not_party"
    assert add(chain, "carmaker", f"invoice:{'22' * 32}").code == "duplicate_document"
    assert add(chain, "carmaker", f"note:{'2' * 63}").code == "bad_argument"
    assert add(chain, "carmaker", "note").code == "bad_argument"
    missing = call(chain, "carmaker", "add_document", {"receivable_id": "nope", "document": "x"})
    assert missing.code == "unknown_receivable"
    assert add(chain, "carmaker", f"po:{'22' * 32}").events[0].name == "document_anchored"
    ok(chain, "tier1", "accept", {"receivable_id": RECEIVABLE})
    for n in range(receivable_state.DOCUMENTS_MAX - 2):
        assert add(chain, "tier1", f"note{n}:{n:064x}").ok
    assert add(chain, "tier1", f"one-more:{'33' * 32}").code == "too_many_documents"
    assert len(record(chain)["documents"]) == receivable_state.DOCUMENTS_MAX
    wait_until(chain, 20)
    ok(chain, "carmaker", "repay", {"receivable_id": RECEIVABLE})
    # A settled receivable's documents are final.
    assert add(chain, "carmaker", f"late:{'44' * 32}").code == "not_active"


def test_a_rejected_receivable_anchors_nothing_more() -> None:
    chain = ledger()
    ok(chain, "carmaker", "issue", issue_args([f"invoice:{'11' * 32}"]))
    ok(chain, "tier1", "reject", {"receivable_id": RECEIVABLE})
    assert add(chain, "tier1", f"note:{'22' * 32}").code == "not_active"
