"""Built-in contracts import only from an allow-list, and use no floats.

Every node must compute the same result from the same block, so contract code reaches the
world only through its `Context`. This test parses every module under
consortia/execution/contracts/ with `ast` and fails on any import outside the allow-list
(relative imports resolved; `__import__`/`import_module` calls and `open`/`eval`/`exec` are
refused outright), on float literals and on true division (`/`, which makes floats).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import consortia.execution.contracts as contracts_package

CONTRACTS_PACKAGE = "consortia.execution.contracts"
CONTRACTS_DIR = Path(contracts_package.__file__).resolve().parent

# A module is allowed if it is one of these or inside one of them.
ALLOWED = (
    "__future__",
    "typing",
    "dataclasses",
    "consortia.execution.contract",
    "consortia.types.genesis",
    "consortia.types.consensus",
    "consortia.types.datashare_request",  # pure: the signed bytes of a data request
    CONTRACTS_PACKAGE,
)
# Built-ins that reach outside the contract or import by name.
FORBIDDEN_CALLS = frozenset(
    {"__import__", "import_module", "open", "eval", "exec", "compile", "input", "breakpoint"}
)


def allowed(module: str) -> bool:
    return any(module == name or module.startswith(name + ".") for name in ALLOWED)


def _absolute(package: str, module: str | None, level: int) -> str:
    if level == 0:
        return module or ""
    parts = package.split(".")
    base = parts[: len(parts) - (level - 1)]
    return ".".join([*base, module] if module else base)


def _import_violations(node: ast.AST, package: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if not allowed(alias.name)]
    if isinstance(node, ast.ImportFrom):
        base = _absolute(package, node.module, node.level)
        if allowed(base):
            return []
        # `from consortia.execution import contract` imports an allowed module.
        return [f"{base}.{a.name}" for a in node.names if not allowed(f"{base}.{a.name}")]
    return []


def _other_violations(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Call):
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        if name in FORBIDDEN_CALLS:
            return [f"calls {name}()"]
    if isinstance(node, ast.Constant) and isinstance(node.value, float | complex):
        return [f"float literal {node.value!r}"]
    if isinstance(node, ast.BinOp | ast.AugAssign) and isinstance(node.op, ast.Div):
        return ["true division (/) makes floats; use //"]
    return []


def violations(source: str, package: str = CONTRACTS_PACKAGE, filename: str = "<s>") -> list[str]:
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        found += [f"{filename}:{line}: imports {m}" for m in _import_violations(node, package)]
        found += [f"{filename}:{line}: {what}" for what in _other_violations(node)]
    return found


def contract_modules() -> list[Path]:
    return sorted(CONTRACTS_DIR.rglob("*.py"))


def test_every_contract_module_is_checked() -> None:
    names = {path.stem for path in contract_modules()}
    assert {"__init__", "asset", "regulator", "receivable"} <= names


@pytest.mark.parametrize("path", contract_modules(), ids=lambda p: p.name)
def test_contract_module_imports_only_the_allow_list(path: Path) -> None:
    package = ".".join(path.relative_to(CONTRACTS_DIR.parents[2]).parts[:-1])
    assert violations(path.read_text(encoding="utf-8"), package, path.name) == []


@pytest.mark.parametrize(
    "source",
    [
        "import time",
        "import random",
        "from time import monotonic",
        "from random import randint as r",
        "import os.path",
        "import hashlib",
        "from datetime import datetime",
        "import collections",
        "from consortia.execution.engine import Engine",
        "from consortia.execution import engine",
        "from consortia import crypto",
        "from .. import engine",
        "from ..committed import CommittedState",
        "def f():\n    import time\n",
        "__import__('random')",
        "import importlib\nimportlib.import_module('time')",
        "open('ledger.db')",
        "eval('1')",
        "x = 0.5",
        "x = 3 / 2",
        "x = 3\nx /= 2",
    ],
)
def test_checker_flags_a_violation(source: str) -> None:
    assert violations(source)


@pytest.mark.parametrize(
    "source",
    [
        "from __future__ import annotations",
        "from typing import Any, Final",
        "import typing",
        "from dataclasses import dataclass",
        "from consortia.execution.contract import Context, Contract, method",
        "from consortia.execution import contract",
        "from consortia.types.genesis import Genesis",
        "from consortia.types.consensus import Block",
        "from consortia.execution.contracts.asset import balance",
        "from .asset import balance",
        "from . import asset",
        "x = 7 // 2",
        "x = 10**8 * 24 // 3650000",
    ],
)
def test_checker_allows_the_allow_list(source: str) -> None:
    assert violations(source) == []


def test_the_checker_looks_at_what_it_is_given() -> None:
    sample = "from __future__ import annotations\nimport time\nimport random\n"
    assert violations(sample, filename="sample.py") == [
        "sample.py:2: imports time",
        "sample.py:3: imports random",
    ]
