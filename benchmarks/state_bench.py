"""What a block's state commit, a read and a state proof cost in the versioned sparse Merkle
tree (`JellyfishTree`), as the state grows.

For each size, the tree is loaded with that many keys (in batches, through a
`MemoryNodeStore`, as a node would write them), then each run commits one block of `--writes`
random writes: half updates of present keys, half new keys, passing the present keys as the
engine does (so the leaves of updated keys are replaced without being read). Reported per
size: the median commit time over `--runs` (wall clock and CPU time of this process; the CPU
time is the steadier on a shared machine), the mean CPU time (which, unlike the median, counts
the garbage collector's occasional full collections, paid in proportion to the objects the
process tracks), what a commit hands the store (nodes and bytes), and
for `--proofs` random present keys the median time to read one at the latest version through
the tree (the engine reads current values from a dict instead; the tree serves past heights),
to build and to verify a proof, and the median proof size (its canonical encoding). Each key is
read first, so the read finds the leaf in the store and the proof then walks the same path. The
tree keeps only its loaded version (the preload's stale nodes are pruned). Commits run back to
back, as a node's do, the garbage collector left as it is (a full collection forced before each
commit would evict the tree's nodes from the CPU caches and measure a cold commit; the
preload's garbage is collected once, before a first, untimed commit).

    python benchmarks/state_bench.py [--sizes 10000,100000,300000] [--writes 1000] [--runs 15]
        [--proofs 200] [--cache-nodes 524288] [--suite intl] [--seed 1] [--out FILE]
        [--updates-only] [--python]

`--updates-only`: every write updates a present key (a block of transfers). `--python`: the
tree's Python write path even where the C one (`_jmt_native.c`, SHA-256 suite) would run, to
measure one against the other.

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
    """(wall ms, CPU ms) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    return (time.perf_counter() - wall) * 1e3, (time.process_time() - cpu) * 1e3


