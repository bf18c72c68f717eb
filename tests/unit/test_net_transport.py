"""consortia.net.Transport over real sockets on 127.0.0.1: meshes, frames, limits, queues,
reconnects, duplicate links and keepalives. Every wait is on a condition with a timeout."""

from __future__ import annotations

import asyncio

import pytest

from consortia.net import CloseReason, DropReason, TransportLimits
from consortia.net.frames import HEADER
from consortia.types.encoding import MESSAGE_SIZE_MAX
from tests.unit.test_net_support import (
    FAST,
    LOCALHOST,
    Node,
    eventually,
    issue,
    make_authority,
    make_node,
    mesh,
    node_id,
    raw_link,
    run,
)

LOOPS = ["asyncio", "uvloop"]


async def _close(*nodes: Node) -> None:
    for node in nodes:
        await node.transport.close()


async def _full_mesh(count: int, limits: TransportLimits = FAST) -> list[Node]:
    """`count` nodes that all know all addresses and dial each other at once."""
    ca = make_authority()
    nodes = [make_node(ca, issue(ca, node_id(i)), limits=limits, seed=i) for i in range(count)]
    for node in nodes:
        await node.transport.start()
    for node in nodes:
        for other in nodes:
            node.transport.add_peer(other.node_id, other.address)  # its own id is ignored
    await mesh(nodes)
    return nodes


@pytest.mark.parametrize("loop", LOOPS)
def test_two_nodes_link_and_exchange_frames_both_ways(loop: str) -> None:
    async def scenario() -> None:
        ca = make_authority()
        first = make_node(ca, issue(ca, node_id(0)))
        await first.transport.start()
        second = make_node(ca, issue(ca, node_id(1)), {first.node_id: first.address})
        await second.transport.start()
        await mesh([first, second])
        for n in range(100):
            assert first.transport.send(second.node_id, b"to second %d" % n)
            assert second.transport.send(first.node_id, b"to first %d" % n)
        await eventually(lambda: len(first.received) == len(second.received) == 100)
        assert second.frames_from(first.node_id) == [b"to second %d" % n for n in range(100)]
        assert first.frames_from(second.node_id) == [b"to first %d" % n for n in range(100)]
        counters = first.transport.counters
        assert counters.frames_sent == counters.frames_received == 100
        assert counters.writes < counters.frames_sent  # frames were coalesced into writes
        await _close(first, second)

    run(scenario, loop)


@pytest.mark.parametrize("loop", LOOPS)
def test_four_nodes_form_a_full_mesh_with_one_link_per_pair(loop: str) -> None:
    async def scenario() -> None:
        nodes = await _full_mesh(4)
        for node in nodes:
            assert node.transport.broadcast(b"from " + node.node_id) == 3
        await eventually(lambda: all(len(node.received) == 3 for node in nodes))
        for node in nodes:
            assert {frame for _, frame in node.received} == {
                b"from " + other.node_id for other in nodes if other is not node
            }
            assert all(sender == frame[5:] for sender, frame in node.received)
        # Both ends of every pair agree on which link they kept: one side dialled it.
        for node in nodes:
            for status in node.transport.peers():
                other = next(n for n in nodes if n.node_id == status.node_id)
                mirror = next(s for s in other.transport.peers() if s.node_id == node.node_id)
                assert status.dialled_by_us is not mirror.dialled_by_us
        await _close(*nodes)

    run(scenario, loop)


async def _simultaneous_dials() -> bool:
    """Two nodes dial each other at once; False when only one link ever opened."""
    first, second = await _full_mesh(2)
    # Wait for a losing duplicate to finish closing, so the counters are final.
    await eventually(lambda: first.transport.link_count == second.transport.link_count == 1)
    duplicates = sum(
        node.transport.counters.closes[CloseReason.DUPLICATE] for node in (first, second)
    )
    if duplicates:  # both links opened: the lower id's is the one both kept
        low = min(first, second, key=lambda node: node.node_id)
        (status,) = low.transport.peers()
        assert status.dialled_by_us
        assert first.transport.send(second.node_id, b"after")
        await eventually(lambda: second.received == [(first.node_id, b"after")])
    await _close(first, second)
    return duplicates > 0


def test_simultaneous_dials_keep_the_link_dialled_by_the_lower_id() -> None:
    async def scenario() -> None:
        tries = 5
        for _ in range(tries):
            if await _simultaneous_dials():
                return
        pytest.skip(f"no two links opened at once in {tries} tries")

    run(scenario)


