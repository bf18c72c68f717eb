"""consortia.net without sockets: the frame reader, the send queue, the back-off, the limits,
the counters and which of two links both sides keep."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consortia.errors import InvalidArgumentError
from consortia.net import CloseReason, Counters, DropReason, Refusal, TransportLimits
from consortia.net.frames import (
    GOODBYE,
    HEADER,
    KEEPALIVE,
    PREAMBLE,
    READ_SIZE_MIN,
    FrameError,
    FrameReader,
    SendQueue,
)
from consortia.net.limits import backoff_delay_s
from consortia.net.peers import preferred

INITIAL = 64 * 1024


def framed(*frames: bytes) -> bytes:
    return b"".join(HEADER.pack(len(frame)) + frame for frame in frames)


def feed(reader: FrameReader, data: bytes, chunk: int) -> list[bytes]:
    """Read `data` into `reader` in pieces of at most `chunk` bytes, as a transport would."""
    frames: list[bytes] = []
    offset = 0
    while offset < len(data):
        space = reader.get_buffer(-1)
        assert len(space) >= READ_SIZE_MIN
        size = min(chunk, len(space), len(data) - offset)
        space[:size] = data[offset : offset + size]
        frames += reader.buffer_updated(size)
        offset += size
    return frames


def test_reader_returns_frames_after_the_preamble_in_any_split() -> None:
    frames = [b"a", b"bb" * 100, bytes(range(256)) * 300, b"z"]
    stream = PREAMBLE + framed(*frames)
    for chunk in (1, 3, 7, 4096, 1 << 20):
        reader = FrameReader(1 << 20, INITIAL)
        assert feed(reader, stream, chunk) == frames
        assert reader.preamble_received
        assert reader.buffered == 0


def test_reader_skips_keepalives() -> None:
    reader = FrameReader(1024, INITIAL)
    assert feed(reader, PREAMBLE + KEEPALIVE + framed(b"x") + KEEPALIVE, 5) == [b"x"]


def test_reader_stops_at_goodbye() -> None:
    reader = FrameReader(1024, INITIAL)
    stream = PREAMBLE + framed(b"a", b"b") + GOODBYE + framed(b"ignored")
    assert feed(reader, stream, 3) == [b"a", b"b"]
    assert reader.goodbye_received
    assert feed(reader, framed(b"more"), 64) == []


def test_reader_refuses_a_wrong_preamble() -> None:
    reader = FrameReader(1024, INITIAL)
    with pytest.raises(FrameError):
        feed(reader, b"consortia-net/2\n" + framed(b"x"), 64)


def test_reader_refuses_an_announced_length_over_the_limit_without_growing() -> None:
    limit = 1 << 20
    reader = FrameReader(limit, INITIAL)
    assert feed(reader, PREAMBLE + framed(b"x" * limit), 1 << 16) == [b"x" * limit]
    assert reader.capacity == INITIAL  # back to its first size once empty
    with pytest.raises(FrameError, match="exceeds the limit"):
        feed(reader, HEADER.pack(limit + 1), 4)
    assert reader.capacity == INITIAL


def test_reader_grows_with_the_bytes_that_arrive_not_the_length_announced() -> None:
    limit = 8 << 20
    reader = FrameReader(limit, INITIAL)
    feed(reader, PREAMBLE + HEADER.pack(limit) + b"x" * 100_000, 1 << 16)
    assert reader.capacity < 4 * 100_000
    assert reader.buffered == HEADER.size + 100_000


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.binary(min_size=1, max_size=3000), max_size=30),
    st.integers(min_value=1, max_value=5000),
)
def test_reader_matches_the_frames_written(frames: list[bytes], chunk: int) -> None:
    reader = FrameReader(4096, READ_SIZE_MIN + len(PREAMBLE))
    assert feed(reader, PREAMBLE + framed(*frames), chunk) == frames


def test_queue_drops_the_oldest_by_count_and_by_bytes() -> None:
    queue = SendQueue(frames_max=3, bytes_max=10)
    assert [queue.push(bytes([n])) for n in range(3)] == [0, 0, 0]
    assert queue.push(b"\x03") == 1  # count bound: frame 0 goes
    assert queue.push(b"x" * 9) == 2  # bytes bound: 1 + 1 + 1 + 9 > 10, two more go
    assert len(queue) == 2 and queue.size_bytes == 10
    data, frames, payload = queue.take(1 << 20)
    assert data == framed(b"\x03", b"x" * 9) and (frames, payload) == (2, 10)
    assert len(queue) == 0 and queue.size_bytes == 0


def test_queue_take_gathers_frames_up_to_the_batch_and_at_least_one() -> None:
    queue = SendQueue(frames_max=100, bytes_max=1 << 20)
    for n in range(10):
        queue.push(bytes([n]) * 100)
    data, frames, payload = queue.take(350)
    assert (frames, payload) == (3, 300)
    assert data == framed(*(bytes([n]) * 100 for n in range(3)))
    queue.clear()
    queue.push(b"y" * 1000)
    assert queue.take(10)[1:] == (1, 1000)


def test_backoff_grows_to_its_bound_with_jitter_from_the_source() -> None:
    limits = TransportLimits(backoff_initial_s=0.1, backoff_max_s=5.0, backoff_jitter=0.5)
    assert [backoff_delay_s(limits, attempt, 0.0) for attempt in range(8)] == [
        0.1,
        0.2,
        0.4,
        0.8,
        1.6,
        3.2,
        5.0,
        5.0,
    ]
    assert backoff_delay_s(limits, 10_000, 0.0) == 5.0
    assert backoff_delay_s(limits, 0, 0.999) == pytest.approx(0.05, rel=0.01)
    first, second = random.Random(7), random.Random(7)
    assert [backoff_delay_s(limits, n, first.random()) for n in range(20)] == [
        backoff_delay_s(limits, n, second.random()) for n in range(20)
    ]


@pytest.mark.parametrize(
    "change",
    [
        {"frame_size_max": 0},
        {"frame_size_max": 17 * 1024 * 1024},
        {"queue_bytes_max": 1024},  # below one frame of the largest size
        {"queue_frames_max": 0},
        {"peers_max": 0},
        {"connections_max": 1},
        {"idle_timeout_s": 1.0, "keepalive_interval_s": 1.0},
        {"backoff_initial_s": 20.0},
        {"backoff_jitter": 1.0},
        {"handshake_timeout_s": 0.0},
    ],
)
def test_limits_refuse_values_out_of_bounds(change: dict[str, float]) -> None:
    with pytest.raises(InvalidArgumentError):
        TransportLimits(**change)  # type: ignore[arg-type]


def test_counters_flatten_every_reason() -> None:
    counters = Counters()
    counters.drops[DropReason.QUEUE_FULL] += 2
    snapshot = counters.snapshot()
    assert snapshot["drops_queue_full"] == 2
    for reason in (*DropReason, *Refusal, *CloseReason):
        assert any(name.endswith(f"_{reason}") for name in snapshot)


class _Link:
    """Stands in for a Connection in `preferred`: who dialled it and when it was made."""

    def __init__(self, dialer_id: bytes, serial: int) -> None:
        self.dialer_id = dialer_id
        self.serial = serial


def test_both_sides_keep_the_link_dialled_by_the_lower_id() -> None:
    low, high = b"\x01" * 32, b"\x02" * 32
    by_low, by_high = _Link(low, 5), _Link(high, 1)
    # Each side sees the two links in its own order; both keep the one `low` dialled.
    assert preferred(by_low, by_high) is by_low  # type: ignore[arg-type]
    assert preferred(by_high, by_low) is by_low  # type: ignore[arg-type]
    older, newer = _Link(high, 1), _Link(high, 2)
    assert preferred(older, newer) is newer  # type: ignore[arg-type]
    assert preferred(newer, older) is newer  # type: ignore[arg-type]
