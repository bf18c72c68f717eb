"""Types of the C module `_jmt_native.c` (the state tree's node rewrite, SHA-256 suite)."""

from collections.abc import Iterable
from typing import Any

def rewrite(
    node: tuple[Any, ...], nibble: int, digest: bytes, version: int, leaf: bool
) -> tuple[tuple[Any, ...], bytes, bytes]: ...
def domains(key: bytes, value: bytes, leaf: bytes) -> None: ...
def item(
    key: bytes, value: bytes, known: bool | None
) -> tuple[str, bytes | None, bytes, bytes | None, bool | None]: ...
def rewrite_up(
    passed: list[tuple[tuple[Any, ...], str, int]],
    top: tuple[str, bytes | None, bytes, bytes | None, bool | None] | bytes,
    version: int,
    nodes: dict[Any, bytes],
    stale: list[Any],
    cache: dict[str, tuple[Any, ...]],
    node_key_type: type[tuple[Any, ...]],
) -> tuple[bytes, tuple[Any, ...] | None]: ...
def leaf_record(key: bytes, value: bytes) -> bytes: ...
def set_node_key(node_key_type: type[tuple[Any, ...]]) -> None: ...
def update_one(
    writer: Any,
    version: int,
    path: str,
    node: tuple[Any, ...],
    item: tuple[str, bytes | None, bytes, bytes | None, bool | None],
) -> Any: ...
def keys_bytes(keys: Iterable[tuple[int, str]]) -> list[bytes]: ...
def update(
    writer: Any, version: int, path: str, node: tuple[Any, ...], lo: int, hi: int
) -> Any: ...
