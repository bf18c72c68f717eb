"""JSON documents read strictly: within one object, every key appears at most once.

msgspec, like most JSON parsers, lets the last of two equal keys win; another reader may let
the first win, so a document with a repeated key can mean two things to two programs (two
chain ids under one genesis hash). Every JSON document consortia reads from a file (genesis,
key files, key requests) passes `check_unique_keys` after its schema has accepted it.

This module only inspects bytes; it must never let a document with a repeated key through.
"""

from __future__ import annotations

import json
from typing import Any

from consortia.errors import ConsortiaError


class _RepeatedKeyError(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def check_unique_keys(data: bytes, error: type[ConsortiaError], source: str) -> None:
    """`error` when any JSON object in `data` repeats a key.

    Call it after the schema decode succeeded: the document is then known to be valid JSON of
    bounded depth, so the standard library parser only has to look for repeats.
    """
    try:
        json.loads(data, object_pairs_hook=_unique_object)
    except _RepeatedKeyError as repeated:
        raise error(
            f"{source} repeats the key {repeated.key[:64]!r} in one object;"
            " each key may appear once"
        ) from None
    except (ValueError, RecursionError):
        raise error(f"{source} is not valid JSON") from None


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise _RepeatedKeyError(key)
        document[key] = value
    return document
