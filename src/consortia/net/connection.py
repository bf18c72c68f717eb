"""One TLS link to a peer, as an asyncio.BufferedProtocol: reads frames, writes batches.

A Connection is made before its TLS handshake and handed to `loop.start_tls` as the protocol.
It stays HANDSHAKING until the transport has checked the peer's certificate and calls
`accept`, which writes the preamble (ACCEPTED); it is OPEN once the peer's preamble has
arrived too. Only an OPEN connection delivers frames to the node and writes frames from the
peer's send queue, and only when the transport has made it the peer's active connection.

Writes are coalesced: `schedule_flush` asks for one flush per event-loop pass, which gathers the
queued frames into writes of up to `write_batch_bytes_max` and stops while the TLS transport
is paused, so a slow peer's frames wait in its bounded queue rather than in unbounded buffers.

This module must never decide who a peer is (the transport does, from its certificate),
interpret a frame, or write frames before both preambles have crossed.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from consortia.net.counters import CloseReason, Counters
from consortia.net.frames import KEEPALIVE, PREAMBLE, FrameError, FrameReader, SendQueue
from consortia.net.limits import TransportLimits

if TYPE_CHECKING:
    from consortia.net.transport import Transport

FrameHandler = Callable[[bytes, bytes], None]
"""The node's callback: (peer node id, frame). It must not block; it should not raise."""


class State(enum.Enum):
    HANDSHAKING = enum.auto()  # TLS, then the certificate check, in progress
    ACCEPTED = enum.auto()  # peer accepted, preamble written; waiting for the peer's
    OPEN = enum.auto()  # both preambles crossed: frames flow
    CLOSED = enum.auto()


