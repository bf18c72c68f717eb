"""Reading a server-sent event stream (text/event-stream) line by line, as the node's
`/v1/subscribe/*` routes send it.

Owns the wire form only: fields `id`, `event`, `data` (joined with newlines when repeated),
comments (lines starting with `:`, the node's keep-alives) and `retry` (ignored: the SDK
keeps its own back-off). Must never interpret a message's data nor open a connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Final

# A message larger than this (its data lines together) is a broken stream, not a message.
MESSAGE_CHARS_MAX: Final = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ServerEvent:
    id: str | None
    event: str
    data: str


class StreamFormatError(Exception):
    """The stream is not text/event-stream as the node sends it."""


async def server_events(lines: AsyncIterable[str]) -> AsyncIterator[ServerEvent]:
    """The messages of a stream, from its lines (without their line endings)."""
    message_id: str | None = None
    event = ""
    data: list[str] = []
    size = 0
    async for line in lines:
        if not line:
            if data:
                yield ServerEvent(message_id, event or "message", "\n".join(data))
            message_id, event, data, size = None, "", [], 0
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "id":
            message_id = value
        elif name == "event":
            event = value
        elif name == "data":
            size += len(value)
            if size > MESSAGE_CHARS_MAX:
                raise StreamFormatError(f"a message over {MESSAGE_CHARS_MAX} characters")
            data.append(value)
