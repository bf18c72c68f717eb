"""Who holds which secret: the CA, each node and each member has its own passphrase.

A holder is the CA (its key signs certificates: whoever opens it can admit a node to the
network), a node (its consensus and TLS keys: it votes and speaks for that validator) or a
member institution (its account keys: it moves the member's money). Each holder's keys are
encrypted under that holder's own passphrase, so opening one never opens another, and a bank
that runs its node never holds what it takes to issue certificates.

Where passphrases come from, for a command that creates keys for several holders at once
(`consortia init`):

    PassphraseDirectory   one file per holder: ca.passphrase, node0.passphrase,
                          bank-0.passphrase, ... (each readable by its owner only); a holder
                          without a file is asked for on the terminal, when there is one
    OnePassphrase         demo custody: one passphrase for every holder, for a throwaway
                          consortium on one machine; every command that uses it says so

This module must never print, log or store a passphrase, nor put one in an error message.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from pathlib import Path
from typing import Final, Literal, Protocol

from consortia.errors import InvalidArgumentError, PassphraseUnavailableError
from consortia.identity.passphrase import (
    check_new_passphrase,
    passphrase_bytes,
    prompt_passphrase,
    read_passphrase_file,
)

HolderKind = Literal["ca", "node", "member"]
PASSPHRASE_SUFFIX: Final = ".passphrase"  # noqa: S105 - a file name suffix, not a secret
CA_HOLDER_NAME: Final = "ca"


@dataclasses.dataclass(frozen=True, order=True)
class Holder:
    """Who holds a set of keys: the CA, a node (by name) or a member (by name)."""

    kind: HolderKind
    name: str

    @property
    def label(self) -> str:
        return "the CA" if self.kind == "ca" else f"{self.kind} {self.name}"


CA_HOLDER: Final = Holder("ca", CA_HOLDER_NAME)


class Passphrases(Protocol):
    """Gives each holder's passphrase; `creating` asks for a new one (checked for length)."""

    @property
    def demo(self) -> bool:
        """True when one passphrase protects every holder (demo custody)."""

    def passphrase(self, holder: Holder, *, creating: bool) -> str: ...


class OnePassphrase:
    """Demo custody: the same passphrase for every holder."""

    demo = True

    def __init__(self, passphrase: str) -> None:
        self._passphrase = passphrase

    def passphrase(self, holder: Holder, *, creating: bool) -> str:
        if creating:
            check_new_passphrase(self._passphrase)
        return self._passphrase

    def __repr__(self) -> str:
        return "<one passphrase for every holder (demo custody)>"


class PassphraseDirectory:
    """One passphrase file per holder in `directory` (see the module docstring).

    New passphrases must differ between the CA and every other holder: a CA passphrase that
    also opens a node's keys would hand that node's operator the CA.
    """

    demo = False

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._given: dict[Holder, bytes] = {}

    def path(self, holder: Holder) -> Path | None:
        if self.directory is None:
            return None
        return self.directory / f"{holder.name}{PASSPHRASE_SUFFIX}"

    def passphrase(self, holder: Holder, *, creating: bool) -> str:
        path = self.path(holder)
        if path is not None and (path.exists() or path.is_symlink()):
            passphrase = read_passphrase_file(path)
        elif sys.stdin.isatty():
            passphrase = prompt_passphrase(creating=creating, label=f"Passphrase of {holder.label}")
        else:
            where = f"no {path} and " if path is not None else "no --passphrase-dir and "
            raise PassphraseUnavailableError(
                f"no passphrase for {holder.label}: {where}no terminal to ask on"
            )
        if creating:
            check_new_passphrase(passphrase)
            # Only a digest is kept, to compare: the passphrases themselves are not stored.
            self._check_separate(holder, hashlib.sha256(passphrase_bytes(passphrase)).digest())
        return passphrase

    def _check_separate(self, holder: Holder, digest: bytes) -> None:
        for other, given in self._given.items():
            if CA_HOLDER in (holder, other) and other != holder and given == digest:
                raise InvalidArgumentError(
                    f"{holder.label} and {other.label} were given the same passphrase;"
                    " the CA's passphrase must be its own"
                )
        self._given[holder] = digest

    def __repr__(self) -> str:
        return f"<passphrase files in {self.directory}>"
