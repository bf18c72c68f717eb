"""TLS as bytes in, bytes out (`TlsSession`), and the checks of a peer's id after a handshake.

A link drives its own TLS: `TlsSession` wraps an ssl.SSLObject over two memory BIOs, so the
connection that receives the TCP bytes is the one that feeds them to TLS, on any event loop,
and a failed handshake surfaces as an exception that the transport counts and logs with its
reason. (loop.start_tls would hand over the socket after it is already reading, and a server
made with create_server(ssl=...) swallows failed handshakes.) `check_peer` reads the node id
from the certificate OpenSSL verified and applies the transport's rules to it.

This module must never accept a peer whose id does not come from its verified certificate,
do I/O, or read a frame.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Callable

from consortia.net.counters import Refusal
from consortia.net.tls import PeerIdentityError, peer_node_id


class TlsSession:
    """One side of a TLS connection: ciphertext in with `receive`, plaintext out with
    `read_into`, plaintext in with `send`, ciphertext out with `outgoing`."""

    __slots__ = ("_incoming", "_object", "_outgoing")

    def __init__(self, context: ssl.SSLContext, *, server_side: bool) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._object = context.wrap_bio(
            self._incoming, self._outgoing, server_side=server_side, server_hostname=None
        )

    def receive(self, ciphertext: bytes) -> None:
        self._incoming.write(ciphertext)

    def handshake(self) -> bool:
        """Advance the handshake: True once it is complete. ssl.SSLError when it fails (a
        certificate OpenSSL refused: ssl.SSLCertVerificationError)."""
        try:
            self._object.do_handshake()
        except ssl.SSLWantReadError:
            return False
        return True

    def read_into(self, buffer: memoryview) -> int | None:
        """Plaintext into `buffer`: the byte count, 0 when the peer closed TLS, None when no
        whole record is waiting. ssl.SSLError when the stream is broken."""
        try:
            # With a buffer, read returns the count (typeshed says bytes either way).
            count: int = self._object.read(len(buffer), buffer)  # type: ignore[assignment]
        except ssl.SSLWantReadError:
            return None
        except ssl.SSLZeroReturnError:
            return 0  # the peer's close_notify, after ours
        return count

    def send(self, plaintext: bytes) -> None:
        self._object.write(plaintext)

    def outgoing(self) -> bytes:
        """The ciphertext to write to the peer now (may be empty)."""
        return self._outgoing.read()

    def close(self) -> None:
        """Queue a close_notify alert (sent with the next `outgoing`)."""
        # SSLError: waiting for the peer's close_notify, or the link is already broken.
        with contextlib.suppress(ssl.SSLError):
            self._object.unwrap()

    def peer_certificate(self) -> bytes | None:
        return self._object.getpeercert(binary_form=True)


def check_peer(
    certificate_der: bytes | None,
    *,
    expected: bytes | None,
    own_id: bytes,
    is_allowed: Callable[[bytes], bool],
    has_room: Callable[[bytes], bool],
) -> tuple[Refusal | None, bytes, str]:
    """(the refusal or None, the peer's node id or b"", a detail for the log). `expected` is
    the id dialled (None for an inbound link); `has_room` says whether the peer table can
    hold the id."""
    if certificate_der is None:
        return Refusal.NO_NODE_ID, b"", "no certificate"
    try:
        peer_id = peer_node_id(certificate_der)
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
