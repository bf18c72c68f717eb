"""Throughput under attack: the commit rate with f Byzantine validators of each strategy,
relative to the fault-free run with the same seeds. The figure docs/consensus.md quotes.

    .venv/bin/python benchmarks/attack_figures.py --seeds 5 --json bench-results/attack.json

Simulated time (the machine's speed does not change the figures): links of 5-50 ms, a 1 s
base round timeout, no partitions. The rate is blocks first committed by an honest replica
per simulated second once the network is synchronous (twins need a partitioned start; the
other strategies run synchronous from the first round). Medians over seeds; every run must
also pass the checker. Exit status 1 when a ratio falls below --floor.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from consortia.sim import Scenario, run
from consortia.sim.adversary import STRATEGIES

FAULT_FREE = "fault-free"


def _rate(scenario: Scenario) -> tuple[str, int, int, float, bool]:
    result = run(scenario)
    name = scenario.strategies[0] if scenario.strategies else FAULT_FREE
    return name, scenario.nodes, scenario.seed, result.stable_blocks_per_second, result.ok


def _summarise(
    figures: dict[str, Any],
    rates: dict[tuple[int, str], list[float]],
    node_counts: list[int],
    floor: float,
) -> list[str]:
    """Medians and ratios into `figures`, a table on the console; the ratios below `floor`."""
    table = Table(title="blocks per simulated second, f Byzantine validators, no partitions")
    table.add_column("strategy")
    below = []
    for nodes in node_counts:
        table.add_column(f"n={nodes} (f={(nodes - 1) // 3})", justify="right")
        baseline = statistics.median(rates[(nodes, FAULT_FREE)])
        per_strategy = {}
        for name in (FAULT_FREE, *STRATEGIES):
            median = statistics.median(rates[(nodes, name)])
            ratio = median / baseline if baseline else 0.0
            per_strategy[name] = {"median": round(median, 3), "ratio": round(ratio, 3)}
            if ratio < floor:
                below.append(f"n={nodes} {name}: {ratio:.1%}")
        figures["nodes"][str(nodes)] = per_strategy
    for name in (FAULT_FREE, *STRATEGIES):
        cells = []
        for nodes in node_counts:
            entry = figures["nodes"][str(nodes)][name]
            cells.append(f"{entry['median']:.2f} ({entry['ratio']:.0%})")
        table.add_row(name, *cells)
    Console().print(table)
    return below


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--heights", type=int, default=300)
    parser.add_argument("--nodes", type=int, nargs="+", default=[4, 10])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--floor", type=float, default=0.70)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    scenarios = []
    for nodes in args.nodes:
        faulty = (nodes - 1) // 3
        base = Scenario(nodes=nodes, heights=args.heights)
        for name in (FAULT_FREE, *STRATEGIES):
            attacked = (
                base
                if name == FAULT_FREE
                else dataclasses.replace(base, byzantine=faulty, strategies=(name,))
            )
            scenarios += [dataclasses.replace(attacked, seed=seed) for seed in range(args.seeds)]
    rates: dict[tuple[int, str], list[float]] = {}
    failing: list[str] = []
    console = Console(stderr=True)
    context = multiprocessing.get_context("spawn")
    columns = [
        TextColumn("[bold]simulating"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    ]
    with (
        Progress(*columns, console=console) as progress,
        ProcessPoolExecutor(max_workers=max(1, args.jobs), mp_context=context) as pool,
    ):
        task = progress.add_task("runs", total=len(scenarios))
        for scenario, (name, nodes, _seed, rate, ok) in zip(
            scenarios, pool.map(_rate, scenarios), strict=True
        ):
            rates.setdefault((nodes, name), []).append(rate)
            if not ok:
                failing.append(scenario.command())
            progress.update(task, advance=1)
    figures: dict[str, Any] = {
        "seeds": args.seeds,
        "heights": args.heights,
        "round_timeout_ms": Scenario().round_timeout_ms,
        "latency_ms": [Scenario().latency_ms_min, Scenario().latency_ms_max],
        "floor": args.floor,
        "nodes": {},
        "failing_runs": failing,
    }
    below = _summarise(figures, rates, args.nodes, args.floor)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    for line in failing:
        console.print(f"[red]failing run[/]: {line}")
    for line in below:
        console.print(f"[red]below the floor of {args.floor:.0%}[/]: {line}")
    if failing or below:
        sys.exit(1)


if __name__ == "__main__":
    main()
