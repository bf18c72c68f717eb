"""Types of the C module `_jmt_native.c` (the state tree's node rewrite, SHA-256 suite)."""

from typing import Any

def rewrite(
    node: tuple[Any, ...], nibble: int, digest: bytes, version: int, leaf: bool
) -> tuple[tuple[Any, ...], bytes, bytes]: ...
def domains(key: bytes, value: bytes, leaf: bytes) -> None: ...
def item(
    key: bytes, value: bytes, known: bool | None
) -> tuple[str, bytes | None, bytes, bytes | None, bool | None]: ...
