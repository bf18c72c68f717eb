"""`consortia events`: follow a node's contract events as they commit, through the SDK's
event subscription (`AsyncClient.subscribe_events`, server-sent events).

    events --node URL [--from H] [--contract C] [--event E] [--account A] [--json]

Filters combine with AND; `--account` matches events that name the account (docs/node.md
says which attributes count). Without `--from` it starts with the next block. Rows are
printed as events arrive (`--json`: one JSON object a line, as the node sends it) until
Ctrl-C, which ends it with status 0. A dropped connection is resumed after the last event
printed; a node that stays away, or refuses the request, is one line `error: <code>:
<message>` and status 2. Must never print anything but what the node sent.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any, Final

import typer
from rich.table import Table

from consortia.cli.output import out
from consortia.client import AsyncClient, ClientError
from consortia.errors import NodeRefusalError, NodeUnavailableError

ATTRIBUTES_CHARS_MAX: Final = 80  # of an event's attributes shown in a table row
_COLUMNS: Final = (("height", 8), ("index", 5), ("tx", 14), ("contract", 12), ("event", 22))


def register(app: typer.Typer) -> None:
    app.command("events")(events_command)


def events_command(
    node: Annotated[str, typer.Option("--node", help="The node's API, e.g. http://127.0.0.1:8700")],
    from_height: Annotated[
        int | None, typer.Option("--from", help="First height (default: the next block).", min=0)
    ] = None,
    contract: Annotated[str | None, typer.Option("--contract", help="Only this contract.")] = None,
    event: Annotated[str | None, typer.Option("--event", help="Only events of this name.")] = None,
    account: Annotated[
        str | None, typer.Option("--account", help="Only events naming this account.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object a line.")] = False,
) -> None:
    """Follow contract events as they commit (Ctrl-C to stop)."""
    try:
        asyncio.run(_follow(node, from_height, contract, event, account, as_json=as_json))
    except KeyboardInterrupt:
        return


async def _follow(
    url: str,
    from_height: int | None,
    contract: str | None,
    event: str | None,
    account: str | None,
    *,
    as_json: bool,
) -> None:
    first = True
    async with AsyncClient(url) as client:
        events = client.subscribe_events(
            from_height, contract=contract, event=event, account=account
        )
        try:
            async for item in events:
                if as_json:
                    typer.echo(json.dumps(item, separators=(",", ":")))
                else:
                    out.print(event_row(item, header=first))
                first = False
        except ClientError as error:
            if error.code in ("subscription_lost", "unreachable"):
                raise NodeUnavailableError(f"{url}: {error.message}") from None
            raise NodeRefusalError(error.code, error.message) from None


def event_row(item: dict[str, Any], *, header: bool) -> Table:
    """One event as a table row, with the columns' header above the first."""
    table = Table(show_header=header, box=None, pad_edge=False)
    for name, width in _COLUMNS:
        table.add_column(name, width=width, no_wrap=True)
    table.add_column("attributes", overflow="fold")
    attributes = json.dumps(item.get("attributes", {}), separators=(",", ":"))
    if len(attributes) > ATTRIBUTES_CHARS_MAX:
        attributes = attributes[: ATTRIBUTES_CHARS_MAX - 1] + "…"
    table.add_row(
        str(item.get("height")),
        str(item.get("index")),
        str(item.get("tx_hash", ""))[:12] + "…",
        str(item.get("contract")),
        str(item.get("name")),
        attributes,
    )
    return table
