"""How long a restarting node takes to reopen its committed state, as the state grows.

For each size, a node's store is initialised with a genesis of that many funded accounts
(three state keys each, as `benchmarks/tx_cost.py` makes them), closed, and reopened by
`Chain` as a restarted node reopens it (with the collector paused): the state tree at the
stored height, its root checked against the stored state root, and the engine's current values
read from the tree's leaves, every node checked against the hash its parent names
(`JellyfishTree.stored_items`, many nodes a store transaction). Nothing
is re-executed. Reported per size: the keys read back and the median wall and CPU time of the
reopening over --runs.

    python benchmarks/reopen_bench.py [--accounts 10000,100000,300000] [--runs 3] [--out FILE]

Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.tx_cost import genesis_with

from consortia.node.chain import Chain
from consortia.node.collector import CollectorPolicy
from consortia.storage import NodeStore

MAP_SIZE = 16 * 1024**3


def reopen_size(accounts: int, runs: int) -> dict[str, float | int]:
    genesis, _ = genesis_with(accounts)
    walls, cpus, keys = [], [], 0
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "store"
        store = NodeStore(path, map_size=MAP_SIZE)
        Chain(genesis, store)  # initialises the store at height 0
        store.close()
        for _ in range(runs):
            store = NodeStore(path, map_size=MAP_SIZE)
            wall, cpu = time.perf_counter(), time.process_time()
            with CollectorPolicy().paused():  # as the node opens it
                chain = Chain(genesis, store)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
            keys = len(chain.engine.state)
            store.close()
            del chain
    return {
        "accounts": accounts,
        "keys": keys,
        "wall_s": round(statistics.median(walls), 3),
        "cpu_s": round(statistics.median(cpus), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", default="10000,100000,300000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    results = []
    print(f"{'accounts':>10} {'keys':>10} {'wall s':>8} {'cpu s':>8}")
    for accounts in (int(part) for part in args.accounts.split(",")):
        result = reopen_size(accounts, args.runs)
        results.append(result)
        print(
            f"{result['accounts']:>10,} {result['keys']:>10,} "
            f"{result['wall_s']:>8.2f} {result['cpu_s']:>8.2f}",
            flush=True,
        )
    if args.out:
        args.out.write_text(json.dumps({"runs": args.runs, "sizes": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
