"""Canonical msgspec structs and their one byte encoding (see `encoding`)."""

from consortia.types.encoding import MESSAGE_SIZE_MAX, decode, encode

__all__ = ["MESSAGE_SIZE_MAX", "decode", "encode"]
