"""An answer's rows sealed for the consumer and the regulator's escrow key, in parts.

A sealed record holds a bounded value (`envelope.VALUE_BYTES_MAX`), so the rows travel in
parts, each sealed on its own with a fresh data key: part i's value is

    {"dataset", "grant", "query_digest", "part": i, "parts": n, "rows": [...]}

The query digest inside (authenticated by the AEAD and the commitment) ties each part to the
one request it answers: a consumer refuses parts that answer another request, or that come
short of `parts`. The answer's digest, logged on chain with the access, is the hash of the
parts' encodings in order, so the owner and the consumer can later show which answer was
given without showing it.

Must never log or return a row unsealed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from consortia.crypto import Suite
from consortia.errors import ConsortiaError
from consortia.gateway.errors import BUSY, TOO_LARGE, RefusedError
from consortia.gateway.keys import PublicKey
from consortia.privacy.envelope import (
    ESCROW_PARTY,
    VALUE_BYTES_MAX,
    Reader,
    encode_sealed,
    seal,
)
from consortia.types.encoding import encode

LABEL: Final = "datashare:answer"
ANSWER_DOMAIN: Final = b"consortia/datashare/answer/v1\x00"
PARTS_MAX: Final = 64
PART_OVERHEAD_BYTES: Final = 512  # the part's other fields and the list's header, generously


@dataclass(frozen=True, slots=True)
class SealedAnswer:
    parts: list[str]  # each `encode_sealed`'s hex
    digest: str  # hex: what the access record carries as answer_digest


def seal_answer(
    suite: Suite,
    header: dict[str, Any],
    rows: list[dict[str, Any]],
    consumer: tuple[str, PublicKey],
    escrow: PublicKey,
) -> SealedAnswer:
    """`rows` in parts of at most VALUE_BYTES_MAX, each sealed to the consumer's account and
    the escrow key; `header` (dataset, grant, query_digest) goes into every part."""
    party, key = consumer
    readers = [Reader(party, key.version, key.public_key)]
    escrow_reader = Reader(ESCROW_PARTY, escrow.version, escrow.public_key)
    chunks = split_rows(rows, VALUE_BYTES_MAX - PART_OVERHEAD_BYTES - len(encode(header)))
    parts = []
    for index, chunk in enumerate(chunks):
        value = {**header, "part": index, "parts": len(chunks), "rows": chunk}
        try:
            parts.append(encode_sealed(seal(suite, LABEL, value, readers, escrow_reader)))
        except ConsortiaError as error:  # its message names no value (envelope.py's rule)
            raise RefusedError("answer_unsealable", error.code, BUSY) from None
    return SealedAnswer(parts, answer_digest(suite, parts))


def answer_digest(suite: Suite, parts: list[str]) -> str:
    return suite.hash(ANSWER_DOMAIN + encode(parts)).hex()


def split_rows(rows: list[dict[str, Any]], part_bytes_max: int) -> list[list[dict[str, Any]]]:
    """`rows` in order, cut into lists whose encodings fit `part_bytes_max` (at least one
    list, perhaps empty); `answer_too_large` for a row too large alone or too many parts."""
    chunks: list[list[dict[str, Any]]] = [[]]
    size = 0
    for row in rows:
        row_bytes = len(encode(row))
        if row_bytes > part_bytes_max:
            raise RefusedError("answer_too_large", "a row is too large to seal", TOO_LARGE)
        if size + row_bytes > part_bytes_max:
            chunks.append([])
            size = 0
        chunks[-1].append(row)
        size += row_bytes
    if len(chunks) > PARTS_MAX:
        raise RefusedError(
            "answer_too_large", f"the answer needs more than {PARTS_MAX} parts", TOO_LARGE
        )
    return chunks
