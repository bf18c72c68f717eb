"""The transport's bounds and timings (`TransportLimits`) and its reconnect back-off.

Every queue, buffer, count and wait of consortia.net has its limit here, checked once when the
limits are made. The back-off is one pure function of the attempt number and one draw from
the caller's random source, so a seeded source gives the same delays on every run.

This module must never do I/O, read a clock or draw randomness itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from consortia.errors import InvalidArgumentError
from consortia.types.encoding import MESSAGE_SIZE_MAX
from consortia.types.primitives import VALIDATORS_MAX

MiB: Final = 1024 * 1024
KiB: Final = 1024


@dataclass(frozen=True, slots=True)
class TransportLimits:
    """Bounds of one transport. The memory it may hold is about
    peers_max * (queue_bytes_max + frame_size_max): a send queue and a read buffer per peer."""

    frame_size_max: int = MESSAGE_SIZE_MAX
    # Per peer, frames waiting while it is slow or down; the oldest go first when full.
    queue_frames_max: int = 16_384
    queue_bytes_max: int = 32 * MiB
    # One coalesced write gathers queued frames up to this many payload bytes.
    write_batch_bytes_max: int = 256 * KiB
    # The TLS transport pauses the writer above `write_buffer_high_bytes` of unsent data.
    write_buffer_high_bytes: int = 1 * MiB
    read_buffer_initial_bytes: int = 64 * KiB
    peers_max: int = 256
    connections_max: int = 600
    handshakes_in_progress_max: int = 64
    connect_timeout_s: float = 5.0
    # The TLS handshake, and then the exchange of preambles, each get this long.
    handshake_timeout_s: float = 10.0
    close_timeout_s: float = 2.0
    # An open connection with nothing written for a keepalive interval gets an empty frame;
    # one with nothing received for `idle_timeout_s` is closed.
    keepalive_interval_s: float = 5.0
    idle_timeout_s: float = 20.0
    backoff_initial_s: float = 0.05
    backoff_max_s: float = 10.0
    backoff_multiplier: float = 2.0
    # Each delay is shortened by up to this fraction, at random, so peers spread their dials.
    backoff_jitter: float = 0.5

    def __post_init__(self) -> None:
        _check(1 <= self.frame_size_max <= MESSAGE_SIZE_MAX, "frame_size_max", "1..16 MiB")
        _check(1 <= self.queue_frames_max <= 1 << 20, "queue_frames_max", "1..2^20")
        _check(
            self.frame_size_max <= self.queue_bytes_max <= 1 << 32,
            "queue_bytes_max",
            "frame_size_max..4 GiB (a queue must hold one frame of the largest size)",
        )
        _check(KiB <= self.write_batch_bytes_max <= 64 * MiB, "write_batch_bytes_max", "1 KiB..")
        _check(
            64 * KiB <= self.write_buffer_high_bytes <= 256 * MiB,
            "write_buffer_high_bytes",
            "64 KiB..256 MiB",
        )
        _check(
            4 * KiB <= self.read_buffer_initial_bytes <= 16 * MiB,
            "read_buffer_initial_bytes",
            "4 KiB..16 MiB",
        )
        _check(1 <= self.peers_max <= VALIDATORS_MAX, "peers_max", f"1..{VALIDATORS_MAX}")
        _check(
            self.peers_max <= self.connections_max <= 4 * VALIDATORS_MAX,
            "connections_max",
            "peers_max..4 * VALIDATORS_MAX",
        )
        _check(1 <= self.handshakes_in_progress_max <= 4096, "handshakes_in_progress_max", "1..")
        for name in ("connect_timeout_s", "handshake_timeout_s", "close_timeout_s"):
            _check(0 < getattr(self, name) <= 300, name, "0..300 seconds")
        _check(0 < self.keepalive_interval_s <= 600, "keepalive_interval_s", "0..600 seconds")
        _check(
            2 * self.keepalive_interval_s <= self.idle_timeout_s <= 3600,
            "idle_timeout_s",
            "2 keepalive intervals..3600 seconds",
        )
        _check(0 < self.backoff_initial_s <= self.backoff_max_s, "backoff_initial_s", "0..max")
        _check(self.backoff_max_s <= 3600, "backoff_max_s", "..3600 seconds")
        _check(1 <= self.backoff_multiplier <= 16, "backoff_multiplier", "1..16")
        _check(0 <= self.backoff_jitter < 1, "backoff_jitter", "0..1 (exclusive)")


def backoff_delay_s(limits: TransportLimits, attempt: int, draw: float) -> float:
    """The wait before dial number `attempt` (0 after a connection that was open) of one peer:
    exponential from `backoff_initial_s` up to `backoff_max_s`, shortened by up to the jitter
    fraction. `draw` is a uniform draw in [0, 1) from the transport's random source."""
    assert attempt >= 0, attempt
    assert 0.0 <= draw < 1.0, draw
    # Cap the exponent so the power never overflows, however long a peer stays down.
    exponent = min(attempt, 64)
    base_s = min(
        limits.backoff_max_s, limits.backoff_initial_s * limits.backoff_multiplier**exponent
    )
    delay_s = base_s * (1.0 - limits.backoff_jitter * draw)
    assert 0 < delay_s <= limits.backoff_max_s
    return delay_s


def _check(condition: bool, name: str, bounds: str) -> None:
    if not condition:
        raise InvalidArgumentError(f"transport limit {name} must be in {bounds}")
