"""`consortia init`, `keys` and `demo` through the real console script, with real KDF costs.

Every user mistake must end as exactly one line `error: <code>: <message>` on stderr, exit
status 2, no traceback, and nothing half-written on disk.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from consortia.identity.custody import CA_HOLDER, Holder
from consortia.identity.genesis import load_genesis
from consortia.identity.inspection import inspect_consortium
from tests.cli_helpers import (
    CONSORTIA,
    assert_ok,
    assert_user_error,
    cli_env,
    printed_hash,
    run,
    secret_file,
    start,
)
from tests.identity_helpers import Book

PASSPHRASE = "integration passphrase"


def passphrase_dir(parent: Path, nodes: int) -> Path:
    """One passphrase file per holder, as `init --passphrase-dir` reads them."""
    folder = parent / "passphrases"
    folder.mkdir(mode=0o700)
    holders = [CA_HOLDER]
    for index in range(nodes):
        holders += [Holder("node", f"node{index}"), Holder("member", f"bank-{index}")]
    for holder in holders:
        secret_file(folder / f"{holder.name}.passphrase", f"the passphrase of {holder.name}")
    return folder


def book_of(folder: Path) -> Book:
    book = Book()
    for path in folder.iterdir():
        name = path.name.removesuffix(".passphrase")
        kind = "ca" if name == "ca" else "node" if name.startswith("node") else "member"
        book.passphrases[Holder(kind, name)] = path.read_text().strip()  # type: ignore[arg-type]
    return book


@pytest.fixture(scope="module", params=["intl", "gm"])
def initialised(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path, subprocess.CompletedProcess[str]]:
    base = tmp_path_factory.mktemp("init")
    secrets = passphrase_dir(base, 4)
    out = base / "net"
    result = run(
        "init", "--nodes", "4", "--suite", request.param, "--out", out,
        "--passphrase-dir", secrets,
    )  # fmt: skip
    return out, secrets, result


def test_init_creates_a_consortium(
    initialised: tuple[Path, Path, subprocess.CompletedProcess[str]],
) -> None:
    out, secrets, result = initialised
    assert_ok(result)
    assert "warning" not in result.stderr
    digest = printed_hash(result)
    genesis, loaded = load_genesis(out / "genesis.json", digest)
    assert loaded == digest and len(genesis.validators) == 4
    for index in range(4):
        assert f"node{index}" in result.stdout
        assert (out / f"bank-{index}" / f"node{index}" / "config.toml").is_file()
    assert inspect_consortium(out, book_of(secrets)).genesis_hash == digest
    for path in secrets.iterdir():
        assert path.read_text().strip() not in result.stdout + result.stderr


def test_init_refuses_to_overwrite(
    initialised: tuple[Path, Path, subprocess.CompletedProcess[str]],
) -> None:
    out, secrets, _result = initialised
    before = sorted(str(p) for p in out.rglob("*"))
    result = run("init", "--nodes", "4", "--out", out, "--passphrase-dir", secrets)
    assert_user_error(result, "already_exists")
    assert sorted(str(p) for p in out.rglob("*")) == before


def test_zero_nodes_rejected(tmp_path: Path) -> None:
    assert_user_error(run("init", "--nodes", "0", "--out", tmp_path / "n"), "invalid_argument")
    assert list(tmp_path.iterdir()) == []


def test_two_nodes_warn_and_demo_custody_is_labelled(tmp_path: Path) -> None:
    result = assert_ok(run("init", "--nodes", "2", "--out", tmp_path / "n", "--demo"))
    assert "Byzantine" in result.stderr
    assert "demo custody" in result.stderr and "one passphrase" in result.stderr
    assert (tmp_path / "n" / ".demo-passphrase").is_file()
    assert (tmp_path / "n" / "bank-1" / "node1" / "config.toml").is_file()


def test_hosts_with_the_wrong_count_leave_nothing(tmp_path: Path) -> None:
    result = run("init", "--nodes", "3", "--out", tmp_path / "n", "--hosts", "a.example:9000,b:9")
    assert_user_error(result, "invalid_argument")
    assert list(tmp_path.iterdir()) == []


def test_init_needs_a_passphrase_per_holder(tmp_path: Path) -> None:
    """Without --demo one passphrase is not enough, even in the environment."""
    for passphrase in (None, PASSPHRASE):
        result = run("init", "--nodes", "4", "--out", tmp_path / "n", passphrase=passphrase)
        assert_user_error(result, "passphrase_unavailable")
        assert "--passphrase-dir" in result.stderr
    secrets = passphrase_dir(tmp_path, 4)
    (secrets / "bank-2.passphrase").unlink()
    result = run("init", "--nodes", "4", "--out", tmp_path / "n", "--passphrase-dir", secrets)
    assert_user_error(result, "passphrase_unavailable")
    assert "bank-2.passphrase" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["passphrases"]


def test_init_refuses_a_ca_passphrase_shared_with_a_node(tmp_path: Path) -> None:
    secrets = passphrase_dir(tmp_path, 1)
    secret_file(secrets / "node0.passphrase", "the passphrase of ca")
    result = run("init", "--nodes", "1", "--out", tmp_path / "n", "--passphrase-dir", secrets)
    assert_user_error(result, "invalid_argument")
    assert "CA" in result.stderr and "the passphrase of" not in result.stderr
    assert not (tmp_path / "n").exists()


def test_short_passphrase(tmp_path: Path) -> None:
    result = run("init", "--nodes", "1", "--out", tmp_path / "n", "--demo", passphrase="short")
    assert_user_error(result, "passphrase_too_short")
    assert list(tmp_path.iterdir()) == []


def test_unknown_suite(tmp_path: Path) -> None:
    assert_user_error(
        run("init", "--nodes", "1", "--suite", "des", "--out", tmp_path / "n"), "unknown_suite"
    )
    assert_user_error(
        run("keys", "generate", "--suite", "des", "--out", tmp_path / "k"), "unknown_suite"
    )
    assert list(tmp_path.iterdir()) == []


def test_keys_generate_and_inspect(tmp_path: Path) -> None:
    key = tmp_path / "node.key"
    passphrase_file = secret_file(tmp_path / "pass", "a passphrase from a file")
    generated = assert_ok(
        run("keys", "generate", "--suite", "gm", "--out", key, "--passphrase-file", passphrase_file)
    )
    assert (key.stat().st_mode & 0o777) == 0o600
    header = json.loads(key.read_text())["header"]
    assert f"public key: {header['public_key']}" in generated.stdout
    assert "node id:" in generated.stdout
    inspected = assert_ok(run("keys", "inspect", key))
    assert header["public_key"] in inspected.stdout and "suite:      gm" in inspected.stdout
    decrypted = assert_ok(
        run("keys", "inspect", key, "--decrypt", "--passphrase-file", passphrase_file)
    )
    assert "matches the public key" in decrypted.stdout
    wrong = run("keys", "inspect", key, "--decrypt", passphrase=PASSPHRASE)
    assert_user_error(wrong, "wrong_passphrase")
    again = run("keys", "generate", "--suite", "gm", "--out", key, passphrase=PASSPHRASE)
    assert_user_error(again, "already_exists")


def test_a_passphrase_file_others_can_read_is_refused(tmp_path: Path) -> None:
    passphrase_file = secret_file(tmp_path / "pass", "a passphrase from a file")
    passphrase_file.chmod(0o644)
    key = tmp_path / "node.key"
    result = run("keys", "generate", "--suite", "intl", "--out", key, "--passphrase-file",
                 passphrase_file)  # fmt: skip
    assert_user_error(result, "insecure_permissions")
    assert not key.exists()


def test_a_non_utf8_passphrase_is_one_line_without_the_passphrase(tmp_path: Path) -> None:
    """Undecodable bytes in CONSORTIA_PASSPHRASE must not end in a traceback that quotes them."""
    env = {os.fsencode(k): os.fsencode(v) for k, v in cli_env(None).items()}
    env[b"CONSORTIA_PASSPHRASE"] = b"sekrit-\xff\xfe-passphrase"
    key = tmp_path / "node.key"
    result = subprocess.run(
        [str(CONSORTIA), "keys", "generate", "--suite", "intl", "--out", str(key)],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
        check=False,
    )
    stderr = result.stderr.decode(errors="replace")
    text = subprocess.CompletedProcess(result.args, result.returncode, "", stderr)
    assert_user_error(text, "passphrase_unavailable")
    assert b"sekrit" not in result.stderr and b"\\xff" not in result.stderr
    assert b"udcff" not in result.stderr
    assert not key.exists()


def test_keys_inspect_a_corrupted_file(tmp_path: Path) -> None:
    key = tmp_path / "node.key"
    assert_ok(run("keys", "generate", "--suite", "intl", "--out", key, passphrase=PASSPHRASE))
    text = key.read_text()
    cases = {
        "truncated": text[: len(text) // 2],
        "garbage": "\x00\x01 not json at all",
        "edited": text.replace('"purpose": "consensus"', '"purpose": "consensu"'),
        "repeated": text.replace(
            '"purpose": "consensus"', '"purpose": "account", "purpose": "consensus"'
        ),
    }  # fmt: skip
    for name, content in cases.items():
        broken = tmp_path / f"{name}.key"
        broken.write_text(content)
        assert_user_error(run("keys", "inspect", broken), "key_file_invalid")
    edited = tmp_path / "edited-purpose.key"
    edited.write_text(text.replace('"purpose": "consensus"', '"purpose": "account"'))
    result = run("keys", "inspect", edited, "--decrypt", passphrase=PASSPHRASE)
    assert_user_error(result, "key_file_invalid")
    assert_user_error(run("keys", "inspect", tmp_path / "absent.key"), "key_file_invalid")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("demo") / "demo"
    return out, run("demo", "--out", out)


def test_demo_creates_then_verifies(demo: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, first = demo
    assert_ok(first)
    assert "Created demo consortium" in first.stdout and "cluster up" in first.stdout
    assert "demo only" in first.stderr and "demo custody" in first.stderr
    passphrase_file = out / ".demo-passphrase"
    assert (passphrase_file.stat().st_mode & 0o777) == 0o600
    assert passphrase_file.read_text().strip() not in first.stdout + first.stderr
    second = assert_ok(run("demo", "--out", out))
    assert "Verified existing consortium" in second.stdout
    assert "Every key decrypted" in second.stdout and "account keys" in second.stdout
    assert printed_hash(first) == printed_hash(second)


def _copy(source: Path, target: Path) -> Path:
    subprocess.run(["cp", "-a", str(source), str(target)], check=True)
    return target


def test_demo_check_opens_the_account_keys(
    demo: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    """A damaged account key (its header intact) fails the demo's "every key decrypted"."""
    out = _copy(demo[0], tmp_path / "demo")
    path = out / "bank-2" / "accounts" / "treasury.key"
    document = json.loads(path.read_text())
    ciphertext = document["ciphertext"]
    document["ciphertext"] = ciphertext[:-2] + ("00" if ciphertext[-2:] != "00" else "01")
    path.write_text(json.dumps(document))
    assert_user_error(run("demo", "--out", out), "key_file_invalid")


