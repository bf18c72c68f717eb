"""Crypto suites. A chain names one at genesis: `suite("intl")` or `suite("gm")`.

>>> s = suite("intl")
>>> private_key, public_key = s.generate_keypair()
>>> s.verify(public_key, b"m", s.sign(private_key, b"m"))
True
"""

from __future__ import annotations

from consortia.crypto.base import SigningKey, Suite, VerifyItem
from consortia.crypto.gm import GmSuite
from consortia.crypto.intl import IntlSuite
from consortia.errors import UnknownSuiteError

SUITES: dict[str, Suite] = {"intl": IntlSuite(), "gm": GmSuite()}
SUITE_NAMES = tuple(SUITES)


def suite(name: str) -> Suite:
    """The suite called `name`; UnknownSuiteError for any other name."""
    try:
        return SUITES[name]
    except KeyError:
        raise UnknownSuiteError(
            f"unknown crypto suite {name!r}; choose one of {', '.join(SUITE_NAMES)}"
        ) from None


__all__ = ["SUITE_NAMES", "SigningKey", "Suite", "VerifyItem", "suite"]
