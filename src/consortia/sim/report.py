"""Runs many seeds of one scenario and summarises them (what `consortia sim` prints)."""

from __future__ import annotations

import dataclasses
import multiprocessing
import statistics
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from consortia.sim.harness import run
from consortia.sim.scenario import RunResult, Scenario


def _run_summary(scenario: Scenario) -> dict[str, Any]:
    result: RunResult = run(scenario)
    summary = result.as_dict()
    summary["ok"] = result.ok
    return summary


def run_seeds(
    base: Scenario,
    seeds: Iterable[int],
    *,
    jobs: int = 1,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run `base` once per seed; return the report (see docs/consensus.md for its fields)."""
    scenarios = [dataclasses.replace(base, seed=seed) for seed in seeds]
    runs: list[dict[str, Any]] = []
    if jobs <= 1 or len(scenarios) < 4:
        for scenario in scenarios:
            runs.append(_run_summary(scenario))
            if progress is not None:
                progress(runs[-1])
    else:
        # spawn, not fork: the crypto suites may hold a thread pool.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            for summary in pool.map(_run_summary, scenarios, chunksize=4):
                runs.append(summary)
                if progress is not None:
                    progress(summary)
    return summarise(base, runs)


def summarise(base: Scenario, runs: list[dict[str, Any]]) -> dict[str, Any]:
    failing = [
        {
            "seed": r["seed"],
            "command": r["command"],
            "safety_violations": r["safety_violations"],
            "liveness_failures": r["liveness_failures"],
        }
        for r in runs
        if not r["ok"]
    ]

    def mean(key: str) -> float:
        values = [r[key] for r in runs if r["min_committed_height"] > 0]
        return round(statistics.fmean(values), 3) if values else 0.0

    return {
        "scenario": {
            "nodes": base.nodes,
            "byzantine": base.byzantine,
            "crash": base.crash,
            "permanent_crash": base.permanent_crash,
            "heights": base.heights,
            "partitions": base.partitions,
            "suite": base.suite,
            "leader_reputation": base.leader_reputation,
            "weakening": [
                name for name, value in dataclasses.asdict(base.weakening).items() if value
            ],
            "strategies": list(base.strategies) or "mix",
            "crash_moment": base.crash_moment,
            "crash_together": base.crash_together,
            "unequal_power": base.unequal_power,
            "clock_skew_ms": base.clock_skew_ms,
            "adversarial_network": base.adversarial_network,
        },
        "seeds": len(runs),
        "safety_violations": sum(len(r["safety_violations"]) for r in runs),
        "liveness_failures": sum(len(r["liveness_failures"]) for r in runs),
        "failing_seeds": len(failing),
        "min_committed_height": min((r["min_committed_height"] for r in runs), default=0),
        "messages_per_block": mean("messages_per_block"),
        "rounds_per_commit": mean("rounds_per_commit"),
        "commit_latency_round_trips": mean("commit_latency_round_trips"),
        "blocks_per_simulated_second": mean("blocks_per_simulated_second"),
        "stable_blocks_per_simulated_second": mean("stable_blocks_per_simulated_second"),
        "rounds_without_commit_max": max((r["rounds_without_commit_max"] for r in runs), default=0),
        "frames_refused": sum(r["frames_refused"] for r in runs),
        "failures": failing,
    }
