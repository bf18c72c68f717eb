"""docs/ARCHITECTURE.md's table of what each package imports from consortia is the code's.

Every row names a package (or `node/runtime.py`) and, in backticks, the consortia packages it
imports; this test reads every import of every module (with `ast`, relative imports resolved)
and checks that the row lists exactly the packages the code imports, so the table a new
developer reads first cannot drift from the code.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import consortia

SOURCE_ROOT = Path(consortia.__file__).resolve().parent
TABLE = SOURCE_ROOT.parents[1] / "docs" / "ARCHITECTURE.md"
RUNTIME = "node/runtime.py"


def _packages() -> set[str]:
    # Package folders, namespace packages (no __init__.py) among them, and top-level modules.
    return {p.name for p in SOURCE_ROOT.iterdir() if p.is_dir() and any(p.glob("*.py"))} | {
        p.stem for p in SOURCE_ROOT.glob("*.py") if p.stem != "__init__"
    }


def _imports(files: list[Path], own: str) -> set[str]:
    """The other consortia packages (first name after `consortia.`) these files import."""
    found: set[str] = set()
    for path in files:
        module = ".".join(("consortia", *path.relative_to(SOURCE_ROOT).with_suffix("").parts))
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    names = [".".join([*base, node.module] if node.module else base)]
                else:
                    names = [node.module or ""]
                if names == ["consortia"]:
                    names = [f"consortia.{alias.name}" for alias in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] == "consortia" and len(parts) > 1 and parts[1] != own:
                    found.add(parts[1])
    return found & _packages()


def _documented() -> dict[str, set[str]]:
    rows: dict[str, set[str]] = {}
    for line in TABLE.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.split("|")[1:-1]]
        if len(cells) != 4 or not cells[0].startswith("`"):
            continue
        subject = cells[0].split("`")[1]
        names = {token.split(".")[0] for token in re.findall(r"`([a-z_.]+)`", cells[1])}
        rows[subject] = names & _packages()
    return rows


def test_every_package_s_row_lists_exactly_what_it_imports() -> None:
    rows = _documented()
    wrong = []
    for package in sorted(p for p in _packages() if (SOURCE_ROOT / p).is_dir()):
        files = sorted((SOURCE_ROOT / package).rglob("*.py"))
        if package == "node":
            runtime = [f for f in files if f.relative_to(SOURCE_ROOT).as_posix() == RUNTIME]
            files = [f for f in files if f not in runtime]
            actual_runtime = _imports(runtime, "node") | {"node"}
            if rows.get(RUNTIME) != actual_runtime:
                wrong.append(f"{RUNTIME}: table {rows.get(RUNTIME)}, code {actual_runtime}")
        subject = f"{package}/"
        actual = _imports(files, package)
        if rows.get(subject) != actual:
            wrong.append(
                f"{subject}: table {sorted(rows.get(subject, set()))}, code {sorted(actual)}"
            )
    assert not wrong, "docs/ARCHITECTURE.md's import table is stale:\n" + "\n".join(wrong)


def test_the_check_sees_a_stale_row() -> None:
    # The parser must find the rows at all, or the test above would pass on nothing.
    rows = _documented()
    assert {"consensus/", "execution/", "node/", RUNTIME, "cli/"} <= set(rows)
    assert "net" not in rows["consensus/"] and "types" in rows["consensus/"]
    assert "execution" in rows["cli/"]
