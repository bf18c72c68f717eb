"""Shared helpers for the identity tests: fast KDF costs and a consortium with one passphrase
per holder (the CA, each node, each member), as `consortia init` makes it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from consortia.identity.consortium import (
    ConsortiumPlan,
    ConsortiumSummary,
    build_consortium,
    plan_consortium,
)
from consortia.identity.custody import Holder
from consortia.identity.keystore import Argon2Cost

FAST = Argon2Cost(memory_kib=64, iterations=1, lanes=1)


def passphrase_of(holder: Holder) -> str:
    return f"the passphrase of {holder.kind} {holder.name}"


def holder_passphrases(plan: ConsortiumPlan, *, with_ca: bool = True) -> dict[Holder, str]:
    return {holder: passphrase_of(holder) for holder in plan.holders(with_ca=with_ca)}


class Book:
    """A `Passphrases` that knows every holder's passphrase (a test stands in for all)."""

    demo = False

    def __init__(self, passphrases: Mapping[Holder, str] | None = None) -> None:
        self.passphrases = dict(passphrases or {})
        self.asked: list[Holder] = []

    def passphrase(self, holder: Holder, *, creating: bool) -> str:
        self.asked.append(holder)
        return self.passphrases.get(holder, passphrase_of(holder))


def build(out: Path, nodes: int = 4, suite_name: str = "intl", **kwargs: Any) -> ConsortiumSummary:
    plan = plan_consortium(out, nodes=nodes, suite_name=suite_name, **kwargs)
    return build_consortium(plan, holder_passphrases(plan), cost=FAST)
