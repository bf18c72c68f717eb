"""`consortia init`, `keys` and `demo` through the real console script, with real KDF costs.

Every user mistake must end as exactly one line `error: <code>: <message>` on stderr, exit
status 2, no traceback, and nothing half-written on disk.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from consortia.identity.genesis import load_genesis
from consortia.identity.inspection import inspect_consortium

CONSORTIA = Path(sys.executable).with_name("consortia")
PASSPHRASE = "integration passphrase"


def run(
    *args: str, passphrase: str | None = PASSPHRASE, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CONSORTIA_PASSPHRASE"}
    if passphrase is not None:
        env["CONSORTIA_PASSPHRASE"] = passphrase
    env["COLUMNS"] = "120"
    return subprocess.run(
        [str(CONSORTIA), *args],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_user_error(result: subprocess.CompletedProcess[str], code: str) -> None:
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {code}: "), lines[0]


def printed_hash(result: subprocess.CompletedProcess[str]) -> bytes:
    lines = [line for line in result.stdout.splitlines() if line.startswith("genesis hash: ")]
    assert len(lines) == 1, result.stdout
    return bytes.fromhex(lines[0].removeprefix("genesis hash: "))


@pytest.fixture(scope="module", params=["intl", "gm"])
def initialised(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("init") / "net"
    result = run("init", "--nodes", "4", "--suite", request.param, "--out", str(out))
    return out, result


def test_init_creates_a_consortium(
    initialised: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    out, result = initialised
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "warning" not in result.stderr
    digest = printed_hash(result)
    genesis, loaded = load_genesis(out / "genesis.json", digest)
    assert loaded == digest and len(genesis.validators) == 4
    for index in range(4):
        assert f"node{index}" in result.stdout
        assert (out / f"node{index}" / "config.toml").is_file()
    assert inspect_consortium(out, None).genesis_hash == digest  # decryption: see the demo test
    assert PASSPHRASE not in result.stdout + result.stderr


def test_init_refuses_to_overwrite(
    initialised: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    out, _result = initialised
    before = sorted(str(p) for p in out.rglob("*"))
    assert_user_error(run("init", "--nodes", "4", "--out", str(out)), "already_exists")
    assert sorted(str(p) for p in out.rglob("*")) == before


def test_zero_nodes_rejected(tmp_path: Path) -> None:
    assert_user_error(run("init", "--nodes", "0", "--out", str(tmp_path / "n")), "invalid_argument")
    assert list(tmp_path.iterdir()) == []


def test_two_nodes_warn(tmp_path: Path) -> None:
    result = run("init", "--nodes", "2", "--out", str(tmp_path / "n"))
    assert result.returncode == 0, result.stderr
    assert "warning" in result.stderr and "Byzantine" in result.stderr
    assert "Traceback" not in result.stderr
    assert (tmp_path / "n" / "node1" / "config.toml").is_file()


def test_hosts_with_the_wrong_count_leave_nothing(tmp_path: Path) -> None:
    out = tmp_path / "n"
    result = run("init", "--nodes", "3", "--out", str(out), "--hosts", "a.example:9000,b:9000")
    assert_user_error(result, "invalid_argument")
    assert list(tmp_path.iterdir()) == []


def test_no_passphrase_and_no_terminal(tmp_path: Path) -> None:
    result = run("init", "--nodes", "4", "--out", str(tmp_path / "n"), passphrase=None)
    assert_user_error(result, "passphrase_unavailable")
    assert list(tmp_path.iterdir()) == []


def test_short_passphrase(tmp_path: Path) -> None:
    result = run("init", "--nodes", "1", "--out", str(tmp_path / "n"), passphrase="short")
    assert_user_error(result, "passphrase_too_short")
    assert list(tmp_path.iterdir()) == []


def test_unknown_suite(tmp_path: Path) -> None:
    assert_user_error(
        run("init", "--nodes", "1", "--suite", "des", "--out", str(tmp_path / "n")),
        "unknown_suite",
    )
    assert_user_error(
        run("keys", "generate", "--suite", "des", "--out", str(tmp_path / "k")), "unknown_suite"
    )
    assert list(tmp_path.iterdir()) == []


def test_keys_generate_and_inspect(tmp_path: Path) -> None:
    key = tmp_path / "node.key"
    passphrase_file = tmp_path / "pass"
    passphrase_file.write_text("a passphrase from a file\n")
    generated = run(
        "keys", "generate", "--suite", "gm", "--out", str(key),
        "--passphrase-file", str(passphrase_file), passphrase=None,
    )  # fmt: skip
    assert generated.returncode == 0, generated.stderr
    assert (key.stat().st_mode & 0o777) == 0o600
    header = json.loads(key.read_text())["header"]
    assert f"public key: {header['public_key']}" in generated.stdout
    assert "node id:" in generated.stdout
    inspected = run("keys", "inspect", str(key), passphrase=None)
    assert inspected.returncode == 0 and header["public_key"] in inspected.stdout
    assert "suite:      gm" in inspected.stdout
    decrypted = run(
        "keys", "inspect", str(key), "--decrypt", "--passphrase-file", str(passphrase_file)
    )
    assert decrypted.returncode == 0, decrypted.stderr
    assert "matches the public key" in decrypted.stdout
    assert_user_error(run("keys", "inspect", str(key), "--decrypt"), "wrong_passphrase")
    again = run("keys", "generate", "--suite", "gm", "--out", str(key))
    assert_user_error(again, "already_exists")


def test_keys_inspect_a_corrupted_file(tmp_path: Path) -> None:
    key = tmp_path / "node.key"
    assert run("keys", "generate", "--suite", "intl", "--out", str(key)).returncode == 0
    text = key.read_text()
    cases = {
        "truncated": text[: len(text) // 2],
        "garbage": "\x00\x01 not json at all",
        "edited": text.replace('"purpose": "consensus"', '"purpose": "consensu"'),
    }
    for name, content in cases.items():
        broken = tmp_path / f"{name}.key"
        broken.write_text(content)
        assert_user_error(run("keys", "inspect", str(broken)), "key_file_invalid")
    edited = tmp_path / "edited-purpose.key"
    edited.write_text(text.replace('"purpose": "consensus"', '"purpose": "account"'))
    assert_user_error(run("keys", "inspect", str(edited), "--decrypt"), "key_file_invalid")
    assert_user_error(run("keys", "inspect", str(tmp_path / "absent.key")), "key_file_invalid")


def test_demo_creates_then_verifies(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    first = run("demo", "--out", str(out), passphrase=None)
    assert first.returncode == 0, first.stderr
    assert "Created demo consortium" in first.stdout
    assert "later release" in first.stdout
    assert "demo only" in first.stderr and "Traceback" not in first.stderr
    passphrase_file = out / ".demo-passphrase"
    assert (passphrase_file.stat().st_mode & 0o777) == 0o600
    assert passphrase_file.read_text().strip() not in first.stdout + first.stderr
    second = run("demo", "--out", str(out), passphrase=None)
    assert second.returncode == 0, second.stderr
    assert "Verified existing consortium" in second.stdout
    assert "Every key decrypted" in second.stdout
    assert "later release" in second.stdout
    assert printed_hash(first) == printed_hash(second)


def test_demo_refuses_a_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a consortium")
    assert_user_error(run("demo", "--out", str(tmp_path)), "already_exists")
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
