"""Options several commands share, declared once: a PostgreSQL DSN without a password, a
node's or consortium's folder, and where Prometheus metrics are served.

Owns these declarations only; must never parse or act on the values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

PgDsn = Annotated[
    str,
    typer.Option(
        "--dsn",
        help="PostgreSQL DSN without a password (libpq: PGPASSWORD, PGPASSFILE, service=).",
    ),
]
NodeOrConsortiumHome = Annotated[
    Path, typer.Option("--home", help="A node's folder, or a consortium's (with --node).")
]
MetricsPort = Annotated[
    int | None,
    typer.Option("--metrics-port", help="Serve Prometheus /metrics here.", min=1, max=65535),
]
MetricsAddress = Annotated[
    str, typer.Option("--metrics-address", help="Where --metrics-port listens.")
]
