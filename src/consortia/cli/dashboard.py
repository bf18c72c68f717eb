"""`consortia cluster demo` (what `make run` runs): a live 4-validator consortium on this
machine, a small continuous workload, and a dashboard until Ctrl-C.

It reuses the folder (default demo-cluster/) when it can, makes it again when it is stale (a
generated demo consortium from an earlier version, without demo accounts, or whose keys no
longer open), starts every node, then drives `consortia.cluster.workload` (transfers among
alice, bob, carol and dave; one receivable at a time issued, split, financed and repaid) and
shows, refreshed every second: each node's process, height, round, peers and mempool, the
committed throughput, the workload's counts and the receivable in flight with its parts. On a
terminal the view is a Rich live display; otherwise it prints one line every few seconds.
Ctrl-C (or SIGTERM) stops the workload and then every node, cleanly (SIGTERM, and waits).

This command must never print a passphrase or a private key.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final

import typer
from rich.console import Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from consortia.cli.cluster_commands import cluster_app, ensure_created, start_all
from consortia.cli.output import PREFIX, err, out, progress_steps, warn
from consortia.client import ChainInfo, Signer
from consortia.client.anchors import RECEIVABLE, part_key, receivable_key
from consortia.cluster.accounts import open_signer
from consortia.cluster.home import ClusterHome, demo_passphrase
from consortia.cluster.monitor import Monitor, Snapshot
from consortia.cluster.processes import START_TIMEOUT_S, exit_status, running_pid, stop_nodes
from consortia.cluster.setup import (
    DEMO_NODES,
    DEMO_SUITE,
    may_recreate,
    remove_demo,
    stale_reason,
)
from consortia.cluster.workload import Workload, WorkloadStats
from consortia.errors import InvalidArgumentError
from consortia.identity import layout
from consortia.identity.inspection import is_consortium

DEMO_HOME: Final = Path("demo-cluster")
REFRESH_S: Final = 1.0
PLAIN_EVERY_S: Final = 5.0


@dataclass
class _Shown:
    snapshot: Snapshot | None = None
    receivable: dict[str, Any] | None = None
    parts: list[tuple[str, dict[str, Any]]] | None = None


def register() -> None:
    cluster_app.command("demo")(demo_command)


def demo_command(
    home: Annotated[Path, typer.Option("--home", help="The demo's folder.")] = DEMO_HOME,
    rate: Annotated[
        float, typer.Option("--rate", help="Transfers per second.", min=0.0, max=1000.0)
    ] = 10.0,
    duration_s: Annotated[
        float | None,
        typer.Option("--duration", help="Stop after this many seconds (default: Ctrl-C).", min=1),
    ] = None,
    cycles: Annotated[
        int | None,
        typer.Option("--cycles", help="Stop once this many receivables were repaid.", min=1),
    ] = None,
    timeout_s: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for the nodes to serve.", min=1)
    ] = START_TIMEOUT_S,
) -> None:
    """A live 4-validator consortium with a demo workload and a dashboard, until Ctrl-C."""
    root = Path(os.path.abspath(home))
    prepare(root)
    cluster = ClusterHome.open(root)
    try:
        start_all(cluster, timeout_s)
        signers = _open_signers(cluster)
        stats, shown = asyncio.run(_live(cluster, signers, rate, duration_s, cycles))
    finally:
        _stop_all(cluster)
    _print_summary(stats, shown)


def prepare(root: Path) -> None:
    """Reuse `root`, make it again when stale, or create it."""
    if is_consortium(root) or (root / layout.DEMO_PASSPHRASE_FILE).exists():
        reason = stale_reason(root)
        if reason is not None:
            if not may_recreate(root):
                raise InvalidArgumentError(
                    f"{root} cannot serve the demo ({reason}); remove it or choose another --home"
                )
            warn(f"{root} is stale ({reason}); making a new demo consortium there")
            remove_demo(root)
    if not is_consortium(root):
        ensure_created(root, DEMO_NODES, DEMO_SUITE)


def _open_signers(cluster: ClusterHome) -> dict[str, Signer]:
    """Signers of the demo accounts and of every bank's treasury (one Argon2 opening each)."""
    names = [*layout.DEMO_ACCOUNTS, *sorted({node.member for node in cluster.nodes})]
    passphrase = demo_passphrase(cluster)
    status = _first_status(cluster)
    chain = ChainInfo.from_status(status)
    signers: dict[str, Signer] = {}
    with progress_steps(len(names)) as step:
        for name in names:
            step(f"opening the key of {name}")
            signer = open_signer(cluster.root, name, chain, passphrase)
            signers[signer.account] = signer
    return signers