class Connection(asyncio.BufferedProtocol):
    """A link to one peer. Created by the transport; it is the owner of its lifecycle."""

    def __init__(
        self,
        owner: Transport,
        *,
        outbound: bool,
        serial: int,
        limits: TransportLimits,
        counters: Counters,
        on_frame: FrameHandler,
        logger: structlog.typing.FilteringBoundLogger,
    ) -> None:
        self.outbound = outbound
        self.serial = serial  # order of creation: the newer of two links has the larger
        self.peer_id = b""
        self.state = State.HANDSHAKING
        self._owner = owner
        self._limits = limits
        self._counters = counters
        self._on_frame = on_frame
        self.log = logger
        self._loop = asyncio.get_running_loop()
        self._reader = FrameReader(limits.frame_size_max, limits.read_buffer_initial_bytes)
        self._transport: asyncio.Transport | None = None
        self._queue: SendQueue | None = None  # set while this is the peer's active link
        self._paused = False
        self._flush_handle: asyncio.Handle | None = None
        self._open_deadline: asyncio.TimerHandle | None = None
        self._early_data = False
        self._close_reason: CloseReason | None = None
        self._closed = self._loop.create_future()  # result: whether it was ever OPEN
        self._was_open = False
        self.read_ticks = 0  # buffer_updated calls: the keepalive check compares them
        self.write_ticks = 0
        self.idle_rounds = 0
        self._seen_read_ticks = 0
        self._seen_write_ticks = 0

    # -- lifecycle, driven by the transport -------------------------------------------------

    @property
    def dialer_id(self) -> bytes:
        """The node id of the side that dialled this link."""
        return self._owner.node_id if self.outbound else self.peer_id

    def accept(self, transport: asyncio.Transport, peer_id: bytes) -> None:
        """The peer's certificate passed: write the preamble and wait for the peer's."""
        assert self.state is State.HANDSHAKING, self.state
        self._transport = transport
        self.peer_id = peer_id
        self.log = self.log.bind(peer_id=peer_id.hex(), direction="out" if self.outbound else "in")
        if self._early_data:
            self.close(CloseReason.PROTOCOL_VIOLATION, "data before this side accepted")
            return
        self.state = State.ACCEPTED
        transport.set_write_buffer_limits(high=self._limits.write_buffer_high_bytes)
        transport.write(PREAMBLE)
        if self._reader.preamble_received:
            self._open()
        else:
            self._open_deadline = self._loop.call_later(
                self._limits.handshake_timeout_s, self._check_open
            )

    async def wait_closed(self) -> bool:
        """Wait until the link is closed; True when it was OPEN at some point."""
        return await asyncio.shield(self._closed)

    def close(self, reason: CloseReason, detail: str = "", *, abort: bool = True) -> None:
        """Close the link for `reason` (the first reason given is the one counted). `abort`
        drops unsent bytes at once; otherwise TLS shuts down after writing them."""
        if self.state is State.CLOSED or self._transport is None:
            return
        if self._close_reason is None:
            self._close_reason = reason
            self.log.info("closing", reason=str(reason), detail=detail)
        if abort:
            self._transport.abort()
        else:
            self._transport.close()

    def detach(self) -> None:
        """Stop writing the peer's queue: another link is now the peer's active one."""
        self._queue = None

    def keepalive_tick(self, idle_rounds_max: int) -> None:
        """Called every keepalive interval while OPEN: close the link when nothing arrived for
        `idle_rounds_max` intervals; write a keepalive when nothing was written for one."""
        if self.read_ticks == self._seen_read_ticks:
            self.idle_rounds += 1
            if self.idle_rounds >= idle_rounds_max:
                self.close(CloseReason.IDLE, "nothing received for the idle timeout")
                return
        else:
            self.idle_rounds = 0
            self._seen_read_ticks = self.read_ticks
        if self.write_ticks == self._seen_write_ticks and not self._paused:
            assert self._transport is not None
            self._transport.write(KEEPALIVE)
            self._counters.keepalives_sent += 1
            self.write_ticks += 1
        self._seen_write_ticks = self.write_ticks

    def _open(self) -> None:
        assert self.state is State.ACCEPTED, self.state
        self.state = State.OPEN
        self._was_open = True
        if self._open_deadline is not None:
            self._open_deadline.cancel()
            self._open_deadline = None
        self._queue = self._owner.connection_opened(self)
        self.schedule_flush()

    def _check_open(self) -> None:
        self._open_deadline = None
        if self.state is State.ACCEPTED:
            self.close(CloseReason.OPEN_TIMEOUT, "the peer sent no preamble (did it refuse us?)")

    # -- writing ---------------------------------------------------------------------------

    def schedule_flush(self) -> None:
        """Write the peer's queued frames on the next pass of the event loop."""
        if self._flush_handle is None and self._queue is not None and not self._paused:
            self._flush_handle = self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        queue, transport = self._queue, self._transport
        if self.state is not State.OPEN or queue is None or transport is None:
            return
        batch_max = self._limits.write_batch_bytes_max
        counters = self._counters
        # write() may pause the writer at once, when the TLS buffer passes its high mark.
        while queue and not self._paused:
            data, frames, payload = queue.take(batch_max)
            transport.write(data)
            counters.writes += 1
            counters.frames_sent += frames
            counters.bytes_sent += payload
            self.write_ticks += 1

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self.schedule_flush()

    # -- reading ---------------------------------------------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._reader.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        if self.state is State.CLOSED:
            return
        self.read_ticks += 1
        try:
            frames = self._reader.buffer_updated(nbytes)
        except FrameError as error:
            reason = (
                CloseReason.PROTOCOL_VIOLATION
                if not self._reader.preamble_received
                else CloseReason.FRAME_TOO_LARGE
            )
            self._fail(reason, error.message)
            return
        if self.state is State.HANDSHAKING:
            # The peer writes nothing but its preamble before it reads ours, and we write ours
            # only after accepting it: anything more now breaks the protocol.
            if frames or self._reader.buffered:
                self._early_data = True
            return
        if self.state is State.ACCEPTED:
            if not self._reader.preamble_received:
                return
            self._open()
        if frames:
            self._deliver(frames)

    def _deliver(self, frames: list[bytes]) -> None:
        counters = self._counters
        counters.frames_received += len(frames)
        counters.bytes_received += sum(map(len, frames))
        on_frame, peer_id = self._on_frame, self.peer_id
        try:
            for frame in frames:
                on_frame(peer_id, frame)
        except Exception:
            self.log.exception("on_frame raised; closing the link")
            self._fail(CloseReason.HANDLER_ERROR, "on_frame raised")

    def _fail(self, reason: CloseReason, detail: str) -> None:
        if self._transport is None:
            self._early_data = True  # closed as a violation once accepted
            return
        self.close(reason, detail)

    def eof_received(self) -> bool | None:
        return None  # close: a half-open link is of no use

    def connection_lost(self, exc: Exception | None) -> None:
        was_accepted = self.state is not State.HANDSHAKING
        self.state = State.CLOSED
        self._queue = None
        for handle in (self._flush_handle, self._open_deadline):
            if handle is not None:
                handle.cancel()
        self._flush_handle = self._open_deadline = None
        if not self._closed.done():
            self._closed.set_result(self._was_open)
        if not was_accepted:
            return
        reason = self._close_reason
        if reason is None and not self._was_open:
            # A peer that refuses our certificate closes right after its TLS handshake; a TLS
            # alert in `exc` may say why (an expired certificate of ours, say).
            reason = CloseReason.REFUSED_BY_PEER
            self.log.warning("the peer closed the link before accepting this node", error=repr(exc))
        elif reason is None:
            reason = CloseReason.PEER_CLOSED
            self.log.info("the peer closed the link", error=repr(exc) if exc else None)
        self._owner.connection_closed(self, reason)
