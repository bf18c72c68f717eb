"""The CPU a validator spends per transaction, from four in-process nodes on one core.

Four real drivers (store, engine, mempool, replica) joined by the in-process network of
tests/node_helpers.py carry --transactions signed transfers between --accounts funded
accounts, submitted to node 0 in client batches of --batch (as POST /v1/txs does), until
every node has committed them. All four nodes share this one process, so its CPU time divided
by the committed transactions and by four is one validator's cost per transaction, free of
the noise that other processes add to a cluster's figures. 2 cores / (4 x that cost) bounds
what four validators sharing two cores can commit a second.

    python benchmarks/tx_cost.py [--transactions 20000] [--accounts 4000] [--batch 250]
                                 [--runs 3] [--profile] [--json FILE]

--profile adds a cProfile of the last run grouped by stage (admission, proposal, execution,
state commit, store, ...): where a validator's time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import logging
import pstats
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.node_helpers import (
    Hub,
    account_key,
    make_driver,
    make_genesis,
    transfer,
    validator_keys,
)

from consortia.node.collector import CollectorPolicy
from consortia.types.genesis import Genesis, GenesisAccount

BALANCE = 10**12

# Where a validator's time goes: functions that never call one another, so their inclusive
# times add up; "the rest" is everything else (consensus, frames, gossip, the loop).
STAGES = (
    ("admission (decode, signature, mempool)", "mempool/pool.py", "admit_many"),
    ("execution", "execution/engine.py", "execute_block"),
    ("state commit (Merkle tree)", "execution/engine.py", "commit"),
    ("store: committed block (LMDB)", "storage/store.py", "commit_block"),
    ("store: safety state (LMDB, fsync)", "storage/store.py", "persist_safety"),
    ("proposal payload check", "execution/membership.py", "check_payload"),
    ("block and payload hashing", "types/signing.py", "merkle_root"),
)


def genesis_with(accounts: int) -> tuple[Genesis, list[str]]:
    names = [f"acct-{index:06d}" for index in range(accounts)]
    public = account_key("bench")[1].hex()
    base = make_genesis(4)
    funded = [
        GenesisAccount(id=name, sponsor="bank-0", public_key=public, balance=BALANCE)
        for name in names
    ]
    return msgspec.structs.replace(base, accounts=funded), names


def signed_load(genesis: Genesis, names: list[str], count: int, seed: int) -> list[bytes]:
    """`count` transfers, round-robin over senders (each sender's nonces in order), signed
    with the one key every benchmark account shares."""
    rng = random.Random(seed)
    nonces = dict.fromkeys(names, 0)
    txs = []
    for index in range(count):
        sender = names[index % len(names)]
        to = names[rng.randrange(len(names))]
        txs.append(_transfer_from(genesis, sender, to, nonces[sender]))
        nonces[sender] += 1
    return txs


def _transfer_from(genesis: Genesis, sender: str, to: str, nonce: int) -> bytes:
    return transfer(genesis, sender, to, 1, nonce, expiry=100_000, key_of="bench")


async def one_run(txs: list[bytes], genesis: Genesis, batch: int, seed: int) -> float:
    """Process CPU seconds from the first submission until all four nodes committed all."""
    loop = asyncio.get_running_loop()
    hub = Hub(loop, random.Random(seed))
    with tempfile.TemporaryDirectory() as directory:
        drivers = [
            make_driver(hub, genesis, Path(directory), key, map_size=4 * 1024**3)
            for key in validator_keys(4)
        ]
        # The node process's garbage-collection policy (node/runtime.py does the same).
        collector = CollectorPolicy()
        collector.start()
        for driver in drivers:
            driver.on_commit.append(collector.committed)
            driver.around_commit = collector.paused
            driver.start()
        started = time.process_time()
        pending = list(txs)
        committed_max = len(txs)
        while min(d.counters.transactions_committed for d in drivers) < committed_max:
            # Keep the mempool fed, one client batch at a time, never more than a few blocks
            # ahead of what node 0 has committed.
            ahead = len(txs) - len(pending) - drivers[0].counters.transactions_committed
            while pending and ahead < 8 * batch:
                chunk, pending = pending[:batch], pending[batch:]
                refused = [a for a in drivers[0].submit_many(chunk) if not a.ok]
                assert not refused, refused[:3]
                ahead += len(chunk)
            await asyncio.sleep(0.002)
        cpu = time.process_time() - started
        vouching = [driver.vouching.counters for driver in drivers]
        print(
            "  passed-on transactions checked / admitted on vouching / waits expired:",
            sum(c.checked_here for c in vouching),
            sum(c.admitted_checked for c in vouching),
            sum(c.waits_expired for c in vouching),
        )
        hub.down.update(hub.drivers)
        for driver in drivers:
            driver.failed = "benchmark over"  # nothing more is handled or written
            driver.close()
            driver.chain.store.close()
    gc.unfreeze()
    return cpu


def stages(profile: cProfile.Profile) -> dict[str, float]:
    """Total seconds per stage (inclusive, top-level only) from a profile."""
    stats = pstats.Stats(profile)
    raw = stats.stats  # type: ignore[attr-defined]
    totals = dict.fromkeys((name for name, _, _ in STAGES), 0.0)
    for (filename, _, function), (_, _, _, cumulative, _) in raw.items():
        for name, path, wanted in STAGES:
            if function == wanted and filename.endswith(path):
                totals[name] += cumulative
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=20_000)
    parser.add_argument("--accounts", type=int, default=4_000)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))

    genesis, names = genesis_with(args.accounts)
    print(f"signing {args.transactions} transfers over {args.accounts} accounts ...")
    txs = signed_load(genesis, names, args.transactions, seed=1)
    costs = []
    for run in range(args.runs):
        profile = cProfile.Profile() if args.profile and run == args.runs - 1 else None
        if profile is not None:
            profile.enable()
        cpu = asyncio.run(one_run(txs, genesis, args.batch, seed=run))
        if profile is not None:
            profile.disable()
        per_tx_us = cpu / len(txs) / 4 * 1e6
        costs.append(per_tx_us)
        label = " (profiled)" if profile is not None else ""
        print(f"run {run + 1}: {per_tx_us:.0f} us of CPU per transaction per validator{label}")
    plain = costs[:-1] if args.profile and len(costs) > 1 else costs
    median = statistics.median(plain)
    result = {
        "transactions": args.transactions,
        "accounts": args.accounts,
        "batch": args.batch,
        "runs_us": [round(c, 1) for c in costs],
        "median_us_per_tx_per_validator": round(median, 1),
        "bound_tps_4_validators_2_cores": round(2 / (4 * median / 1e6)),
    }
    print(
        f"median {median:.0f} us per transaction per validator: four validators on two "
        f"cores commit at most {result['bound_tps_4_validators_2_cores']} a second"
    )
    if args.profile:
        totals = stages(profile)  # type: ignore[arg-type]
        whole = sum(costs[-1:]) * len(txs) * 4 / 1e6
        totals["the rest (consensus, frames, gossip, loop)"] = whole - sum(totals.values())
        print("where the profiled run's time went (share of its CPU):")
        for name, seconds in totals.items():
            print(f"  {name:42s} {100 * seconds / whole:5.1f}%")
        result["stages_share"] = {k: round(v / whole, 3) for k, v in totals.items()}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
