"""Anchored documents, the client's side: a file's digest under the chain's suite, and
whether a receivable's record anchors it.

A receivable carries, per trade document, a name and the document's digest under the
chain's suite hash (SHA-256 on an intl chain, SM3 on a gm chain); the documents stay off
the chain. Whoever holds a file checks it here against the receivable's record, read from a
node (`Client.state_answer`, with `verify=True` proven under a certified state root).

The receivable's key is spelled here as the receivable contract spells it
(`execution/contracts/receivable_state.py`; a test holds them equal), since a client imports
no execution code. Pure: no I/O (the caller reads the file, bounded by
`DOCUMENT_BYTES_MAX`), and never a claim of a match the record does not hold.
"""

from __future__ import annotations

from typing import Any, Final

from consortia.crypto import Suite
from consortia.crypto import suite as get_suite

RECEIVABLE: Final = "receivable"
# The largest file `consortia anchor` hashes (read whole into memory).
DOCUMENT_BYTES_MAX: Final = 256 * 1024 * 1024


def receivable_key(receivable_id: str) -> str:
    """receivable's key of a receivable's record."""
    return f"receivable/{receivable_id}"


def part_key(part_id: str) -> str:
    """receivable's key of one part of a split receivable."""
    return f"part/{part_id}"


def document_digest(suite: Suite, data: bytes) -> str:
    """A document's digest as anchored: the suite's hash of its bytes, lowercase hex."""
    return suite.hash(data).hex()


def suite_digest(suite_name: str, data: bytes) -> str:
    """`document_digest` under the suite named `suite_name` ("intl" or "gm")."""
    return document_digest(get_suite(suite_name), data)


def anchored_documents(record: Any) -> list[dict[str, Any]]:
    """The documents a receivable's record anchors: [{"name", "digest", "by", "height"}]."""
    if not isinstance(record, dict):
        return []
    documents = record.get("documents")
    if not isinstance(documents, list):
        return []
    return [
        {
            "name": entry.get("name"),
            "digest": entry.get("digest"),
            "by": entry.get("by"),
            "height": entry.get("height"),
        }
        for entry in documents
        if isinstance(entry, dict) and isinstance(entry.get("digest"), str)
    ]


def find_anchor(record: Any, digest: str) -> dict[str, Any] | None:
    """The anchored document whose digest is `digest` (lowercase hex), or None."""
    for document in anchored_documents(record):
        if document["digest"] == digest.lower():
            return document
    return None


def anchor_check(
    receivable_id: str, digest: str, suite_name: str, answer: dict[str, Any]
) -> dict[str, Any]:
    """The answer to "is this file anchored by receivable `receivable_id`?", from the file's
    `digest` and a state answer for the receivable's key (`Client.state_answer`)."""
    record = answer.get("value")
    document = find_anchor(record, digest)
    return {
        "receivable": receivable_id,
        "suite": suite_name,
        "digest": digest,
        "anchored": document is not None,
        "document": document,
        "documents": anchored_documents(record),
        "height": answer.get("height"),
        "verified": bool(answer.get("verified")),
        "state_root": (answer.get("header") or {}).get("state_root"),
    }
