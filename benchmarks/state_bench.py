"""What a block's state commit and a state proof cost, in the bucketed `StateTree` and in the
versioned sparse Merkle tree (`JellyfishTree`), as the state grows.

For each size, both trees are loaded with the same keys (the sparse tree in batches, through a
`MemoryNodeStore`, as a node would write them), then each run commits the same block of
`--writes` random writes to both: half updates of present keys, half new keys. Reported per
size: the median commit time over `--runs` (wall clock and CPU time of this process; the CPU
time is the steadier on a shared machine), what a commit hands the store (nodes and bytes), and
for `--proofs` random present keys the median time to build and to verify a proof and the
median proof size (the sparse tree's as its canonical encoding; the bucketed tree's as the bytes
of its fields), and the median time to read one of those keys at the latest version (the
bucketed tree reads a dict; the sparse tree walks from the root, through its node cache). Each
key is read first, so the read finds the node cache cold and the proof then finds it warm. The
sparse tree keeps only its loaded version (the preload's stale nodes are pruned). The garbage
collector runs before each timed commit, so one run does not pay for another's garbage.

    python benchmarks/state_bench.py [--sizes 10000,100000,400000] [--writes 1000] [--runs 5]
        [--proofs 200] [--cache-nodes 65536] [--suite intl] [--seed 1] [--out FILE]

Prints a table and writes JSON (`--out`).
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from consortia.execution.state import StateProof, StateTree, verify_state_proof
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from consortia.crypto import Suite
from consortia.crypto import suite as get_suite
from consortia.execution.jmt import (
    CACHE_NODES_DEFAULT,
    JellyfishTree,
    MemoryNodeStore,
    verify_proof,
)
from consortia.types.encoding import encode

KEY_SIZE = 24
VALUE_SIZE = 64
PRELOAD_BATCH = 50_000


def timed(action: Callable[[], object]) -> tuple[float, float]:
    """(wall ms, CPU ms) of one call, after a collection."""
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    return (time.perf_counter() - wall) * 1e3, (time.process_time() - cpu) * 1e3


def old_proof_size(proof: StateProof) -> int:
    hashes = len(proof.bucket_leaves) + len(proof.bucket_roots)
    return len(proof.key) + len(proof.value or b"") + 1 + 32 * hashes


class Pair:
    """The two trees over one state, written in step."""

    def __init__(self, suite: Suite, cache_nodes: int) -> None:
        self.suite = suite
        self.old = StateTree(suite)
        self.store = MemoryNodeStore()
        self.new = JellyfishTree(suite, self.store.read, cache_nodes_max=cache_nodes)
        self.keys: list[bytes] = []

    def preload(self, rng: random.Random, size: int, progress: Progress) -> None:
        task = progress.add_task(f"preload {size:,} keys", total=2 * size)
        state: dict[bytes, bytes] = {}
        while len(state) < size:
            state[rng.randbytes(KEY_SIZE)] = rng.randbytes(VALUE_SIZE)
        items = list(state.items())
        for start in range(0, size, PRELOAD_BATCH):
            batch = dict(items[start : start + PRELOAD_BATCH])
            version = 0 if self.new.version is None else self.new.version + 1
            self.store.write(self.new.apply(version, batch))
            progress.advance(task, len(batch))
        # Keep only the loaded version, as a node with a short retention would.
        assert self.new.version is not None
        self.store.prune(self.new.version)
        self.new.retain_from(self.new.version)
        # The bucketed tree loads a state in one call, as its height 0.
        self.old.initialise(state)
        progress.advance(task, size)
        self.keys = list(state)

    def block(self, rng: random.Random, writes: int) -> dict[bytes, bytes | None]:
        block: dict[bytes, bytes | None] = {}
        for key in rng.sample(self.keys, writes // 2):
            block[key] = rng.randbytes(VALUE_SIZE)
        while len(block) < writes:
            key = rng.randbytes(KEY_SIZE)
            block[key] = rng.randbytes(VALUE_SIZE)
            self.keys.append(key)
        return block


def measure_commits(pair: Pair, rng: random.Random, writes: int, runs: int) -> dict[str, Any]:
    old_wall, old_cpu, new_wall, new_cpu, nodes, node_bytes, stale, misses = ([] for _ in range(8))
    for _ in range(runs):
        block = pair.block(rng, writes)
        height = pair.old.height + 1
        version = (pair.new.version or 0) + 1
        wall, cpu = timed(lambda: pair.old.apply(height, block))  # noqa: B023
        old_wall.append(wall)
        old_cpu.append(cpu)
        updates = []
        misses_before = pair.new.cache_misses
        wall, cpu = timed(lambda: updates.append(pair.new.apply(version, block)))  # noqa: B023
        new_wall.append(wall)
        new_cpu.append(cpu)
        (update,) = updates
        assert pair.new.root_hash() == update.root
        pair.store.write(update)
        nodes.append(len(update.nodes))
        node_bytes.append(sum(len(data) for data in update.nodes.values()))
        stale.append(len(update.stale))
        misses.append(pair.new.cache_misses - misses_before)
    return {
        "old": {"commit_ms": old_wall, "commit_cpu_ms": old_cpu},
        "new": {
            "commit_ms": new_wall,
            "commit_cpu_ms": new_cpu,
            "nodes_written": nodes,
            "bytes_written": node_bytes,
            "nodes_stale": stale,
            "cache_misses": misses,
        },
    }


def measure_proofs(pair: Pair, rng: random.Random, proofs: int) -> dict[str, Any]:
    suite = pair.suite
    old_root, new_root = pair.old.root, pair.new.root_hash()
    result: dict[str, dict[str, list[float]]] = {
        "old": {"read_us": [], "prove_us": [], "verify_us": [], "proof_bytes": []},
        "new": {"read_us": [], "prove_us": [], "verify_us": [], "proof_bytes": [], "levels": []},
    }
    for key in rng.sample(pair.keys, proofs):
        for tree, read in (("old", pair.old.get), ("new", pair.new.get)):
            start = time.perf_counter()
            read(key)
            result[tree]["read_us"].append((time.perf_counter() - start) * 1e6)
        start = time.perf_counter()
        old = pair.old.prove(key)
        middle = time.perf_counter()
        assert verify_state_proof(suite, old_root, old)
        end = time.perf_counter()
        result["old"]["prove_us"].append((middle - start) * 1e6)
        result["old"]["verify_us"].append((end - middle) * 1e6)
        result["old"]["proof_bytes"].append(old_proof_size(old))

        start = time.perf_counter()
        value, new = pair.new.get_with_proof(key)
        middle = time.perf_counter()
        assert verify_proof(suite, new_root, key, value, new)
        end = time.perf_counter()
        result["new"]["prove_us"].append((middle - start) * 1e6)
        result["new"]["verify_us"].append((end - middle) * 1e6)
        result["new"]["proof_bytes"].append(len(encode(new)))
        result["new"]["levels"].append(len(new.bitmaps))
    return result


def median(values: list[float]) -> float:
    return statistics.median(values)


def run_size(args: argparse.Namespace, size: int, progress: Progress) -> dict[str, Any]:
    rng = random.Random(args.seed * 1_000_003 + size)
    pair = Pair(get_suite(args.suite), args.cache_nodes)
    pair.preload(rng, size, progress)
    commits = measure_commits(pair, rng, args.writes, args.runs)
    proofs = measure_proofs(pair, rng, args.proofs)
    summary: dict[str, Any] = {"size": size}
    for tree in ("old", "new"):
        raw = {**commits[tree], **proofs[tree]}
        summary[tree] = {
            "median": {name: median(values) for name, values in raw.items()},
            "runs": raw,
        }
    summary["new"]["store_nodes"] = len(pair.store)
    summary["new"]["store_bytes"] = sum(len(data) for data in pair.store.nodes.values())
    return summary


def table(results: list[dict[str, Any]], args: argparse.Namespace) -> Table:
    out = Table(
        title=f"state commit of {args.writes:,} writes (median of {args.runs}) and proofs "
        f"(median of {args.proofs}), suite {args.suite}, node cache {args.cache_nodes:,}"
    )
    for column in (
        "keys",
        "tree",
        "commit ms",
        "commit CPU ms",
        "nodes / KiB written",
        "read µs",
        "proof bytes",
        "prove µs",
        "verify µs",
    ):
        out.add_column(column, justify="right")
    for result in results:
        for tree, name in (("old", "buckets"), ("new", "sparse")):
            median_of = result[tree]["median"]
            written = (
                f"{median_of['nodes_written']:,.0f} / {median_of['bytes_written'] / 1024:,.0f}"
                if tree == "new"
                else "-"
            )
            out.add_row(
                f"{result['size']:,}",
                name,
                f"{median_of['commit_ms']:,.1f}",
                f"{median_of['commit_cpu_ms']:,.1f}",
                written,
                f"{median_of['read_us']:,.1f}",
                f"{median_of['proof_bytes']:,.0f}",
                f"{median_of['prove_us']:,.0f}",
                f"{median_of['verify_us']:,.0f}",
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,400000")
    parser.add_argument("--writes", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--proofs", type=int, default=200)
    parser.add_argument("--cache-nodes", type=int, default=CACHE_NODES_DEFAULT)
    parser.add_argument("--suite", default="intl", choices=["intl", "gm"])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    console = Console(width=132)
    results = []
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        for size in sizes:
            results.append(run_size(args, size, progress))
    console.print(table(results, args))
    if args.out:
        settings = {k: v for k, v in vars(args).items() if k != "out"}
        args.out.write_text(json.dumps({"settings": settings, "results": results}, indent=2))
        console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
