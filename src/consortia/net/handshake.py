"""The handshake of one link: TLS 1.3 over a TCP connection, then the checks of the peer's id.

`secure` upgrades a TCP connection with `loop.start_tls`, so a failed handshake comes back
here as an exception that can be counted and logged with its reason (a server made with
`create_server(ssl=...)` would swallow it). `check_peer` reads the node id from the
certificate OpenSSL verified and applies the transport's rules to it.

This module must never accept a peer whose id does not come from its verified certificate,
nor read or write a frame.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import cast

from consortia.net.counters import Refusal
from consortia.net.tls import PeerIdentityError, peer_node_id


class Plain(asyncio.Protocol):
    """The protocol of a TCP connection until start_tls replaces it: reads nothing."""

    def __init__(self, on_made: Callable[[asyncio.Transport], None] | None = None) -> None:
        self._on_made = on_made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio.Transport; both have its methods.
        stream = cast(asyncio.Transport, transport)
        stream.pause_reading()  # the ClientHello waits for start_tls
        if self._on_made is not None:
            self._on_made(stream)


async def secure(
    raw: asyncio.Transport,
    protocol: asyncio.BaseProtocol,
    context: ssl.SSLContext,
    *,
    server_side: bool,
    handshake_timeout_s: float,
    shutdown_timeout_s: float,
) -> asyncio.Transport:
    """The TLS transport over `raw` once the handshake is done; raises ssl.SSLError (a
    certificate OpenSSL refused: ssl.SSLCertVerificationError), OSError or TimeoutError."""
    if raw.is_closing():
        raise ConnectionResetError("closed before the TLS handshake")
    loop = asyncio.get_running_loop()
    # start_tls enforces the handshake timeout itself; the outer one is a backstop.
    async with asyncio.timeout(handshake_timeout_s + 1.0):
        tls = await loop.start_tls(
            raw,
            protocol,
            context,
            server_side=server_side,
            ssl_handshake_timeout=handshake_timeout_s,
            ssl_shutdown_timeout=shutdown_timeout_s,
        )
    if tls is None:
        raise ConnectionResetError("the link closed during the TLS handshake")
    return tls


def check_peer(
    tls: asyncio.Transport,
    *,
    expected: bytes | None,
    own_id: bytes,
    is_allowed: Callable[[bytes], bool],
    has_room: Callable[[bytes], bool],
) -> tuple[Refusal | None, bytes, str]:
    """(the refusal or None, the peer's node id or b"", a detail for the log). `expected` is
    the id dialled (None for an inbound link); `has_room` says whether the peer table can
    hold the id."""
    ssl_object = tls.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if der is None:
        return Refusal.NO_NODE_ID, b"", "no certificate"
    try:
        peer_id = peer_node_id(der)
    except PeerIdentityError as error:
        return Refusal.NO_NODE_ID, b"", str(error)
    if expected is not None and peer_id != expected:
        return Refusal.WRONG_NODE_ID, peer_id, f"dialled {expected.hex()}"
    if peer_id == own_id:
        return Refusal.OWN_ID, peer_id, "the peer presented this node's id"
    if not is_allowed(peer_id):
        return Refusal.NOT_ALLOWED, peer_id, "is_allowed refused the node id"
    if not has_room(peer_id):
        return Refusal.CAPACITY, peer_id, "too many peers"
    return None, peer_id, ""


def describe(error: BaseException) -> str:
    """A log detail for a failed handshake (no key material: OpenSSL messages only)."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {error.verify_message}"
    return repr(error)
