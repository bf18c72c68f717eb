"""Where passphrases come from: file, environment, terminal; and what is refused."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from consortia.errors import (
    InsecurePermissionsError,
    InvalidArgumentError,
    PassphraseUnavailableError,
    WeakPassphraseError,
)
from consortia.identity.passphrase import PASSPHRASE_ENV, obtain_passphrase

GOOD = "a long enough passphrase"


def secret_file(path: Path, content: bytes | str) -> Path:
    """A passphrase file as it should be: readable by its owner only."""
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    path.chmod(0o600)
    return path


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def answers(monkeypatch: pytest.MonkeyPatch, *replies: str) -> list[str]:
    prompts: list[str] = []
    queue = list(replies)

    def fake_getpass(prompt: str = "") -> str:
        prompts.append(prompt)
        return queue.pop(0)

    monkeypatch.setattr("sys.stdin", FakeTerminal())
    monkeypatch.setattr("getpass.getpass", fake_getpass)
    return prompts


def test_file_wins_and_loses_one_line_break(tmp_path: Path) -> None:
    path = secret_file(tmp_path / "pass", GOOD + "\r\n")
    environ = {PASSPHRASE_ENV: "from the environment"}
    assert obtain_passphrase(path, creating=True, environ=environ) == GOOD


def test_inner_whitespace_is_kept(tmp_path: Path) -> None:
    path = secret_file(tmp_path / "pass", "  spaced  out  phrase \n\n")
    assert obtain_passphrase(path, creating=False, environ={}) == "  spaced  out  phrase \n"


def test_environment() -> None:
    assert obtain_passphrase(None, creating=True, environ={PASSPHRASE_ENV: GOOD}) == GOOD


@pytest.mark.parametrize("content", [b"", b"\n", b"\xff\xfe"])
def test_unusable_file(tmp_path: Path, content: bytes) -> None:
    path = secret_file(tmp_path / "pass", content)
    with pytest.raises(PassphraseUnavailableError):
        obtain_passphrase(path, creating=False, environ={})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PassphraseUnavailableError, match="does not exist"):
        obtain_passphrase(tmp_path / "absent", creating=False, environ={})


def test_no_source_and_no_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO())
    with pytest.raises(PassphraseUnavailableError, match=PASSPHRASE_ENV):
        obtain_passphrase(None, creating=True, environ={})


def test_empty_environment_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO())
    with pytest.raises(PassphraseUnavailableError):
        obtain_passphrase(None, creating=False, environ={PASSPHRASE_ENV: ""})


def test_terminal_asks_twice_when_creating(monkeypatch: pytest.MonkeyPatch) -> None:
    prompts = answers(monkeypatch, GOOD, GOOD)
    assert obtain_passphrase(None, creating=True, environ={}) == GOOD
    assert len(prompts) == 2


def test_terminal_asks_once_when_unlocking(monkeypatch: pytest.MonkeyPatch) -> None:
    prompts = answers(monkeypatch, "short")
    assert obtain_passphrase(None, creating=False, environ={}) == "short"
    assert len(prompts) == 1


def test_terminal_confirmation_must_match(monkeypatch: pytest.MonkeyPatch) -> None:
    answers(monkeypatch, GOOD, GOOD + "x")
    with pytest.raises(InvalidArgumentError, match="differ"):
        obtain_passphrase(None, creating=True, environ={})


def test_short_passphrase_refused_when_creating() -> None:
    with pytest.raises(WeakPassphraseError, match="12"):
        obtain_passphrase(None, creating=True, environ={PASSPHRASE_ENV: "elevenchars"})
    assert obtain_passphrase(None, creating=True, environ={PASSPHRASE_ENV: "twelve chars"})


def test_errors_never_contain_the_passphrase(tmp_path: Path) -> None:
    secret = "s3cret!"
    with pytest.raises(WeakPassphraseError) as caught:
        obtain_passphrase(None, creating=True, environ={PASSPHRASE_ENV: secret})
    assert secret not in str(caught.value)


def test_length_is_counted_after_nfc_normalisation() -> None:
    """Seven 'é' typed as e + combining accent are 14 code points but 7 characters (the
    KDF sees the NFC form), so they are too short for a new passphrase."""
    decomposed = "e\u0301" * 7
    assert len(decomposed) == 14
    with pytest.raises(WeakPassphraseError, match="got 7"):
        obtain_passphrase(None, creating=True, environ={PASSPHRASE_ENV: decomposed})
    composed_enough = "\u00e9" * 12
    assert obtain_passphrase(None, creating=True, environ={PASSPHRASE_ENV: composed_enough})


def test_undecodable_environment_is_refused_without_showing_it() -> None:
    # Python hands a non-UTF-8 byte of the environment over as a lone surrogate.
    undecodable = "passphrase-\udcff-with-a-bad-byte"
    with pytest.raises(PassphraseUnavailableError, match="UTF-8") as caught:
        obtain_passphrase(None, creating=False, environ={PASSPHRASE_ENV: undecodable})
    assert "passphrase-" not in str(caught.value) and "\\x" not in str(caught.value)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o610])
def test_passphrase_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = secret_file(tmp_path / "pass", GOOD)
    path.chmod(mode)
    with pytest.raises(InsecurePermissionsError, match=f"{mode:04o}"):
        obtain_passphrase(path, creating=False, environ={})
    path.chmod(0o400)
    assert obtain_passphrase(path, creating=False, environ={}) == GOOD


def test_passphrase_file_must_be_a_regular_file(tmp_path: Path) -> None:
    with pytest.raises(PassphraseUnavailableError):
        obtain_passphrase(tmp_path, creating=False, environ={})
    target = secret_file(tmp_path / "pass", GOOD)
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(PassphraseUnavailableError):
        obtain_passphrase(link, creating=False, environ={})
