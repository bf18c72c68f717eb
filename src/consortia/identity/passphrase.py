"""Where the passphrase that protects keys at rest comes from.

Sources, in order: a file named by `--passphrase-file`, the environment variable
CONSORTIA_PASSPHRASE, and finally a prompt on the terminal (asked twice when creating keys).
A passphrase file must be readable by its owner only, and every passphrase must be UTF-8 text.
A passphrase is never taken from a command-line argument, which other users can read in the
process list and which lands in shell history. When no source is available and standard input
is not a terminal, PassphraseUnavailableError says so in one line instead of hanging.

This module must never print, log, or store a passphrase, nor include one in an error message.
"""

from __future__ import annotations

import getpass
import os
import sys
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from consortia.errors import (
    InvalidArgumentError,
    PassphraseUnavailableError,
    WeakPassphraseError,
)
from consortia.identity.files import read_owner_only

PASSPHRASE_ENV: Final = "CONSORTIA_PASSPHRASE"  # noqa: S105 - a variable name, not a secret
PASSPHRASE_LENGTH_MIN: Final = 12
PASSPHRASE_FILE_SIZE_MAX: Final = 4096


def obtain_passphrase(
    passphrase_file: Path | None,
    *,
    creating: bool,
    environ: Mapping[str, str] | None = None,
    label: str = "Passphrase",
) -> str:
    """The passphrase from the file, the environment or the terminal, in that order.

    With `creating`, the terminal asks twice and the passphrase must be long enough. `label`
    names whose passphrase the terminal asks for ("Passphrase of node0").
    """
    environment = os.environ if environ is None else environ
    if passphrase_file is not None:
        passphrase = read_passphrase_file(passphrase_file)
    elif environment.get(PASSPHRASE_ENV):
        passphrase = _text(environment[PASSPHRASE_ENV], PASSPHRASE_ENV)
    else:
        passphrase = prompt_passphrase(creating=creating, label=label)
    if creating:
        check_new_passphrase(passphrase)
    return passphrase


def read_passphrase_file(path: Path) -> str:
    """The passphrase in `path`: its text without one trailing line break.

    The file must be readable by its owner only (mode 0600 or 0400): a passphrase that others
    can read protects nothing, so InsecurePermissionsError refuses it before reading.
    """
    data = read_owner_only(
        path, PASSPHRASE_FILE_SIZE_MAX, PassphraseUnavailableError, "passphrase file"
    )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise PassphraseUnavailableError(f"passphrase file {path} is not UTF-8 text") from None
    text = text.removesuffix("\n").removesuffix("\r")
    if not text:
        raise PassphraseUnavailableError(f"passphrase file {path} is empty")
    return text


def check_new_passphrase(passphrase: str) -> None:
    """WeakPassphraseError unless `passphrase` is long enough to protect new keys.

    Length is counted in the NFC form, the one the KDF receives: 'é' typed as e + combining
    accent is one character, not two.
    """
    length = len(unicodedata.normalize("NFC", passphrase))
    if length < PASSPHRASE_LENGTH_MIN:
        raise WeakPassphraseError(
            f"a new passphrase needs at least {PASSPHRASE_LENGTH_MIN} characters (got {length})"
        )


def passphrase_bytes(passphrase: str) -> bytes:
    """The bytes a KDF receives: UTF-8 of the NFC form, so equal-looking input is equal."""
    return unicodedata.normalize("NFC", passphrase).encode("utf-8")


def prompt_passphrase(*, creating: bool, label: str = "Passphrase") -> str:
    """Ask on the terminal (twice when creating); PassphraseUnavailableError without one."""
    if not sys.stdin.isatty():
        raise PassphraseUnavailableError(
            f"no passphrase: set {PASSPHRASE_ENV}, pass --passphrase-file FILE,"
            " or run on a terminal to be asked"
        )
    passphrase = _text(getpass.getpass(f"{label}: "), "the typed passphrase")
    if creating and getpass.getpass(f"Repeat the {label[:1].lower()}{label[1:]}: ") != passphrase:
        raise InvalidArgumentError("the two passphrases differ")
    if not passphrase:
        raise PassphraseUnavailableError("the passphrase is empty")
    return passphrase


def _text(passphrase: str, source: str) -> str:
    """`passphrase` if it is text that UTF-8 can encode.

    Python hands undecodable bytes of the environment or the terminal over as lone
    surrogates; encoding those fails later with an error that quotes them, so a byte of the
    passphrase would reach the output. Refuse such input here, without saying what it was.
    """
    try:
        passphrase.encode("utf-8")
    except UnicodeEncodeError:
        raise PassphraseUnavailableError(
            f"{source} is not valid UTF-8 text; set a passphrase in UTF-8"
        ) from None
    return passphrase
