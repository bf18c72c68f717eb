"""`consortia init`, `consortia keys` and `consortia demo` (being written)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    del app