def _first_status(cluster: ClusterHome) -> dict[str, Any]:
    from consortia.cluster.processes import fetch_status

    for node in cluster.nodes:
        status = fetch_status(node)
        if status is not None:
            return status
    raise InvalidArgumentError(f"no node of {cluster.root} answers")


async def _live(
    cluster: ClusterHome,
    signers: dict[str, Signer],
    rate: float,
    duration_s: float | None,
    cycles: int | None,
) -> tuple[WorkloadStats, _Shown]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    customers = list(layout.DEMO_ACCOUNTS)
    banks = sorted(name for name in signers if name not in customers)
    workload = Workload(
        [node.api_url for node in cluster.nodes],
        signers,
        customers,
        banks,
        rate_per_s=rate,
        rng=random.Random(),  # noqa: S311 - demo traffic, not security
    )
    monitor = Monitor(cluster)
    task = asyncio.create_task(workload.run(stop))
    started = time.monotonic()
    shown = _Shown()
    live = Live(console=out, refresh_per_second=4) if out.is_terminal else None
    printed = 0.0
    try:
        with live or contextlib.nullcontext():
            while not stop.is_set() and not task.done():
                await _refresh(monitor, cluster, workload.stats, shown)
                elapsed = time.monotonic() - started
                if live is not None:
                    live.update(_render(cluster, workload.stats, shown, elapsed))
                elif elapsed - printed >= PLAIN_EVERY_S:
                    printed = elapsed
                    out.print(_plain_line(workload.stats, shown, elapsed))
                if duration_s is not None and elapsed >= duration_s:
                    stop.set()
                if cycles is not None and workload.stats.receivables_settled >= cycles:
                    stop.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), REFRESH_S)
    finally:
        stop.set()
        await asyncio.gather(task, return_exceptions=True)
        await monitor.close()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    task.result()  # a workload that failed says why
    return workload.stats, shown


async def _refresh(
    monitor: Monitor, cluster: ClusterHome, stats: WorkloadStats, shown: _Shown
) -> None:
    shown.snapshot = await monitor.sample()
    serving = [view.node for view in shown.snapshot.nodes if view.serving]
    if not serving or stats.receivable_id is None:
        return
    record = await monitor.state(serving[0], RECEIVABLE, receivable_key(stats.receivable_id))
    if not isinstance(record, dict):
        return  # not issued yet: keep showing the previous one
    parts = []
    for part_id in record.get("parts", []):
        part = await monitor.state(serving[0], RECEIVABLE, part_key(part_id))
        if isinstance(part, dict):
            parts.append((str(part_id), part))
    shown.receivable, shown.parts = dict(record, id=stats.receivable_id), parts


def _cny(minor_units: int) -> str:
    whole, cents = divmod(int(minor_units), 100)
    return f"{whole:,}.{cents:02d}"


def _render(
    cluster: ClusterHome, stats: WorkloadStats, shown: _Shown, elapsed: float
) -> RenderableType:
    snapshot = shown.snapshot
    faults = (len(cluster.nodes) - 1) // 3
    header = (
        f"[bold]consortia[/] chain {cluster.chain_id} ({cluster.suite}) ·"
        f" {len(cluster.nodes)} validators, tolerates {faults} fault(s) · running {elapsed:.0f} s"
    )
    if snapshot is not None:
        header += (
            f"\nheight [bold]{snapshot.height}[/] · [bold]{snapshot.transactions_per_s:.1f}[/]"
            f" tx/s · {snapshot.blocks_per_s:.1f} blocks/s (last 10 s)"
        )
    parts: list[RenderableType] = [Panel(header, expand=False)]
    parts.append(_nodes_table(cluster, snapshot))
    parts.append(
        f"transfers: {stats.transfers_submitted} sent, {stats.transfers_committed} committed ·"
        f" failed in block: {stats.failed} · refused: {stats.refused} ·"
        f" receivables repaid: {stats.receivables_settled}"
    )
    parts.append(_receivable_table(stats, shown))
    if stats.events:
        parts.append("\n".join(stats.events))
    parts.append(f"[dim]Ctrl-C stops every node. Logs: {cluster.root / layout.LOGS_DIR}[/]")
    return Group(*parts)


