"""How fast the verified mirror catches up: blocks of signed transfers, checked, executed
again and written into a real PostgreSQL.

A fake node (tests/mirror_helpers.py: the chain built with the project's engine and certified
with the test validators' keys) serves --blocks blocks of --per-block transfers among
--accounts accounts, through an in-process HTTP transport (the JSON and hex of every answer,
no sockets). The mirror (consortia.mirror) follows it from the genesis into a throwaway
PostgreSQL server (tests/pg_helpers.py; --durable: with fsync and synchronous commits, as a
production server) and the run prints where its time went: checking and executing blocks
(signatures verified in batches on every core), writing them (one transaction a batch), and
the rest (fetching, decoding answers, the loop).

    python benchmarks/mirror_bench.py [--blocks 20] [--per-block 1000] [--accounts 4000]
                                      [--batch-blocks 64] [--durable] [--json FILE]

Compare transactions_per_s with what the cluster commits (docs/node.md, *Throughput under
load*: about 1,000 transfers a second on the 2-core development machine).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import random
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.mirror_helpers import FakeNode
from tests.node_helpers import account_key, make_genesis, transfer
from tests.pg_helpers import postgres_server

from consortia.mirror.database import MirrorDatabase
from consortia.mirror.follow import FollowSettings, Mirror
from consortia.mirror.replay import Replayer
from consortia.mirror.source import NodeSource
from consortia.types.genesis import Genesis, GenesisAccount

BALANCE = 10**12


def genesis_with(accounts: int) -> tuple[Genesis, list[str]]:
    names = [f"acct-{index:06d}" for index in range(accounts)]
    public = account_key("bench")[1].hex()
    funded = [
        GenesisAccount(id=name, sponsor="bank-0", public_key=public, balance=BALANCE)
        for name in names
    ]
    return msgspec.structs.replace(make_genesis(4), accounts=funded), names


def chain(blocks: int, per_block: int, accounts: int, seed: int) -> FakeNode:
    genesis, names = genesis_with(accounts)
    node = FakeNode(genesis)
    rng = random.Random(seed)
    nonces = dict.fromkeys(names, 0)
    sender = 0
    for _ in range(blocks):
        payload = []
        for _ in range(per_block):
            name = names[sender % len(names)]
            to = names[rng.randrange(len(names))]
            payload.append(
                transfer(genesis, name, to, 1, nonces[name], expiry=100_000, key_of="bench")
            )
            nonces[name] += 1
            sender += 1
        node.add_block(payload)
    return node


def run(node: FakeNode, *, durable: bool, batch_blocks: int) -> dict[str, Any]:
    applying = [0.0]
    original = Replayer.apply

    def timed(self: Replayer, *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(self, *args)
        finally:
            applying[0] += time.perf_counter() - started

    Replayer.apply = timed  # type: ignore[method-assign]
    try:
        with postgres_server(durable=durable) as pg:
            dsn = pg.schema("bench")
            settings = dataclasses.replace(
                FollowSettings(),
                until_height=node.height,
                batch_blocks_max=batch_blocks,
                log_every_s=3600.0,
            )
            mirror = Mirror(
                node.genesis,
                NodeSource("http://fake-node", transport=node.transport()),
                lambda: MirrorDatabase.connect(dsn),
                settings=settings,
            )
            started, cpu = time.perf_counter(), time.process_time()
            reached = mirror.run()
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu
            writing = mirror.metrics.write_seconds._sum.get()
    finally:
        Replayer.apply = original  # type: ignore[method-assign]
    assert reached.height == node.height and reached.state_root == node.roots[node.height]
    transactions = sum(len(b.payload) for b in node.blocks.values())
    return {
        "blocks": node.height,
        "transactions": transactions,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "transactions_per_s": round(transactions / wall, 1),
        "check_and_execute_us_per_tx": round(applying[0] / transactions * 1e6, 1),
        "write_us_per_tx": round(writing / transactions * 1e6, 1),
        "rest_us_per_tx": round((wall - applying[0] - writing) / transactions * 1e6, 1),
        "durable": durable,
        "batch_blocks": batch_blocks,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--per-block", type=int, default=1000)
    parser.add_argument("--accounts", type=int, default=4000)
    parser.add_argument("--batch-blocks", type=int, default=64)
    parser.add_argument("--durable", action="store_true")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path)
    options = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    started = time.perf_counter()
    node = chain(options.blocks, options.per_block, options.accounts, options.seed)
    built = time.perf_counter() - started
    print(f"chain: {node.height} blocks built and certified in {built:.1f} s")
    result = run(node, durable=options.durable, batch_blocks=options.batch_blocks)
    result["chain_build_s"] = round(built, 1)
    for key, value in result.items():
        print(f"{key:>30}: {value}")
    if options.json is not None:
        options.json.parent.mkdir(parents=True, exist_ok=True)
        options.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
