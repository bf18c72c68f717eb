"""The state tree's commit CPU of two source trees, measured in lockstep on a shared machine.

Two worker processes, one per source tree (`--base`, `--branch`: repository roots whose `src`
is imported), each load the same state (--keys accounts) and commit the same blocks (--writes
writes each, the same seed) under the node's garbage-collection policy. The driver lets them
commit one block at a time, alternating which goes first, so that load from other jobs falls
on both alike; it checks that both reach the same root at every block and prints the median
CPU per written key of each and the median of the per-block ratios (branch / base) with its
quartiles. On a machine shared with other jobs, separate runs minutes apart differ by more
than the changes this is for; block-by-block pairs do not.

    python benchmarks/tree_lockstep.py --branch PATH [--base PATH] [--mode present|mixed]
                                       [--blocks 150] [--keys 20000] [--writes 2400]

`present`: every write updates a present key (a block of transfers); `mixed`: half updates,
half new keys. A worker is this file run with `--worker` (it imports the tree from its source
tree's `src`, put first on its path).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

from consortia.crypto import suite
from consortia.execution.committed import CommittedState
from consortia.node.collector import CollectorPolicy


def worker(args: argparse.Namespace) -> None:
    keys = [b"asset/balance/%d" % n for n in range(args.keys)]
    state = CommittedState(suite("intl"))
    state.initialise({key: b"v" + key for key in keys})
    rng = random.Random(args.seed)
    collector = CollectorPolicy()
    collector.start()
    for height, _ in enumerate(sys.stdin, start=1):
        if args.mode == "present":
            writes = {key: rng.randbytes(40) for key in rng.sample(keys, args.writes)}
        else:
            writes = {key: rng.randbytes(40) for key in rng.sample(keys, args.writes // 2)}
            new = [rng.randbytes(20) for _ in range(args.writes - args.writes // 2)]
            keys.extend(new)
            writes.update({key: rng.randbytes(40) for key in new})
        started = time.process_time()
        state.apply(height, writes)
        elapsed = time.process_time() - started
        collector.committed()
        print(f"{elapsed / len(writes) * 1e6:.3f} {state.root.hex()}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--branch", type=Path, required="--worker" not in sys.argv)
    parser.add_argument("--mode", choices=["present", "mixed"], default="present")
    parser.add_argument("--blocks", type=int, default=150)
    parser.add_argument("--keys", type=int, default=20_000)
    parser.add_argument("--writes", type=int, default=2_400)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--worker", action="store_true")
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    assert args.blocks >= 1 and 1 <= args.writes <= args.keys
    command = [sys.executable, __file__, "--worker", "--mode", args.mode]
    command += ["--keys", str(args.keys), "--writes", str(args.writes), "--seed", str(args.seed)]

    def start(root: Path) -> subprocess.Popen[str]:
        env = {**os.environ, "PYTHONPATH": str(root.resolve() / "src")}
        return subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )

    base, branch = start(args.base), start(args.branch)
    assert base.stdin and base.stdout and branch.stdin and branch.stdout
    times: dict[int, list[float]] = {base.pid: [], branch.pid: []}
    for block in range(args.blocks):
        roots = []
        for process in (base, branch) if block % 2 == 0 else (branch, base):
            assert process.stdin and process.stdout
            process.stdin.write("commit\n")
            process.stdin.flush()
            cpu, root = process.stdout.readline().split()
            times[process.pid].append(float(cpu))
            roots.append(root)
        assert roots[0] == roots[1], f"block {block + 1}: the roots differ"
    for process in (base, branch):
        assert process.stdin
        process.stdin.close()
        process.wait()
    base_us, branch_us = times[base.pid], times[branch.pid]
    ratios = statistics.quantiles(
        [mine / theirs for mine, theirs in zip(branch_us, base_us, strict=True)], n=4
    )
    print(
        f"{args.mode}, {args.blocks} blocks of {args.writes} writes over {args.keys:,} keys, "
        f"roots equal: base {statistics.median(base_us):.2f} us a key, branch "
        f"{statistics.median(branch_us):.2f}; branch / base per block: median {ratios[1]:.3f} "
        f"(quartiles {ratios[0]:.3f}-{ratios[2]:.3f})"
    )


if __name__ == "__main__":
    main()