@pytest.mark.parametrize("loop", LOOPS)
def test_frames_sent_while_duplicate_links_are_resolved_arrive_once(loop: str) -> None:
    async def scenario() -> None:
        ca = make_authority()
        count = 300
        duplicates = 0
        for round_ in range(3):
            nodes = [make_node(ca, issue(ca, node_id(i)), seed=round_) for i in range(2)]
            for node in nodes:
                await node.transport.start()
            first, second = nodes
            first.transport.add_peer(second.node_id, second.address)
            second.transport.add_peer(first.node_id, first.address)
            sent = 0
            # Keep sending, one frame per pass of the loop, while the links open and one of
            # them is retired; then the rest.
            while sent < count:
                for node, other in ((first, second), (second, first)):
                    assert node.transport.send(other.node_id, b"%d" % sent)
                sent += 1
                await asyncio.sleep(0)
            for node, other in ((first, second), (second, first)):
                await eventually(lambda node=node: len(node.received) == count)  # type: ignore[misc]
                assert sorted(node.frames_from(other.node_id)) == sorted(
                    b"%d" % n for n in range(count)
                )
            duplicates += first.transport.counters.closes[CloseReason.DUPLICATE]
            await _close(first, second)
        assert duplicates, "the two links never overlapped: the switch went untested"

    run(scenario, loop)


def test_a_node_whose_address_is_unknown_can_still_be_sent_to() -> None:
    async def scenario() -> None:
        ca = make_authority()
        old = make_node(ca, issue(ca, node_id(0)))
        await old.transport.start()
        new = make_node(ca, issue(ca, node_id(1)), {old.node_id: old.address})
        await new.transport.start()
        await mesh([old, new])
        (status,) = old.transport.peers()
        assert status.address is None and not status.dialled_by_us
        assert old.transport.send(new.node_id, b"welcome")
        await eventually(lambda: new.received == [(old.node_id, b"welcome")])
        await _close(old, new)

    run(scenario)


