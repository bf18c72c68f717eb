"""Thin Typer commands over the library. No protocol logic lives here."""
