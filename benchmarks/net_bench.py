"""Throughput of one mutual-TLS 1.3 link of consortia.net on loopback, with and without uvloop.

    .venv/bin/python benchmarks/net_bench.py [--json OUT] [--repeat N] [--frames F]
                                             [--size BYTES] [--layout two-processes|one-process]

A sender transport queues F frames of BYTES bytes (200 by default) for a receiver transport as
fast as its send queue takes them (it keeps at most 8,192 waiting, so none is dropped); the
receiver answers with one frame when the last has arrived. A run's time is from the first send
to that answer. With `two-processes` (the default) sender and receiver are separate processes,
as two nodes are; with `one-process` both share one event loop and one core. Each figure is the
median of N runs, each run on a fresh pair of transports and a fresh TLS link; frames/s and
MB/s count frame payloads (the 4-byte length and TLS overhead excluded). It prints the
figures and writes them as JSON (default bench-results/net_bench.json).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import multiprocessing
import os
import platform
import random
import ssl
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from consortia.identity.certificates import (
    certificate_pem,
    create_ca_certificate,
    generate_tls_key,
    issue_node_certificate,
    permitted_names,
)
from consortia.net import Transport, TransportLimits, contexts_from_pem

DEFAULT_JSON = Path("bench-results/net_bench.json")
HOST = "127.0.0.1"
QUEUE_HIGH = 8_192  # the sender keeps at most this many frames waiting
ACK = b"done"
SENDER_ID = bytes.fromhex("11" * 32)
RECEIVER_ID = bytes.fromhex("22" * 32)

Identity = tuple[bytes, bytes, bytes]  # CA PEM, certificate PEM, private key PEM


def _identities() -> dict[bytes, Identity]:
    from cryptography.hazmat.primitives.serialization import (  # noqa: PLC0415
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    now = datetime.datetime.now(datetime.UTC)
    ca_key = generate_tls_key()
    ca = create_ca_certificate(ca_key, "bench-chain", now, permitted_names([HOST]))
    identities = {}
    for node in (SENDER_ID, RECEIVER_ID):
        key = generate_tls_key()
        certificate = issue_node_certificate(
            ca_key,
            ca,
            node_id=node,
            member="Bench Bank",
            host=HOST,
            public_key=key.public_key(),
            now=now,
        )
        key_pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        identities[node] = (certificate_pem(ca), certificate_pem(certificate), key_pem)
    return identities


def _transport(
    node: bytes,
    identity: Identity,
    peers: dict[bytes, tuple[str, int]],
    on_frame: Callable[[bytes, bytes], None],
) -> Transport:
    ca_pem, certificate, key = identity
    return Transport(
        node,
        (HOST, 0),
        peers=peers,
        tls=contexts_from_pem(ca_pem, certificate, key),
        on_frame=on_frame,
        is_allowed=lambda _: True,
        rng=random.Random(0),
        limits=TransportLimits(),
    )


async def _receive(identity: Identity, frames: int, ready: Any) -> None:
    """Run a receiver: report its port through `ready`, answer ACK after `frames` frames."""
    count = 0
    done = asyncio.Event()
    transport: Transport

    def on_frame(peer: bytes, frame: bytes) -> None:
        nonlocal count
        count += 1
        if count == frames:
            transport.send(peer, ACK)
        elif frame == ACK:
            done.set()  # the sender says it has its answer: the run is over

    transport = _transport(RECEIVER_ID, identity, {}, on_frame)
    await transport.start()
    ready(transport.listen_address[1])
    await done.wait()
    await transport.close()


async def _send(identity: Identity, port: int, frames: int, size: int) -> dict[str, float]:
    """Run a sender against the receiver on `port`; returns the run's figures."""
    answered = asyncio.Event()
    transport = _transport(
        SENDER_ID, identity, {RECEIVER_ID: (HOST, port)}, lambda _peer, _frame: answered.set()
    )
    await transport.start()
    assert await transport.wait_connected([RECEIVER_ID], 10.0), "the link did not open"
    payload = os.urandom(size)
    start = time.perf_counter()
    sent = 0
    while sent < frames:
        room = min(QUEUE_HIGH - transport.queued_frames(RECEIVER_ID), frames - sent)
        for _ in range(room):
            transport.send(RECEIVER_ID, payload)
        sent += max(room, 0)
        # Yield so the link can write. Only yield: a timed pause would cost uvloop a whole
        # millisecond (libuv's timer resolution) each time the queue is full.
        await asyncio.sleep(0)
    await answered.wait()
    elapsed = time.perf_counter() - start
    counters = transport.counters
    transport.send(RECEIVER_ID, ACK)
    await asyncio.sleep(0.05)  # let the last word reach the receiver before closing
    await transport.close()
    return {
        "seconds": elapsed,
        "frames_per_s": frames / elapsed,
        "mb_per_s": frames * size / elapsed / 1e6,
        "frames_per_write": counters.frames_sent / max(counters.writes, 1),
        "dropped": float(sum(counters.drops.values())),
    }


def _run_loop(loop_name: str, coroutine: Any) -> Any:
    factory = None
    if loop_name == "uvloop":
        import uvloop  # noqa: PLC0415

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coroutine)


def _receiver_process(loop_name: str, identity: Identity, frames: int, pipe: Any) -> None:
    _quiet()
    _run_loop(loop_name, _receive(identity, frames, pipe.send))


def _one_run(loop_name: str, layout: str, frames: int, size: int) -> dict[str, float]:
    identities = _identities()
    if layout == "one-process":

        async def both() -> dict[str, float]:
            ports: asyncio.Queue[int] = asyncio.Queue()
            receiver = asyncio.create_task(
                _receive(identities[RECEIVER_ID], frames, ports.put_nowait)
            )
            figures = await _send(identities[SENDER_ID], await ports.get(), frames, size)
            await receiver
            return figures

        figures: dict[str, float] = _run_loop(loop_name, both())
        return figures
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(
        target=_receiver_process, args=(loop_name, identities[RECEIVER_ID], frames, child)
    )
    process.start()
    try:
        port = parent.recv()
        figures = _run_loop(loop_name, _send(identities[SENDER_ID], port, frames, size))
    finally:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()
    return figures


def _quiet() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--frames", type=int, default=300_000)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument(
        "--layout", choices=["two-processes", "one-process"], default="two-processes"
    )
    parser.add_argument("--loops", default="asyncio,uvloop")
    args = parser.parse_args()
    _quiet()
    results: dict[str, Any] = {}
    for loop_name in args.loops.split(","):
        runs = [
            _one_run(loop_name, args.layout, args.frames, args.size) for _ in range(args.repeat)
        ]
        median = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        results[loop_name] = {"median": median, "runs": runs}
        print(
            f"{loop_name:8} {args.layout}: {median['frames_per_s']:>10,.0f} frames/s "
            f"{median['mb_per_s']:7.1f} MB/s  ({median['frames_per_write']:.0f} frames per write,"
            f" median of {args.repeat} runs of {args.frames:,} frames of {args.size} bytes)"
        )
    report = {
        "benchmark": "consortia.net one mutual-TLS 1.3 link on loopback",
        "layout": args.layout,
        "frames": args.frames,
        "frame_size": args.size,
        "repeat": args.repeat,
        "python": sys.version.split()[0],
        "openssl": ssl.OPENSSL_VERSION,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "results": results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {args.json}")


if __name__ == "__main__":
    main()
