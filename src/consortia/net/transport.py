"""The node's transport between validators: a full mesh of mutual-TLS links moving frames.

`Transport` listens for peers, dials every peer whose address it knows (reconnecting with
bounded, jittered exponential back-off), and attributes each link to the node id in the
peer's certificate. Any open link to a peer, whichever side dialled it, carries frames to that
peer. When two links to one peer are open, both sides keep the same one: the link dialled by
the lower node id, or the newer of two dialled by the same node. Frames for a peer wait in its
bounded send queue (the oldest dropped and counted when full) until a link is open.

Every handshake is checked here: OpenSSL verifies the chain against the consortium CA (so
self-signed, foreign and expired certificates fail), then the node id bound in the
certificate must be the one dialled, must not be this node's own, and must pass the node's
`is_allowed` callback, which is consulted at every handshake. `disconnect` and
`enforce_allowed` cut live links when governance revokes a node.

This module must never interpret a frame, trust an address or anything a peer sends as its
identity, block the event loop, or let a queue, buffer or count of links grow past its limit.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import ssl
from collections.abc import Callable, Collection, Mapping

import structlog

from consortia.errors import InvalidArgumentError
from consortia.net.connection import Connection, FrameHandler, State
from consortia.net.counters import CloseReason, Counters, DropReason, Refusal
from consortia.net.frames import SendQueue
from consortia.net.handshake import check_peer, describe
from consortia.net.limits import TransportLimits, backoff_delay_s
from consortia.net.peers import Address, Peer, PeerStatus, check_node_id, preferred
from consortia.net.tls import TlsContexts, refusal_of


class Transport:
    """Links to the other validators. See the module docstring and docs/network.md."""

    def __init__(
        self,
        node_id: bytes,
        listen: Address,
        *,
        peers: Mapping[bytes, Address],
        tls: TlsContexts,
        on_frame: FrameHandler,
        is_allowed: Callable[[bytes], bool],
        rng: random.Random,
        limits: TransportLimits | None = None,
        logger: structlog.typing.FilteringBoundLogger | None = None,
    ) -> None:
        check_node_id(node_id)
        server_context, client_context = tls
        if server_context.protocol != ssl.PROTOCOL_TLS_SERVER:
            raise InvalidArgumentError("server_context must be a PROTOCOL_TLS_SERVER context")
        if client_context.protocol != ssl.PROTOCOL_TLS_CLIENT:
            raise InvalidArgumentError("client_context must be a PROTOCOL_TLS_CLIENT context")
        for context in (server_context, client_context):
            if context.verify_mode != ssl.CERT_REQUIRED:
                raise InvalidArgumentError("both TLS contexts must require the peer's certificate")
            if context.minimum_version < ssl.TLSVersion.TLSv1_3:
                raise InvalidArgumentError("both TLS contexts must require TLS 1.3")
        self.node_id = node_id
        self.limits = limits or TransportLimits()
        self._frame_size_max = self.limits.frame_size_max
        self.counters = Counters()
        self._listen = listen
        self._server_context = server_context
        self._client_context = client_context
        self._on_frame = on_frame
        self._is_allowed = is_allowed
        self._rng = rng
        base_logger = logger or structlog.get_logger("consortia.net")
        self._log: structlog.typing.FilteringBoundLogger = base_logger.bind(node_id=node_id.hex())
        self._peers: dict[bytes, Peer] = {}
        self._connections: set[Connection] = set()  # every live link, handshaking ones too
        self._serials = itertools.count()
        self._server: asyncio.Server | None = None
        self._keepalive: asyncio.Task[None] | None = None
        self._running = False
        self._changed = asyncio.Event()
        self._none_left = asyncio.Event()
        for peer_id, address in peers.items():
            self.add_peer(peer_id, address)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen, and start dialling every known peer."""
        assert self._server is None, "start() once"
        loop = asyncio.get_running_loop()
        host, port = self._listen
        self._server = await loop.create_server(
            self._accept_inbound, host, port, reuse_address=True, backlog=128
        )
        self._running = True
        for peer in self._peers.values():
            self._start_dialer(peer)
        self._keepalive = loop.create_task(self._keepalive_loop())
        self._log.info("listening", address=self.listen_address)

    @property
    def listen_address(self) -> Address:
        """The address actually bound (port 0 in `listen` picks a free one)."""
        assert self._server is not None and self._server.sockets, "not started"
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    async def close(self) -> None:
        """Stop listening and dialling, close every link (abort those slow to close)."""
        if not self._running:
            return
        self._running = False
        assert self._server is not None
        self._server.close()
        tasks: list[asyncio.Task[None]] = [p.dialer for p in self._peers.values() if p.dialer]
        if self._keepalive is not None:
            tasks.append(self._keepalive)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for connection in list(self._connections):
            connection.close(CloseReason.SHUTDOWN, abort=False)
        if self._connections:
            self._none_left.clear()
            try:
                await asyncio.wait_for(self._none_left.wait(), self.limits.close_timeout_s)
            except TimeoutError:
                for connection in list(self._connections):
                    connection.abort()
        self._log.info("closed")

    # -- peers -----------------------------------------------------------------------------

    def add_peer(self, node_id: bytes, address: Address | None) -> None:
        """Know `node_id` (at `address`, dialled from now on). Its own id is ignored, so the
        node may pass the whole validator set. InvalidArgumentError past peers_max."""
        check_node_id(node_id)
        if node_id == self.node_id:
            return
        peer = self._peers.get(node_id)
        if peer is None:
            if len(self._peers) >= self.limits.peers_max:
                raise InvalidArgumentError(f"more than {self.limits.peers_max} peers")
            peer = self._peers[node_id] = Peer(node_id, address, self.limits)
        elif address is not None:
            peer.address = address
        if self._running:
            self._start_dialer(peer)

    def remove_peer(self, node_id: bytes) -> None:
        """Forget `node_id`: stop dialling it, close its links and drop its queued frames. A
        peer that `is_allowed` still accepts may dial in again and be known anew."""
        self.disconnect(node_id)
        peer = self._peers.pop(node_id, None)
        if peer is not None and peer.dialer is not None:
            peer.dialer.cancel()

    def disconnect(self, node_id: bytes) -> int:
        """Close every link to `node_id` now and drop its queued frames (for a revocation:
        `is_allowed` must already refuse it, or it will be dialled and accepted again).
        Returns the number of links closed."""
        peer = self._peers.get(node_id)
        if peer is not None:
            self.counters.drops[DropReason.DISCONNECTED] += peer.queue.clear()
            if peer.connection is not None:
                self._deactivate(peer)  # at once: not when the link reports it is lost
        closed = 0
        for connection in list(self._connections):
            if connection.peer_id == node_id and connection.state is not State.HANDSHAKING:
                connection.close(CloseReason.DISCONNECTED, "disconnected by the node")
                closed += 1
        return closed

    def enforce_allowed(self) -> int:
        """Ask `is_allowed` again about every linked peer and disconnect those it refuses;
        call it after every change of the validator set. Returns the number of links closed."""
        refused = {
            connection.peer_id
            for connection in self._connections
            if connection.state is not State.HANDSHAKING and not self._allowed(connection.peer_id)
        }
        return sum(self.disconnect(node_id) for node_id in refused)

    @property
    def link_count(self) -> int:
        """Live links, those still in their handshake included (a gauge for monitoring)."""
        return len(self._connections)

    def connected(self) -> set[bytes]:
        """The peers with an open link."""
        return {node_id for node_id, peer in self._peers.items() if peer.connection is not None}

    def peers(self) -> list[PeerStatus]:
        """Every known peer's address, link and queue, for monitoring."""
        return [peer.status() for peer in self._peers.values()]

    def queued_frames(self, node_id: bytes) -> int:
        """Frames waiting for `node_id` (0 for an unknown peer): a producer that must not
        lose frames to a full queue can pace itself on this."""
        peer = self._peers.get(node_id)
        return 0 if peer is None else len(peer.queue)

    async def wait_connected(self, node_ids: Collection[bytes], timeout_s: float) -> bool:
        """Wait until every one of `node_ids` has an open link; False after `timeout_s`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not set(node_ids) <= self.connected():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return False
        return True

    # -- sending ---------------------------------------------------------------------------

    def send(self, node_id: bytes, frame: bytes) -> bool:
        """Queue `frame` for `node_id`. False (and counted) when it can never be sent: the
        transport is not running, the peer is unknown, or the frame is empty or over the
        limit. True does not mean delivered: a full queue drops its oldest frame."""
        peer = self._peers.get(node_id)
        # The common case first, in as few steps as possible: this runs for every frame.
        if peer is not None and self._running and 0 < len(frame) <= self._frame_size_max:
            dropped = peer.queue.push(frame)
            if dropped:
                self.counters.drops[DropReason.QUEUE_FULL] += dropped
            if peer.connection is not None:
                peer.connection.schedule_flush()
            return True
        reason = self._refuse_frame(frame) or DropReason.UNKNOWN_PEER
        self.counters.drops[reason] += 1
        return False

    def broadcast(self, frame: bytes) -> int:
        """Queue `frame` for every known peer; returns how many."""
        reason = self._refuse_frame(frame)
        if reason is not None:
            self.counters.drops[reason] += 1
            return 0
        for peer in self._peers.values():
            self._enqueue(peer, frame)
        return len(self._peers)

    def _refuse_frame(self, frame: bytes) -> DropReason | None:
        if not self._running:
            return DropReason.NOT_RUNNING
        if not frame:
            return DropReason.EMPTY_FRAME
        if len(frame) > self.limits.frame_size_max:
            return DropReason.FRAME_TOO_LARGE
        return None

    def _enqueue(self, peer: Peer, frame: bytes) -> None:
        dropped = peer.queue.push(frame)
        if dropped:
            self.counters.drops[DropReason.QUEUE_FULL] += dropped
        if peer.connection is not None:
            peer.connection.schedule_flush()

    # -- links, called by Connection -------------------------------------------------------

    def connection_opened(self, connection: Connection) -> SendQueue | None:
        """`connection` is OPEN: make it the peer's active link, unless another is kept.
        Returns the peer's queue when it is the active link."""
        peer = self._peers.get(connection.peer_id)
        if peer is None:
            if len(self._peers) >= self.limits.peers_max:
                connection.close(CloseReason.DISCONNECTED, "too many peers")
                return None
            peer = self._peers[connection.peer_id] = Peer(connection.peer_id, None, self.limits)
        current = peer.connection
        if (
            current is not None
            and current.state is State.OPEN
            and preferred(current, connection) is current
        ):
            connection.retire(CloseReason.DUPLICATE, "another link is kept")
            return None
        if current is not None:
            current.detach()
        peer.connection = connection
        peer.idle.clear()
        self.counters.connections_opened += 1
        self._notify_change()
        connection.log.info("connected")
        if current is not None:
            current.retire(CloseReason.DUPLICATE, "another link is kept")
        return peer.queue

    def link_inactive(self, connection: Connection) -> None:
        """`connection` carries no more frames (retired or closing): if it was its peer's
        active link, the peer has none until another opens; frames wait in its queue."""
        peer = self._peers.get(connection.peer_id)
        if peer is not None and peer.connection is connection:
            self._deactivate(peer)

    def connection_closed(self, connection: Connection, reason: CloseReason | None) -> None:
        """`connection` is gone; `reason` is None when it never passed its handshake."""
        self._connections.discard(connection)
        if reason is not None:
            self.counters.closes[reason] += 1
        peer = self._peers.get(connection.peer_id) if connection.peer_id else None
        if peer is not None and peer.connection is connection:
            self._deactivate(peer)
        if not self._connections:
            self._none_left.set()

    def _deactivate(self, peer: Peer) -> None:
        assert peer.connection is not None
        peer.connection.detach()
        peer.connection = None
        peer.idle.set()
        self._notify_change()

    def _notify_change(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # -- handshakes, called by Connection -------------------------------------------------

    def link_made(self, connection: Connection) -> bool:
        """A TCP connection is up: register it, unless the limits are reached."""
        handshaking = sum(1 for link in self._connections if link.state is State.HANDSHAKING)
        if not self._running:
            return False
        if (
            handshaking >= self.limits.handshakes_in_progress_max
            or len(self._connections) >= self.limits.connections_max
        ):
            self._refused(connection, Refusal.CAPACITY, "too many links or handshakes")
            return False
        self._connections.add(connection)
        return True

    def link_established(self, connection: Connection, certificate: bytes | None) -> bytes | None:
        """The TLS handshake is done: the peer's node id when it passes every check, else
        None (the refusal counted and logged)."""
        refusal, peer_id, detail = check_peer(
            certificate,
            expected=connection.expected_id,
            own_id=self.node_id,
            is_allowed=self._allowed,
            has_room=lambda node_id: (
                node_id in self._peers or len(self._peers) < self.limits.peers_max
            ),
        )
        if refusal is not None:
            self._refused(connection, refusal, detail, peer_id)
            return None
        return peer_id

    def handshake_failed(self, connection: Connection, error: BaseException) -> None:
        self._refused(connection, refusal_of(error), describe(error))

    # -- dialling --------------------------------------------------------------------------

    def _accept_inbound(self) -> Connection:
        return self._new_connection(self._server_context, expected_id=None)

    def _new_connection(self, context: ssl.SSLContext, expected_id: bytes | None) -> Connection:
        return Connection(
            self,
            context,
            expected_id=expected_id,
            serial=next(self._serials),
            limits=self.limits,
            counters=self.counters,
            on_frame=self._on_frame,
            logger=self._log,
        )

    def _start_dialer(self, peer: Peer) -> None:
        if peer.address is not None and (peer.dialer is None or peer.dialer.done()):
            peer.dialer = asyncio.get_running_loop().create_task(self._dial_loop(peer))

    async def _dial_loop(self, peer: Peer) -> None:
        attempt = 0
        while self._running and peer.address is not None:
            await peer.idle.wait()
            was_open = False
            if self._allowed(peer.node_id):
                connection = await self._dial(peer, peer.address)
                if connection is not None:
                    was_open = await connection.wait_closed()
            attempt = 0 if was_open else attempt + 1
            delay_s = backoff_delay_s(self.limits, attempt, self._rng.random())
            await asyncio.sleep(delay_s)

    async def _dial(self, peer: Peer, address: Address) -> Connection | None:
        self.counters.dials += 1
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.limits.connect_timeout_s):
                _, connection = await loop.create_connection(
                    lambda: self._new_connection(self._client_context, peer.node_id),
                    address[0],
                    address[1],
                )
        except (OSError, TimeoutError) as error:
            self.counters.dial_failures += 1
            self._log.debug("dial failed", peer_id=peer.node_id.hex(), error=repr(error))
            return None
        return connection

    def _allowed(self, node_id: bytes) -> bool:
        try:
            return bool(self._is_allowed(node_id))
        except Exception:
            # A failing callback is the node's bug; refusing is the safe answer.
            self._log.exception("is_allowed raised; refusing", peer_id=node_id.hex())
            return False

    def _refused(
        self, connection: Connection, reason: Refusal, detail: str, peer_id: bytes = b""
    ) -> None:
        self.counters.refusals[reason] += 1
        claimed = peer_id or connection.expected_id
        connection.log.warning(
            "handshake refused",
            reason=str(reason),
            detail=detail,
            address=connection.address,
            peer_id=claimed.hex() if claimed else None,
        )

    async def _keepalive_loop(self) -> None:
        limits = self.limits
        rounds_max = math.ceil(limits.idle_timeout_s / limits.keepalive_interval_s)
        while True:
            await asyncio.sleep(limits.keepalive_interval_s)
            for connection in list(self._connections):
                if connection.state is State.OPEN:
                    connection.keepalive_tick(rounds_max)
