"""The rows a mirrored block becomes, one tuple per row, in the columns' order of the tables
in `migrations/0001_tables.sql` (docs/mirror.md, *Tables*).

Hashes become lowercase hex; contract values, arguments, event attributes and results become
JSON text the way the node's API shows them (bytes as base64), beside their exact canonical
bytes where the table keeps them. PostgreSQL text and jsonb cannot hold the character U+0000:
it is written as U+FFFD there (the raw bytes keep the exact value).

Owns this translation. Pure: never touches the database, never decides what is verified.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final

import msgspec

from consortia.mirror.replay import MirroredBlock
from consortia.types.encoding import encode
from consortia.types.state_proof import split_state_key

BLOCK_COLUMNS: Final = (
    "height",
    "block_hash",
    "parent_hash",
    "epoch",
    "round",
    "author",
    "timestamp_ms",
    "block_time",
    "tx_count",
    "payload_root",
    "state_root",
    "receipts_root",
    "next_epoch",
    "certified",
    "certificate",
    "header",
)
TRANSACTION_COLUMNS: Final = (
    "height",
    "tx_index",
    "tx_hash",
    "sender",
    "public_key",
    "nonce",
    "contract",
    "contract_version",
    "method",
    "args",
    "expiry_height",
    "raw",
)
RECEIPT_COLUMNS: Final = (
    "height",
    "tx_index",
    "tx_hash",
    "ok",
    "code",
    "message",
    "gas_used",
    "result",
)
EVENT_COLUMNS: Final = (
    "height",
    "event_index",
    "tx_index",
    "tx_hash",
    "contract",
    "name",
    "attributes",
)
STATE_CHANGE_COLUMNS: Final = ("contract", "key", "height", "value", "raw", "deleted")

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_NUL: Final = "\x00"
_REPLACEMENT: Final = "\ufffd"

Row = tuple[Any, ...]


def text(value: str) -> str:
    """`value` as PostgreSQL text can hold it."""
    return value.replace(_NUL, _REPLACEMENT) if _NUL in value else value


def json_text(value: Any) -> str:
    """`value` as JSON text that jsonb accepts (bytes as base64, as the API shows them)."""
    encoded = msgspec.json.encode(msgspec.to_builtins(value)).decode()
    if "\\u0000" not in encoded:
        return encoded
    return msgspec.json.encode(_without_nul(msgspec.to_builtins(value))).decode()


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return text(value)
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    if isinstance(value, dict):
        return {text(key): _without_nul(item) for key, item in value.items()}
    return value


def block_time(timestamp_ms: int) -> datetime | None:
    """The block's agreed time (exact: integer milliseconds), None when out of range."""
    try:
        return _EPOCH + timedelta(milliseconds=timestamp_ms)
    except OverflowError:
        return None


def block_row(mirrored: MirroredBlock) -> Row:
    header = mirrored.block.header
    following = header.next_epoch
    next_epoch = None
    if following is not None:
        next_epoch = json_text(
            {
                "epoch": following.epoch,
                "validators": [
                    {
                        "node_id": v.node_id.hex(),
                        "public_key": v.public_key.hex(),
                        "voting_power": v.voting_power,
                    }
                    for v in following.validators
                ],
            }
        )
    certificate = mirrored.certificate
    return (
        header.height,
        mirrored.block_id.hex(),
        header.parent_id.hex(),
        header.epoch,
        header.round,
        header.author.hex(),
        header.timestamp_ms,
        block_time(header.timestamp_ms),
        len(mirrored.block.payload),
        header.payload_root.hex(),
        mirrored.state_root.hex(),
        mirrored.receipts_root.hex(),
        next_epoch,
        certificate is not None,
        None if certificate is None else encode(certificate),
        encode(header),
    )


def transaction_rows(mirrored: MirroredBlock) -> list[Row]:
    height = mirrored.height
    rows: list[Row] = []
    for index, (raw, tx_id, tx) in enumerate(mirrored.transactions):
        if tx is None:  # bytes that are no transaction: only their hash and bytes
            rows.append((height, index, tx_id.hex(), *([None] * 8), raw))
            continue
        body = tx.body
        rows.append(
            (
                height,
                index,
                tx_id.hex(),
                text(body.sender),
                body.public_key.hex(),
                body.nonce,
                text(body.contract),
                body.contract_version,
                text(body.method),
                json_text(body.args),
                body.expiry_height,
                raw,
            )
        )
    return rows


def receipt_rows(mirrored: MirroredBlock) -> list[Row]:
    return [
        (
            receipt.height,
            receipt.index,
            receipt.tx_id.hex(),
            receipt.ok,
            text(receipt.code),
            text(receipt.message),
            receipt.gas_used,
            None if receipt.result is None else json_text(receipt.result),
        )
        for receipt in mirrored.receipts
    ]


def event_rows(mirrored: MirroredBlock) -> list[Row]:
    """Every event of the block, numbered among all of the block's events (as the node's
    event stream numbers them), with its transaction's place in the block."""
    rows: list[Row] = []
    for receipt in mirrored.receipts:
        for event in receipt.events:
            rows.append(
                (
                    receipt.height,
                    len(rows),
                    receipt.index,
                    receipt.tx_id.hex(),
                    text(event.contract),
                    text(event.name),
                    json_text(event.fields),
                )
            )
    return rows


def state_change_rows(height: int, writes: dict[bytes, bytes | None]) -> list[Row]:
    rows: list[Row] = []
    for full_key, raw in sorted(writes.items()):
        contract, key = split_state_key(full_key)
        contract, key = text(contract), text(key)
        value = None if raw is None else json_text(msgspec.msgpack.decode(raw))
        rows.append((contract, key, height, value, raw, raw is None))
    return rows