def _nodes_table(cluster: ClusterHome, snapshot: Snapshot | None) -> Table:
    table = Table(title="validators", title_justify="left")
    for column in ("node", "node id", "pid", "state", "height", "round", "peers", "mempool"):
        table.add_column(column, no_wrap=True)
    for view in snapshot.nodes if snapshot else ():
        node = view.node
        state = "[green]serving[/]" if view.serving else "[red]down[/]" if not view.pid else "…"
        table.add_row(
            f"{node.index} {node.name}",
            node.node_id[:PREFIX] + "…",
            str(view.pid or "-"),
            state,
            _or_dash(view.height),
            _or_dash(view.round),
            "-" if view.peers is None else f"{view.peers}/{len(cluster.nodes) - 1}",
            _or_dash(view.mempool),
        )
    return table


def _receivable_table(stats: WorkloadStats, shown: _Shown) -> RenderableType:
    record = shown.receivable
    if record is None:
        return f"receivable: {stats.receivable_id or '-'} ({stats.receivable_step})"
    title = (
        f"receivable {record['id']}: [bold]{record.get('status')}[/] · debtor"
        f" {record.get('debtor')} · {_cny(record.get('amount', 0))} CNY · matures at"
        f" {record.get('maturity_height')} · next: {stats.receivable_step}"
    )
    table = Table(title=title, title_justify="left")
    for column in ("part", "holder", "amount (CNY)", "status", "financed"):
        table.add_column(column, no_wrap=True)
    for part_id, part in shown.parts or []:
        financed = (
            f"by {part['financed_by']} for {_cny(part.get('price', 0))}"
            if part.get("financed_by")
            else "-"
        )
        table.add_row(
            part_id,
            str(part.get("holder")),
            _cny(part.get("amount", 0)),
            str(part.get("status")),
            financed,
        )
    return table


def _or_dash(value: int | None) -> str:
    return "-" if value is None else str(value)


def _plain_line(stats: WorkloadStats, shown: _Shown, elapsed: float) -> str:
    snapshot = shown.snapshot
    if snapshot is None:
        return f"[{elapsed:.0f} s] waiting for the nodes"
    heights = ",".join(_or_dash(view.height) for view in snapshot.nodes)
    peers = ",".join(_or_dash(view.peers) for view in snapshot.nodes)
    receivable = shown.receivable or {}
    return (
        f"[{elapsed:.0f} s] heights {heights} · peers {peers} ·"
        f" {snapshot.transactions_per_s:.1f} tx/s · transfers committed"
        f" {stats.transfers_committed} · receivable {stats.receivable_id}"
        f" {receivable.get('status', '-')} (next: {stats.receivable_step}) · repaid"
        f" {stats.receivables_settled}"
    )


def _stop_all(cluster: ClusterHome) -> None:
    pids = {node.name: running_pid(cluster, node) for node in cluster.nodes}
    with err.status("stopping every node (SIGTERM)…"):
        stopped = stop_nodes(cluster, cluster.nodes)
    for node in stopped:
        pid = pids.get(node.name)
        status = exit_status(pid) if pid is not None else None
        said = "stopped" if status is None else f"stopped (exit status {status})"
        out.print(f"{node.name}: {said}")


def _print_summary(stats: WorkloadStats, shown: _Shown) -> None:
    height = shown.snapshot.height if shown.snapshot else 0
    out.print(
        f"Demo over: height {height}, {stats.transfers_committed} transfers committed,"
        f" {stats.receivables_settled} receivable(s) repaid. Run it again with make run;"
        " the chain continues where it stopped."
    )
