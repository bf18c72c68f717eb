"""`consortia bench`: measure a local cluster under a load of signed transactions or reads.

    bench --home DIR --workload transfer|smallbank|receivable|query --duration S --rate R|max
          [--accounts A] [--clients C] [--seed N] [--json] [--out FILE]

The cluster must have benchmark accounts (`cluster up --accounts A` on a new folder). The
workloads are described in `consortia.cluster.bench_workloads`, the load, its counts and its
measurements in `consortia.cluster.bench`; this command
shows a progress bar while it runs (on a terminal), then prints the results, or one JSON object
with --json; --out FILE writes that JSON too. It never prints a passphrase or a key.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Final

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from consortia.cli.output import err, out
from consortia.cluster.bench import (
    BATCH_DEFAULT,
    DRAIN_S_DEFAULT,
    MATURITY_BLOCKS_DEFAULT,
    WINDOW_DEFAULT,
    WORKLOAD_TRANSFER,
    WORKLOADS,
    BenchConfig,
    BenchProgress,
    BenchResult,
    default_clients,
    open_bench,
)
from consortia.cluster.home import ClusterHome, demo_passphrase
from consortia.errors import InvalidArgumentError

WORKLOAD_HELP: Final = (
    "What to send: transfer (asset transfers), smallbank (the SmallBank mix, hotspot skew),"
    " receivable (supply-chain finance flows), query (account reads)."
)

# The per-second sparklines: eight heights, and at most this many columns (a longer run's
# seconds are grouped).
SPARK_BLOCKS: Final = "▁▂▃▄▅▆▇█"
SPARK_COLUMNS_MAX: Final = 90


def register(app: typer.Typer) -> None:
    app.command("bench")(bench_command)


def parse_rate(text: str) -> float | None:
    """A rate in transactions a second, or None for `max`."""
    if text == "max":
        return None
    try:
        rate = float(text)
    except ValueError:
        rate = 0.0
    if not 0 < rate < math.inf:  # NaN fails too
        raise InvalidArgumentError(
            f"--rate {text!r}: a positive number of transactions a second, or max"
        )
    return rate


def bench_command(
    home: Annotated[Path, typer.Option("--home", help="The cluster's folder.")],
    duration_s: Annotated[
        float, typer.Option("--duration", help="Seconds of load (the measurement window).")
    ],
    rate: Annotated[
        str, typer.Option("--rate", help="Transactions (query: reads) a second in all, or max.")
    ],
    workload: Annotated[str, typer.Option("--workload", help=WORKLOAD_HELP)] = WORKLOAD_TRANSFER,
    accounts: Annotated[
        int | None,
        typer.Option(
            "--accounts", help="Use the first A benchmark accounts (default: all).", min=1
        ),
    ] = None,
    clients: Annotated[
        int | None,
        typer.Option(
            "--clients",
            help="Client processes sending the load (default: 1; query: 2).",
            min=1,
            max=64,
        ),
    ] = None,
    window: Annotated[
        int,
        typer.Option(
            "--window", help="At max: admitted transactions waiting for a block, at most.", min=1
        ),
    ] = WINDOW_DEFAULT,
    batch: Annotated[
        int, typer.Option("--batch", help="At max: transactions a request.", min=1, max=2000)
    ] = BATCH_DEFAULT,
    transactions: Annotated[
        int | None,
        typer.Option(
            "--transactions",
            help="Transactions to sign ahead (default: rate x duration; at max 4,000 a second).",
            min=1,
        ),
    ] = None,
    drain_s: Annotated[
        float,
        typer.Option(
            "--drain", help="Seconds to wait after the window for what was admitted.", min=0
        ),
    ] = DRAIN_S_DEFAULT,
    seed: Annotated[
        int,
        typer.Option(
            "--seed", help="Seeds the workload's random choices (same seed, same load).", min=0
        ),
    ] = 0,
    maturity_blocks: Annotated[
        int,
        typer.Option(
            "--maturity-blocks",
            help="receivable: blocks from an issue to its maturity (then the repayment).",
            min=2,
        ),
    ] = MATURITY_BLOCKS_DEFAULT,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Also write the JSON object to FILE.")
    ] = None,
    passphrase_file: Annotated[
        Path | None,
        typer.Option(
            "--passphrase-file",
            help="File holding the passphrase (default: $CONSORTIA_PASSPHRASE, then"
            " DIR/.demo-passphrase).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Load a local cluster with signed transactions (or reads) from client processes and
    report throughput, latency percentiles and each node's CPU and memory."""
    if workload not in WORKLOADS:
        raise InvalidArgumentError(f"--workload {workload!r}: one of {', '.join(WORKLOADS)}")
    config = BenchConfig(
        workload=workload,
        seed=seed,
        maturity_blocks=maturity_blocks,
        duration_s=duration_s,
        rate=parse_rate(rate),
        clients=default_clients(workload) if clients is None else clients,
        accounts=accounts,
        window=window,
        batch=batch,
        transactions=transactions,
        drain_s=drain_s,
    )
    config.check()
    cluster = ClusterHome.open(home)
    passphrase = demo_passphrase(cluster, passphrase_file)
    with Progress(
        TextColumn("{task.description:<9}"),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[counts]}"),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as progress:
        task = progress.add_task("signing", total=duration_s, counts="")

        def show(state: BenchProgress) -> None:
            progress.update(
                task,
                description=state.phase,
                completed=min(state.elapsed_s, state.duration_s) if state.phase != "signing" else 0,
                counts=(
                    f"submitted {state.submitted}  committed {state.committed}  rejected"
                    f" {state.rejected}  failed {state.failed}  waiting {state.waiting}"
                    f"  height {state.height}"
                ),
            )

        result = open_bench(cluster.root, passphrase, config, show).run()
    document = result.as_dict()
    if out_file is not None:
        out_file.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    if as_json:
        typer.echo(json.dumps(document))
        return
    print_result(result)


