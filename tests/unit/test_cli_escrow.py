"""`consortia escrow split|recover` as an operator runs them: the real console script.

Test: an escrow key file split 2 of 3 into officer share files, each under its own passphrase;
any two shares recover a key file whose key opens a record sealed to the escrow; one share is
too few; a share under the wrong passphrase, a signing key given as the escrow key, a
threshold above the officers and an existing output are refused with one line and exit 2;
no passphrase or private key appears in any output.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from consortia.crypto import suite
from consortia.identity.keystore import load_key
from consortia.privacy import ESCROW_PARTY, Reader, open_sealed, seal
from tests.cli_helpers import assert_ok, assert_user_error, run

PASSPHRASE = "escrow key passphrase, long enough"
SECRETS = {f"officer-{i}": f"officer {i} passphrase, long enough" for i in (1, 2, 3)}


def _passphrase_dir(root: Path, secrets: dict[str, str]) -> Path:
    folder = root / "passphrases"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name, secret in secrets.items():
        path = folder / f"{name}.passphrase"
        path.write_text(secret + "\n")
        path.chmod(0o600)
    return folder


@pytest.mark.parametrize("suite_name", ["intl", "gm"])
def test_split_then_any_two_officers_recover_a_key_that_opens_escrow_records(
    tmp_path: Path, suite_name: str
) -> None:
    key_file = tmp_path / "escrow.key"
    assert_ok(
        run(
            "keys", "generate", "--suite", suite_name, "--purpose", "encryption", "--out",
            key_file, passphrase=PASSPHRASE,
        )
    )  # fmt: skip
    officers = _passphrase_dir(tmp_path, SECRETS)
    shares = tmp_path / "shares"
    split = assert_ok(
        run(
            "escrow", "split", key_file, "--threshold", "2", "--officers", "3", "--out", shares,
            "--officer-passphrases", officers, passphrase=PASSPHRASE,
        )
    )  # fmt: skip
    assert "split 2 of 3" in split.stdout
    assert sorted(p.name for p in shares.iterdir()) == [f"officer-{i}.share" for i in (1, 2, 3)]
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in shares.iterdir())

    escrow = load_key(key_file, PASSPHRASE, purpose="encryption")
    chain = suite(suite_name)
    record = seal(
        chain,
        "test.record",
        {"terms": "MARKER-escrow-cli"},
        [],
        Reader(ESCROW_PARTY, 1, escrow.header.public_key_bytes),
    )
    recovered = tmp_path / "recovered.key"
    result = assert_ok(
        run(
            "escrow", "recover", shares / "officer-3.share", shares / "officer-1.share",
            "--out", recovered, "--share-passphrases", officers, passphrase="new key passphrase!",
        )
    )  # fmt: skip
    assert "recovered escrow key" in result.stdout
    again = load_key(recovered, "new key passphrase!", purpose="encryption")
    assert again.header.public_key == escrow.header.public_key
    assert open_sealed(chain, record, ESCROW_PARTY, again.private_key).value == {
        "terms": "MARKER-escrow-cli"
    }
    for output in (split.stdout + split.stderr, result.stdout + result.stderr):
        assert PASSPHRASE not in output and escrow.private_key.hex() not in output
        assert not any(secret in output for secret in SECRETS.values())


def test_refusals_are_one_line_and_change_nothing(tmp_path: Path) -> None:
    key_file = tmp_path / "escrow.key"
    assert_ok(
        run(
            "keys", "generate", "--suite", "intl", "--purpose", "encryption", "--out", key_file,
            passphrase=PASSPHRASE,
        )
    )  # fmt: skip
    signing = tmp_path / "account.key"
    assert_ok(
        run(
            "keys", "generate", "--suite", "intl", "--purpose", "account", "--out", signing,
            passphrase=PASSPHRASE,
        )
    )  # fmt: skip
    officers = _passphrase_dir(tmp_path, SECRETS)
    shares = tmp_path / "shares"

    def split(key: Path, k: str, n: str) -> subprocess.CompletedProcess[str]:
        return run(
            "escrow", "split", key, "--threshold", k, "--officers", n, "--out", shares,
            "--officer-passphrases", officers, passphrase=PASSPHRASE,
        )  # fmt: skip

    assert_user_error(split(key_file, "4", "3"), "invalid_argument")
    assert_user_error(split(signing, "2", "3"), "invalid_argument")
    assert not shares.exists()
    assert_ok(split(key_file, "2", "3"))
    assert_user_error(split(key_file, "2", "3"), "already_exists")

    recovered = tmp_path / "recovered.key"

    def recover(*files: Path, folder: Path = officers) -> subprocess.CompletedProcess[str]:
        return run(
            "escrow", "recover", *files, "--out", recovered, "--share-passphrases", folder,
            passphrase="new key passphrase!",
        )  # fmt: skip

    assert_user_error(recover(shares / "officer-1.share"), "escrow_shares_too_few")
    wrong = _passphrase_dir(tmp_path / "wrong", {"officer-1": "not officer one's passphrase"})
    (wrong / "officer-2.passphrase").write_text(SECRETS["officer-2"])
    (wrong / "officer-2.passphrase").chmod(0o600)
    assert_user_error(
        recover(shares / "officer-1.share", shares / "officer-2.share", folder=wrong),
        "wrong_passphrase",
    )
    assert_user_error(
        recover(shares / "officer-1.share", shares / "officer-1.share"),
        "escrow_share_duplicate",
    )
    assert not recovered.exists()
