"""The bytes of a link: a preamble, then length-prefixed frames; a reader and a send queue.

After its TLS handshake, and once it has accepted the peer's certificate, each side writes the
16-byte PREAMBLE (which names the transport version), then frames: a 4-byte big-endian length
and that many bytes. A side writes no frame before it has read the peer's preamble. Two
lengths are signals that never reach the node: 0 is a keepalive, and 0xFFFFFFFF (GOODBYE) says
the writer will write nothing more on this link (it retires a duplicate link without losing
the frames still in flight on it).

`FrameReader` is the receiving half as a pure state machine shaped for
asyncio.BufferedProtocol: `get_buffer` lends the space to read into, `buffer_updated` returns
the frames completed. A length over the limit raises FrameError before any space is set aside
for it; below the limit the buffer grows with the bytes that actually arrive, not with the
length announced. `SendQueue` is one peer's bounded queue of outgoing frames; `take` gathers
the oldest into one write.

This module must never do I/O, interpret a frame's content or hold more than its bounds allow.
"""

from __future__ import annotations

import struct
from collections import deque
from typing import Final

from consortia.errors import ConsortiaError

PREAMBLE: Final = b"consortia-net/1\n"
HEADER: Final = struct.Struct(">I")
HEADER_SIZE: Final = HEADER.size
KEEPALIVE: Final = HEADER.pack(0)
GOODBYE_LENGTH: Final = 0xFFFFFFFF
GOODBYE: Final = HEADER.pack(GOODBYE_LENGTH)
# A read is never offered less room than this, so large streams arrive in few calls.
READ_SIZE_MIN: Final = 16 * 1024


class FrameError(ConsortiaError):
    """The peer broke the framing: a wrong preamble, or a length over the limit."""

    code = "frame_invalid"


class FrameReader:
    """Frames out of a byte stream read into a buffer it owns."""

    __slots__ = (
        "_buffer",
        "_capacity_max",
        "_end",
        "_frame_size_max",
        "_initial_size",
        "_start",
        "_view",
        "goodbye_received",
        "preamble_received",
    )

    def __init__(self, frame_size_max: int, initial_size: int) -> None:
        assert frame_size_max >= 1, frame_size_max
        assert initial_size >= READ_SIZE_MIN + len(PREAMBLE), initial_size
        self._frame_size_max = frame_size_max
        self._initial_size = initial_size
        # Room for the largest frame with its header, and a read's worth beyond it.
        self._capacity_max = max(initial_size, HEADER_SIZE + frame_size_max + READ_SIZE_MIN)
        self._buffer = bytearray(initial_size)
        self._view = memoryview(self._buffer)
        self._start = 0  # the first byte not yet parsed
        self._end = 0  # one past the last byte read
        self.preamble_received = False
        self.goodbye_received = False  # after it, nothing more is parsed

    @property
    def buffered(self) -> int:
        """Bytes read and not yet returned as a frame: a partial header or frame."""
        return self._end - self._start

    @property
    def capacity(self) -> int:
        return len(self._buffer)

    def get_buffer(self, sizehint: int) -> memoryview:
        """The free space to read into (at least READ_SIZE_MIN bytes)."""
        del sizehint  # the reader sizes its own buffer
        if len(self._buffer) - self._end < READ_SIZE_MIN:
            self._make_room()
        return self._view[self._end :]

    def buffer_updated(self, nbytes: int) -> list[bytes]:
        """The frames completed by `nbytes` more bytes read into the space last lent.
        FrameError when the stream breaks the framing; the reader is then unusable."""
        assert 0 < nbytes <= len(self._buffer) - self._end, nbytes
        self._end += nbytes
        if self.goodbye_received:
            self._start = self._end  # the peer promised to write nothing more
            return []
        if not self.preamble_received:
            if self._end - self._start < len(PREAMBLE):
                return []
            self._take_preamble()
        frames = self._parse()
        if self._start == self._end:
            self._reset()
        return frames

    def _take_preamble(self) -> None:
        stop = self._start + len(PREAMBLE)
        if self._buffer[self._start : stop] != PREAMBLE:
            raise FrameError("the peer's preamble is not consortia-net/1")
        self._start = stop
        self.preamble_received = True

    def _parse(self) -> list[bytes]:
        buffer, unpack = self._buffer, HEADER.unpack_from
        start = position = self._start
        end, size_max = self._end, self._frame_size_max
        edges: list[int] = []  # each frame's first and one-past-last offsets from `start`
        while end - position >= HEADER_SIZE:
            (size,) = unpack(buffer, position)
            if size == GOODBYE_LENGTH:
                self.goodbye_received = True
                position = end
                break
            if size > size_max:
                self._start = position
                raise FrameError(f"a frame of {size} bytes exceeds the limit of {size_max}")
            stop = position + HEADER_SIZE + size
            if stop > end:
                break
            if size:  # length 0 is a keepalive
                edges.append(position + HEADER_SIZE - start)
                edges.append(stop - start)
            position = stop
        self._start = position
        if not edges:
            return []
        view = self._view
        if len(edges) == 2:
            return [bytes(view[start + edges[0] : start + edges[1]])]
        # One copy of the frames read, then a slice per frame: a slice of bytes costs less
        # than a memoryview slice turned into bytes.
        data = bytes(view[start : start + edges[-1]])
        return [data[edges[index] : edges[index + 1]] for index in range(0, len(edges), 2)]

    def _reset(self) -> None:
        self._start = self._end = 0
        if len(self._buffer) > 4 * self._initial_size:
            self._replace(self._initial_size)

    def _make_room(self) -> None:
        """Compact the unparsed bytes to the front, or grow the buffer when they fill it."""
        pending = self._end - self._start
        capacity = len(self._buffer)
        if pending + READ_SIZE_MIN > capacity:
            grown = min(max(2 * capacity, pending + READ_SIZE_MIN), self._capacity_max)
            assert grown >= pending + READ_SIZE_MIN, (grown, pending)
            self._replace(grown)
            return
        # Same-size slice assignment: the buffer never resizes while its view is lent.
        self._buffer[0:pending] = self._buffer[self._start : self._end]
        self._start, self._end = 0, pending

    def _replace(self, capacity: int) -> None:
        pending = self._end - self._start
        buffer = bytearray(capacity)
        buffer[0:pending] = self._view[self._start : self._end]
        self._view.release()
        self._buffer, self._view = buffer, memoryview(buffer)
        self._start, self._end = 0, pending


