"""Signed transactions as the node's API speaks them: JSON with hex keys and signatures.

Owns the one mapping between `Transaction` and its JSON form, used by the SDK and the tests
alike; the node parses the same form (`consortia.api.app.signed_transaction`). Never signs.
"""

from __future__ import annotations

from typing import Any

from consortia.types.encoding import decode
from consortia.types.transaction import Transaction, TransactionBody


def body_to_json(body: TransactionBody) -> dict[str, Any]:
    fields = {name: getattr(body, name) for name in body.__struct_fields__}
    fields["public_key"] = body.public_key.hex()
    fields["args"] = dict(body.args)
    return fields


def transaction_to_json(transaction: Transaction | bytes) -> dict[str, Any]:
    """`{"body": {...}, "signature": "<hex>"}` for a signed transaction (or its bytes)."""
    tx = decode(transaction, Transaction) if isinstance(transaction, bytes) else transaction
    return {"body": body_to_json(tx.body), "signature": tx.signature.hex()}
