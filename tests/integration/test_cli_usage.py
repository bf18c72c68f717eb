"""Command-line mistakes are one line on stderr, exit status 2, and never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest


def consortia(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "consortia.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.mark.parametrize(
    "args",
    [
        ("init", "--nodes", "abc", "--out", "never-created"),
        ("no-such-command",),
        ("sim", "--no-such-option"),
        ("keys", "inspect"),
    ],
)
def test_usage_mistakes_are_one_line(args: tuple[str, ...]) -> None:
    completed = consortia(*args)
    assert completed.returncode == 2
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, completed.stderr
    assert lines[0].startswith("error: invalid_argument: ")
    assert "Traceback" not in completed.stderr


def test_help_still_works() -> None:
    completed = consortia("--help")
    assert completed.returncode == 0
    assert "sim" in completed.stdout and "init" in completed.stdout