def test_a_frame_at_the_limit_passes_and_one_over_it_closes_the_link() -> None:
    async def scenario() -> None:
        assert FAST.frame_size_max == MESSAGE_SIZE_MAX
        ca = make_authority()
        first = make_node(ca, issue(ca, node_id(0)))
        await first.transport.start()
        second = make_node(ca, issue(ca, node_id(1)), {first.node_id: first.address})
        await second.transport.start()
        await mesh([first, second])
        largest = bytes(range(256)) * (MESSAGE_SIZE_MAX // 256)
        assert second.transport.send(first.node_id, largest)
        assert not second.transport.send(first.node_id, largest + b"!")
        assert second.transport.counters.drops[DropReason.FRAME_TOO_LARGE] == 1
        await eventually(lambda: len(first.received) == 1)
        assert first.received[0] == (second.node_id, largest)

        # A peer that announces one byte more is cut off; nothing of it reaches the node.
        rogue = issue(ca, node_id(2))
        reader, writer = await raw_link(ca, rogue, first.address)
        writer.write(HEADER.pack(MESSAGE_SIZE_MAX + 1) + b"x" * 1000)
        assert await reader.read() == b""
        await eventually(lambda: first.transport.counters.closes[CloseReason.FRAME_TOO_LARGE] == 1)
        assert len(first.received) == 1
        writer.close()
        await _close(first, second)

    run(scenario)


def test_a_wrong_preamble_closes_the_link() -> None:
    async def scenario() -> None:
        ca = make_authority()
        node = make_node(ca, issue(ca, node_id(0)))
        await node.transport.start()
        reader, writer = await raw_link(
            ca, issue(ca, node_id(1)), node.address, preamble=b"consortia-net/9\n"
        )
        await reader.read()  # the transport's own preamble, then the end of the link
        await eventually(
            lambda: node.transport.counters.closes[CloseReason.PROTOCOL_VIOLATION] == 1
        )
        assert node.transport.connected() == set()
        writer.close()
        await _close(node)

    run(scenario)


def test_frames_for_a_peer_that_is_down_wait_in_a_bounded_queue() -> None:
    async def scenario() -> None:
        ca = make_authority()
        limits = TransportLimits(
            queue_frames_max=4, backoff_initial_s=0.01, backoff_max_s=0.05, close_timeout_s=1.0
        )
        absent = issue(ca, node_id(1))
        placeholder = make_node(ca, absent)  # only to reserve a free port, then closed
        await placeholder.transport.start()
        port = placeholder.address[1]
        await placeholder.transport.close()
        sender = make_node(
            ca, issue(ca, node_id(0)), {absent.node_id: (LOCALHOST, port)}, limits=limits
        )
        await sender.transport.start()
        for n in range(10):
            assert sender.transport.send(absent.node_id, b"frame %d" % n)
        assert sender.transport.counters.drops[DropReason.QUEUE_FULL] == 6
        (status,) = sender.transport.peers()
        assert (status.connected, status.queued_frames) == (False, 4)
        await eventually(lambda: sender.transport.counters.dials >= 2)  # it keeps trying

        receiver = make_node(ca, absent, port=port)
        await receiver.transport.start()
        await eventually(lambda: len(receiver.received) == 4)
        assert receiver.frames_from(sender.node_id) == [b"frame %d" % n for n in range(6, 10)]
        await _close(sender, receiver)

    run(scenario)


def test_a_slow_peer_fills_its_queue_and_the_oldest_frames_are_dropped() -> None:
    async def scenario() -> None:
        ca = make_authority()
        limits = TransportLimits(
            queue_frames_max=64,
            write_buffer_high_bytes=64 * 1024,
            frame_size_max=64 * 1024,
            queue_bytes_max=1024 * 1024,
            close_timeout_s=0.5,
        )
        node = make_node(ca, issue(ca, node_id(0)), limits=limits)
        await node.transport.start()
        slow = issue(ca, node_id(1))
        _reader, writer = await raw_link(ca, slow, node.address)  # then never reads
        await eventually(lambda: slow.node_id in node.transport.connected())
        frame = b"s" * (64 * 1024)
        sent = 0
        # Frames go out while the kernel's buffers take them, then wait in the queue.
        while node.transport.counters.drops[DropReason.QUEUE_FULL] == 0:
            assert sent < 20_000, "the queue never filled"
            node.transport.send(slow.node_id, frame)
            sent += 1
            await asyncio.sleep(0)  # one pass of the loop: lets the writer flush
        (status,) = node.transport.peers()
        assert status.queued_frames <= 16  # 1 MiB of 64 KiB frames
        assert status.queued_bytes <= limits.queue_bytes_max
        assert node.transport.counters.frames_sent < sent
        writer.transport.abort()
        await _close(node)

    run(scenario)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_restarted_peer_is_reconnected_and_gets_what_was_queued(loop: str) -> None:
    async def scenario() -> None:
        ca = make_authority()
        first = make_node(ca, issue(ca, node_id(0)))
        await first.transport.start()
        identity = issue(ca, node_id(1))
        second = make_node(ca, identity)
        await second.transport.start()
        port = second.address[1]
        first.transport.add_peer(second.node_id, second.address)
        await mesh([first, second])
        await second.transport.close()
        await eventually(lambda: not first.transport.connected())
        assert first.transport.send(second.node_id, b"while you were away")

        restarted = make_node(ca, identity, port=port)
        await restarted.transport.start()
        await mesh([first, restarted])
        await eventually(lambda: restarted.received == [(first.node_id, b"while you were away")])
        assert first.transport.counters.connections_opened == 2
        await _close(first, restarted)

    run(scenario, loop)


def test_keepalives_hold_an_idle_link_and_a_silent_peer_is_dropped() -> None:
    async def scenario() -> None:
        limits = TransportLimits(keepalive_interval_s=0.02, idle_timeout_s=0.1)
        first, second = await _full_mesh(2, limits)
        await eventually(
            lambda: min(n.transport.counters.keepalives_sent for n in (first, second)) >= 10
        )
        assert first.transport.connected() == {second.node_id}
        assert first.received == second.received == []

        ca = make_authority()
        silent = issue(ca, node_id(5))
        node = make_node(ca, issue(ca, node_id(4)), limits=limits)
        await node.transport.start()
        _reader, writer = await raw_link(ca, silent, node.address)
        await eventually(lambda: node.transport.counters.closes[CloseReason.IDLE] == 1)
        writer.transport.abort()
        await _close(first, second, node)

    run(scenario)


def test_a_raising_handler_closes_that_link() -> None:
    async def scenario() -> None:
        first, second = await _full_mesh(2)

        first.failure = ValueError("the node could not decode it")
        second.transport.send(first.node_id, b"bad")
        await eventually(lambda: first.transport.counters.closes[CloseReason.HANDLER_ERROR] == 1)
        first.failure = None
        await mesh([first, second])  # the link comes back
        await _close(first, second)

    run(scenario)


def test_send_refuses_what_can_never_be_sent() -> None:
    async def scenario() -> None:
        ca = make_authority()
        node = make_node(ca, issue(ca, node_id(0)), {node_id(1): (LOCALHOST, 9)})
        assert not node.transport.send(node_id(1), b"early")
        await node.transport.start()
        assert not node.transport.send(node_id(2), b"who?")
        assert not node.transport.send(node_id(0), b"myself")
        assert not node.transport.send(node_id(1), b"")
        assert node.transport.send(node_id(1), b"queued")
        drops = node.transport.counters.drops
        assert drops[DropReason.NOT_RUNNING] == 1
        assert drops[DropReason.UNKNOWN_PEER] == 2
        assert drops[DropReason.EMPTY_FRAME] == 1
        await _close(node)
        assert not node.transport.send(node_id(1), b"late")

    run(scenario)
