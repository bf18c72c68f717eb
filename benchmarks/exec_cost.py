"""The CPU the execution engine alone spends per signed `asset.transfer`.

One engine built from the benchmark genesis of tx_cost.py (every built-in contract deployed,
--accounts funded accounts) executes --transactions pre-signed transfers in blocks of
--block, each transaction handed over as already verified (`known`), as a node's mempool
does, under the node's garbage-collection policy. Prints the CPU per transaction of
`execute_block` and of `commit` (the state tree) separately, per run, and their medians and
minimums, and the first quartile of the blocks' execution cost (on a machine shared with
other load, the figure it disturbs least).

    python benchmarks/exec_cost.py [--transactions 20000] [--accounts 4000] [--block 500]
                                   [--runs 5] [--profile FILE]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.tx_cost import genesis_with, signed_load

from consortia.execution.builtin import BUILTIN_CONTRACTS
from consortia.execution.genesis import engine_from_genesis
from consortia.node.collector import CollectorPolicy
from consortia.types.encoding import decode
from consortia.types.signing import transaction_id
from consortia.types.transaction import Transaction


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=20_000)
    parser.add_argument("--accounts", type=int, default=4_000)
    parser.add_argument("--block", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", type=Path)
    args = parser.parse_args()

    genesis, names = genesis_with(args.accounts)
    txs = signed_load(genesis, names, args.transactions, seed=1)
    execute_us, commit_us, block_us = [], [], []
    for run in range(args.runs):
        engine = engine_from_genesis(genesis, BUILTIN_CONTRACTS)
        known = {}
        for raw in txs:
            tx = decode(raw, Transaction)
            known[raw] = (transaction_id(engine.suite, tx.body), tx)
        blocks = [txs[i : i + args.block] for i in range(0, len(txs), args.block)]
        profile = cProfile.Profile() if args.profile and run == args.runs - 1 else None
        collector = CollectorPolicy()  # the node's garbage-collection policy
        collector.start()
        executing = committing = 0.0
        for height, block in enumerate(blocks, start=1):
            started = time.process_time()
            if profile is not None:
                profile.enable()
            result = engine.execute_block(height, height * 1000, block, known=known.get)
            if profile is not None:
                profile.disable()
            middle = time.process_time()
            engine.commit()
            collector.committed()
            executing += middle - started
            block_us.append((middle - started) / len(block) * 1e6)
            committing += time.process_time() - middle
            assert all(r.ok for r in result.receipts), result.receipts[0]
        execute_us.append(executing / len(txs) * 1e6)
        commit_us.append(committing / len(txs) * 1e6)
        print(f"run {run + 1}: execute {execute_us[-1]:.1f} us/tx, commit {commit_us[-1]:.1f}")
        if profile is not None:
            profile.dump_stats(args.profile)
        gc.unfreeze()
    print(
        f"median (min): execute_block {statistics.median(execute_us):.1f} "
        f"({min(execute_us):.1f}) us per transaction, commit {statistics.median(commit_us):.1f} "
        f"({min(commit_us):.1f}) us"
    )
    quiet = statistics.quantiles(block_us, n=4)[0]
    print(f"execute_block, the quietest quarter of blocks: {quiet:.1f} us per transaction")


if __name__ == "__main__":
    main()
