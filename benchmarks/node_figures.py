"""Figures of the node quoted in docs/node.md, from four in-process nodes.

The nodes are real drivers (store, engine, mempool, replica) joined by the in-process network
of tests/node_helpers.py (frames carried by the event loop, no sockets), as in the node tests.

    python benchmarks/node_figures.py growth [--blocks 1000]
        LMDB space used per committed empty block (what an idle network writes).
    python benchmarks/node_figures.py catchup [--gap 200] [--limit 64] [--wait 30]
        Hold one validator down until the others have committed --gap blocks, then let it
        back, with the replica's fetched-chain bound (`Params.fetched_blocks_max`, 8192 by
        default) set to --limit, and report whether it catches up within --wait seconds.

    python benchmarks/node_figures.py idle [--seconds 20] [--transfers 20] [--no-pacing]
        An idle network for --seconds: committed blocks a second, round timers fired and
        empty payloads held back; then --transfers transfers one after another, each from
        submission to its receipt at node 0 (median and worst, in ms). --no-pacing turns the
        driver's idle pacing off (IDLE_DELAY_MAX_MS = 0), the baseline.

Prints its result; the nodes' log lines below warnings are silenced.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
import tempfile
import time
from pathlib import Path

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.node_helpers import (
    Hub,
    make_driver,
    make_genesis,
    transfer,
    validator_keys,
    wait_for,
)

from consortia.node import driver as driver_module
from consortia.node.driver import Driver
from consortia.types.encoding import encode
from consortia.types.genesis import Genesis


def four_nodes(directory: Path, limit: int = 8192) -> tuple[Hub, Genesis, list[Driver]]:
    """Four started in-process validators on one hub, with the replica's fetched-chain bound
    set to `limit` and a 1 GiB store each."""
    hub = Hub(asyncio.get_running_loop(), random.Random(1))
    genesis = make_genesis(4)

    def halted(reason: str) -> None:
        print(f"halted: {reason}", file=sys.stderr)

    drivers = [
        make_driver(
            hub,
            genesis,
            directory,
            key,
            fetched_blocks_max=limit,
            on_halt=halted,
            map_size=1024**3,
        )
        for key in validator_keys(4)
    ]
    return hub, genesis, drivers


async def growth(blocks: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        _, _, drivers = four_nodes(Path(directory))
        for driver in drivers:
            driver.start()
        chain = drivers[0].chain
        env = chain.store._env

        def used() -> int:
            return int((env.info()["last_pgno"] + 1) * env.stat()["psize"])

        await wait_for(lambda: chain.height >= 100, 300)
        start_height, start_used = chain.height, used()
        await wait_for(lambda: chain.height >= start_height + blocks, 3600)
        height = chain.height
        block, record = chain.store.block(height), chain.store.commit_record(height)
        assert block is not None and record is not None
        per_block = (used() - start_used) / (height - start_height)
        print(
            f"{height - start_height} empty blocks: {per_block:.0f} bytes of LMDB pages per block"
            f" (encoded block {len(encode(block))} B, commit record {len(encode(record))} B)"
        )
        for driver in drivers:
            driver.close()


async def catchup(gap: int, limit: int, wait_s: float) -> None:
    with tempfile.TemporaryDirectory() as directory:
        hub, _, drivers = four_nodes(Path(directory), limit)
        late = drivers[3]
        hub.down.add(late.replica.node_id)
        for driver in drivers:
            driver.start()
        await wait_for(lambda: drivers[0].chain.height >= gap, 3600)
        behind = drivers[0].chain.height - late.chain.height
        hub.down.discard(late.replica.node_id)
        started = time.monotonic()
        try:
            await wait_for(lambda: late.chain.height >= drivers[0].chain.height - 5, wait_s)
            outcome = f"caught up in {time.monotonic() - started:.1f} s"
        except AssertionError:
            dropped = {k: v for k, v in late.replica.counters.dropped.items() if "fetch" in k}
            outcome = f"not caught up after {wait_s:.0f} s (height {late.chain.height}; {dropped})"
        print(f"{behind} blocks behind, fetched_blocks_max {limit}: {outcome}")
        for driver in drivers:
            driver.close()


async def idle(seconds: float, transfers: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        _, genesis, drivers = four_nodes(Path(directory))
        for driver in drivers:
            driver.start()
        chain = drivers[0].chain
        await wait_for(lambda: chain.height >= 20, 300)
        await asyncio.sleep(2.0)  # warm-up: the adaptive timer settles
        height, started = chain.height, time.monotonic()
        timeouts = sum(d.counters.timeouts for d in drivers)
        pauses = sum(d.counters.idle_pauses for d in drivers)
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - started
        blocks = chain.height - height
        timeouts = sum(d.counters.timeouts for d in drivers) - timeouts
        pauses = sum(d.counters.idle_pauses for d in drivers) - pauses
        latencies = []
        for nonce in range(transfers):
            raw = transfer(genesis, "alice", "bob", 1, nonce)
            tx_id = chain.engine.transaction_id(raw)
            sent = time.monotonic()
            admission = drivers[nonce % 4].submit(raw)
            assert admission.ok, admission.code
            await wait_for(lambda: chain.store.receipt(tx_id) is not None, 60)  # noqa: B023
            latencies.append((time.monotonic() - sent) * 1000)
            await asyncio.sleep(1.0)  # idle again before the next one
        latencies.sort()
        print(
            f"idle {elapsed:.0f} s: {blocks / elapsed:.1f} blocks/s, {timeouts} round timeouts,"
            f" {pauses} empty payloads held back; {transfers} transfers, submit to receipt:"
            f" median {latencies[len(latencies) // 2]:.0f} ms, worst {latencies[-1]:.0f} ms"
        )
        for driver in drivers:
            driver.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="figure", required=True)
    grow = commands.add_parser("growth")
    grow.add_argument("--blocks", type=int, default=1000)
    catch = commands.add_parser("catchup")
    catch.add_argument("--gap", type=int, default=200)
    catch.add_argument("--limit", type=int, default=64)
    catch.add_argument("--wait", type=float, default=30.0)
    quiet = commands.add_parser("idle")
    quiet.add_argument("--seconds", type=float, default=20.0)
    quiet.add_argument("--transfers", type=int, default=20)
    quiet.add_argument("--no-pacing", action="store_true")
    args = parser.parse_args()
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )
    if args.figure == "growth":
        asyncio.run(growth(args.blocks))
    elif args.figure == "idle":
        if args.no_pacing:
            driver_module.IDLE_DELAY_MAX_MS = 0
        asyncio.run(idle(args.seconds, args.transfers))
    else:
        asyncio.run(catchup(args.gap, args.limit, args.wait))


if __name__ == "__main__":
    main()