def print_result(result: BenchResult) -> None:
    rate = "max" if result.rate is None else f"{result.rate:g}/s"
    latency = result.latency_ms
    out.print(
        f"{result.workload} at {rate} for {result.duration_s:g} s: {result.clients} client"
        f" processes, {result.accounts} accounts, {result.nodes} nodes, seed {result.seed}"
    )
    if result.reads:
        _print_reads(result.reads)
    else:
        _print_transactions(result)
    out.print(
        f"latency ms: p50 {latency['p50']:g}  p95 {latency['p95']:g}  p99 {latency['p99']:g}"
        f"  max {latency['max']:g}"
    )
    if result.rate is not None:
        out.print(f"clients sent at most {result.send_lag_ms_max:g} ms behind schedule")
    if result.exhausted:
        out.print(
            f"every pre-signed transaction ({result.presigned}) was sent before the end:"
            " raise --transactions"
        )
    for use in (*result.node_use, *result.client_use):
        cpu = "-" if use.cpu_percent is None else f"{use.cpu_percent:g}%"
        rss = "-" if use.rss_mib is None else f"{use.rss_mib:g} MiB"
        peak = "-" if use.peak_rss_mib is None else f"{use.peak_rss_mib:g} MiB"
        timeouts = "" if use.round_timeouts is None else f"  round timeouts {use.round_timeouts}"
        out.print(
            f"{use.name:<9} pid {use.pid}  CPU {cpu} of a core  RSS {rss} (peak {peak}){timeouts}"
        )


def _print_transactions(result: BenchResult) -> None:
    out.print(
        f"submitted {result.submitted}  committed {result.committed} (rejected"
        f" {result.rejected})  failed {result.failed}  lost {result.lost}"
        + (f"  (sent again: {result.retried})" if result.retried else "")
    )
    for code, count in result.rejected_by_code.items():
        out.print(f"  rejected {code}: {count}")
    for code, count in result.failed_by_code.items():
        out.print(f"  failed {code}: {count}")
    for kind, counts in result.by_kind.items():
        rejected = counts.get("rejected", 0)
        out.print(f"  {kind}: committed {counts.get('committed', 0)}, rejected {rejected}")
    if result.flows:
        flows = result.flows
        out.print(
            f"flows: started {flows.get('started', 0)}  completed {flows.get('completed', 0)}"
            f"  abandoned {flows.get('abandoned', 0)}  awaiting maturity"
            f" {flows.get('maturing', 0)}"
        )
    for error in result.request_errors:
        out.print(f"  a request got no answer: {error}")
    out.print(
        f"throughput {result.tps:g} tx/s ({result.committed_in_window} committed in the"
        f" window, {result.blocks} blocks)"
    )
    _print_timeline(result)


def _print_timeline(result: BenchResult) -> None:
    """Committed transactions and the p99 latency second by second, as two sparklines: a
    stall shows as a gap, a backlog as a rising p99."""
    timeline = result.timeline
    if not timeline:
        return
    committed = [float(second["committed"]) for second in timeline]
    p99 = [float(second["p99_ms"]) for second in timeline]
    window = committed[: math.ceil(result.duration_s)]
    out.print(
        f"each second from the start ({len(timeline)} s, the window the first"
        f" {result.duration_s:g}): committed {min(window):,.0f} to {max(window):,.0f} a second"
        f" in the window, p99 at most {max(p99) / 1000:.2f} s"
    )
    out.print(f"  committed {sparkline(committed, statistics.fmean)}")
    out.print(f"  p99       {sparkline(p99, max)}")


def sparkline(values: Sequence[float], combine: Callable[[Sequence[float]], float]) -> str:
    """`values` as one line of block characters scaled to their largest (a blank for 0), at
    most SPARK_COLUMNS_MAX wide: longer series are grouped, each group `combine`d."""
    if not values:
        return ""
    width = math.ceil(len(values) / SPARK_COLUMNS_MAX)
    grouped = [combine(values[at : at + width]) for at in range(0, len(values), width)]
    top = max(grouped)
    steps = len(SPARK_BLOCKS) - 1
    return "".join(
        " " if value <= 0 else SPARK_BLOCKS[min(steps, round(value / top * steps))]
        for value in grouped
    )


def _print_reads(reads: dict[str, Any]) -> None:
    out.print(f"reads sent {reads['sent']}  answered {reads['answered']}  failed {reads['failed']}")
    for code, count in reads["failed_by_code"].items():
        out.print(f"  failed {code}: {count}")
    out.print(
        f"throughput {reads['per_s']:g} reads/s ({reads['answered_in_window']} answered in the"
        " window)"
    )
