"""The deterministic core imports no I/O, clock, randomness, threads or outer layers.

consortia.consensus (and consortia.execution and consortia.mempool, once they have code) must
run unchanged inside the simulator: every import of theirs is checked with `ast`, including
relative imports, `from consortia import net` and `__import__`/`import_module` of a literal.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import consortia

CORE_PACKAGES = ("consensus", "execution", "mempool")

FORBIDDEN = (
    "asyncio",
    "socket",
    "ssl",
    "selectors",
    "threading",
    "time",
    "datetime",
    "random",
    "secrets",
    "os",
    "pathlib",
    "io",
    "subprocess",
    "consortia.net",
    "consortia.node",
    "consortia.api",
    "consortia.storage",
    "consortia.cli",
    "consortia.sim",
)

SOURCE_ROOT = Path(consortia.__file__).resolve().parent


def _forbidden(module: str) -> str | None:
    for name in FORBIDDEN:
        if module == name or module.startswith(name + "."):
            return name
    return None


def _resolve(package: str, module: str | None, level: int) -> str:
    """The absolute name of `from <level dots><module> import ...` inside `package`."""
    if level == 0:
        return module or ""
    parts = package.split(".")
    base = parts[: len(parts) - (level - 1)]
    return ".".join([*base, module] if module else base)


def imported_modules(source: str, package: str) -> list[tuple[int, str]]:
    """Every module `source` (a module of `package`) imports, with its line number."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(package, node.module, node.level)
            found.append((node.lineno, base))
            # `from consortia import net` imports the module consortia.net.
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name in ("__import__", "import_module") and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    found.append((node.lineno, first.value))
    return found


def violations(source: str, package: str, filename: str = "<string>") -> list[str]:
    return [
        f"{filename}:{line}: imports {module} (forbidden: {banned})"
        for line, module in imported_modules(source, package)
        if (banned := _forbidden(module)) is not None
    ]


def core_files() -> dict[str, list[Path]]:
    """Source files of each core package; a package may not exist yet or be empty."""
    files: dict[str, list[Path]] = {}
    for name in CORE_PACKAGES:
        directory = SOURCE_ROOT / name
        files[name] = sorted(directory.rglob("*.py")) if directory.is_dir() else []
    return files


def _package_of(path: Path) -> str:
    """The package a source file belongs to (for a package's __init__, the package itself)."""
    return ".".join(path.relative_to(SOURCE_ROOT.parent).parts[:-1])


def test_core_packages_import_nothing_forbidden() -> None:
    files = core_files()
    assert files["consensus"], "consortia.consensus has no source files: wrong path?"
    found: list[str] = []
    for paths in files.values():
        for path in paths:
            source = path.read_text(encoding="utf-8")
            found += violations(source, _package_of(path), str(path))
    assert found == []


def test_every_consensus_module_is_checked() -> None:
    names = {path.stem for path in core_files()["consensus"]}
    assert {"replica", "safety", "block_tree", "leader", "validators", "events"} <= names


@pytest.mark.parametrize(
    "source",
    [
        "import asyncio",
        "import os.path",
        "from time import monotonic",
        "from datetime import datetime as dt",
        "import random as r",
        "from consortia.net import transport",
        "from consortia import storage",
        "from ..sim import harness",
        "from .. import cli",
        "def f():\n    import threading\n",
        "import importlib\nimportlib.import_module('socket')",
        "__import__('subprocess')",
    ],
)
def test_checker_flags_a_violation(source: str) -> None:
    assert violations(source, "consortia.consensus")


@pytest.mark.parametrize(
    "source",
    [
        "from __future__ import annotations",
        "from collections import OrderedDict",
        "import dataclasses",
        "from consortia.types.consensus import Block",
        "from consortia.consensus.safety import SafetyRules",
        "from . import safety",
        "from .events import Start",
        "import timeit_like_but_not_time",
        "from consortia.network_model import x",
    ],
)
def test_checker_allows_pure_imports(source: str) -> None:
    assert violations(source, "consortia.consensus") == []


def test_relative_imports_resolve() -> None:
    assert _resolve("consortia.consensus", "events", 1) == "consortia.consensus.events"
    assert _resolve("consortia.consensus", "sim", 2) == "consortia.sim"
    assert _resolve("consortia.consensus", None, 2) == "consortia"
