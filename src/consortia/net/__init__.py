"""consortia.net: the transport between validators (mutual TLS 1.3, length-prefixed frames).

It moves opaque frames between nodes identified by the node id in their certificates; the
node decodes them. See docs/network.md.

This package must never interpret a frame, nor be imported by the deterministic core
(consensus, execution, mempool).
"""

from consortia.net.counters import CloseReason, Counters, DropReason, Refusal
from consortia.net.frames import FrameError
from consortia.net.limits import TransportLimits, backoff_delay_s
from consortia.net.peers import PeerStatus
from consortia.net.tls import (
    IdentityLoader,
    TlsContexts,
    build_contexts,
    contexts_from_pem,
    peer_node_id,
    pem_identity,
)
from consortia.net.transport import Transport

__all__ = [
    "CloseReason",
    "Counters",
    "DropReason",
    "FrameError",
    "IdentityLoader",
    "PeerStatus",
    "Refusal",
    "TlsContexts",
    "Transport",
    "TransportLimits",
    "backoff_delay_s",
    "build_contexts",
    "contexts_from_pem",
    "peer_node_id",
    "pem_identity",
]
