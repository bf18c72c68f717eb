"""`consortia sim`: run the deterministic simulator over many seeds and report."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from consortia.consensus.safety import WEAKENING_NAMES, Weakening
from consortia.crypto import SUITE_NAMES
from consortia.errors import InvalidArgumentError
from consortia.identity.consortium import NODES_MAX
from consortia.sim.adversary import STRATEGIES
from consortia.sim.faults import CRASH_MOMENTS, MIX, is_crash_moment_choice
from consortia.sim.report import run_seeds
from consortia.sim.scenario import Scenario

SEEDS_MAX = 1_000_000
# Replicas accept a proposal's timestamp up to 30 s ahead of their clock: skews stay well below.
CLOCK_SKEW_MS_MAX = 5000


def register(app: typer.Typer) -> None:
    app.command(name="sim")(sim)


def sim(
    nodes: Annotated[int, typer.Option(help="Validators (voting power 1 each by default).")] = 4,
    byzantine: Annotated[
        int, typer.Option(help="Byzantine validators, each playing a --strategy.")
    ] = 0,
    strategy: Annotated[
        list[str] | None,
        typer.Option(
            help=f"What Byzantine validators do, repeatable ({', '.join(STRATEGIES)}); "
            "by default each seed draws one per Byzantine validator."
        ),
    ] = None,
    crash: Annotated[int, typer.Option(help="Honest validators that crash and restart.")] = 0,
    crash_moment: Annotated[
        str,
        typer.Option(
            help=f"When they crash ({', '.join(CRASH_MOMENTS)}, or mix: drawn per validator)."
        ),
    ] = MIX,
    crash_together: Annotated[
        bool, typer.Option(help="Crash them all at the first moment that comes, restart together.")
    ] = False,
    permanent_crash: Annotated[
        bool, typer.Option(help="Crashed validators never come back (crash at a random time).")
    ] = False,
    unequal_power: Annotated[
        bool, typer.Option(help="Voting powers drawn from 1..4 (Byzantine power within f).")
    ] = False,
    clock_skew_ms: Annotated[
        int, typer.Option(help="Each replica's clock runs 0..2x this many ms ahead.")
    ] = 0,
    adversarial_network: Annotated[
        bool,
        typer.Option(
            help="After stabilisation, delay messages to and from the next leader, and "
            "proposals to some replicas, to the bound."
        ),
    ] = False,
    seeds: Annotated[int, typer.Option(help="How many seeds to run (0, 1, ...).")] = 100,
    seed: Annotated[int | None, typer.Option(help="Run only this seed (replay).")] = None,
    heights: Annotated[int, typer.Option(help="Blocks every honest replica must commit.")] = 20,
    partitions: Annotated[
        bool, typer.Option(help="Partitions, loss and duplication before stabilisation.")
    ] = False,
    suite: Annotated[str, typer.Option(help="Crypto suite: intl or gm.")] = "intl",
    leader_reputation: Annotated[
        bool, typer.Option(help="Leader reputation (off: plain weighted rotation).")
    ] = True,
    weaken: Annotated[
        list[str] | None,
        typer.Option(
            help=f"Test-only: break a safety rule on purpose ({', '.join(WEAKENING_NAMES)})."
        ),
    ] = None,
    add_validator_at: Annotated[
        int,
        typer.Option(help="From this height, end epoch 0 and add a validator (0: never)."),
    ] = 0,
    governance: Annotated[
        bool,
        typer.Option(
            help="With --add-validator-at: add the validator through a real governance "
            "proposal and votes, executed by every replica's engine."
        ),
    ] = False,
    jobs: Annotated[int, typer.Option(help="Worker processes.")] = min(2, os.cpu_count() or 1),
    json_output: Annotated[bool, typer.Option("--json", help="Print the JSON report.")] = False,
    out: Annotated[Path | None, typer.Option(help="Also write the JSON report here.")] = None,
) -> None:
    """Run the consensus core in the deterministic simulator and check its invariants.

    Exit status 1 when any safety violation or liveness failure is found; each failing seed
    is listed with the exact command that replays it.
    """
    scenario = _scenario(
        governance,
        add_validator_at,
        nodes,
        byzantine,
        crash,
        permanent_crash,
        heights,
        partitions,
        suite,
        leader_reputation,
        weaken or [],
    )
    scenario = _adversary(
        scenario,
        strategy or [],
        crash_moment,
        crash_together=crash_together,
        unequal_power=unequal_power,
        clock_skew_ms=clock_skew_ms,
        adversarial_network=adversarial_network,
    )
    if not 1 <= seeds <= SEEDS_MAX:
        raise InvalidArgumentError(f"--seeds must be between 1 and {SEEDS_MAX}")
    seed_list = [seed] if seed is not None else list(range(seeds))
    console = Console(stderr=True)
    if byzantine > scenario_fault_tolerance(nodes):
        console.print(
            f"[yellow]warning:[/] {byzantine} Byzantine of {nodes} exceeds f = "
            f"{scenario_fault_tolerance(nodes)}: the protocol's assumption is broken on purpose."
        )
    report = _run_with_progress(scenario, seed_list, jobs, console, quiet=json_output)
    text = json.dumps(report, indent=2)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    if json_output:
        typer.echo(text)
    else:
        _print_summary(report)
    if report["safety_violations"] or report["liveness_failures"]:
        raise typer.Exit(1)


def scenario_fault_tolerance(nodes: int) -> int:
    return (nodes - 1) // 3


def _scenario(
    governance: bool,
    add_validator_at: int,
    nodes: int,
    byzantine: int,
    crash: int,
    permanent_crash: bool,
    heights: int,
    partitions: bool,
    suite: str,
    leader_reputation: bool,
    weaken: list[str],
) -> Scenario:
    if not 1 <= nodes <= NODES_MAX:
        raise InvalidArgumentError(f"--nodes must be between 1 and {NODES_MAX}")
    if not 0 <= byzantine <= nodes:
        raise InvalidArgumentError("--byzantine must be between 0 and --nodes")
    if not 0 <= crash <= nodes - byzantine:
        raise InvalidArgumentError("--crash must be between 0 and the number of honest nodes")
    if not 1 <= heights <= 100_000:
        raise InvalidArgumentError("--heights must be between 1 and 100000")
    if suite not in SUITE_NAMES:
        raise InvalidArgumentError(f"--suite must be one of {', '.join(SUITE_NAMES)}")
    unknown = [name for name in weaken if name not in WEAKENING_NAMES]
    if unknown:
        raise InvalidArgumentError(
            f"unknown --weaken {unknown[0]!r}; one of {', '.join(WEAKENING_NAMES)}"
        )
    weakening = Weakening(**{name: True for name in weaken})
    if not 0 <= add_validator_at <= heights:
        raise InvalidArgumentError("--add-validator-at must be between 0 and --heights")
    if governance and not add_validator_at:
        raise InvalidArgumentError("--governance needs --add-validator-at")
    return Scenario(
        nodes=nodes,
        byzantine=byzantine,
        crash=crash,
        permanent_crash=permanent_crash,
        heights=heights,
        partitions=partitions,
        suite=suite,
        leader_reputation=leader_reputation,
        weakening=weakening,
        add_validator_at=add_validator_at,
        governance=governance,
    )


def _adversary(
    scenario: Scenario,
    strategies: list[str],
    crash_moment: str,
    *,
    crash_together: bool,
    unequal_power: bool,
    clock_skew_ms: int,
    adversarial_network: bool,
) -> Scenario:
    unknown = [name for name in strategies if name not in STRATEGIES]
    if unknown:
        raise InvalidArgumentError(
            f"unknown --strategy {unknown[0]!r}; one of {', '.join(STRATEGIES)}"
        )
    if strategies and not scenario.byzantine:
        raise InvalidArgumentError("--strategy needs --byzantine")
    if not is_crash_moment_choice(crash_moment):
        raise InvalidArgumentError(
            f"unknown --crash-moment {crash_moment!r}; one of {', '.join(CRASH_MOMENTS)}, mix"
        )
    if crash_moment == "epoch_change" and not scenario.add_validator_at:
        raise InvalidArgumentError("--crash-moment epoch_change needs --add-validator-at")
    if crash_together and not scenario.crash:
        raise InvalidArgumentError("--crash-together needs --crash")
    if not 0 <= clock_skew_ms <= CLOCK_SKEW_MS_MAX:
        raise InvalidArgumentError(f"--clock-skew-ms must be between 0 and {CLOCK_SKEW_MS_MAX}")
    return dataclasses.replace(
        scenario,
        strategies=tuple(strategies),
        crash_moment=crash_moment,
        crash_together=crash_together,
        unequal_power=unequal_power,
        clock_skew_ms=clock_skew_ms,
        adversarial_network=adversarial_network,
    )


def _run_with_progress(
    scenario: Scenario, seeds: list[int], jobs: int, console: Console, *, quiet: bool
) -> dict[str, Any]:
    failures = 0
    columns = [
        TextColumn("[bold]simulating"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("failing: {task.fields[failures]}"),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=console, disable=quiet or len(seeds) == 1) as progress:
        task = progress.add_task("seeds", total=len(seeds), failures=0)

        def advance(summary: dict[str, Any]) -> None:
            nonlocal failures
            failures += 0 if summary["ok"] else 1
            progress.update(task, advance=1, failures=failures)

        return run_seeds(scenario, seeds, jobs=max(1, jobs), progress=advance)


def _print_summary(report: dict[str, Any]) -> None:
    console = Console()
    table = Table(title="consortia sim", show_header=False)
    for key in (
        "seeds",
        "safety_violations",
        "liveness_failures",
        "min_committed_height",
        "messages_per_block",
        "rounds_per_commit",
        "commit_latency_round_trips",
        "blocks_per_simulated_second",
    ):
        table.add_row(key, str(report[key]))
    console.print(table)
    for failure in report["failures"][:20]:
        console.print(f"[red]seed {failure['seed']} failed[/]: replay with `{failure['command']}`")
        for line in failure["safety_violations"][:3] + failure["liveness_failures"][:3]:
            console.print(f"    {line}")
