"""Running the real `consortia` console script in tests, and checking its one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

CONSORTIA = Path(sys.executable).with_name("consortia")


def cli_env(passphrase: str | None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CONSORTIA_PASSPHRASE"}
    if passphrase is not None:
        env["CONSORTIA_PASSPHRASE"] = passphrase
    env["COLUMNS"] = "160"
    env.update(extra or {})
    return env


def run(
    *args: str | Path, passphrase: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CONSORTIA), *(str(arg) for arg in args)],
        env=cli_env(passphrase),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def start(*args: str | Path, passphrase: str | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(CONSORTIA), *(str(arg) for arg in args)],
        env=cli_env(passphrase),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def assert_ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result


def assert_user_error(result: subprocess.CompletedProcess[str], code: str) -> None:
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {code}: "), lines[0]


def secret_file(path: Path, text: str) -> Path:
    """A passphrase file as it should be: readable by its owner only."""
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


def printed_hash(result: subprocess.CompletedProcess[str]) -> bytes:
    lines = [line for line in result.stdout.splitlines() if line.startswith("genesis hash: ")]
    assert len(lines) == 1, result.stdout
    return bytes.fromhex(lines[0].removeprefix("genesis hash: "))
