"""What the transport counts: frames and bytes each way, and every drop, refusal and closed
connection by reason. The reasons are closed sets (enums), so the node exports each as a
Prometheus label without parsing text, and mypy sees every place that names one.

This module holds plain counters only: it must never do I/O, read a clock, or hold a frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar


class DropReason(StrEnum):
    """Why a frame given to `send` or `broadcast` was not, or will not be, written."""

    QUEUE_FULL = "queue_full"  # the peer's send queue was full: its oldest frame was dropped
    FRAME_TOO_LARGE = "frame_too_large"  # larger than the frame limit: refused by send
    EMPTY_FRAME = "empty_frame"  # a frame of no bytes: refused by send
    UNKNOWN_PEER = "unknown_peer"  # no such peer, or the node itself
    NOT_RUNNING = "not_running"  # before start or after close
    DISCONNECTED = "disconnected"  # queued for a peer that `disconnect` or `remove_peer` cut off


class Refusal(StrEnum):
    """Why a connection was refused during or right after its TLS handshake."""

    SELF_SIGNED = "self_signed"  # a self-signed certificate
    UNKNOWN_CA = "unknown_ca"  # a certificate not issued by the consortium CA
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    CERTIFICATE_INVALID = "certificate_invalid"  # any other failure of OpenSSL's verification
    NO_NODE_ID = "no_node_id"  # a CA-signed certificate that binds no single node id
    WRONG_NODE_ID = "wrong_node_id"  # the peer dialled presented another node's certificate
    NOT_ALLOWED = "not_allowed"  # the node's `is_allowed` refused the id (revoked or unknown)
    OWN_ID = "own_id"  # the peer presented this node's own id
    CAPACITY = "capacity"  # too many connections, handshakes in progress or peers
    TLS_ERROR = "tls_error"  # the handshake failed for another reason (alert, reset, version)
    TIMEOUT = "timeout"  # the TCP connect or TLS handshake took too long


class CloseReason(StrEnum):
    """Why a connection that passed its handshake was closed."""

    PEER_CLOSED = "peer_closed"  # the peer closed it or the network failed
    DUPLICATE = "duplicate"  # another connection to the same peer was kept
    DISCONNECTED = "disconnected"  # `disconnect`, `remove_peer` or `enforce_allowed`
    FRAME_TOO_LARGE = "frame_too_large"  # the peer announced a frame over the limit
    PROTOCOL_VIOLATION = "protocol_violation"  # a wrong preamble, or frames before it
    OPEN_TIMEOUT = "open_timeout"  # no preamble in time (the peer may have refused this node)
    REFUSED_BY_PEER = "refused_by_peer"  # the peer closed before its preamble: it refused us
    IDLE = "idle"  # nothing received for the idle timeout, keepalives included
    HANDLER_ERROR = "handler_error"  # the node's on_frame raised
    SHUTDOWN = "shutdown"  # this transport is closing


_E = TypeVar("_E", bound=StrEnum)


def _zeros(kind: type[_E]) -> dict[_E, int]:
    return dict.fromkeys(kind, 0)


@dataclass(slots=True)
class Counters:
    """Monotonic counters of one transport. Bytes count frame payloads, not headers or TLS."""

    frames_sent: int = 0
    bytes_sent: int = 0
    writes: int = 0  # coalesced writes: frames_sent / writes is the mean batch
    frames_received: int = 0
    bytes_received: int = 0
    keepalives_sent: int = 0
    dials: int = 0
    dial_failures: int = 0  # TCP connects that failed or timed out
    connections_opened: int = 0
    drops: dict[DropReason, int] = field(default_factory=lambda: _zeros(DropReason))
    refusals: dict[Refusal, int] = field(default_factory=lambda: _zeros(Refusal))
    closes: dict[CloseReason, int] = field(default_factory=lambda: _zeros(CloseReason))

    def snapshot(self) -> dict[str, int]:
        """Every counter under a flat name, for an exporter: `drops_queue_full`, ..."""
        flat = {
            "frames_sent": self.frames_sent,
            "bytes_sent": self.bytes_sent,
            "writes": self.writes,
            "frames_received": self.frames_received,
            "bytes_received": self.bytes_received,
            "keepalives_sent": self.keepalives_sent,
            "dials": self.dials,
            "dial_failures": self.dial_failures,
            "connections_opened": self.connections_opened,
        }
        flat |= {f"drops_{reason}": count for reason, count in self.drops.items()}
        flat |= {f"refusals_{reason}": count for reason, count in self.refusals.items()}
        flat |= {f"closes_{reason}": count for reason, count in self.closes.items()}
        return flat