@pytest.mark.parametrize("folder", ["bank-1/accounts", "bank-1/node1", "ca", "bank-0"])
def test_demo_check_refuses_open_folders(
    demo: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path, folder: str
) -> None:
    out = _copy(demo[0], tmp_path / "demo")
    (out / folder).chmod(0o755)
    assert_user_error(run("demo", "--out", out), "insecure_permissions")


def test_demo_refuses_a_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a consortium")
    assert_user_error(run("demo", "--out", tmp_path), "already_exists")
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


# --- Interrupted runs -------------------------------------------------------------------------


def _wait_for_partial(parent: Path, name: str, process: subprocess.Popen[str]) -> Path:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = list(parent.glob(f".{name}.partial-*"))
        if found and any(found[0].iterdir()):  # keys are being written
            return found[0]
        assert process.poll() is None, process.communicate()
        time.sleep(0.01)
    raise AssertionError("init never started writing")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_init_stopped_by_a_signal_leaves_nothing(tmp_path: Path, signum: int) -> None:
    process = start("init", "--nodes", "4", "--out", tmp_path / "net", "--demo",
                    passphrase=PASSPHRASE)  # fmt: skip
    _wait_for_partial(tmp_path, "net", process)
    process.send_signal(signum)
    _stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 2, stderr
    assert stderr.strip().splitlines()[-1].startswith("error: interrupted: ")
    assert signal.Signals(signum).name in stderr and "Traceback" not in stderr
    assert list(tmp_path.iterdir()) == []


def test_init_killed_outright_is_reported_on_the_next_run(tmp_path: Path) -> None:
    process = start("init", "--nodes", "4", "--out", tmp_path / "net", "--demo",
                    passphrase=PASSPHRASE)  # fmt: skip
    partial = _wait_for_partial(tmp_path, "net", process)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    assert partial.is_dir()  # nothing can clean up after SIGKILL
    result = assert_ok(
        run("init", "--nodes", "1", "--out", tmp_path / "net", "--demo", passphrase=PASSPHRASE)
    )
    assert str(partial) in result.stderr and "killed" in result.stderr
    assert (tmp_path / "net" / "genesis.json").is_file()
    assert partial.is_dir()  # reported, never removed behind the operator's back
