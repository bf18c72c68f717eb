"""The simulator figures quoted in docs/consensus.md, reproducible from one command.

    .venv/bin/python benchmarks/consensus_figures.py --seeds 5 --json out.json

Prints, from the deterministic simulator (simulated time, so the machine's speed does not
matter): messages per committed block at n = 4, 16 and 64; commit latency in network round
trips; and the commit rate with f validators crashed for good relative to none, with and
without leader reputation. Medians over seeds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import statistics
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from consortia.sim import Scenario, run


def _one(scenario: Scenario) -> dict[str, Any]:
    result = run(scenario)
    assert result.ok, scenario.command()
    return {
        "messages_per_block": result.messages_per_block,
        "commit_latency_round_trips": result.commit_latency_round_trips,
        "blocks_per_simulated_second": result.blocks_per_second,
        "rounds_per_commit": result.rounds_per_commit,
    }


def _median(pool: ProcessPoolExecutor, base: Scenario, seeds: int) -> dict[str, float]:
    runs = list(pool.map(_one, [dataclasses.replace(base, seed=s) for s in range(seeds)]))
    return {key: round(statistics.median(r[key] for r in runs), 3) for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--heights", type=int, default=500)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    figures: dict[str, Any] = {"seeds": args.seeds}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        scaling = {}
        for nodes in (4, 16, 64):
            heights = 50 if nodes == 64 else 100
            scaling[nodes] = _median(pool, Scenario(nodes=nodes, heights=heights), args.seeds)
            print(f"n={nodes:3}: {scaling[nodes]}", flush=True)
        figures["scaling"] = scaling
        crashes = {}
        for nodes, crashed in ((4, 1), (10, 3)):
            for reputation in (True, False):
                base = Scenario(nodes=nodes, heights=args.heights, leader_reputation=reputation)
                none = _median(pool, base, args.seeds)
                down = _median(
                    pool,
                    dataclasses.replace(base, crash=crashed, permanent_crash=True),
                    args.seeds,
                )
                ratio = down["blocks_per_simulated_second"] / none["blocks_per_simulated_second"]
                key = f"n={nodes} crashed={crashed} reputation={'on' if reputation else 'off'}"
                crashes[key] = {"none": none, "crashed": down, "commit_rate_ratio": round(ratio, 3)}
                print(f"{key}: commit rate {ratio:.1%} of the fault-free run", flush=True)
        figures["crashes"] = crashes
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