class Loaded:
    """The tree over one state, and the state's keys (the engine's current values)."""

    def __init__(self, suite: Suite, cache_nodes: int, *, native: bool = True) -> None:
        self.suite = suite
        self.present: set[bytes] = set()
        self.store = MemoryNodeStore()
        self.tree = JellyfishTree(
            suite, self.store.read, cache_nodes_max=cache_nodes, native=native
        )
        self.keys: list[bytes] = []

    def preload(self, rng: random.Random, size: int, progress: Progress) -> None:
        task = progress.add_task(f"preload {size:,} keys", total=2 * size)
        state: dict[bytes, bytes] = {}
        while len(state) < size:
            state[rng.randbytes(KEY_SIZE)] = rng.randbytes(VALUE_SIZE)
        items = list(state.items())
        for start in range(0, size, PRELOAD_BATCH):
            batch = dict(items[start : start + PRELOAD_BATCH])
            version = 0 if self.tree.version is None else self.tree.version + 1
            self.store.write(self.tree.apply(version, batch, self.present))
            self.present.update(batch)
            progress.advance(task, len(batch))
        # Keep only the loaded version, as a node with a short retention would.
        assert self.tree.version is not None
        self.store.prune(self.tree.version)
        self.tree.retain_from(self.tree.version)
        progress.advance(task, size)
        self.keys = list(state)

    def block(
        self, rng: random.Random, writes: int, *, updates_only: bool = False
    ) -> dict[bytes, bytes | None]:
        block: dict[bytes, bytes | None] = {}
        for key in rng.sample(self.keys, writes if updates_only else writes // 2):
            block[key] = rng.randbytes(VALUE_SIZE)
        while len(block) < writes:
            key = rng.randbytes(KEY_SIZE)
            block[key] = rng.randbytes(VALUE_SIZE)
            self.keys.append(key)
        return block


def measure_commits(
    loaded: Loaded, rng: random.Random, writes: int, runs: int, *, updates_only: bool = False
) -> dict[str, Any]:
    wall_ms, cpu_ms, nodes, node_bytes, stale, misses = ([] for _ in range(6))
    gc.collect()
    for run in range(runs + 1):
        block = loaded.block(rng, writes, updates_only=updates_only)
        version = (loaded.tree.version or 0) + 1
        updates = []
        misses_before = loaded.tree.cache_misses
        wall, cpu = timed(
            lambda: updates.append(loaded.tree.apply(version, block, loaded.present))  # noqa: B023
        )
        (update,) = updates
        assert loaded.tree.root_hash() == update.root
        loaded.store.write(update)
        loaded.present.update(key for key, value in block.items() if value is not None)
        if run == 0:
            continue  # the warm-up
        wall_ms.append(wall)
        cpu_ms.append(cpu)
        nodes.append(len(update.nodes))
        node_bytes.append(sum(len(data) for data in update.nodes.values()))
        stale.append(len(update.stale))
        misses.append(loaded.tree.cache_misses - misses_before)
    return {
        "commit_ms": wall_ms,
        "commit_cpu_ms": cpu_ms,
        "nodes_written": nodes,
        "bytes_written": node_bytes,
        "nodes_stale": stale,
        "cache_misses": misses,
    }


def measure_proofs(loaded: Loaded, rng: random.Random, proofs: int) -> dict[str, list[float]]:
    suite = loaded.suite
    root = loaded.tree.root_hash()
    result: dict[str, list[float]] = {
        "read_us": [],
        "prove_us": [],
        "verify_us": [],
        "proof_bytes": [],
        "levels": [],
    }
    for key in rng.sample(loaded.keys, proofs):
        start = time.perf_counter()
        loaded.tree.get(key)
        result["read_us"].append((time.perf_counter() - start) * 1e6)
        start = time.perf_counter()
        value, proof = loaded.tree.get_with_proof(key)
        middle = time.perf_counter()
        assert verify_proof(suite, root, key, value, proof)
        end = time.perf_counter()
        result["prove_us"].append((middle - start) * 1e6)
        result["verify_us"].append((end - middle) * 1e6)
        result["proof_bytes"].append(len(encode(proof)))
        result["levels"].append(len(proof.bitmaps))
    return result


def median(values: list[float]) -> float:
    return statistics.median(values)


def run_size(args: argparse.Namespace, size: int, progress: Progress) -> dict[str, Any]:
    rng = random.Random(args.seed * 1_000_003 + size)
    loaded = Loaded(get_suite(args.suite), args.cache_nodes, native=not args.python)
    loaded.preload(rng, size, progress)
    raw = {**measure_commits(loaded, rng, args.writes, args.runs, updates_only=args.updates_only)}
    raw.update(measure_proofs(loaded, rng, args.proofs))
    return {
        "size": size,
        "median": {name: median(values) for name, values in raw.items()},
        "mean_commit_cpu_ms": statistics.mean(raw["commit_cpu_ms"]),
        "runs": raw,
        "store_nodes": len(loaded.store),
        "store_bytes": sum(len(data) for data in loaded.store.nodes.values()),
    }


def table(results: list[dict[str, Any]], args: argparse.Namespace) -> Table:
    out = Table(
        title=f"state commit of {args.writes:,} writes"
        f"{' (updates only)' if args.updates_only else ''}"
        f"{', Python write path' if args.python else ''} (median of {args.runs}) and proofs "
        f"(median of {args.proofs}), suite {args.suite}, node cache {args.cache_nodes:,}"
    )
    for column in (
        "keys",
        "commit ms",
        "commit CPU ms",
        "mean CPU ms",
        "nodes / KiB written",
        "read µs",
        "proof bytes",
        "prove µs",
        "verify µs",
    ):
        out.add_column(column, justify="right")
    for result in results:
        median_of = result["median"]
        out.add_row(
            f"{result['size']:,}",
            f"{median_of['commit_ms']:,.1f}",
            f"{median_of['commit_cpu_ms']:,.1f}",
            f"{result['mean_commit_cpu_ms']:,.1f}",
            f"{median_of['nodes_written']:,.0f} / {median_of['bytes_written'] / 1024:,.0f}",
            f"{median_of['read_us']:,.1f}",
            f"{median_of['proof_bytes']:,.0f}",
            f"{median_of['prove_us']:,.0f}",
            f"{median_of['verify_us']:,.0f}",
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,300000")
    parser.add_argument("--writes", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--proofs", type=int, default=200)
    parser.add_argument("--cache-nodes", type=int, default=CACHE_NODES_DEFAULT)
    parser.add_argument("--suite", default="intl", choices=["intl", "gm"])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--updates-only", action="store_true")
    parser.add_argument("--python", action="store_true")
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
