"""One link to a peer: an asyncio.Protocol on a TCP connection that drives its own TLS 1.3
session, then reads frames and writes them in batches.

Lifecycle: HANDSHAKING (TLS, then the transport checks the peer's certificate), ACCEPTED (this
side accepted the peer and wrote its preamble), OPEN (the peer's preamble arrived: frames
flow), DRAINING (a duplicate being retired: it writes GOODBYE and nothing more, and delivers
what the peer sends until the peer's GOODBYE, then closes), CLOSED. No plaintext is read
before the peer is accepted, and no frame is written before
the peer's preamble has arrived, so a peer that refuses this node never receives a frame.

Writes are coalesced: `schedule_flush` asks for one flush per pass of the event loop, which
gathers the peer's queued frames into writes of up to `write_batch_bytes_max` and stops while
the TCP transport is paused, so a slow peer's frames wait in its bounded queue rather than in
unbounded buffers. Only the peer's active link (chosen by the transport) writes its queue.

This module must never decide who a peer is (the transport does, from its certificate),
interpret a frame, or write frames before both preambles have crossed.
"""

from __future__ import annotations

import asyncio
import enum
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import structlog

from consortia.net.counters import CloseReason, Counters
from consortia.net.frames import GOODBYE, KEEPALIVE, PREAMBLE, FrameError, FrameReader, SendQueue
from consortia.net.handshake import TlsSession
from consortia.net.limits import TransportLimits

if TYPE_CHECKING:
    from consortia.net.transport import Transport

FrameHandler = Callable[[bytes, bytes], None]
"""The node's callback: (peer node id, frame). It must not block; it should not raise."""


class State(enum.Enum):
    HANDSHAKING = enum.auto()
    ACCEPTED = enum.auto()
    OPEN = enum.auto()
    DRAINING = enum.auto()  # retired: writes nothing, reads until the peer closes too
    CLOSED = enum.auto()


