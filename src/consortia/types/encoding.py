"""The one byte encoding of consortia: canonical MessagePack via msgspec.

Every struct that is hashed, signed or sent is a frozen msgspec Struct encoded as a MessagePack
array (`array_like`), with a type tag as its first element. There is exactly one valid encoding
of each value: `decode` re-encodes what it parsed and rejects the input unless the bytes match,
so non-minimal integers, reordered map keys, trailing bytes and the like never pass.

Every failure to decode, whatever its cause, is one typed error: `DecodeError`. Oversized input
is refused before any parsing.

This module never performs I/O and holds no state besides cached codecs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable
from typing import Any, Final, TypeVar, cast, overload

import msgspec

from consortia.errors import DecodeError

# The largest message any consortia decoder accepts: a full block of transactions fits well
# within it, and nothing larger is ever buffered.
MESSAGE_SIZE_MAX: Final = 16 * 1024 * 1024

T = TypeVar("T")

_encoder: Final = msgspec.msgpack.Encoder(order="deterministic")


# The canonical bytes of a value: the encoder's own method, bound once (every transaction,
# block and hash encodes through it, so it is called without a wrapper's frame).
encode: Final[Callable[[Any], bytes]] = _encoder.encode


@functools.lru_cache(maxsize=256)
def _decoder(type_: Hashable) -> msgspec.msgpack.Decoder[Any]:
    return msgspec.msgpack.Decoder(type_)


@overload
def decode(data: bytes, type_: type[T], *, size_max: int = MESSAGE_SIZE_MAX) -> T: ...


@overload
def decode(data: bytes, type_: Any, *, size_max: int = MESSAGE_SIZE_MAX) -> Any: ...


def decode(data: bytes, type_: Any, *, size_max: int = MESSAGE_SIZE_MAX) -> Any:
    """Parse exactly one canonical encoding of `type_`; DecodeError for anything else."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    # In bytes: len() of a memoryview counts items, which may be wider than one byte.
    size = memoryview(data).nbytes
    if size > size_max:
        raise DecodeError(f"message of {size} bytes exceeds the limit of {size_max}")
    decoder = _decoder(cast(Hashable, type_))
    try:
        value = decoder.decode(data)
    except (
        msgspec.DecodeError,
        msgspec.ValidationError,
        ValueError,
        TypeError,
        BufferError,
    ) as error:
        raise DecodeError(f"not a valid {_type_name(type_)}: {error}") from None
    if encode(value) != bytes(data):
        raise DecodeError(f"not the canonical encoding of {_type_name(type_)}")
    return value


def _type_name(type_: Any) -> str:
    return getattr(type_, "__name__", None) or str(type_)
