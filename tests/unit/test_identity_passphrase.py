"""Where passphrases come from: file, environment, terminal; and what is refused."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from consortia.errors import (
    InvalidArgumentError,
    PassphraseUnavailableError,
    WeakPassphraseError,
)
from consortia.identity.passphrase import PASSPHRASE_ENV, obtain_passphrase

GOOD = "a long enough passphrase"


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
    path = tmp_path / "pass"
    path.write_text(GOOD + "\r\n")
    environ = {PASSPHRASE_ENV: "from the environment"}
    assert obtain_passphrase(path, creating=True, environ=environ) == GOOD


def test_inner_whitespace_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "pass"
    path.write_text("  spaced  out  phrase \n\n")
    assert obtain_passphrase(path, creating=False, environ={}) == "  spaced  out  phrase \n"


def test_environment() -> None:
    assert obtain_passphrase(None, creating=True, environ={PASSPHRASE_ENV: GOOD}) == GOOD


@pytest.mark.parametrize("content", [b"", b"\n", b"\xff\xfe"])
def test_unusable_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "pass"
    path.write_bytes(content)
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