class Connection(asyncio.Protocol):
    """A link to one peer, made by the transport for each TCP connection, either direction."""

    def __init__(
        self,
        owner: Transport,
        context: ssl.SSLContext,
        *,
        expected_id: bytes | None,
        serial: int,
        limits: TransportLimits,
        counters: Counters,
        on_frame: FrameHandler,
        logger: structlog.typing.FilteringBoundLogger,
    ) -> None:
        self.expected_id = expected_id  # the node dialled; None for an inbound link
        self.outbound = expected_id is not None
        self.serial = serial  # order of creation: the newer of two links has the larger
        self.peer_id = b""
        self.address = ""
        self.state = State.HANDSHAKING
        self.log = logger.bind(link=serial, direction="out" if self.outbound else "in")
        self._owner = owner
        self._limits = limits
        self._counters = counters
        self._on_frame = on_frame
        self._loop = asyncio.get_running_loop()
        self._session = TlsSession(context, server_side=not self.outbound)
        self._reader = FrameReader(limits.frame_size_max, limits.read_buffer_initial_bytes)
        self._transport: asyncio.Transport | None = None
        self._queue: SendQueue | None = None  # set while this is the peer's active link
        self._paused = False
        self._flush_handle: asyncio.Handle | None = None
        self._deadline: asyncio.TimerHandle | None = None  # handshake, preamble or close
        self._close_reason: CloseReason | None = None
        self._accepted = False
        self._was_open = False
        self._handshake_reported = False
        self._closed = self._loop.create_future()  # result: whether it was ever OPEN
        self.read_ticks = 0  # data_received calls, for the keepalive check
        self.write_ticks = 0
        self.idle_rounds = 0
        self._seen_read_ticks = 0
        self._seen_write_ticks = 0

    @property
    def dialer_id(self) -> bytes:
        """The node id of the side that dialled this link."""
        return self._owner.node_id if self.outbound else self.peer_id

    async def wait_closed(self) -> bool:
        """Wait until the link is closed; True when it was OPEN at some point."""
        return await asyncio.shield(self._closed)

    # -- TCP events ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio.Transport; both have its methods.
        self._transport = cast(asyncio.Transport, transport)
        self.address = str(transport.get_extra_info("peername"))
        if not self._owner.link_made(self):
            self.state = State.CLOSED
            self._transport.abort()
            return
        self._transport.set_write_buffer_limits(high=self._limits.write_buffer_high_bytes)
        self._deadline = self._loop.call_later(
            self._limits.handshake_timeout_s, self._handshake_timed_out
        )
        self._advance_handshake()  # the dialler's first flight

    def data_received(self, data: bytes) -> None:
        if self.state is State.CLOSED:
            return
        self.read_ticks += 1
        self._session.receive(data)
        if self.state is State.HANDSHAKING and not self._advance_handshake():
            return
        self._read_plaintext()

    def eof_received(self) -> bool | None:
        return None  # close: a half-open link is of no use

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self.schedule_flush()

    def connection_lost(self, exc: Exception | None) -> None:
        previous = self.state
        self.state = State.CLOSED
        self._queue = None
        for handle in (self._flush_handle, self._deadline):
            if handle is not None:
                handle.cancel()
        self._flush_handle = self._deadline = None
        if not self._closed.done():
            self._closed.set_result(self._was_open)
        if previous is State.HANDSHAKING and not self._handshake_reported:
            self._handshake_reported = True
            error = exc or ConnectionResetError("closed during the handshake")
            self._owner.handshake_failed(self, error)
        reason = self._close_reason
        if self._accepted and reason is None:
            reason = CloseReason.PEER_CLOSED if self._was_open else CloseReason.REFUSED_BY_PEER
            self.log.info("the peer closed the link", reason=str(reason), error=repr(exc))
        self._owner.connection_closed(self, reason if self._accepted else None)

    # -- handshake -------------------------------------------------------------------------

    def _advance_handshake(self) -> bool:
        """Run the TLS handshake on; True once it is done and the peer accepted."""
        try:
            done = self._session.handshake()
        except ssl.SSLError as error:
            self._flush_tls()  # the alert that tells the peer why
            self._handshake_failed(error)
            return False
        self._flush_tls()
        if not done:
            return False
        self._cancel_deadline()
        self._handshake_reported = True
        peer_id = self._owner.link_established(self, self._session.peer_certificate())
        if peer_id is None:
            self._shut(abort=False)
            return False
        self._accept(peer_id)
        return self.state is not State.CLOSED

    def _handshake_failed(self, error: BaseException) -> None:
        self._handshake_reported = True
        self._owner.handshake_failed(self, error)
        self._shut(abort=False)

    def _handshake_timed_out(self) -> None:
        self._deadline = None
        if self.state is State.HANDSHAKING:
            self._handshake_failed(TimeoutError("the TLS handshake took too long"))

    def _accept(self, peer_id: bytes) -> None:
        """The peer's certificate passed: write the preamble and wait for the peer's."""
        self.peer_id = peer_id
        self.log = self.log.bind(peer_id=peer_id.hex())
        self._accepted = True
        self.state = State.ACCEPTED
        self._send_plaintext(PREAMBLE)
        self._deadline = self._loop.call_later(self._limits.handshake_timeout_s, self._no_preamble)

    def _no_preamble(self) -> None:
        self._deadline = None
        if self.state is State.ACCEPTED:
            self.close(CloseReason.OPEN_TIMEOUT, "the peer sent no preamble (did it refuse us?)")

    def _open(self) -> None:
        self._cancel_deadline()
        self.state = State.OPEN
        self._was_open = True
        self._queue = self._owner.connection_opened(self)
        self.schedule_flush()

    # -- closing ---------------------------------------------------------------------------

    def close(self, reason: CloseReason, detail: str = "", *, abort: bool = True) -> None:
        """Close the link for `reason` (the first reason given is the one counted). `abort`
        drops unsent bytes; otherwise they are written first, for at most close_timeout_s."""
        if self.state is State.CLOSED:
            return
        if self._close_reason is None:
            self._close_reason = reason
            self.log.info("closing", reason=str(reason), detail=detail)
        self._shut(abort=abort)

    def retire(self, reason: CloseReason, detail: str) -> None:
        """Write GOODBYE and nothing more, deliver what the peer sends until its own GOODBYE,
        then close (within close_timeout_s): a retired duplicate loses no frame."""
        if self.state is not State.OPEN:
            self.close(reason, detail)
            return
        self._close_reason = reason
        self.log.info("retiring", reason=str(reason), detail=detail)
        self.state = State.DRAINING
        self._queue = None
        self._send_plaintext(GOODBYE)
        self._owner.link_inactive(self)
        if self._reader.goodbye_received:
            self._shut(abort=False)
            return
        self._deadline = self._loop.call_later(self._limits.close_timeout_s, self.abort)

    def abort(self) -> None:
        """End the TCP connection now, whatever the state (for a closing transport)."""
        self.state = State.CLOSED
        if self._transport is not None:
            self._transport.abort()

    def detach(self) -> None:
        """Stop writing the peer's queue: another link is now the peer's active one."""
        self._queue = None

    def _shut(self, *, abort: bool) -> None:
        """Stop reading and writing frames now; end the TCP connection."""
        was_accepted = self.state is not State.HANDSHAKING
        self.state = State.CLOSED
        self._queue = None
        self._cancel_deadline()
        if was_accepted:
            self._owner.link_inactive(self)
        transport = self._transport
        assert transport is not None
        if abort:
            transport.abort()
            return
        self._session.close()
        self._flush_tls()
        transport.close()
        # A peer that reads nothing would hold a graceful close open for ever.
        self._deadline = self._loop.call_later(self._limits.close_timeout_s, transport.abort)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    # -- writing ---------------------------------------------------------------------------

    def schedule_flush(self) -> None:
        """Write the peer's queued frames on the next pass of the event loop."""
        if self._flush_handle is None and self._queue is not None and not self._paused:
            self._flush_handle = self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        queue, transport, session = self._queue, self._transport, self._session
        if self.state is not State.OPEN or queue is None or transport is None:
            return
        batch_max = self._limits.write_batch_bytes_max
        counters = self._counters
        # write() may pause the writer at once, when the transport's buffer passes its mark.
        while queue and not self._paused:
            data, frames, payload = queue.take(batch_max)
            session.send(data)
            transport.write(session.outgoing())
            counters.writes += 1
            counters.frames_sent += frames
            counters.bytes_sent += payload
            self.write_ticks += 1

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
            self._send_plaintext(KEEPALIVE)
            self._counters.keepalives_sent += 1
        self._seen_write_ticks = self.write_ticks

    def _send_plaintext(self, data: bytes) -> None:
        self._session.send(data)
        self._flush_tls()
        self.write_ticks += 1

    def _flush_tls(self) -> None:
        data = self._session.outgoing()
        if data and self._transport is not None:
            self._transport.write(data)

    # -- reading ---------------------------------------------------------------------------

    def _read_plaintext(self) -> None:
        reader, session = self._reader, self._session
        while self.state is not State.CLOSED:
            try:
                count = session.read_into(reader.get_buffer(-1))
            except ssl.SSLError as error:
                self._broken(f"TLS failed: {error}")
                return
            if count is None:
                break
            if count == 0:
                self._broken("the peer closed TLS")
                return
            try:
                frames = reader.buffer_updated(count)
            except FrameError as error:
                reason = (
                    CloseReason.FRAME_TOO_LARGE
                    if reader.preamble_received
                    else CloseReason.PROTOCOL_VIOLATION
                )
                self.close(reason, error.message)
                return
            if self.state is State.ACCEPTED and reader.preamble_received:
                self._open()
            if frames:
                self._deliver(frames)
            if reader.goodbye_received:
                self._peer_said_goodbye()
                return
        self._flush_tls()  # anything TLS itself owes the peer

    def _peer_said_goodbye(self) -> None:
        """The peer retired this link: retire it too (or finish retiring it), then close."""
        if self.state is State.OPEN:
            self.retire(CloseReason.DUPLICATE, "the peer retired this link")
        elif self.state is State.DRAINING:
            self._shut(abort=False)
        else:
            self.close(CloseReason.PROTOCOL_VIOLATION, "GOODBYE before the link was open")

    def _broken(self, detail: str) -> None:
        reason = CloseReason.PEER_CLOSED if self._was_open else CloseReason.REFUSED_BY_PEER
        self.close(reason, detail, abort=False)

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
            self.close(CloseReason.HANDLER_ERROR, "on_frame raised")