class SendQueue:
    """One peer's outgoing frames, oldest first, bounded by count and by payload bytes."""

    __slots__ = ("_bytes", "_frames", "bytes_max", "frames_max")

    def __init__(self, frames_max: int, bytes_max: int) -> None:
        assert frames_max >= 1 and bytes_max >= 1, (frames_max, bytes_max)
        self.frames_max = frames_max
        self.bytes_max = bytes_max
        self._frames: deque[bytes] = deque()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def size_bytes(self) -> int:
        """The payload bytes queued."""
        return self._bytes

    def push(self, frame: bytes) -> int:
        """Queue `frame`; returns how many of the oldest frames were dropped to make room."""
        size = len(frame)
        assert 0 < size <= self.bytes_max, size
        frames = self._frames
        frames.append(frame)
        self._bytes += size
        if len(frames) <= self.frames_max and self._bytes <= self.bytes_max:
            return 0
        dropped = 0
        while len(frames) > self.frames_max or self._bytes > self.bytes_max:
            self._bytes -= len(frames.popleft())
            dropped += 1
        assert frames and self._bytes <= self.bytes_max  # the new frame always stays
        return dropped

    def take(self, bytes_max: int) -> tuple[bytes, int, int]:
        """The oldest frames, framed and joined for one write, up to `bytes_max` of payload
        (at least one frame): (data, frames, payload bytes)."""
        assert self._frames, "take from an empty queue"
        frames, pack = self._frames, HEADER.pack
        parts: list[bytes] = []
        payload = 0
        while frames:
            size = len(frames[0])
            if parts and payload + size > bytes_max:
                break
            parts.append(pack(size))
            parts.append(frames.popleft())
            payload += size
        self._bytes -= payload
        return b"".join(parts), len(parts) // 2, payload

    def clear(self) -> int:
        """Drop every queued frame; returns how many there were."""
        count = len(self._frames)
        self._frames.clear()
        self._bytes = 0
        return count
