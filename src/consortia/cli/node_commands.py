"""`consortia node start`: run one validator in the foreground until SIGTERM or SIGINT.

The node's passphrase comes from `--passphrase-file`, `CONSORTIA_PASSPHRASE` or the terminal,
never from the command line. Exit status: 0 when asked to stop, 3 when the replica halted (the
log says why), 2 when the node could not start (one line `error: <code>: <message>`).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import structlog
import typer

from consortia.identity.passphrase import obtain_passphrase


def configure_logging(*, json_lines: bool) -> None:
    """Structured logs on stderr: key=value lines for people, or JSON lines for machines."""
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def node_start(
    home: Annotated[Path, typer.Option(help="The node's folder (holds config.toml).")],
    passphrase_file: Annotated[
        Path | None, typer.Option(help="File holding the node's passphrase (mode 0600).")
    ] = None,
    json_logs: Annotated[bool, typer.Option("--json-logs", help="Log JSON lines.")] = False,
) -> None:
    """Run this validator: consensus over mutual TLS, execution, storage and the HTTP API."""
    from consortia.node.runtime import start

    configure_logging(json_lines=json_logs)
    passphrase = obtain_passphrase(
        passphrase_file, creating=False, label=f"Passphrase of the node in {home}"
    )
    raise typer.Exit(start(home, passphrase))


def register(node_app: typer.Typer) -> None:
    node_app.command("start")(node_start)
