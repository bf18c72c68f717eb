"""The accounts a local cluster holds keys for, and the arguments of a command-line call.

`--from NAME` names an account whose key lies in the cluster's folder:

    alice               DIR/accounts/alice.key            a demo account (cluster up)
    bank-0.treasury     DIR/bank-0/accounts/treasury.key  a member's account
    bank-0              the same: a member's name stands for its treasury

`--arg` values of `consortia tx call`, `key=value`:

    123, -5             an integer (up to 63 bits; longer digit strings stay text)
    true, false         a boolean
    a,b,3               a list of its comma-separated items (integers or text); `a,` is a
                        list of one
    anything else       text
    key:=JSON           exactly this JSON value (an integer, text, a boolean, or a list of
                        integers and text): `digest:="0123..."` keeps digits as text

This module must never print, log or keep a private key or a passphrase: an opened key goes
straight into the `Signer` that the caller holds.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Final

from consortia.client import ChainInfo, Signer
from consortia.errors import AccountKeyNotFoundError, InvalidArgumentError
from consortia.identity import layout
from consortia.identity.keystore import load_key

_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")
_KEY: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
_INTEGER: Final = re.compile(r"-?(0|[1-9][0-9]*)\Z")
INTEGER_MAX: Final = 2**63 - 1
ARGUMENTS_MAX: Final = 64


def account_key(root: Path, name: str) -> tuple[str, Path]:
    """The account id `name` stands for and the path of its key in `root`."""
    member, dot, local = name.partition(".")
    if dot:
        if not (_NAME.match(member) and _NAME.match(local)):
            raise InvalidArgumentError(f"{name!r} is not an account name")
        path = root / member / layout.account_key_file(local)
        account_id = name
    elif not _NAME.match(name):
        raise InvalidArgumentError(f"{name!r} is not an account name")
    elif (root / layout.account_key_file(name)).exists():
        path, account_id = root / layout.account_key_file(name), name
    else:
        path = root / name / layout.account_key_file(layout.TREASURY_ACCOUNT)
        account_id = layout.account_id(name, layout.TREASURY_ACCOUNT)
    if not path.exists():
        known = ", ".join(known_accounts(root)) or "none"
        raise AccountKeyNotFoundError(
            f"no key for the account {name!r} in {root} (accounts with keys here: {known})"
        )
    return account_id, path


def known_accounts(root: Path) -> list[str]:
    """The accounts whose keys `root` holds: demo accounts, then members' accounts."""
    demo = sorted(path.stem for path in (root / layout.ACCOUNTS_DIR).glob(f"*{layout.KEY_SUFFIX}"))
    members = sorted(
        f"{path.parent.parent.name}.{path.stem}"
        for path in root.glob(f"*/{layout.ACCOUNTS_DIR}/*{layout.KEY_SUFFIX}")
    )
    return demo + members


def open_signer(root: Path, name: str, chain: ChainInfo, passphrase: str) -> Signer:
    """A signer for the account `name` (see the module docstring), its key opened with
    `passphrase`."""
    account_id, path = account_key(root, name)
    key = load_key(path, passphrase, purpose="account")
    return Signer.from_private_key(account_id, key.private_key, chain)


def parse_arguments(items: list[str]) -> dict[str, Any]:
    """The arguments of a contract call from `key=value` and `key:=JSON` items."""
    if len(items) > ARGUMENTS_MAX:
        raise InvalidArgumentError(f"at most {ARGUMENTS_MAX} --arg")
    arguments: dict[str, Any] = {}
    for item in items:
        key, separator, text = item.partition("=")
        exact = key.endswith(":")
        key = key.removesuffix(":")
        if not separator or not _KEY.match(key):
            raise InvalidArgumentError(
                f"--arg {item!r}: write key=value or key:=JSON (keys are letters, digits and _)"
            )
        if key in arguments:
            raise InvalidArgumentError(f"--arg {key} is given twice")
        arguments[key] = _exact(key, text) if exact else _inferred(text)
    return arguments


def _inferred(text: str) -> Any:
    if text in ("true", "false"):
        return text == "true"
    if "," in text:
        return [_scalar(part) for part in text.split(",") if part != ""]
    return _scalar(text)


def _scalar(text: str) -> int | str:
    if _INTEGER.match(text) and abs(int(text)) <= INTEGER_MAX:
        return int(text)
    return text


def _exact(key: str, text: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        raise InvalidArgumentError(f"--arg {key}:= is not JSON: {text!r}") from None
    scalars = (int, str)
    is_list = isinstance(value, list) and all(
        isinstance(item, scalars) and not isinstance(item, bool) for item in value
    )
    if not (isinstance(value, (*scalars, bool)) or is_list):
        raise InvalidArgumentError(
            f"--arg {key}:= takes an integer, text, true/false or a list of integers and text"
        )
    return value
